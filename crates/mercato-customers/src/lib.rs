//! Customers and authentication: registration, argon2id credentials, bearer
//! sessions kept in the database (so any instance can check and revoke them),
//! roles, and login abuse limits.

pub mod model;
mod service;
mod settings;
mod store;

pub use mercato_contracts::customers::{Customer, Customers, LoginOutcome, Principal, Role};
pub use service::CustomersService;
pub use settings::AuthSettings;

pub static MIGRATIONS: &[mercato_platform::Migration] = &[mercato_platform::Migration {
    version: 1,
    name: "customers and sessions",
    sql: r#"
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            customer_id INTEGER NOT NULL REFERENCES customers (id),
            role TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            revoked_at INTEGER,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX sessions_expiry ON sessions (expires_at);
    "#,
}];
