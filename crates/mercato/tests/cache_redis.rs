//! Stage 3: shops sharing PostgreSQL and a private Redis (own port, killed and
//! restarted by the tests). Needs `MERCATO_TEST_POSTGRES_URL` and a
//! `redis-server` binary; says so and skips when either is missing.

mod common;

use common::*;
use mercato_platform::redis::testing::{RedisServer, binary};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn prerequisites() -> Option<SharedDatabase> {
    if binary().is_none() {
        eprintln!("SKIPPED: redis-server not found (apt-get install redis-server)");
        return None;
    }
    let db = SharedDatabase::create();
    if db.is_none() {
        eprintln!(
            "SKIPPED: set MERCATO_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1/postgres) to run the shared-cache tests"
        );
    }
    db
}

fn with_redis<'a>(redis: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("MERCATO_CACHE_REDIS_URL", redis)];
    env.extend_from_slice(extra);
    env
}

/// Two shops on one database and one private Redis (kept alive by the first element).
fn two_instances(db: &SharedDatabase) -> (RedisServer, TestServer, TestServer) {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = TestServer::start_sharing(0, db, &with_redis(&url, &[]));
    let b = TestServer::start_sharing(0, db, &with_redis(&url, &[]));
    (redis, a, b)
}

/// A published product with two SKUs; returns (product id, first SKU, name).
async fn product(srv: &TestServer, admin: &str) -> (String, String, String) {
    let cat = srv.create_category(admin, &unique_str("Cat"), None).await;
    let sku = unique_str("SKU").to_uppercase();
    let sku2 = format!("{sku}-B");
    let name = format!("Lamp zq{}x{}", std::process::id(), unique());
    let p = srv.create_product(admin, &id_of(&cat["id"]), &name, &[(&sku, 1000, 5), (&sku2, 1200, 5)]).await;
    (id_of(&p["id"]), sku, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_price_changed_through_one_instance_is_served_by_the_other_within_a_second() {
    let Some(db) = prerequisites() else { return };
    let (_redis, a, b) = two_instances(&db);
    let admin = a.admin_token().await;
    let (id, sku, _) = product(&a, &admin).await;
    for _ in 0..3 {
        // Warm both levels on B: this is the copy that must not outlive the change.
        assert_eq!(amount(&b.get(&format!("/products/{id}"), None).await.expect(200)["variants"][0]["price"]), 1000);
    }
    let category = b.get(&format!("/products/{id}"), None).await.body["category"]["slug"].as_str().unwrap().to_string();
    let listed_price = |body: &serde_json::Value| {
        body["items"]
            .as_array()
            .and_then(|items| items.iter().find(|p| id_of(&p["id"]) == id))
            .map(|p| amount(&p["price"]))
    };
    let listing = format!("/products?category={category}");
    assert_eq!(listed_price(&b.get(&listing, None).await.expect(200).clone()), Some(1000));
    for (round, price) in [1500, 1700, 900].into_iter().enumerate() {
        a.patch(
            &format!("/admin/variants/{sku}"),
            Some(&admin),
            json!({"price": {"amount": price, "currency": "USD"}}),
        )
        .await
        .expect(200);
        let changed = Instant::now();
        loop {
            let seen = amount(&b.get(&format!("/products/{id}"), None).await.expect(200)["variants"][0]["price"]);
            if seen == price {
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(1),
                "round {round}: B still serves {seen} a second after A set {price}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The listing shows the lowest variant price: 1200 (the second SKU) caps it.
        let expected = price.min(1200);
        loop {
            let listed = listed_price(&b.get(&listing, None).await.expect(200).clone());
            if listed == Some(expected) {
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(1),
                "round {round}: B's listing still shows {listed:?} a second after A set {price}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_instance_search_index_follows_writes_made_through_another() {
    let Some(db) = prerequisites() else { return };
    let (_redis, a, b) = two_instances(&db);
    let admin = a.admin_token().await;
    let (id, _, _) = product(&a, &admin).await;
    let word = format!("zanzibar{}", unique());
    a.patch(&format!("/admin/products/{id}"), Some(&admin), json!({"name": format!("Lamp {word}")})).await.expect(200);
    // Each instance keeps its own index; only A's relay may have delivered the
    // event, so B must learn of the rename another way.
    for srv in [&a, &b] {
        let found = poll_until(Duration::from_secs(3), || async {
            srv.get(&format!("/search?q={word}"), None).await.expect(200)["hits"]
                .as_array()
                .is_some_and(|h| h.iter().any(|x| id_of(&x["id"]) == id))
        })
        .await;
        assert!(found, "{} did not find the renamed product within 3 s", srv.base_url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_requests_for_a_cold_product_make_one_database_read() {
    let Some(db) = prerequisites() else { return };
    let redis = RedisServer::start();
    let url = redis.url();
    let a = TestServer::start_sharing(0, &db, &with_redis(&url, &[]));
    let admin = a.admin_token().await;
    let (id, _, name) = product(&a, &admin).await;
    // The creation's events must be delivered before B starts: a relay that
    // delivers them during the burst would (rightly) invalidate the product.
    let indexed = poll_until(Duration::from_secs(10), || async {
        a.get(&format!("/search?q={}", urlencode(&name)), None).await.body["hits"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| id_of(&x["id"]) == id))
    })
    .await;
    assert!(indexed, "A never delivered the product's events");
    // B has never seen the product and Redis holds no copy of it (a creation
    // only invalidates): the first read anywhere is cold.
    let b = Arc::new(TestServer::start_sharing(0, &db, &with_redis(&url, &[])));
    b.get("/categories", None).await.expect(200);
    let product_loads = b.metric("mercato_cache_loads_total{cache=\"product\"}").await;
    let stock_loads = b.metric("mercato_cache_loads_total{cache=\"stock\"}").await;
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (b, path) = (b.clone(), format!("/products/{id}"));
            tokio::spawn(async move { b.get(&path, None).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let loads = b.metric("mercato_cache_loads_total{cache=\"product\"}").await - product_loads;
    let invalidations = (
        b.metric("mercato_cache_invalidations_total{cache=\"product\",from=\"local\"}").await,
        b.metric("mercato_cache_invalidations_total{cache=\"product\",from=\"redis\"}").await,
    );
    assert_eq!(loads, 1.0, "product reads; invalidations on B (local, from Redis): {invalidations:?}");
    // Displayed stock lives 2 s in L1; a slow run may legitimately read it once more.
    let stock = b.metric("mercato_cache_loads_total{cache=\"stock\"}").await - stock_loads;
    assert!((1.0..=2.0).contains(&stock), "{stock} stock reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_requests_for_missing_products_barely_reach_the_database() {
    let Some(db) = prerequisites() else { return };
    let redis = RedisServer::start();
    let srv = Arc::new(TestServer::start_sharing(20, &db, &with_redis(&redis.url(), &[])));
    let before = srv.metric("mercato_cache_loads_total{cache=\"product\"}").await;
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (srv, next) = (srv.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= 10_000 {
                        return;
                    }
                    // Plausible-looking ids (minted in 2025, any node), and plain small numbers.
                    let id = if i % 2 == 0 { (i as i64 + 1) * 1_000_003 } else { (1_i64 << 50) + i as i64 * 7_777_777 };
                    srv.get(&format!("/products/{id}"), None).await.expect_problem(404, "not-found");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let loads = srv.metric("mercato_cache_loads_total{cache=\"product\"}").await - before;
    assert!(loads <= 20.0, "{loads} database reads for 10,000 requests of missing products");
    assert!(srv.metric("mercato_cache_filtered_total{cache=\"product\"}").await >= 9_980.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_during_load_costs_no_errors_and_is_used_again_after_it_returns() {
    let Some(db) = prerequisites() else { return };
    let mut redis = RedisServer::start();
    // Short L1 TTL so that reads keep going to L2 and we can see it used.
    let srv =
        Arc::new(TestServer::start_sharing(200, &db, &with_redis(&redis.url(), &[("MERCATO_CACHE_L1_TTL_SECS", "1")])));
    let ids: Vec<String> = srv.collect_all("/products", None).await.iter().map(|p| id_of(&p["id"])).collect();
    assert!(ids.len() >= 100);
    let ids = Arc::new(ids);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let slow = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (srv, ids, stop, errors, slow, done) =
                (srv.clone(), ids.clone(), stop.clone(), errors.clone(), slow.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = srv.get(&format!("/products/{}", ids[i % ids.len()]), None).await;
                    if r.status >= 500 {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if started.elapsed() > Duration::from_millis(500) {
                        slow.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 7;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(done.load(Ordering::Relaxed) > during + 100, "the shop stalled while Redis was down");
    redis.restart();
    let hits_before = srv.metric("mercato_cache_l2_hits_total{cache=\"product\"}").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0, "5xx answers while Redis was killed and restarted");
    assert!(slow.load(Ordering::Relaxed) <= 32, "{} requests took over 500 ms", slow.load(Ordering::Relaxed));
    let hits_after = srv.metric("mercato_cache_l2_hits_total{cache=\"product\"}").await;
    assert!(
        hits_after > hits_before,
        "Redis was not used again after it came back ({hits_before} -> {hits_after} L2 hits)"
    );
}
