//! Flash sales: many buyers, few units, a short window.
//!
//! The hot path never queues buyers on a database row. Each sale's units are
//! allocated from inventory when the sale is created (one reservation held by
//! the sale), and purchase attempts decide against a counter behind the
//! [`FlashStock`] port: in process here ([`LocalStock`]), an atomic Redis script
//! in a shared deployment. Only a buyer who got a unit goes on to write: a
//! purchase record, the unit moved from the sale's allocation into the order's
//! own reservation, and the order. Attempts that lose cost no database write.
//!
//! Architecture invariant: the counter is a cache of the database, never the
//! source of truth. On start it is rebuilt from purchase records, so a crash
//! neither sells a unit twice nor loses one; units of unpaid orders return to
//! the sale.

mod service;
pub mod stock;

pub use service::{FlashSale, FlashSalesService, NewFlashSale, SaleState};
pub use stock::{Acquire, FlashStock, LocalStock};

pub static MIGRATIONS: &[mercato_platform::Migration] = &[mercato_platform::Migration {
    version: 1,
    name: "flash sales and purchases",
    sql: r#"
        CREATE TABLE flash_sales (
            id INTEGER PRIMARY KEY,
            sku TEXT NOT NULL,
            price INTEGER NOT NULL,
            currency TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            starts_at INTEGER NOT NULL,
            ends_at INTEGER NOT NULL,
            per_customer_limit INTEGER NOT NULL CHECK (per_customer_limit > 0),
            closed_at INTEGER,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE flash_purchases (
            order_id INTEGER PRIMARY KEY,
            sale_id INTEGER NOT NULL REFERENCES flash_sales (id),
            customer_id INTEGER NOT NULL,
            idempotency_key TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            UNIQUE (sale_id, customer_id, idempotency_key)
        );
        CREATE INDEX flash_purchases_by_sale ON flash_purchases (sale_id, state);
    "#,
}];
