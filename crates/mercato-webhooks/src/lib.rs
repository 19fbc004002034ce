//! Outgoing webhooks: administrators register endpoints (a URL and the event
//! types it wants); every matching domain event is POSTed to it as signed JSON,
//! retried with exponential backoff and full jitter, in event order per
//! endpoint.
//!
//! Architecture invariant: nothing on a request path calls the network. The
//! event subscriber ([`WebhooksService::on_event`]) only writes delivery rows;
//! the dispatcher ([`WebhooksService::spawn_dispatcher`]) sends them in the
//! background, claiming each attempt with a lease (a conditional update), so
//! an endpoint that is slow or down can never slow down checkout, and two
//! instances never send the same attempt at once.
//!
//! Delivery is at least once: receivers drop duplicates by the
//! `Mercato-Webhook-Id` header (`evt_<event id>`, the same on every attempt and
//! on a manual redelivery) and check `Mercato-Signature` with [`verify`].

mod dispatch;
pub mod model;
mod service;
mod store;

pub use mercato_contracts::webhooks::{Attempt, Delivery, DeliveryStatus, Endpoint, EndpointPatch, Webhooks};
pub use model::{ID_HEADER, RetryPolicy, SIGNATURE_HEADER, sign, verify};
pub use service::{DispatchOptions, WebhooksService};

pub static MIGRATIONS: &[mercato_platform::Migration] = &[
    mercato_platform::Migration {
        version: 1,
        name: "webhook endpoints, deliveries, attempts",
        sql: r#"
        CREATE TABLE webhook_endpoints (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL,
            description TEXT,
            events TEXT NOT NULL,
            secret TEXT NOT NULL,
            active INTEGER NOT NULL,
            deleted_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE TABLE webhook_deliveries (
            id INTEGER PRIMARY KEY,
            endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints (id),
            event_id INTEGER NOT NULL,
            event_type TEXT NOT NULL,
            payload TEXT NOT NULL,
            event_created_at INTEGER NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL,
            lease_until INTEGER NOT NULL DEFAULT 0,
            lease_token TEXT,
            delivered_at INTEGER,
            last_error TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            UNIQUE (endpoint_id, event_id)
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
        CREATE TABLE webhook_attempts (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id),
            number INTEGER NOT NULL,
            started_at INTEGER NOT NULL,
            status_code INTEGER,
            error TEXT,
            duration_ms INTEGER NOT NULL,
            UNIQUE (delivery_id, number)
        );
    "#,
    },
    mercato_platform::Migration {
        version: 2,
        name: "the event's schema version on each delivery",
        sql: "ALTER TABLE webhook_deliveries ADD COLUMN event_version INTEGER NOT NULL DEFAULT 1",
    },
];
