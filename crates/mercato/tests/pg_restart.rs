//! PostgreSQL crashes in the middle of a checkout load and comes back: the
//! shop reports not ready while the database is gone, becomes ready again by
//! itself (the mercato process is never restarted), and no acknowledged order
//! is lost. The test runs its own PostgreSQL cluster (own port, own data dir):
//! killing the shared one would fail every other test using it.

mod common;

use common::pg::PgCluster;
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load before the crash, how long the database stays down once the shop
/// noticed, and load after the shop is ready again.
const BEFORE_CRASH: Duration = Duration::from_secs(2);
const OUTAGE: Duration = Duration::from_secs(2);
const AFTER_RECOVERY: Duration = Duration::from_secs(3);
/// How long /readyz may keep answering 200 with the database gone, and 503
/// with it back.
const NOTICE_WITHIN: Duration = Duration::from_secs(15);
const RECOVER_WITHIN: Duration = Duration::from_secs(20);
/// A request that began this soon after readiness returned may still have
/// been queued behind the outage.
const GRACE: Duration = Duration::from_secs(1);
/// How long a client keeps retrying one Idempotency-Key before giving up.
const KEY_PATIENCE: Duration = Duration::from_secs(45);

async fn readyz(srv: &TestServer) -> Option<Resp> {
    try_send(srv.client.get(srv.url("/readyz"))).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crash_under_load_is_survived_without_restarting_the_shop() {
    let mut pg = match PgCluster::start_new() {
        Ok(pg) => pg,
        Err(why) => {
            eprintln!("SKIPPED: {why} (apt-get install postgresql)");
            return;
        }
    };
    let url = pg.create_database(&format!("mercato_pgrestart_{}", std::process::id()));
    // The harness's drop of a SharedDatabase drops it on the
    // MERCATO_TEST_POSTGRES_URL server; this one lives and dies with `pg`.
    let db = std::mem::ManuallyDrop::new(SharedDatabase(url));
    // Short lease and request timeout (lease > timeout) so that a checkout cut
    // by the crash can be retried within the test's patience.
    let srv = Arc::new(TestServer::start_sharing(
        0,
        &db,
        &[("MERCATO_ORDERS_CHECKOUT_LEASE_MS", "3000"), ("MERCATO_HTTP_REQUEST_TIMEOUT_MS", "2500")],
    ));
    let shop_pid = srv.pid();
    let shop = storm::Shop::open(&srv, "PgRestart").await;
    assert_eq!(readyz(&srv).await.map(|r| r.status), Some(200), "not ready before the crash");

    let storm = storm::Storm::start(&srv, &shop, KEY_PATIENCE);
    tokio::time::sleep(BEFORE_CRASH).await;

    // the crash
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| pg.kill());
    let down = loop {
        let r = readyz(&srv).await;
        if let Some(r) = r.as_ref().filter(|r| r.status == 503) {
            break r.clone();
        }
        assert!(
            killed_at.elapsed() < NOTICE_WITHIN,
            "/readyz still answers {r:?} {NOTICE_WITHIN:?} after PostgreSQL died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let noticed_after = killed_at.elapsed();
    assert_eq!(down.body["database"], json!(false), "/readyz while PostgreSQL is down: {}", down.text);
    tokio::time::sleep(OUTAGE).await;
    assert_eq!(readyz(&srv).await.map(|r| r.status), Some(503), "ready again with PostgreSQL still down");
    assert_eq!(srv.get_root("/healthz").await.status, 200, "liveness must not follow the database");

    // the restart
    let restart_at = Instant::now();
    tokio::task::block_in_place(|| pg.start());
    let pg_up_after = restart_at.elapsed();
    let ready = poll_until(RECOVER_WITHIN, || async { readyz(&srv).await.is_some_and(|r| r.status == 200) }).await;
    let recovered_at = Instant::now();
    assert!(ready, "/readyz not 200 {RECOVER_WITHIN:?} after PostgreSQL came back");
    eprintln!(
        "PostgreSQL killed: /readyz 503 after {noticed_after:?}; PostgreSQL up again after {pg_up_after:?}, \
         /readyz 200 {:?} later",
        recovered_at - restart_at - pg_up_after
    );
    tokio::time::sleep(AFTER_RECOVERY).await;
    let seen = storm.stop(KEY_PATIENCE).await;
    assert_eq!(srv.pid(), shop_pid, "the shop was restarted");
    let (before, after) = seen.around(killed_at, recovered_at + GRACE);

    // the crash hit a load that was doing something, and the shop served again after it
    assert!(before >= 10, "only {before} orders before the crash: not a meaningful load");
    assert!(!seen.failed().is_empty(), "no request failed while PostgreSQL was down: the crash did not hit the load");
    assert!(after >= storm::CUSTOMERS, "only {after} orders acknowledged after recovery");
    assert!(seen.stuck.is_empty(), "Idempotency-Keys never answered after recovery: {:?}", seen.stuck);

    // failures only while the database was down, and only as "unavailable"
    let misplaced = seen.misplaced_failures(killed_at, recovered_at + GRACE);
    assert!(misplaced.is_empty(), "failures outside the outage, or not 503: {misplaced:#?}");
    let refused = seen.unexpected_answers();
    assert!(refused.is_empty(), "unexpected answers during the load: {refused:#?}");

    // every acknowledged order is there, for its owner, and replays; nothing else is
    let tokens = shop.tokens();
    let lists = storm::verify_acknowledged(&srv, &seen.acked, &tokens).await;
    shop.assert_stock_settles(&srv, &lists, "the crash").await;

    // A planned restart while the shop is idle: the pool's connections are all
    // stale, and still the next customers get no error.
    tokio::task::block_in_place(|| {
        pg.stop_fast();
        pg.start();
    });
    for (c, token) in tokens.iter().enumerate() {
        let r = srv.add_to_cart(token, &shop.skus[c % shop.skus.len()], 1).await;
        assert_eq!(r.status, 200, "customer {c}, first add to cart after a quiet restart: {}", r.text);
        let r = srv.place_order(token, &unique_str("quiet")).await;
        assert_eq!(r.status, 201, "customer {c}, first order after a quiet restart: {}", r.text);
    }
    assert_eq!(srv.pid(), shop_pid, "the shop was restarted");
}
