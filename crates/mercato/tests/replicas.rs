//! Stage 5: reads served by streaming replicas of PostgreSQL clusters these
//! tests start (`pg_basebackup -R`). A client's reads never show the state
//! before its own writes, even from a replica held seconds behind; a
//! replica that dies or falls too far behind is skipped with no failed
//! request, and comes back by itself.

mod common;

use common::pg::PgCluster;
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A primary with a `shop` database, and `n` replicas of it; `None` (the
/// test skips, saying why) where this machine cannot run PostgreSQL.
fn clusters(n: usize) -> Option<(PgCluster, Vec<PgCluster>, String)> {
    let primary = match PgCluster::start_new() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return None;
        }
    };
    let url = primary.create_database("shop");
    let replicas = (0..n).map(|_| PgCluster::replica_of(&primary)).collect();
    Some((primary, replicas, url))
}

fn series(name: &str, replica: &PgCluster) -> String {
    format!("{name}{{db=\"platform\",replica=\"127.0.0.1:{}/shop\"}}", replica.port())
}

async fn in_rotation(srv: &TestServer, replica: &PgCluster) -> bool {
    srv.metric(&series("db_replica_in_rotation", replica)).await == 1.0
}

async fn replica_reads(srv: &TestServer) -> f64 {
    srv.metric("db_reads_total{db=\"platform\",route=\"replica\",why=\"\"}").await
}

fn start(primary_url: &str, replicas: &[&PgCluster], extra: &[(&str, &str)]) -> TestServer {
    let urls: Vec<String> = replicas.iter().map(|r| r.database_url("shop")).collect();
    TestServer::start_on(
        0,
        vec![
            ("MERCATO_DATABASE_URL".into(), primary_url.to_string()),
            ("MERCATO_DATABASE_REPLICAS".into(), urls.join(",")),
        ],
        extra,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_never_reads_the_state_before_its_own_write_from_a_lagging_replica() {
    let Some((_primary, replicas, url)) = clusters(1) else { return };
    let replica = &replicas[0];
    // Applied 1.5 s after it is received: a replica that is always behind,
    // and still in rotation (the lag bound is above it).
    replica.set("recovery_min_apply_delay", "1500ms");
    let srv = start(&url, &[replica], &[("MERCATO_DATABASE_REPLICA_MAX_LAG_MS", "60000")]);
    assert!(
        poll_until(Duration::from_secs(60), || in_rotation(&srv, replica)).await,
        "the replica never joined the rotation\n{}",
        srv.stderr()
    );

    let admin = srv.admin_token().await;
    let cat = srv.create_category(&admin, "Replicated", None).await;
    let sku = unique_str("RSKU").to_uppercase();
    let product = srv.create_product(&admin, &id_of(&cat["id"]), "Replicated thing", &[(&sku, 1_000, 100_000)]).await;
    let id = id_of(&product["id"]);

    // The admin renames the product and reads it back at once, a thousand
    // times: by id, and in the listing. A shopper without the admin's token
    // reads it first, so that the page is filled into the cache by a read
    // the token does not protect: the cache must not keep what the replica
    // still has, or the admin's own read would be served the old name.
    let shopper = reqwest::Client::new();
    for i in 0..1_000 {
        let name = format!("Replicated thing {i}");
        srv.patch(&format!("/admin/products/{id}"), Some(&admin), json!({"name": name})).await.expect(200);
        let filled = send(shopper.get(srv.api(&format!("/products/{id}")))).await;
        assert_eq!(filled.expect(200)["name"], name.as_str(), "write {i}: the cache was filled with an older name");
        let shown = srv.get(&format!("/products/{id}"), None).await;
        assert_eq!(shown.expect(200)["name"], name.as_str(), "write {i}: the product page showed an older name");
        if i % 10 == 0 {
            let listed = srv.get(&format!("/products?category={}&limit=5", id_of(&cat["id"])), None).await;
            assert_eq!(listed.expect(200)["items"][0]["name"], name.as_str(), "write {i}: the listing is older");
        }
    }

    // A customer places orders and reads their history at once. Order
    // history is not cached: only the client's token keeps it off a replica
    // that has not replayed the order.
    let customer = srv.new_customer().await;
    for i in 0..200 {
        let order = srv.order_one(&customer, &sku, 1).await;
        let oid = id_of(&order["id"]);
        let history = srv.get("/orders?limit=1", Some(&customer)).await;
        let newest = history.expect(200)["items"][0]["id"].as_str().map(str::to_string);
        assert_eq!(newest, Some(oid.clone()), "order {i} missing from the history");
        srv.get(&format!("/orders/{oid}"), Some(&customer)).await.expect(200);
    }

    // The same reads without the token do reach the lagging replica: the
    // check above could have failed.
    let forgetful = reqwest::Client::new();
    let mut stale = 0;
    for _ in 0..20 {
        let oid = id_of(&srv.order_one(&customer, &sku, 1).await["id"]);
        let r = send(forgetful.get(srv.api("/orders?limit=1")).bearer_auth(&customer)).await;
        if r.expect(200)["items"][0]["id"].as_str() != Some(oid.as_str()) {
            stale += 1;
        }
    }
    assert!(stale > 0, "a client without the token always saw its order: the replica was not serving reads");
    assert!(replica_reads(&srv).await > 0.0, "no read went to the replica");
    let held_back = srv.metric("db_reads_total{db=\"platform\",route=\"primary\",why=\"read_your_writes\"}").await;
    assert!(held_back > 0.0, "no read was sent to the primary to honour a write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_dies_or_lags_is_skipped_without_a_failed_read_and_comes_back() {
    let Some((_primary, mut replicas, url)) = clusters(2) else { return };
    let srv = Arc::new(start(
        &url,
        &[&replicas[0], &replicas[1]],
        &[("MERCATO_DATABASE_REPLICA_MAX_LAG_MS", "1000"), ("MERCATO_SEED_PRODUCTS", "50")],
    ));
    for r in &replicas {
        assert!(
            poll_until(Duration::from_secs(60), || in_rotation(&srv, r)).await,
            "replica on port {} never joined the rotation\n{}",
            r.port(),
            srv.stderr()
        );
    }

    // Shoppers browse listing pages no cache holds (a fresh price filter
    // each), and the admin keeps writing, so the WAL moves.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let admin = srv.admin_token().await;
    let cat = id_of(&srv.create_category(&admin, "Busy", None).await["id"]);
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (srv, stop, reads, failures) = (srv.clone(), stop.clone(), reads.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let path = format!("/products?min_price={}&limit=3", 1 + t * 1_000_000 + n);
                match try_send(srv.rb(reqwest::Method::GET, &path, None)).await {
                    Ok(r) if r.status == 200 => {}
                    other => {
                        eprintln!("failed read: {:?}", other.map(|r| (r.status, r.text)));
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    {
        let (srv, stop, admin) = (srv.clone(), stop.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                srv.create_category(&admin, &format!("Busy {n}"), Some(&cat)).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // One replica dies: it leaves the rotation, reads go on.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| replicas[0].kill());
    assert!(
        poll_until(Duration::from_secs(10), || async { !in_rotation(&srv, &replicas[0]).await }).await,
        "a dead replica stayed in rotation"
    );
    let before = replica_reads(&srv).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(replica_reads(&srv).await > before, "the live replica stopped serving while the other was down");

    // It comes back by itself once it is up again.
    tokio::task::block_in_place(|| replicas[0].start());
    assert!(
        poll_until(Duration::from_secs(60), || in_rotation(&srv, &replicas[0])).await,
        "a restarted replica did not rejoin the rotation"
    );

    // The other falls 3 s behind, past the 1 s bound: out, then back in
    // once it catches up.
    replicas[1].set("recovery_min_apply_delay", "3s");
    assert!(
        poll_until(Duration::from_secs(30), || async { !in_rotation(&srv, &replicas[1]).await }).await,
        "a replica 3 s behind stayed in rotation with a 1 s bound"
    );
    assert!(srv.metric(&series("db_replica_lag_seconds", &replicas[1])).await > 1.0);
    replicas[1].set("recovery_min_apply_delay", "0");
    assert!(
        poll_until(Duration::from_secs(30), || in_rotation(&srv, &replicas[1])).await,
        "a replica that caught up did not rejoin"
    );

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let (reads, failures) = (reads.load(Ordering::Relaxed), failures.load(Ordering::Relaxed));
    assert!(reads > 100, "only {reads} reads were made");
    assert_eq!(failures, 0, "{failures} of {reads} reads failed while replicas died and lagged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_index_rebuilt_from_a_lagging_replica_misses_no_product() {
    let Some((_primary, replicas, url)) = clusters(1) else { return };
    let replica = &replicas[0];
    replica.set("recovery_min_apply_delay", "1500ms");
    let lag_bound = [("MERCATO_DATABASE_REPLICA_MAX_LAG_MS", "60000")];
    let first = start(&url, &[replica], &lag_bound);
    assert!(poll_until(Duration::from_secs(60), || in_rotation(&first, replica)).await, "{}", first.stderr());
    let admin = first.admin_token().await;
    let cat = first.create_category(&admin, "Lanterns", None).await;
    let name = unique_str("Zebralantern");
    first.create_product(&admin, &id_of(&cat["id"]), &name, &[(&unique_str("ZL").to_uppercase(), 900, 5)]).await;

    // A new instance builds its index from the tables at start: the product
    // was committed before it began following the outbox, so only the
    // rebuild can bring it in, and the replica it reads is 1.5 s behind
    // (what keeps the rebuild from missing it: replicas fenced at the new
    // instance's start, and each page read at the primary's position).
    let second = start(&url, &[replica], &lag_bound);
    let found = poll_until(Duration::from_secs(30), || async {
        let r = second.get(&format!("/search?q={name}"), None).await;
        r.status == 200 && r.body["total"].as_u64() == Some(1)
    })
    .await;
    assert!(found, "the rebuilt index lacks a product committed before it started\n{}", second.stderr());
}
