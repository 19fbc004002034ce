//! What handlers share. Everything here is a handle to a service or a store:
//! no request leaves state behind in the process (a second instance would not
//! see it).

use mercato_contracts::cart::Cart;
use mercato_contracts::catalog::Catalog;
use mercato_contracts::checkout::Checkout;
use mercato_contracts::customers::Customers;
use mercato_contracts::flashsale::FlashSales;
use mercato_contracts::inventory::Inventory;
use mercato_contracts::orders::Orders;
use mercato_contracts::payments::Payments;
use mercato_contracts::promotions::Promotions;
use mercato_contracts::webhooks::Webhooks;
use mercato_platform::Db;
use mercato_platform::config::HttpConfig;
use mercato_search::SearchEngine;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Shared by every request. One `Arc` around all the services: axum clones the
/// state for every extractor and layer that asks for it, and cloning a dozen
/// `Arc`s each time showed up at several percent of CPU in the profile.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub http: HttpConfig,
    /// How long a request holds its Idempotency-Key before a retry may take
    /// it over unless renewed (`orders.checkout_lease_ms`; renewed every
    /// third of it while the request runs).
    pub idempotency_lease_ms: u64,
    /// The platform's database (stored Idempotency-Key answers).
    pub db: Db,
    /// Every domain's database, for health and metrics only: handlers reach
    /// a domain's data through its service.
    pub dbs: mercato_platform::Databases,
    // Each domain through its surface only: the handlers cannot tell an
    // in-process service from a remote one.
    pub catalog: Arc<dyn Catalog>,
    pub inventory: Arc<dyn Inventory>,
    pub customers: Arc<dyn Customers>,
    pub cart: Arc<dyn Cart>,
    pub orders: Arc<dyn Orders>,
    /// The processes across domains: placing, paying, cancelling and
    /// refunding an order.
    pub checkout: Arc<dyn Checkout>,
    pub payments: Arc<dyn Payments>,
    pub promotions: Arc<dyn Promotions>,
    /// The search port: the embedded Tantivy index, or an external engine.
    pub search: Arc<dyn SearchEngine>,
    /// Outgoing webhooks to admin-registered endpoints.
    pub webhooks: Arc<dyn Webhooks>,
    /// Every database's outbox: dead letters and their redrive.
    pub events: mercato_platform::events::Outboxes,
    pub flash: Arc<dyn FlashSales>,
    pub metrics: PrometheusHandle,
    /// Search answers (JSON) by query string; flushed when the index changes.
    pub search_results: mercato_platform::cache::Tiered<String, String>,
    /// Rendered product pages, kept while their inputs are unchanged.
    pub product_pages: crate::render::ProductPages,
    /// Set when shutdown begins, so `/readyz` tells the load balancer to stop
    /// sending new requests while in-flight ones finish.
    pub draining: Arc<AtomicBool>,
}
