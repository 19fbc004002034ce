//! The composition root: reads the configuration, opens the stores, wires the
//! domain services together, subscribes them to each other's events, and runs
//! the HTTP server and the background workers.
//!
//! Architecture invariant: no business rule lives here. Only wiring.

pub mod bench;
pub mod config;
pub mod indexer;
pub mod seed;
pub mod server;
pub mod shards;
