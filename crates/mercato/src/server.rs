use crate::config::Config;
use anyhow::Context;
use mercato_cart::CartService;
use mercato_catalog::CatalogService;
use mercato_checkout::CheckoutService;
use mercato_customers::CustomersService;
use mercato_http::AppState;
use mercato_inventory::{Inventory, InventoryService};
use mercato_orders::{Orders, OrdersService};
use mercato_payments::PaymentsService;
use mercato_payments::test_provider::TestProvider;
use mercato_platform::cache::{CacheHub, CacheOptions};
use mercato_platform::db::DbOptions;
use mercato_platform::events::{EventBus, Outboxes, RelayOptions, spawn_relay};
use mercato_platform::ids::IdGen;
use mercato_platform::redis::{Redis, RedisOptions};
use mercato_platform::{Databases, Db, setting_get_or_init};
use mercato_promotions::PromotionsService;
use mercato_search::TantivyEngine;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Every service of one shop, wired and ready.
pub struct Shop {
    pub config: Arc<Config>,
    pub state: AppState,
    /// The same services as `state` holds through their surfaces, as the
    /// binary needs them to start their reactions and background work.
    pub domains: Domains,
    pub bus: EventBus,
    pub provider: TestProvider,
    pub cache: CacheHub,
}

/// The in-process implementation of each domain.
#[derive(Clone)]
pub struct Domains {
    pub catalog: CatalogService,
    pub inventory: InventoryService,
    pub customers: CustomersService,
    pub cart: CartService,
    pub orders: OrdersService,
    pub payments: PaymentsService,
    pub promotions: PromotionsService,
    pub webhooks: mercato_webhooks::WebhooksService,
    pub flash: mercato_flashsale::FlashSalesService,
    /// Not a domain: the processes across them (placing, paying, cancelling
    /// an order), calling their surfaces.
    pub checkout: CheckoutService,
}

/// Opens the database at `url` (empty: the embedded default in `data_dir`).
fn open_url(config: &Config, url: &str, name: &str) -> anyhow::Result<Db> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Db::open_postgres(
            url,
            name,
            config.database.pool_size.max(1) as u32,
            config.database.statement_timeout_ms,
        )?);
    }
    let path = match url.strip_prefix("sqlite:") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p.trim_start_matches("//")),
        _ => config.data_dir.join("mercato.db"),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let opts = DbOptions {
        readers: config.database.pool_size.max(1),
        synchronous: config.database.synchronous,
        max_batch: config.database.max_batch,
    };
    Ok(Db::open_sqlite(&path, name, opts)?)
}

/// Opens every domain's database: one handle per distinct URL, so domains
/// that share a database share its pool (and, embedded, its one writer).
pub fn open_databases(config: &Config) -> anyhow::Result<Databases> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let mut opened: Vec<(String, Db)> = Vec::new();
    Databases::open(|name| {
        let url = config.database.url_for(name);
        if let Some((_, db)) = opened.iter().find(|(u, _)| *u == url) {
            return Ok(db.clone());
        }
        // Named after the first name it serves: "platform" when shared.
        let db = open_url(config, &url, name).with_context(|| format!("opening the {name} database"))?;
        opened.push((url, db.clone()));
        Ok::<_, anyhow::Error>(db)
    })
}

/// The shared Redis, when `cache.redis_url` names one (stage 3).
pub fn open_redis(config: &Config) -> anyhow::Result<Option<Redis>> {
    let c = &config.cache;
    match c.redis_url.expose() {
        "" => Ok(None),
        url => Ok(Some(Redis::open(
            url,
            RedisOptions {
                timeout: Duration::from_millis(c.redis_timeout_ms.max(1)),
                breaker_failures: c.breaker_failures,
                breaker_open: Duration::from_millis(c.breaker_open_ms),
            },
        )?)),
    }
}

fn cache_hub(config: &Config, redis: Option<Redis>) -> CacheHub {
    let c = &config.cache;
    let options = CacheOptions {
        l1_max_entries: c.l1_max_entries,
        l1_max_bytes: c.l1_max_mb << 20,
        l1_ttl: Duration::from_secs(c.l1_ttl_secs),
        l2_ttl: Duration::from_secs(c.l2_ttl_secs),
        jitter_percent: c.ttl_jitter_percent,
        negative_ttl: Duration::from_secs(c.negative_ttl_secs),
    };
    CacheHub::new(redis, c.max_concurrent_loads, options)
}

/// Every domain's migrations, by the name its database is configured under.
const DOMAIN_MIGRATIONS: &[(&str, &[mercato_platform::Migration])] = &[
    ("customers", mercato_customers::MIGRATIONS),
    ("catalog", mercato_catalog::MIGRATIONS),
    ("inventory", mercato_inventory::MIGRATIONS),
    ("cart", mercato_cart::MIGRATIONS),
    ("orders", mercato_orders::MIGRATIONS),
    ("payments", mercato_payments::MIGRATIONS),
    ("promotions", mercato_promotions::MIGRATIONS),
    ("webhooks", mercato_webhooks::MIGRATIONS),
    ("flashsale", mercato_flashsale::MIGRATIONS),
];

/// Applies every component's pending migrations, each in its domain's
/// database; the platform's (outbox, inbox and its shared tables) in every
/// database.
pub async fn migrate(dbs: &Databases) -> anyhow::Result<usize> {
    let mut n = 0;
    for (_, db) in dbs.sources() {
        n += db.migrate("platform", mercato_platform::MIGRATIONS).await?;
    }
    for (domain, migrations) in DOMAIN_MIGRATIONS {
        n += dbs.of(domain).migrate(domain, migrations).await?;
    }
    Ok(n)
}

impl Shop {
    pub async fn build(config: Config) -> anyhow::Result<Shop> {
        let dbs = open_databases(&config)?;
        if config.database.migrate_on_start {
            migrate(&dbs).await?;
        }
        let db = dbs.platform().clone();
        let ids = IdGen::lease(&db).await?;
        let bus = EventBus::new();
        let redis = open_redis(&config)?;
        let currency = config.currency();
        let cache = cache_hub(&config, redis.clone());
        let catalog = CatalogService::new(
            dbs.of("catalog").clone(),
            ids.clone(),
            bus.scoped(dbs.of("catalog")),
            currency,
            &cache,
        )
        .await?;
        let inventory =
            InventoryService::new(dbs.of("inventory").clone(), ids.clone(), bus.scoped(dbs.of("inventory")));
        let customers = CustomersService::new(
            dbs.of("customers").clone(),
            ids.clone(),
            bus.scoped(dbs.of("customers")),
            config.auth.clone(),
            &cache,
        );
        let promotions = PromotionsService::new(
            dbs.of("promotions").clone(),
            ids.clone(),
            bus.scoped(dbs.of("promotions")),
            currency,
        );
        let cart = CartService::new(
            dbs.of("cart").clone(),
            ids.clone(),
            bus.scoped(dbs.of("cart")),
            Arc::new(catalog.clone()),
            Arc::new(inventory.clone()),
            Arc::new(promotions.clone()),
            config.shop.clone(),
        );
        let secret = match config.payments.webhook_secret.expose() {
            "" => {
                setting_get_or_init(&db, "payments.test.webhook_secret", || {
                    format!("whsec_{}", mercato_platform::random_token())
                })
                .await?
            }
            s => s.to_string(),
        };
        let provider = TestProvider::new(
            dbs.of("payments").clone(),
            secret.into_bytes(),
            config.payments.async_settle_ms,
            config.payments.webhook_tolerance_secs,
        );
        let payments = PaymentsService::new(
            dbs.of("payments").clone(),
            ids.clone(),
            bus.scoped(dbs.of("payments")),
            Arc::new(provider.clone()),
        );
        let orders = OrdersService::new(
            dbs.of("orders").clone(),
            ids.clone(),
            bus.scoped(dbs.of("orders")),
            config.orders.clone(),
            currency,
        );
        let search_dir = config.data_dir.join("search-index");
        let search = tokio::task::spawn_blocking(move || TantivyEngine::open(&search_dir))
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("opening the search index (is another mercato process using this data dir?)")?;
        let webhooks = mercato_webhooks::WebhooksService::new(
            dbs.of("webhooks").clone(),
            ids.clone(),
            bus.scoped(dbs.of("webhooks")),
        )
        .with_cache(&cache);
        let flash = mercato_flashsale::FlashSalesService::new(
            dbs.of("flashsale").clone(),
            bus.scoped(dbs.of("flashsale")),
            match &redis {
                Some(r) => Arc::new(mercato_flashsale::RedisStock::new(r.clone())),
                None => Arc::new(mercato_flashsale::LocalStock::new()),
            },
            currency,
        );
        flash.load_open().await?;
        // The processes across domains; their own writes are the domains'.
        let checkout = CheckoutService::new(
            ids.clone(),
            bus.clone(),
            mercato_checkout::Surfaces {
                orders: Arc::new(orders.clone()),
                cart: Arc::new(cart.clone()),
                inventory: Arc::new(inventory.clone()),
                promotions: Arc::new(promotions.clone()),
                payments: Arc::new(payments.clone()),
                catalog: Arc::new(catalog.clone()),
                flash: Arc::new(flash.clone()),
            },
        );
        let page_entries = config.cache.l1_max_entries;
        let page_bytes = (config.cache.l1_max_mb << 20) / 2;
        let shown_ttl = inventory.shown_ttl();
        let events = Outboxes::new(dbs.clone(), bus.clone());
        let domains =
            Domains { catalog, inventory, customers, cart, orders, payments, promotions, webhooks, flash, checkout };
        let d = domains.clone();
        let config = Arc::new(config);
        let state = AppState::new(mercato_http::state::Services {
            http: config.http.clone(),
            idempotency_lease_ms: config.orders.checkout_lease_ms,
            db,
            dbs,
            catalog: Arc::new(d.catalog),
            inventory: Arc::new(d.inventory),
            customers: Arc::new(d.customers),
            cart: Arc::new(d.cart),
            orders: Arc::new(d.orders),
            checkout: Arc::new(d.checkout),
            payments: Arc::new(d.payments),
            promotions: Arc::new(d.promotions),
            search: Arc::new(search),
            webhooks: Arc::new(d.webhooks),
            events,
            flash: Arc::new(d.flash),
            metrics: mercato_platform::telemetry::metrics_handle(),
            product_pages: mercato_http::render::ProductPages::new(page_bytes, shown_ttl),
            search_results: cache.tiered_sized("search", (page_entries / 10).max(100)),
            draining: Arc::new(AtomicBool::new(false)),
        });
        let shop = Shop { config, state, domains, bus, provider, cache };
        shop.subscribe();
        Ok(shop)
    }

    /// Each domain subscribes its own reactions to other domains' events;
    /// the binary only wires. The search index is the binary's own
    /// projection: it joins the catalog to the search engine.
    fn subscribe(&self) {
        let s = &self.domains;
        s.webhooks.subscribe();
        s.inventory.subscribe();
        s.promotions.subscribe();
        s.cart.subscribe();
        s.checkout.subscribe();
        // Every instance keeps its own index, following every instance's
        // catalog changes through the catalog database's outbox.
        let state = self.state.clone();
        self.bus.project("search.indexer", &["product.", "variant."], move |e| {
            let state = state.clone();
            async move {
                match e.aggregate_id.parse() {
                    Ok(id) => crate::indexer::refresh(&state, id).await,
                    Err(_) => Ok(()),
                }
            }
        });
    }

    /// Starts the outbox relays, the order sweeper, the test provider's
    /// webhook sender and session clean-up. `instance` names this instance
    /// as a lease holder: stable across restarts (a restarted instance takes
    /// its leases back at once), distinct between instances.
    pub fn spawn_workers(&self, instance: &str) {
        // One relay per database, each reading its own outbox.
        let events = &self.config.events;
        let mut opts = RelayOptions::new(instance);
        opts.max_attempts = events.max_attempts;
        opts.retry_base = Duration::from_millis(events.retry_base_ms);
        opts.lease = Duration::from_millis(events.lease_ms);
        for (source, db) in self.state.dbs.sources() {
            spawn_relay(db, source, self.bus.clone(), opts.clone());
        }
        self.cache.spawn_listener();
        self.domains.catalog.spawn_upkeep();
        self.domains.webhooks.spawn_dispatcher();
        self.provider.spawn_webhook_sender();
        let checkout = self.domains.checkout.clone();
        let orders = self.domains.orders.clone();
        let flash = self.domains.flash.clone();
        let customers = self.domains.customers.clone();
        let db = self.state.db.clone();
        let interval = Duration::from_millis(self.config.orders.sweep_interval_ms.max(50));
        tokio::spawn(async move {
            let mut ticks: u64 = 0;
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = checkout.sweep().await {
                    tracing::warn!(error = %e, "order sweep failed");
                }
                if let Err(e) = flash.sweep().await {
                    tracing::warn!(error = %e, "flash sale sweep failed");
                }
                ticks += 1;
                if ticks.is_multiple_of(3600) {
                    let _ = customers.purge_sessions().await;
                    let _ = mercato_platform::idempotency::purge(&db).await;
                    if let Err(e) = orders.purge_checkouts().await {
                        tracing::warn!(error = %e, "purging finished checkouts failed");
                    }
                }
            }
        });
    }
}

/// `mercato serve`: everything a shop needs, in one process.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let shop = Shop::build(config.clone()).await?;
    let admin_password = shop
        .domains
        .customers
        .ensure_admin(&config.admin.email, Some(config.admin.password.expose()).filter(|p| !p.is_empty()))
        .await?;
    let password_file = config.data_dir.join("admin-password.txt");
    let admin_line = match (&admin_password, config.admin.password.is_empty()) {
        (Some(p), true) => {
            let _ = std::fs::write(&password_file, format!("{}\n{p}\n", config.admin.email));
            restrict(&password_file);
            format!("{} / {p}  (generated on first run; also in {})", config.admin.email, password_file.display())
        }
        (_, false) => format!("{} / (the password in MERCATO_ADMIN_PASSWORD)", config.admin.email),
        (None, true) => format!("{} / (generated on first run; see {})", config.admin.email, password_file.display()),
    };
    if config.seed.products > 0 && shop.state.catalog.product_count().await? == 0 {
        crate::seed::run(&shop.state, config.seed.products as u64, config.seed.stock_per_variant, false).await?;
    }
    if shop.state.search.count().await? != shop.state.catalog.published_count().await? as u64 {
        // A first run, a deleted index, or products added by `mercato seed`:
        // rebuild it behind the already-serving shop.
        let state = shop.state.clone();
        tokio::spawn(async move {
            match crate::indexer::reindex(&state, false).await {
                Ok(n) => tracing::info!(products = n, "search index rebuilt"),
                Err(e) => tracing::error!(error = %e, "search index rebuild failed"),
            }
        });
    }

    let listener =
        tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let webhook_url = match config.payments.webhook_url.as_str() {
        "" => format!("http://{addr}/api/v1/payments/webhooks/test"),
        url => url.to_string(),
    };
    shop.provider.set_webhook_url(webhook_url);
    shop.spawn_workers(&instance_name(&config));

    let draining = shop.state.draining.clone();
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    let app = mercato_http::app(shop.state.clone());
    println!("Mercato is running at http://{addr}");
    println!("  API docs:  http://{addr}/docs");
    println!("  Admin:     {admin_line}");
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(
        async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: draining in-flight requests");
            draining.store(true, Ordering::Relaxed);
        },
    );
    // In-flight requests get `grace` to finish once the signal arrives.
    let server = tokio::spawn(async move { server.await });
    tokio::select! {
        r = server => r??,
        _ = async { shutdown_signal().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("shutdown grace period elapsed; exiting with requests still in flight");
        }
    }
    Ok(())
}

/// This instance's name as a lease holder: its host and data directory.
/// Distinct between instances (two never share a data directory: each keeps
/// its search index there), and the same when one restarts, so it takes its
/// leases back at once instead of waiting them out.
fn instance_name(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let dir = std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    format!("{}:{}", host.trim(), dir.display())
}

#[cfg(unix)]
fn restrict(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_: &std::path::Path) {}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_domain_has_its_migrations_and_only_domains_do() {
        let mut named: Vec<&str> = super::DOMAIN_MIGRATIONS.iter().map(|(d, _)| *d).collect();
        let mut domains = mercato_platform::databases::DOMAINS.to_vec();
        named.sort();
        domains.sort();
        assert_eq!(named, domains);
    }
}
