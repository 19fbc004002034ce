//! Flash sales: many buyers, few units, a short window.
//!
//! The hot path never queues buyers on a database row. Each sale's units are
//! allocated from inventory when the sale is created (one reservation held by
//! the sale), and purchase attempts decide against a counter behind the
//! [`FlashStock`] port: in process ([`LocalStock`], one instance), or one
//! atomic Redis script per attempt ([`RedisStock`], shared by instances).
//! Only a buyer who got a unit goes on to write: a purchase record (with the
//! customer's hold counted in `flash_holds`), the unit moved from the sale's
//! allocation into the order's own reservation, and the order. Attempts that
//! lose cost no database write. Those writes span domains, so the purchase
//! is a process above them (`mercato-checkout`); this domain offers its part
//! ([`FlashSales`]: admit, record, activate, release) and holds no other
//! domain's surface.
//!
//! Architecture invariant: the counter is a cache of the database, never the
//! source of truth. The allocation's conditional decrement and the hold row
//! refuse what a wrong counter grants, so no counter failure oversells or
//! exceeds a customer's limit. Counters are loaded from purchase records
//! (at start, or when a shared counter has lost a sale) and the sweep repairs
//! a shared counter that drifted, so no unit is lost for good; units of
//! unpaid orders return to the sale. When the shared counter is unreachable,
//! the database decides alone, for a bounded number of attempts at a time.

pub mod redis_stock;
mod service;
pub mod stock;
mod store;

pub use mercato_contracts::flashsale::{FlashSale, FlashSales, NewFlashSale, SaleState};
pub use redis_stock::RedisStock;
pub use service::FlashSalesService;
pub use stock::{Acquire, FlashStock, LocalStock};

pub static MIGRATIONS: &[mercato_platform::Migration] = &[
    mercato_platform::Migration {
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
    },
    mercato_platform::Migration {
        version: 2,
        name: "per-customer holds",
        // One row per (sale, customer) counting live purchases, so the
        // per-customer limit is a conditional upsert in the purchase's own
        // transaction, and holds without the shared counter.
        sql: r#"
            CREATE TABLE flash_holds (
                sale_id INTEGER NOT NULL,
                customer_id INTEGER NOT NULL,
                held INTEGER NOT NULL CHECK (held >= 0),
                PRIMARY KEY (sale_id, customer_id)
            );
            INSERT INTO flash_holds (sale_id, customer_id, held)
                SELECT sale_id, customer_id, COUNT(*) FROM flash_purchases
                WHERE state IN ('pending', 'active') GROUP BY sale_id, customer_id;
        "#,
    },
];
