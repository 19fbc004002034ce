//! The catalog: a category tree, products with variants (SKU, options, price,
//! weight), publication status and slugs; listing with keyset pagination.
//!
//! Architecture invariant: the catalog knows nothing of stock. Availability is
//! the inventory domain's; the HTTP edge puts the two side by side.

mod membership;
mod service;
mod store;

pub use mercato_contracts::catalog::*;
pub use service::CatalogService;

pub static MIGRATIONS: &[mercato_platform::Migration] = &[
    mercato_platform::Migration {
        version: 1,
        name: "categories, products, variants",
        sql: r#"
        CREATE TABLE categories (
            id INTEGER PRIMARY KEY,
            parent_id INTEGER REFERENCES categories (id),
            slug TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            position INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE products (
            id INTEGER PRIMARY KEY,
            slug TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            category_id INTEGER NOT NULL REFERENCES categories (id),
            status TEXT NOT NULL,
            min_price INTEGER NOT NULL,
            currency TEXT NOT NULL,
            version INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE INDEX products_by_category ON products (status, category_id, id);
        CREATE INDEX products_by_price ON products (status, min_price, id);
        CREATE INDEX products_by_name ON products (status, name, id);
        CREATE TABLE variants (
            sku TEXT PRIMARY KEY,
            product_id INTEGER NOT NULL REFERENCES products (id),
            options TEXT NOT NULL,
            price INTEGER NOT NULL,
            currency TEXT NOT NULL,
            weight_grams INTEGER NOT NULL,
            position INTEGER NOT NULL
        );
        CREATE INDEX variants_by_product ON variants (product_id, position);
    "#,
    },
    // The default listing (newest first, no filter) had no index in its order:
    // SQLite sorted every published product for each page (87 ms a page at 1M
    // products). With this one a page is a range scan of 101 entries.
    mercato_platform::Migration {
        version: 2,
        name: "index products by status and id",
        sql: "CREATE INDEX products_by_status ON products (status, id);",
    },
];
