//! The test provider signs its webhooks with the platform's scheme.

pub use mercato_platform::signature::{sign, verify};

pub use mercato_contracts::payments::SIGNATURE_HEADER as HEADER;
