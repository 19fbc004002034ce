//! Payments: one payment intent per order, attempts against a [`Provider`],
//! refunds, and signed provider webhooks.
//!
//! Architecture invariant: money is never taken twice for one order. An attempt
//! first claims the intent with a conditional update (only one claim can win),
//! and the provider is called with the attempt id as its idempotency key, so a
//! crash mid-charge is reconciled by asking the provider, never by charging again.

pub mod card;
pub mod provider;
mod service;
mod settings;
pub mod signature;
mod store;
pub mod test_provider;

pub use mercato_contracts::payments::{PayOutcome, Payment, PaymentStatus, Payments, Refund};
pub use provider::{ChargeOutcome, Provider};
pub use service::PaymentsService;
pub use settings::PaymentsSettings;
pub use store::SHARD_TABLES;

pub static MIGRATIONS: &[mercato_platform::Migration] = &[
    mercato_platform::Migration {
        version: 1,
        name: "intents, attempts, refunds, webhook receipts, test provider ledger",
        sql: r#"
        CREATE TABLE payment_intents (
            id INTEGER PRIMARY KEY,
            order_id INTEGER NOT NULL UNIQUE,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            status TEXT NOT NULL,
            attempt_id INTEGER,
            provider_ref TEXT,
            refunded INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE INDEX payment_intents_processing ON payment_intents (status, updated_at);
        CREATE TABLE payment_attempts (
            id INTEGER PRIMARY KEY,
            intent_id INTEGER NOT NULL REFERENCES payment_intents (id),
            card_last4 TEXT NOT NULL,
            status TEXT NOT NULL,
            decline_code TEXT,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE refunds (
            id INTEGER PRIMARY KEY,
            intent_id INTEGER NOT NULL REFERENCES payment_intents (id),
            amount INTEGER NOT NULL CHECK (amount > 0),
            reason TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE webhook_receipts (
            event_id TEXT PRIMARY KEY,
            received_at INTEGER NOT NULL
        );
        CREATE TABLE test_provider_charges (
            id INTEGER PRIMARY KEY,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            card_last4 TEXT NOT NULL,
            status TEXT NOT NULL,
            refunded INTEGER NOT NULL DEFAULT 0,
            settle_at INTEGER NOT NULL,
            webhook_attempts INTEGER NOT NULL DEFAULT 0,
            webhook_next_at INTEGER,
            webhook_delivered_at INTEGER,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX test_provider_webhooks_due ON test_provider_charges (webhook_next_at) WHERE webhook_delivered_at IS NULL;
    "#,
    },
    // Settling an attempt looks its intent up by attempt id; without this index
    // every settlement scanned all intents, and checkout slowed as orders grew.
    mercato_platform::Migration {
        version: 2,
        name: "index intents by attempt",
        sql: "CREATE UNIQUE INDEX payment_intents_attempt ON payment_intents (attempt_id);",
    },
    // A retried payment whose first answer was lost (its instance died after
    // the charge) finds its payment by the client's Idempotency-Key.
    mercato_platform::Migration {
        version: 3,
        name: "attempts keep the request's idempotency key",
        sql: "ALTER TABLE payment_attempts ADD COLUMN request_key TEXT; \
              CREATE INDEX payment_attempts_intent ON payment_attempts (intent_id);",
    },
    // A payment lives in its order's logical shard (stage 7); every row of
    // it names the order, so a shard's rows can be picked out to be moved.
    mercato_platform::Migration {
        version: 4,
        name: "attempts and refunds name their order",
        sql: "ALTER TABLE payment_attempts ADD COLUMN order_id INTEGER; \
              ALTER TABLE refunds ADD COLUMN order_id INTEGER; \
              UPDATE payment_attempts SET order_id = \
                (SELECT i.order_id FROM payment_intents i WHERE i.id = payment_attempts.intent_id); \
              UPDATE refunds SET order_id = (SELECT i.order_id FROM payment_intents i WHERE i.id = refunds.intent_id);",
    },
];
