//! Mercato's shared vocabulary: [`Money`], ids, and the [`Error`] taxonomy every
//! domain reports through.
//!
//! Architecture invariant: this crate does no I/O, knows no async runtime, no
//! database and no HTTP. The HTTP edge maps [`ErrorCode`] to a status and a
//! problem+json `type`; nothing here knows status codes.

pub mod error;
pub mod id;
pub mod money;
pub mod options;

pub use error::{Error, ErrorCode, Result};
pub use id::Id;
pub use money::{Currency, Money};
pub use options::Options;

/// Milliseconds since the Unix epoch. Domain functions take `now` as an argument
/// instead of reading a clock, so they stay pure and testable.
pub type Millis = i64;
