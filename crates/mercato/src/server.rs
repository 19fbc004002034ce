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
use mercato_platform::db::{DbOptions, PgOptions, ReplicaOptions};
use mercato_platform::events::{EventBus, Outboxes, RelayOptions, spawn_relay};
use mercato_platform::fleet::FleetJob;
use mercato_platform::ids::IdGen;
use mercato_platform::redis::{Redis, RedisOptions};
use mercato_platform::shards::ShardRing;
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
    /// The commit time of the last catalog event this instance's search
    /// index applied (0: none yet), recorded in `data_dir` by `serve`.
    pub index_followed: Arc<std::sync::atomic::AtomicI64>,
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
pub(crate) fn open_url(config: &Config, url: &str, name: &str) -> anyhow::Result<Db> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let d = &config.database;
        let opts = PgOptions {
            pool_size: d.pool_size.max(1) as u32,
            statement_timeout_ms: d.statement_timeout_ms,
            commit_wait: Duration::from_millis(d.commit_wait_ms.max(1)),
            synchronous_commit: d.synchronous_commit,
            ..PgOptions::default()
        };
        return Ok(Db::open_postgres(url, name, &opts)?);
    }
    let path = match url.strip_prefix("sqlite:") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p.trim_start_matches("//")),
        _ => config.data_dir.join("mercato.db"),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    hold_embedded(&path)?;
    let opts = DbOptions {
        readers: config.database.pool_size.max(1),
        synchronous: config.database.synchronous,
        max_batch: config.database.max_batch,
    };
    Ok(Db::open_sqlite(&path, name, opts)?)
}

/// Makes this process the only one serving the embedded database at `path`,
/// for as long as it runs. SQLite would let a second process in, but an
/// embedded database has one writer thread, in-process caches and
/// in-process flash-sale counters: a second instance would see none of the
/// first's and oversell, so it is refused with what to do instead.
fn hold_embedded(path: &std::path::Path) -> anyhow::Result<()> {
    static HELD: std::sync::Mutex<Vec<(std::path::PathBuf, std::fs::File)>> = std::sync::Mutex::new(Vec::new());
    let lock_path = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".instance-lock");
        path.with_file_name(name)
    };
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if held.iter().any(|(p, _)| *p == lock_path) {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let other = std::fs::read_to_string(&lock_path).unwrap_or_default();
            let other = other.trim();
            anyhow::bail!(
                "another mercato process{} is already serving the embedded database {}. \
                 An embedded (SQLite) database serves one instance only. To run several instances, \
                 give them a database server they share, e.g. MERCATO_DATABASE_URL=postgres://user@host/shop, \
                 and a shared Redis for caches, sessions and limits (MERCATO_CACHE_REDIS_URL=redis://host:6379); \
                 to run a second, separate shop, give it its own MERCATO_DATA_DIR",
                if other.is_empty() { String::new() } else { format!(" ({other})") },
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", lock_path.display()));
        }
    }
    use std::io::Write;
    file.set_len(0)?;
    let _ = write!(file, "pid {}", std::process::id());
    held.push((lock_path, file));
    Ok(())
}

/// Opens every domain's database: one handle per distinct URL, so domains
/// that share a database share its pool (and, embedded, its one writer).
/// Orders given `shards` spread over those databases (stage 7).
pub fn open_databases(config: &Config) -> anyhow::Result<Databases> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let mut opened: Vec<(String, Db)> = Vec::new();
    let mut open = |url: String, name: &str, replicas: &[String]| -> anyhow::Result<Db> {
        if let Some((_, db)) = opened.iter().find(|(u, _)| *u == url) {
            return Ok(db.clone());
        }
        // Named after the first name it serves: "platform" when shared.
        let db = open_url(config, &url, name).with_context(|| format!("opening the {name} database"))?;
        let d = &config.database;
        let options = ReplicaOptions {
            max_lag: Duration::from_millis(d.replica_max_lag_ms),
            check_interval: Duration::from_millis(d.replica_check_interval_ms.max(1)),
            pool_size: d.pool_size.max(1) as u32,
            statement_timeout_ms: d.statement_timeout_ms,
        };
        let db = db.with_replicas(replicas, options).with_context(|| format!("the replicas of the {name} database"))?;
        opened.push((url, db.clone()));
        Ok(db)
    };
    let d = &config.database;
    let dbs = Databases::open(|name| open(d.url_for(name), name, &d.replicas_for(name)))?;
    let shards = d.shards_for("orders");
    if shards.len() < 2 {
        return Ok(dbs);
    }
    let mut ring = vec![dbs.of("orders").clone()];
    for (i, url) in shards.iter().enumerate().skip(1) {
        ring.push(open(url.clone(), &format!("orders-{i}"), &[])?);
    }
    dbs.with_ring("orders", ring).map_err(|e| anyhow::anyhow!("database.domains.orders.shards: {e}"))
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
        for db in databases_of(dbs, domain) {
            n += db.migrate(domain, migrations).await?;
        }
    }
    Ok(n)
}

/// The databases holding `domain`'s tables: its own, or its ring's; with
/// orders sharded (stage 7), payments' tables are also in every orders
/// database, as each payment lives with its order.
fn databases_of(dbs: &Databases, domain: &str) -> Vec<Db> {
    let mut out = dbs.ring(domain);
    let orders = dbs.ring("orders");
    if domain == "payments" && orders.len() > 1 {
        for db in orders {
            if !out.iter().any(|d| d.same(&db)) {
                out.push(db);
            }
        }
    }
    out
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
        let ring = ShardRing::spread(dbs.ring("orders"), config.orders.logical_shards);
        mercato_orders::check_shards(&ring).await.context("the orders' shards")?;
        // Sharded, an order's payment lives with it, and their writes may
        // wake any of the shard databases' relays.
        let sharded = ring.databases().len() > 1;
        let (payments_ring, payments_bus) = if sharded {
            (ring.clone(), bus.clone())
        } else {
            (
                ShardRing::single(dbs.of("payments").clone(), config.orders.logical_shards),
                bus.scoped(dbs.of("payments")),
            )
        };
        let payments = PaymentsService::new(payments_ring, ids.clone(), payments_bus, Arc::new(provider.clone()));
        let orders_bus = if sharded { bus.clone() } else { bus.scoped(dbs.of("orders")) };
        let orders = OrdersService::new(ring, ids.clone(), orders_bus, config.orders.clone(), currency);
        orders.remap().await.context("reading the orders' shard map")?;
        orders.ensure_partitions().await.context("making the orders' monthly partitions")?;
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
        let index_followed = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let shop = Shop { config, index_followed, state, domains, bus, provider, cache };
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
        let (state, followed) = (self.state.clone(), self.index_followed.clone());
        self.bus.project("search.indexer", &["product.", "variant."], move |e| {
            let (state, followed) = (state.clone(), followed.clone());
            async move {
                if let Ok(id) = e.aggregate_id.parse() {
                    crate::indexer::refresh(&state, id).await?;
                }
                followed.fetch_max(e.created_at, Ordering::Relaxed);
                Ok(())
            }
        });
    }

    /// Starts the background work: the outbox relays (one per database),
    /// the webhook dispatcher, and the jobs that run on one instance of the
    /// fleet at a time (the order sweeper with its purges, the test
    /// provider's webhooks), until [`Workers::stop`]. `instance` names this
    /// instance as a lease holder: stable across restarts (a restarted
    /// instance takes its leases back at once), distinct between instances.
    ///
    /// The cache invalidation listener and the catalog's membership filter
    /// are this instance's own and hold nothing another needs: they end with
    /// the process.
    pub fn spawn_workers(&self, instance: &str) -> Workers {
        let stop = mercato_platform::CancellationToken::new();
        let mut tasks = Vec::new();
        let events = &self.config.events;
        let mut opts = RelayOptions::new(instance);
        opts.max_attempts = events.max_attempts;
        opts.retry_base = Duration::from_millis(events.retry_base_ms);
        opts.lease = Duration::from_millis(events.lease_ms);
        opts.stop = stop.clone();
        for (source, db) in self.state.dbs.sources() {
            tasks.push(spawn_relay(db, source, self.bus.clone(), opts.clone()));
        }
        self.cache.spawn_listener();
        self.domains.catalog.spawn_upkeep();
        tasks.push(self.domains.webhooks.spawn_dispatcher_until(stop.clone()));
        let interval = Duration::from_millis(self.config.orders.sweep_interval_ms.max(50));
        // Long enough that the holder renews it between two runs.
        let lease = Duration::from_millis(events.lease_ms).max(interval * 3);
        let job = |name| FleetJob::new(self.state.db.clone(), name, instance, lease);
        tasks.push(self.provider.spawn_webhook_sender(job("payments.test.webhooks"), stop.clone()));
        let checkout = self.domains.checkout.clone();
        let orders = self.domains.orders.clone();
        let flash = self.domains.flash.clone();
        let customers = self.domains.customers.clone();
        let db = self.state.db.clone();
        let sweeper = job("orders.sweep");
        let purge_every = Duration::from_secs(3600).as_millis() / interval.as_millis().max(1);
        tasks.push(tokio::spawn(async move {
            let mut runs: u128 = 0;
            sweeper
                .every(interval, stop.clone(), || {
                    runs += 1;
                    let purge = runs.is_multiple_of(purge_every.max(1));
                    let (checkout, orders, flash, customers, db) =
                        (checkout.clone(), orders.clone(), flash.clone(), customers.clone(), db.clone());
                    async move {
                        if let Err(e) = checkout.sweep().await {
                            tracing::warn!(error = %e, "order sweep failed");
                        }
                        if let Err(e) = flash.sweep().await {
                            tracing::warn!(error = %e, "flash sale sweep failed");
                        }
                        if purge {
                            let _ = customers.purge_sessions().await;
                            let _ = mercato_platform::idempotency::purge(&db).await;
                            if let Err(e) = orders.purge_checkouts().await {
                                tracing::warn!(error = %e, "purging finished checkouts failed");
                            }
                            match orders.ensure_partitions().await {
                                Ok(made) if !made.is_empty() => tracing::info!(?made, "monthly partitions made"),
                                Ok(_) => {}
                                Err(e) => tracing::warn!(error = %e, "making monthly partitions failed"),
                            }
                        }
                    }
                })
                .await
        }));
        Workers { stop: opts.stop, tasks }
    }
}

/// The background work of one instance, as [`Shop::spawn_workers`] started it.
pub struct Workers {
    stop: mercato_platform::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Tells every worker to stop and waits up to `deadline` for them: each
    /// finishes the step it is in (a relay batch, a sweep, the webhook
    /// attempts it started) and hands its lease on, so another instance
    /// takes the work over at once instead of when the lease runs out.
    pub async fn stop(self, deadline: Duration) {
        self.stop.cancel();
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "background work did not stop in time; abandoning it"
            );
            aborts.iter().for_each(|a| a.abort());
        }
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
            if let Err(e) = write_private(&password_file, &format!("{}\n{p}\n", config.admin.email)) {
                tracing::warn!(error = %e, file = %password_file.display(), "could not keep the admin password in a file");
            }
            format!("{} / {p}  (generated on first run; also in {})", config.admin.email, password_file.display())
        }
        (_, false) => format!("{} / (the password in MERCATO_ADMIN_PASSWORD)", config.admin.email),
        (None, true) if password_file.exists() => {
            format!("{} / (generated on first run; see {})", config.admin.email, password_file.display())
        }
        // Another instance of the fleet created the admin: the file is in
        // its data directory, not this one's.
        (None, true) => format!(
            "{} / (generated by the instance that first started on this database: see admin-password.txt in its \
             data directory, or set MERCATO_ADMIN_PASSWORD on every instance)",
            config.admin.email
        ),
    };
    if config.seed.products > 0 && shop.state.catalog.product_count().await? == 0 {
        crate::seed::run(&shop.state, config.seed.products as u64, config.seed.stock_per_variant, false).await?;
        // The shop lists what it just seeded, even from replicas.
        for (_, db) in shop.state.dbs.sources() {
            db.fence_replicas();
        }
    }
    let followed = crate::indexer::followed(&config.data_dir);
    let started = mercato_platform::now_ms();
    if shop.state.search.count().await? != shop.state.catalog.published_count().await? as u64 {
        // A first run, a deleted index, or products added by `mercato seed`:
        // rebuild it behind the already-serving shop.
        let (state, mark) = (shop.state.clone(), shop.index_followed.clone());
        tokio::spawn(async move {
            match crate::indexer::reindex(&state, false).await {
                Ok(n) => {
                    mark.fetch_max(started, Ordering::Relaxed);
                    tracing::info!(products = n, "search index rebuilt")
                }
                Err(e) => tracing::error!(error = %e, "search index rebuild failed"),
            }
        });
    } else if let Some(since) = followed {
        // Changes made through other instances while this one was down.
        let state = shop.state.clone();
        shop.index_followed.fetch_max(since, Ordering::Relaxed);
        tokio::spawn(async move {
            match crate::indexer::catch_up(&state, since).await {
                Ok(n) => tracing::info!(products = n, "search index caught up with changes made while stopped"),
                Err(e) => tracing::error!(error = %e, "search index catch-up failed"),
            }
        });
    }
    {
        // Recorded every second: after a crash at most that much more is
        // looked at again (and the catch-up's margin covers it anyway).
        let (mark, dir) = (shop.index_followed.clone(), config.data_dir.clone());
        tokio::spawn(async move {
            let mut written = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let at = mark.load(Ordering::Relaxed);
                if at > written {
                    match crate::indexer::record_followed(&dir, at) {
                        Ok(()) => written = at,
                        Err(e) => tracing::warn!(error = %e, "could not record how far the search index followed"),
                    }
                }
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
    let workers = shop.spawn_workers(&instance_name(&config));

    // The drain, on the first SIGTERM or Ctrl-C: report not ready and keep
    // serving for `drain_delay` (load balancers stop sending meanwhile;
    // every response closes its connection), then close the listener and
    // give in-flight requests `grace` to finish, then stop the background
    // work, handing its leases on. A second signal exits at once.
    let draining = shop.state.draining.clone();
    let delay = Duration::from_millis(config.http.drain_delay_ms);
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    let close = mercato_platform::CancellationToken::new();
    let closing = close.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(drain_delay_ms = delay.as_millis() as u64, "shutdown requested: reporting not ready, draining");
        draining.store(true, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown_signal() => exit_now(),
        }
        tracing::info!("closing the listener; finishing requests in flight");
        closing.cancel();
        shutdown_signal().await;
        exit_now();
    });
    let app = mercato_http::app(shop.state.clone());
    println!("Mercato is running at http://{addr}");
    println!("  API docs:  http://{addr}/docs");
    println!("  Admin:     {admin_line}");
    let closed = close.clone();
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { closed.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    tokio::select! {
        r = server => r??,
        _ = async { close.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("shutdown grace period elapsed; exiting with requests still in flight");
        }
    }
    workers.stop(Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}

fn exit_now() -> ! {
    tracing::warn!("second shutdown signal: exiting without finishing the drain");
    std::process::exit(130)
}

/// Writes `contents` to a new file at `path` that only this user can read:
/// created with mode 0600 under a temporary name, then renamed into place,
/// so the secret is never readable by others, not even for a moment.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = std::fs::remove_file(&tmp);
    let mut file = options.open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
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
