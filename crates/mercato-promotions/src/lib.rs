//! Promotions: coupon codes and automatic promotions (percentage or fixed
//! amount, minimum subtotal, scope, validity window, total and per-customer
//! usage limits).
//!
//! Architecture invariant: a usage limit of N admits at most N orders under any
//! concurrency. Redeeming is a conditional increment of the promotion's usage
//! counter (the row lock serialises redeemers on every backend) plus a
//! redemption row keyed by (promotion, order), which makes redeem and release
//! idempotent steps of the checkout saga.

mod service;
mod store;

pub use mercato_contracts::promotions::{
    Applied, EligibleLine, Kind, NewPromotion, Promotion, Promotions, Quote, Rejection, Scope, normalize_code,
};
pub use service::PromotionsService;

pub static MIGRATIONS: &[mercato_platform::Migration] = &[
    mercato_platform::Migration {
        version: 1,
        name: "promotions and redemptions",
        sql: r#"
        CREATE TABLE promotions (
            id INTEGER PRIMARY KEY,
            code TEXT UNIQUE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            value INTEGER NOT NULL,
            min_subtotal INTEGER NOT NULL,
            scope TEXT NOT NULL,
            scope_values TEXT NOT NULL,
            starts_at INTEGER,
            ends_at INTEGER,
            usage_limit INTEGER,
            per_customer_limit INTEGER,
            used INTEGER NOT NULL DEFAULT 0,
            active INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX promotions_automatic ON promotions (active) WHERE code IS NULL;
        CREATE TABLE redemptions (
            promotion_id INTEGER NOT NULL REFERENCES promotions (id),
            order_id INTEGER NOT NULL,
            customer_id INTEGER NOT NULL,
            amount INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (promotion_id, order_id)
        );
        CREATE INDEX redemptions_by_customer ON redemptions (promotion_id, customer_id);
        CREATE INDEX redemptions_by_order ON redemptions (order_id);
    "#,
    },
    mercato_platform::Migration {
        version: 2,
        name: "an order's claim on its uses: redeemed, or abandoned for good",
        sql: "CREATE TABLE redemption_orders (order_id INTEGER PRIMARY KEY, state TEXT NOT NULL, at INTEGER NOT NULL)",
    },
];
