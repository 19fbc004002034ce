//! What handlers share. Everything here is a handle to a service or a store:
//! no request leaves state behind in the process (a second instance would not
//! see it).

use mercato_cart::CartService;
use mercato_catalog::CatalogService;
use mercato_customers::CustomersService;
use mercato_inventory::InventoryService;
use mercato_orders::OrdersService;
use mercato_payments::PaymentsService;
use mercato_platform::Db;
use mercato_platform::config::Config;
use mercato_promotions::PromotionsService;
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
    pub config: Arc<Config>,
    /// The platform's database (stored Idempotency-Key answers).
    pub db: Db,
    /// Every domain's database, for health and metrics only: handlers reach
    /// a domain's data through its service.
    pub dbs: mercato_platform::Databases,
    pub catalog: CatalogService,
    pub inventory: InventoryService,
    pub customers: CustomersService,
    pub cart: CartService,
    pub orders: OrdersService,
    pub payments: PaymentsService,
    pub promotions: PromotionsService,
    /// The search port: the embedded Tantivy index, or an external engine.
    pub search: Arc<dyn SearchEngine>,
    /// Outgoing webhooks to admin-registered endpoints.
    pub webhooks: mercato_webhooks::WebhooksService,
    /// Every database's outbox: dead letters and their redrive.
    pub events: mercato_platform::events::Outboxes,
    pub flash: mercato_flashsale::FlashSalesService,
    pub metrics: PrometheusHandle,
    /// Search answers (JSON) by query string; flushed when the index changes.
    pub search_results: mercato_platform::cache::Tiered<String, String>,
    /// Rendered product pages, kept while their inputs are unchanged.
    pub product_pages: crate::render::ProductPages,
    /// Set when shutdown begins, so `/readyz` tells the load balancer to stop
    /// sending new requests while in-flight ones finish.
    pub draining: Arc<AtomicBool>,
}
