//! The orders domain: orders, their items and history, the state machine
//! that moves them, and the records that make placing an order idempotent.
//!
//! It reaches no other domain. Placing, paying, cancelling and refunding an
//! order span domains (stock, coupons, the cart, the payment), so they are
//! processes above the domains (`mercato-checkout`) that call this domain's
//! surface ([`Orders`]) for its part: a step to write, or a single move.
//! Every move is a conditional state change, so a process repeated after a
//! crash, or an event delivered twice, changes nothing twice.

pub mod model;
mod moving;
mod partitions;
mod service;
mod settings;
mod store;

pub use mercato_contracts::orders::{
    Address, AdminFilter, HistoryEntry, Order, OrderItem, OrderStatus, Orders, PaymentResult, Placed,
};
pub use moving::{MoveReport, move_shard, shard_table};
pub use partitions::{PARTITIONED, ensure_partitions, month_of};
pub use service::{OrdersService, check_shards, purge_checkouts};
pub use settings::OrdersSettings;
pub use store::SHARD_TABLES;

pub static MIGRATIONS: &[mercato_platform::Migration] = &[
    mercato_platform::Migration {
        version: 1,
        name: "orders, items, history, checkout claims",
        sql: r#"
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY,
            customer_id INTEGER NOT NULL,
            status TEXT NOT NULL,
            currency TEXT NOT NULL,
            subtotal INTEGER NOT NULL,
            discount INTEGER NOT NULL,
            shipping INTEGER NOT NULL,
            tax INTEGER NOT NULL,
            total INTEGER NOT NULL,
            refunded INTEGER NOT NULL DEFAULT 0,
            shipping_address TEXT NOT NULL,
            shipping_method TEXT NOT NULL,
            cart_id INTEGER,
            idempotency_key TEXT,
            payment_due_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE INDEX orders_by_customer ON orders (customer_id, id);
        CREATE INDEX orders_by_status ON orders (status, id);
        CREATE INDEX orders_payment_due ON orders (payment_due_at) WHERE status = 'pending_payment';
        CREATE TABLE order_items (
            order_id INTEGER NOT NULL REFERENCES orders (id),
            line INTEGER NOT NULL,
            sku TEXT NOT NULL,
            product_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            options TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            unit_price INTEGER NOT NULL,
            line_total INTEGER NOT NULL,
            PRIMARY KEY (order_id, line)
        );
        CREATE TABLE order_history (
            id INTEGER PRIMARY KEY,
            order_id INTEGER NOT NULL REFERENCES orders (id),
            from_status TEXT,
            to_status TEXT NOT NULL,
            actor TEXT NOT NULL,
            note TEXT,
            at INTEGER NOT NULL
        );
        CREATE INDEX order_history_by_order ON order_history (order_id, id);
        CREATE TABLE checkouts (
            customer_id INTEGER NOT NULL,
            idempotency_key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            order_id INTEGER NOT NULL,
            state TEXT NOT NULL,
            lease_until INTEGER NOT NULL,
            response TEXT,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (customer_id, idempotency_key)
        );
        CREATE INDEX checkouts_stale ON checkouts (state, lease_until);
    "#,
    },
    mercato_platform::Migration {
        version: 2,
        name: "payment lease on orders",
        sql: "ALTER TABLE orders ADD COLUMN payment_lock_until INTEGER",
    },
    mercato_platform::Migration {
        version: 3,
        name: "discount lines on orders",
        sql: "ALTER TABLE orders ADD COLUMN discounts TEXT",
    },
    mercato_platform::Migration {
        version: 4,
        name: "flash sale orders",
        sql: "ALTER TABLE orders ADD COLUMN flash_sale_id INTEGER",
    },
    mercato_platform::Migration {
        version: 5,
        name: "the logical shards a database holds",
        sql: "CREATE TABLE order_shards (shard INTEGER PRIMARY KEY, logical INTEGER NOT NULL)",
    },
    mercato_platform::Migration {
        version: 6,
        name: "a shard's state: serving, incoming (being moved here), moved (away)",
        sql: "ALTER TABLE order_shards ADD COLUMN state TEXT NOT NULL DEFAULT 'serving'",
    },
    mercato_platform::Migration {
        version: 7,
        name: "a moving shard's marker, replicated with its rows",
        sql: "CREATE TABLE order_shard_marks (shard INTEGER PRIMARY KEY, mark INTEGER NOT NULL)",
    },
    // Order history by month, on PostgreSQL: orders, their items and their
    // history partitioned by range of order id, which is time-ordered (the
    // id's high bits are milliseconds since 2025-01-01, shifted by 22). The
    // tables as they were become the first partition, holding everything
    // before next month (attached, not copied); `ensure_partitions` adds a
    // partition per month ahead, and a month's partitions can be detached
    // and archived as a whole.
    mercato_platform::Migration {
        version: 8,
        name: "orders, items and history partitioned by month of order id",
        sql: r#"-- postgres only
        ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey;
        ALTER TABLE order_history DROP CONSTRAINT order_history_order_id_fkey;
        ALTER TABLE orders RENAME TO orders_before;
        ALTER INDEX orders_pkey RENAME TO orders_before_pkey;
        ALTER INDEX orders_by_customer RENAME TO orders_before_by_customer;
        ALTER INDEX orders_by_status RENAME TO orders_before_by_status;
        ALTER INDEX orders_payment_due RENAME TO orders_before_payment_due;
        CREATE TABLE orders (LIKE orders_before INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (id);
        ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);
        CREATE INDEX orders_by_customer ON orders (customer_id, id);
        CREATE INDEX orders_by_status ON orders (status, id);
        CREATE INDEX orders_payment_due ON orders (payment_due_at) WHERE status = 'pending_payment';
        ALTER TABLE orders ATTACH PARTITION orders_before FOR VALUES FROM (MINVALUE) TO
            (((extract(epoch from date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') * 1000)::bigint
              - 1735689600000) << 22);
        ALTER TABLE order_items RENAME TO order_items_before;
        ALTER INDEX order_items_pkey RENAME TO order_items_before_pkey;
        CREATE TABLE order_items (LIKE order_items_before INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
            PARTITION BY RANGE (order_id);
        ALTER TABLE order_items ADD CONSTRAINT order_items_pkey PRIMARY KEY (order_id, line);
        ALTER TABLE order_items ATTACH PARTITION order_items_before FOR VALUES FROM (MINVALUE) TO
            (((extract(epoch from date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') * 1000)::bigint
              - 1735689600000) << 22);
        ALTER TABLE order_history RENAME TO order_history_before;
        ALTER TABLE order_history_before DROP CONSTRAINT order_history_pkey;
        ALTER TABLE order_history_before ADD CONSTRAINT order_history_before_pkey PRIMARY KEY (order_id, id);
        ALTER INDEX order_history_by_order RENAME TO order_history_before_by_order;
        CREATE TABLE order_history (LIKE order_history_before INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
            PARTITION BY RANGE (order_id);
        ALTER TABLE order_history ADD CONSTRAINT order_history_pkey PRIMARY KEY (order_id, id);
        ALTER TABLE order_history ATTACH PARTITION order_history_before FOR VALUES FROM (MINVALUE) TO
            (((extract(epoch from date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') * 1000)::bigint
              - 1735689600000) << 22);
        ALTER TABLE order_items ADD CONSTRAINT order_items_order_id_fkey
            FOREIGN KEY (order_id) REFERENCES orders (id);
        ALTER TABLE order_history ADD CONSTRAINT order_history_order_id_fkey
            FOREIGN KEY (order_id) REFERENCES orders (id)
        "#,
    },
];
