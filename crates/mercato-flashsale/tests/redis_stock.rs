//! The Redis flash-sale counter through the service, against a real embedded
//! database and a private redis-server (never the machine's shared one): two
//! instances sharing both, Redis killed and restarted mid-sale, a release
//! lost while Redis was unreachable, and Redis not reachable at all.

use mercato_cart::CartService;
use mercato_cart::ShopSettings;
use mercato_catalog::{CatalogService, NewProduct, NewVariant, ProductStatus};
use mercato_checkout::{CheckoutService, Surfaces};
use mercato_contracts::catalog::Catalog;
use mercato_contracts::checkout::Checkout;
use mercato_contracts::flashsale::FlashSales;
use mercato_contracts::inventory::Inventory;
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_flashsale::stock::{FlashStock, Holding, IN_FLIGHT_GRACE_MS, Reconciled, SaleWindow};
use mercato_flashsale::{Acquire, FlashSalesService, NewFlashSale, RedisStock};
use mercato_inventory::InventoryService;
use mercato_orders::{Orders, OrdersService, OrdersSettings};
use mercato_payments::PaymentsService;
use mercato_payments::test_provider::TestProvider;
use mercato_platform::cache::{CacheHub, CacheOptions};
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;
use mercato_platform::redis::testing::{self, RedisServer};
use mercato_platform::redis::{Redis, RedisOptions};
use mercato_platform::{Db, now_ms, params};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;

const SKU: &str = "FLASH-1";
const STOCK: i64 = 100;

/// A private redis-server, or `None` (and a note on stderr) where there is none.
fn private_redis(test: &str) -> Option<RedisServer> {
    if testing::binary().is_none() {
        eprintln!(
            "SKIPPED {test}: redis-server not found (apt-get install redis-server, or set MERCATO_TEST_REDIS_SERVER)"
        );
        return None;
    }
    Some(RedisServer::start())
}

fn redis_at(url: &str) -> Redis {
    // Generous timeout: a loaded test machine must not push purchases onto
    // the database path where a test expects the script to decide.
    Redis::open(
        url,
        RedisOptions { timeout: Duration::from_secs(2), breaker_failures: 3, breaker_open: Duration::from_millis(100) },
    )
    .unwrap()
}

async fn database(dir: &tempfile::TempDir) -> Db {
    let db = mercato_platform::db::testing::fresh(dir.path());
    db.migrate("platform", mercato_platform::MIGRATIONS).await.unwrap();
    db.migrate("catalog", mercato_catalog::MIGRATIONS).await.unwrap();
    db.migrate("inventory", mercato_inventory::MIGRATIONS).await.unwrap();
    db.migrate("cart", mercato_cart::MIGRATIONS).await.unwrap();
    db.migrate("orders", mercato_orders::MIGRATIONS).await.unwrap();
    db.migrate("payments", mercato_payments::MIGRATIONS).await.unwrap();
    db.migrate("promotions", mercato_promotions::MIGRATIONS).await.unwrap();
    db.migrate("flashsale", mercato_flashsale::MIGRATIONS).await.unwrap();
    db
}

/// One shop instance: its own services, id node and event bus, over a shared
/// database (and whatever counter it is given).
#[derive(Clone)]
struct Instance {
    flash: FlashSalesService,
    orders: OrdersService,
    checkout: CheckoutService,
    inventory: InventoryService,
    catalog: CatalogService,
}

async fn instance(db: &Db, node: i64, stock: Arc<dyn FlashStock>) -> Instance {
    let (ids, bus, usd) = (IdGen::with_node(node), EventBus::new(), Currency::USD);
    let cache = CacheHub::new(None, 8, CacheOptions::default());
    let catalog = CatalogService::new(db.clone(), ids.clone(), bus.clone(), usd, &cache).await.unwrap();
    let inventory = InventoryService::new(db.clone(), ids.clone(), bus.clone());
    let promotions = mercato_promotions::PromotionsService::new(db.clone(), ids.clone(), bus.clone(), usd);
    let cart = CartService::new(
        db.clone(),
        ids.clone(),
        bus.clone(),
        Arc::new(catalog.clone()),
        Arc::new(inventory.clone()),
        Arc::new(promotions.clone()),
        ShopSettings::default(),
    );
    let provider = TestProvider::new(db.clone(), b"whsec_test".to_vec(), 60_000, 300);
    let payments = PaymentsService::new(
        mercato_platform::shards::ShardRing::single(db.clone(), 256),
        ids.clone(),
        bus.clone(),
        Arc::new(provider),
    );
    let ring = mercato_platform::shards::ShardRing::single(db.clone(), OrdersSettings::default().logical_shards);
    let orders = OrdersService::new(ring, ids.clone(), bus.clone(), OrdersSettings::default(), usd);
    let flash = FlashSalesService::new(db.clone(), bus.clone(), stock, usd);
    let checkout = CheckoutService::new(
        ids,
        bus,
        Surfaces {
            orders: Arc::new(orders.clone()),
            cart: Arc::new(cart),
            inventory: Arc::new(inventory.clone()),
            promotions: Arc::new(promotions),
            payments: Arc::new(payments),
            catalog: Arc::new(catalog.clone()),
            flash: Arc::new(flash.clone()),
        },
    );
    Instance { flash, orders, checkout, inventory, catalog }
}

/// A published product with `STOCK` units of `SKU`.
async fn product(shop: &Instance) {
    let category = shop.catalog.create_category("Deals", None, None).await.unwrap();
    shop.catalog
        .create(NewProduct {
            name: "Flash kettle".into(),
            slug: None,
            description: "Boils fast.".into(),
            category_id: category.id,
            status: ProductStatus::Published,
            variants: vec![NewVariant {
                sku: SKU.into(),
                options: Default::default(),
                price: Money::new(5000, Currency::USD),
                weight_grams: 900,
            }],
        })
        .await
        .unwrap();
    shop.inventory.set_available(SKU, STOCK, "receive", "test").await.unwrap();
}

async fn sale(shop: &Instance, quantity: i64, limit: i64, starts_in_ms: i64, lasts_ms: i64) -> Id {
    let starts_at = now_ms() + starts_in_ms;
    shop.checkout
        .create_flash_sale(NewFlashSale {
            sku: SKU.into(),
            price: Money::new(999, Currency::USD),
            quantity,
            starts_at,
            ends_at: starts_at + lasts_ms,
            per_customer_limit: limit,
        })
        .await
        .unwrap()
        .id
}

static KEYS: AtomicU64 = AtomicU64::new(0);

async fn buy(shop: &Instance, sale: Id, customer: i64) -> Result<Id, Error> {
    let key = format!("k{}", KEYS.fetch_add(1, Ordering::Relaxed));
    shop.checkout.purchase_flash(sale, Id(customer), &key, None).await.map(|(order, _)| order.id)
}

/// Like a client: a 503 must carry a retry-after, and is retried.
async fn buy_retrying(shop: &Instance, sale: Id, customer: i64) -> Result<Id, Error> {
    for _ in 0..200 {
        match buy(shop, sale, customer).await {
            Err(e) if e.code == ErrorCode::Unavailable => {
                assert!(e.retry_after.is_some(), "a 503 without retry-after: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
    panic!("customer {customer} got 503s for 4 s");
}

/// Every customer tries once (alternating instances), all at once. Returns
/// the orders made and the error codes of the rest.
async fn storm(shops: &[&Instance], sale: Id, customers: impl IntoIterator<Item = i64>) -> (Vec<Id>, Vec<ErrorCode>) {
    let mut set = JoinSet::new();
    for (i, c) in customers.into_iter().enumerate() {
        let shop = shops[i % shops.len()].clone();
        set.spawn(async move { buy_retrying(&shop, sale, c).await });
    }
    let (mut won, mut lost) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(order) => won.push(order),
            Err(e) => lost.push(e.code),
        }
    }
    (won, lost)
}

/// From the database: units held by live purchase records, units left in
/// the sale's inventory allocation, and the most any customer holds.
async fn measured(db: &Db, sale: Id) -> (i64, i64, i64) {
    db.read(move |tx| {
        let live = tx
            .query_one(
                "SELECT COUNT(*) FROM flash_purchases WHERE sale_id = $1 AND state IN ('pending', 'active')",
                params![sale],
            )?
            .int(0)?;
        let left = tx
            .query_one(
                "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM reservation_lines WHERE reservation_id = $1",
                params![sale],
            )?
            .int(0)?;
        let most = tx
            .query_one(
                "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM flash_purchases \
                 WHERE sale_id = $1 AND state IN ('pending', 'active') GROUP BY customer_id) AS per_customer",
                params![sale],
            )?
            .int(0)?;
        Ok((live, left, most))
    })
    .await
    .unwrap()
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn grants_in_redis(server: &RedisServer, sale: Id) -> i64 {
    let [_, grants, _] = RedisStock::key_names(sale);
    redis::cmd("HLEN").arg(grants).query_async(&mut raw(server).await).await.unwrap()
}

fn all(codes: &[ErrorCode], code: ErrorCode) -> bool {
    codes.iter().all(|c| *c == code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buyers_on_two_instances_get_exactly_the_quantity_even_after_redis_loses_the_sale() {
    let Some(server) = private_redis("buyers_on_two_instances_get_exactly_the_quantity") else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir).await;
    let a = instance(&db, 1, Arc::new(RedisStock::new(redis_at(&server.url())))).await;
    let b = instance(&db, 2, Arc::new(RedisStock::new(redis_at(&server.url())))).await;
    product(&a).await;
    // Created on one instance, sold on both.
    let sale = sale(&a, 40, 1, -1000, 3_600_000).await;

    let (won, lost) = storm(&[&a, &b], sale, 1..=25).await;
    assert!(lost.is_empty(), "unexpected refusals: {lost:?}");
    let first = won.len() as i64;
    assert_eq!(grants_in_redis(&server, sale).await, first, "the script did not decide these purchases");

    // Redis forgets everything mid-sale; both instances race to reload.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut raw(&server).await).await.unwrap();
    let (more, lost) = storm(&[&a, &b], sale, 101..=300).await;
    assert!(all(&lost, ErrorCode::SoldOut), "unexpected refusals: {lost:?}");
    assert_eq!(first + more.len() as i64, 40, "exactly the quantity is sold");
    let (live, left, most) = measured(&db, sale).await;
    assert_eq!((live, left, most), (40, 0, 1));
    // A second loader overwriting the first would have dropped grants made in between.
    assert_eq!(
        grants_in_redis(&server, sale).await,
        40,
        "the counter does not hold every unit sold (did a racing reload overwrite grants?)"
    );
    let stock = a.inventory.stock(SKU).await.unwrap();
    assert_eq!((stock.available, stock.reserved, stock.sold), (STOCK - 40, 40, 0));
    assert_eq!(a.flash.describe(sale).await.unwrap().remaining, 0);
    assert_eq!(b.flash.describe(sale).await.unwrap().remaining, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_customer_limit_holds_across_instances_and_in_the_database() {
    let Some(server) = private_redis("the_per_customer_limit_holds_across_instances_and_in_the_database") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir).await;
    let a = instance(&db, 1, Arc::new(RedisStock::new(redis_at(&server.url())))).await;
    let b = instance(&db, 2, Arc::new(RedisStock::new(redis_at(&server.url())))).await;
    product(&a).await;
    let sale = sale(&b, 50, 2, -1000, 3_600_000).await;

    let (won, lost) = storm(&[&a, &b], sale, std::iter::repeat_n(7, 40)).await;
    assert_eq!(won.len(), 2);
    assert!(all(&lost, ErrorCode::LimitReached), "unexpected refusals: {lost:?}");

    // Redis forgets what customer 7 holds (but not the sale): its script now
    // grants, and the database must still refuse.
    let [_, _, holds] = RedisStock::key_names(sale);
    let _: i64 = redis::cmd("HDEL").arg(&holds).arg(7).query_async(&mut raw(&server).await).await.unwrap();
    let e = buy(&a, sale, 7).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitReached);
    assert_eq!(grants_in_redis(&server, sale).await, 2, "the refused grant was not given back");
    assert_eq!(measured(&db, sale).await, (2, 48, 2));
    // Others still buy.
    buy(&b, sale, 8).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_killed_and_restarted_mid_sale_neither_loses_nor_doubles_a_unit() {
    let Some(mut server) = private_redis("a_redis_killed_and_restarted_mid_sale_neither_loses_nor_doubles_a_unit")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir).await;
    let a = instance(&db, 1, Arc::new(RedisStock::new(redis_at(&server.url())))).await;
    let b = instance(&db, 2, Arc::new(RedisStock::new(redis_at(&server.url())))).await;
    product(&a).await;
    const Q: i64 = 60;
    let sale = sale(&a, Q, 2, -1000, 3_600_000).await;

    // Before: 20 buyers, and customer 999 takes their limit of 2.
    let (first, lost) = storm(&[&a, &b], sale, 1..=20).await;
    assert!(lost.is_empty(), "{lost:?}");
    buy(&a, sale, 999).await.unwrap();
    buy(&b, sale, 999).await.unwrap();

    // Redis dies while 30 purchases are in flight.
    let (x, y) = (a.clone(), b.clone());
    let during = tokio::spawn(async move { storm(&[&x, &y], sale, 101..=130).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    server.kill();
    let (during, lost) = during.await.unwrap();
    assert!(lost.is_empty(), "38 units were left for 30 buyers: {lost:?}");
    // With Redis down the database decides: the limit holds...
    assert_eq!(buy_retrying(&b, sale, 999).await.unwrap_err().code, ErrorCode::LimitReached);
    // ...and a cancelled order's unit returns, though Redis cannot hear it.
    let cancelled = first[0];
    let owner = a.orders.get(cancelled).await.unwrap().customer_id;
    a.checkout.cancel_by_customer(owner, cancelled).await.unwrap();
    a.checkout.on_order_cancelled(cancelled).await.unwrap();

    // Redis comes back empty.
    server.restart();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(buy(&a, sale, 999).await.unwrap_err().code, ErrorCode::LimitReached);
    let (after, lost) = storm(&[&a, &b], sale, 201..=300).await;
    assert!(all(&lost, ErrorCode::SoldOut), "unexpected refusals: {lost:?}");

    let sold = (first.len() - 1 + 2 + during.len() + after.len()) as i64;
    assert_eq!(
        sold,
        Q,
        "every unit sold exactly once (before {}, during {}, after {})",
        first.len(),
        during.len(),
        after.len()
    );
    let (live, left, most) = measured(&db, sale).await;
    assert_eq!(live + left, Q, "sold + remaining == quantity");
    assert_eq!((live, left, most), (Q, 0, 2));
    let stock = a.inventory.stock(SKU).await.unwrap();
    assert_eq!((stock.available, stock.reserved), (STOCK - Q, Q));
    // The counter agrees with the records once the sweep has looked.
    a.flash.sweep().await.unwrap();
    assert_eq!(grants_in_redis(&server, sale).await, Q);
    assert_eq!(b.flash.describe(sale).await.unwrap().remaining, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_refuses_before_the_start_and_after_the_end() {
    let Some(server) = private_redis("the_script_refuses_before_the_start_and_after_the_end") else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir).await;
    let a = instance(&db, 1, Arc::new(RedisStock::new(redis_at(&server.url())))).await;
    product(&a).await;

    let later = sale(&a, 3, 1, 3_600_000, 3_600_000).await;
    let e = buy(&a, later, 1).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotStarted);
    assert!(e.retry_after.is_some_and(|s| s > 3500), "retry-after {:?}", e.retry_after);

    let brief = sale(&a, 3, 1, -1000, 2500).await;
    buy(&a, brief, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let [key, _, _] = RedisStock::key_names(brief);
    let loaded: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut raw(&server).await).await.unwrap();
    assert!(loaded, "the sale must be in Redis, so that its script answers");
    let e = buy(&a, brief, 2).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    assert_eq!(grants_in_redis(&server, brief).await, 1);

    // The script itself, at the edges of the window.
    let stock = RedisStock::new(redis_at(&server.url()));
    // (Real times: the keys expire an hour after the end.)
    let t = now_ms();
    let window = SaleWindow { starts_at: t + 1_000, ends_at: t + 2_000, per_customer_limit: 1 };
    stock.load(Id(77), window, 5, &[]).await.unwrap();
    let at = |ms| stock.try_acquire(Id(77), Id(ms), Id(1), t + ms);
    assert_eq!(at(999).await.unwrap(), Acquire::NotStarted);
    assert_eq!(at(2_000).await.unwrap(), Acquire::Ended);
    assert_eq!(at(1_000).await.unwrap(), Acquire::Granted);
    assert_eq!(at(1_999).await.unwrap(), Acquire::LimitReached);
    assert_eq!(stock.try_acquire(Id(78), Id(1), Id(1), t + 1_500).await.unwrap(), Acquire::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_lost_while_redis_was_unreachable_is_repaired_by_the_sweep() {
    let Some(server) = private_redis("a_release_lost_while_redis_was_unreachable_is_repaired_by_the_sweep") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir).await;
    let a = instance(&db, 1, Arc::new(RedisStock::new(redis_at(&server.url())))).await;
    // An instance that cannot reach Redis (nothing listens on port 1).
    let cut_off = instance(&db, 2, Arc::new(RedisStock::new(redis_at("redis://127.0.0.1:1/")))).await;
    product(&a).await;
    let sale = sale(&a, 3, 1, -1000, 3_600_000).await;
    let orders = [buy(&a, sale, 1).await.unwrap(), buy(&a, sale, 2).await.unwrap(), buy(&a, sale, 3).await.unwrap()];

    a.checkout.cancel_by_customer(Id(1), orders[0]).await.unwrap();
    cut_off.checkout.on_order_cancelled(orders[0]).await.unwrap();
    assert_eq!(measured(&db, sale).await, (2, 1, 1), "the unit is back in the database");
    // Redis still counts it: drift.
    assert_eq!(buy(&a, sale, 4).await.unwrap_err().code, ErrorCode::SoldOut);

    a.flash.sweep().await.unwrap();
    assert_eq!(a.flash.describe(sale).await.unwrap().remaining, 1);
    buy(&a, sale, 4).await.unwrap();
    assert_eq!(buy(&a, sale, 5).await.unwrap_err().code, ErrorCode::SoldOut);
    assert_eq!(measured(&db, sale).await, (3, 0, 1));
}

#[tokio::test]
async fn reconciliation_keeps_grants_in_flight_and_respects_the_fence() {
    let Some(server) = private_redis("reconciliation_keeps_grants_in_flight_and_respects_the_fence") else { return };
    let stock = RedisStock::new(redis_at(&server.url()));
    let (sale, now) = (Id(5), now_ms());
    let window = SaleWindow { starts_at: now - 1000, ends_at: now + 3_600_000, per_customer_limit: 2 };
    stock.load(sale, window.clone(), 3, &[Holding { order: Id(10), customer: Id(1) }]).await.unwrap();
    // A second load (another instance that also found the sale missing)
    // changes nothing.
    stock.load(sale, window, 3, &[]).await.unwrap();
    assert_eq!(stock.remaining(sale).await.unwrap(), Some(2));

    // Order 11 is granted; its record is not written yet.
    assert_eq!(stock.try_acquire(sale, Id(11), Id(2), now).await.unwrap(), Acquire::Granted);
    let live = [Holding { order: Id(10), customer: Id(1) }];
    let seen = stock.probe(sale).await.unwrap().unwrap();
    assert_eq!(seen.taken, 2);
    // In flight: kept, or a third buyer could take the unit order 11 is writing.
    assert_eq!(stock.reconcile(sale, &seen, &live, &[], now + 1).await.unwrap(), Reconciled::Repaired(0));
    assert_eq!(stock.remaining(sale).await.unwrap(), Some(1));

    // A release between the probe and the reconciliation fences it off.
    let seen = stock.probe(sale).await.unwrap().unwrap();
    stock.release(sale, Id(999), Id(9)).await.unwrap();
    assert_eq!(stock.reconcile(sale, &seen, &live, &[], now + 1).await.unwrap(), Reconciled::Skipped);

    // A purchase the database decided alone (order 12) is added; order 11's
    // grant, with no record after the grace, is dropped.
    let live = [Holding { order: Id(10), customer: Id(1) }, Holding { order: Id(12), customer: Id(1) }];
    let seen = stock.probe(sale).await.unwrap().unwrap();
    let later = now + IN_FLIGHT_GRACE_MS;
    assert_eq!(stock.reconcile(sale, &seen, &live, &[], later).await.unwrap(), Reconciled::Repaired(2));
    assert_eq!(stock.remaining(sale).await.unwrap(), Some(1));
    // Customer 1 now holds two: the rebuilt holds enforce the limit.
    assert_eq!(stock.try_acquire(sale, Id(13), Id(1), now).await.unwrap(), Acquire::LimitReached);
    assert_eq!(stock.try_acquire(sale, Id(14), Id(2), now).await.unwrap(), Acquire::Granted);

    // A young grant whose record is released goes at once.
    let seen = stock.probe(sale).await.unwrap().unwrap();
    assert_eq!(stock.reconcile(sale, &seen, &live, &[Id(14)], now + 1).await.unwrap(), Reconciled::Repaired(1));
    assert_eq!(stock.remaining(sale).await.unwrap(), Some(1));
    let seen = stock.probe(sale).await.unwrap().unwrap();
    assert_eq!((seen.taken, seen.checksum), (2, mercato_flashsale::stock::checksum([Id(10), Id(12)])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_unreachable_the_database_decides_and_never_oversells() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir).await;
    let dead = || Arc::new(RedisStock::new(redis_at("redis://127.0.0.1:1/")));
    let a = instance(&db, 1, dead()).await;
    let b = instance(&db, 2, dead()).await;
    product(&a).await;
    let sale = sale(&a, 10, 2, -1000, 3_600_000).await;

    let customers = (1..=60).chain(std::iter::repeat_n(500, 20));
    let (won, lost) = storm(&[&a, &b], sale, customers).await;
    assert_eq!(won.len(), 10);
    assert!(lost.iter().all(|c| matches!(c, ErrorCode::SoldOut | ErrorCode::LimitReached)), "{lost:?}");
    let (live, left, most) = measured(&db, sale).await;
    assert_eq!((live, left), (10, 0));
    assert!(most <= 2);
    assert_eq!(a.flash.describe(sale).await.unwrap().remaining, 0);
}
