//! Carts: guest carts (found by a secret cart token the client keeps) and
//! customer carts (one active per customer), merged when a guest logs in.
//! Totals are always computed here, from current catalog prices, by the pure
//! rules in [`pricing`].

pub mod pricing;
mod service;
mod settings;
mod store;

pub use mercato_contracts::cart::{Cart, CartOwner, PricedCart};
pub use pricing::{PricedLine, Totals};
pub use service::CartService;
pub use settings::ShopSettings;

pub static MIGRATIONS: &[mercato_platform::Migration] = &[
    mercato_platform::Migration {
        version: 1,
        name: "carts and lines",
        sql: r#"
        CREATE TABLE carts (
            id INTEGER PRIMARY KEY,
            token_hash TEXT UNIQUE,
            customer_id INTEGER,
            status TEXT NOT NULL,
            shipping_method TEXT NOT NULL,
            order_id INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX carts_one_active_per_customer ON carts (customer_id) WHERE status = 'active' AND customer_id IS NOT NULL;
        CREATE TABLE cart_lines (
            cart_id INTEGER NOT NULL REFERENCES carts (id),
            sku TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            added_at INTEGER NOT NULL,
            PRIMARY KEY (cart_id, sku)
        );
    "#,
    },
    mercato_platform::Migration {
        version: 2,
        name: "coupon on carts",
        sql: "ALTER TABLE carts ADD COLUMN coupon_code TEXT",
    },
];
