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
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const CUSTOMERS: usize = 12;
const STOCK: i64 = 50_000;
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
    let admin = srv.admin_token().await;
    let cat = srv.create_category(&admin, &unique_str("PgRestart"), None).await;
    let skus: Vec<String> = (0..3).map(|i| format!("{}-{i}", unique_str("PGR").to_uppercase())).collect();
    srv.create_product(
        &admin,
        &id_of(&cat["id"]),
        "QA Restart Widget",
        &[(&skus[0], 1000, STOCK), (&skus[1], 1500, STOCK), (&skus[2], 700, STOCK)],
    )
    .await;
    let customers = make_customers(&srv, CUSTOMERS, 6, "pgr").await;
    assert_eq!(readyz(&srv).await.map(|r| r.status), Some(200), "not ready before the crash");

    let load = Arc::new(storm::Load::default());
    let mut set = JoinSet::new();
    for (c, (_, token, _)) in customers.iter().enumerate() {
        set.spawn(storm::customer(srv.clone(), load.clone(), c, token.clone(), skus.clone(), KEY_PATIENCE));
    }
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
    load.stop.store(true, Ordering::Relaxed);
    let joined = tokio::time::timeout(KEY_PATIENCE + Duration::from_secs(15), async {
        while let Some(r) = set.join_next().await {
            r.expect("load task panicked");
        }
    })
    .await;
    assert!(joined.is_ok(), "the load did not stop");
    assert_eq!(srv.pid(), shop_pid, "the shop was restarted");

    let calls = load.calls.lock().unwrap().clone();
    let acked = load.acked.lock().unwrap().clone();
    let stuck = load.stuck.lock().unwrap().clone();
    let fivexx: Vec<&storm::Call> = calls.iter().filter(|c| c.status.is_none_or(|s| s >= 500)).collect();
    let before = acked.iter().filter(|a| a.at < killed_at).count();
    let after = acked.iter().filter(|a| a.at > recovered_at + GRACE).count();
    eprintln!(
        "load: {} calls, {} orders acknowledged ({before} before the crash, {after} after recovery), \
         {} failed calls, {} stuck keys",
        calls.len(),
        acked.len(),
        fivexx.len(),
        stuck.len()
    );

    // the crash hit a load that was doing something, and the shop served again after it
    assert!(before >= 10, "only {before} orders before the crash: not a meaningful load");
    assert!(!fivexx.is_empty(), "no request failed while PostgreSQL was down: the crash did not hit the load");
    assert!(after >= CUSTOMERS, "only {after} orders acknowledged after recovery");
    assert!(stuck.is_empty(), "Idempotency-Keys never answered after recovery: {stuck:?}");

    // failures only while the database was down, and only as "unavailable"
    let misplaced: Vec<String> = fivexx
        .iter()
        .filter(|c| c.ended < killed_at || c.started > recovered_at + GRACE || c.status != Some(503))
        .map(|c| {
            format!(
                "{} {:?} began {:+.2}s, ended {:+.2}s after the kill (ready again at {:+.2}s): {}",
                c.what,
                c.status,
                storm::signed_secs(c.started, killed_at),
                storm::signed_secs(c.ended, killed_at),
                storm::signed_secs(recovered_at, killed_at),
                c.body
            )
        })
        .collect();
    assert!(misplaced.is_empty(), "failures outside the outage, or not 503: {misplaced:#?}");
    let refused: Vec<String> = calls
        .iter()
        .filter(|c| match (c.what, c.status) {
            (_, None) => false,
            (_, Some(s)) if s >= 500 => false,
            ("add", Some(200)) | ("order", Some(201)) | ("pay", Some(201)) => false,
            ("order", Some(409)) => !c.body.contains("idempotency-key-in-progress"),
            _ => true,
        })
        .map(|c| format!("{} {:?}: {}", c.what, c.status, c.body))
        .collect();
    assert!(refused.is_empty(), "unexpected answers during the load: {refused:#?}");

    // every acknowledged order is there, for its owner, and replays; nothing else is
    let tokens: Vec<&str> = customers.iter().map(|c| c.1.as_str()).collect();
    let lists = storm::verify_acknowledged(&srv, &acked, &tokens).await;

    // stock is conserved and matches the orders
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (ok, report) = storm::stock_report(&srv, &admin, &tokens, &lists, &skus, STOCK).await;
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "stock accounting inconsistent after the crash:\n{report}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A planned restart while the shop is idle: the pool's connections are all
    // stale, and still the next customers get no error.
    tokio::task::block_in_place(|| {
        pg.stop_fast();
        pg.start();
    });
    for (c, token) in tokens.iter().enumerate() {
        let r = srv.add_to_cart(token, &skus[c % skus.len()], 1).await;
        assert_eq!(r.status, 200, "customer {c}, first add to cart after a quiet restart: {}", r.text);
        let r = srv.place_order(token, &unique_str("quiet")).await;
        assert_eq!(r.status, 201, "customer {c}, first order after a quiet restart: {}", r.text);
    }
    assert_eq!(srv.pid(), shop_pid, "the shop was restarted");
}
