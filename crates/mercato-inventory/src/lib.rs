//! Inventory: how many units of each SKU are available, reserved (held by an
//! unpaid order) and sold.
//!
//! Architecture invariant: stock never goes negative and is conserved. For every
//! SKU, the sum of admin adjustments equals `available + reserved + sold`; every
//! operation moves units between those buckets with a conditional UPDATE, so
//! the rule holds under any number of concurrent writers and on any backend.
//! Reservations are keyed by the order id, which makes reserve, commit and
//! release idempotent: a retried or re-delivered call changes nothing twice.

mod service;
mod store;

pub use mercato_contracts::inventory::{Adjustment, Inventory, Line, Stock};
pub use service::{InventoryService, SHOWN_TTL, SOLE_WRITER_SHOWN_TTL};

pub static MIGRATIONS: &[mercato_platform::Migration] = &[mercato_platform::Migration {
    version: 1,
    name: "stock, reservations, adjustments",
    sql: r#"
        CREATE TABLE stock (
            sku TEXT PRIMARY KEY,
            available INTEGER NOT NULL CHECK (available >= 0),
            reserved INTEGER NOT NULL CHECK (reserved >= 0),
            sold INTEGER NOT NULL CHECK (sold >= 0),
            updated_at INTEGER NOT NULL
        );
        CREATE TABLE reservations (
            id INTEGER PRIMARY KEY,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE TABLE reservation_lines (
            reservation_id INTEGER NOT NULL REFERENCES reservations (id),
            sku TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            PRIMARY KEY (reservation_id, sku)
        );
        CREATE TABLE adjustments (
            id INTEGER PRIMARY KEY,
            sku TEXT NOT NULL,
            delta INTEGER NOT NULL,
            available_after INTEGER NOT NULL,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX adjustments_by_sku ON adjustments (sku, id);
    "#,
}];
