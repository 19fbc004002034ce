//! Stage 5, a primary that can die: PostgreSQL run by pg_auto_failover (a
//! monitor, a primary and a synchronous standby, started by the test), and
//! Mercato connected with a multi-host URL and
//! `target_session_attrs=read-write`. In the middle of a checkout storm the
//! primary's replication stalls for a second and then the primary is killed
//! -9: the engine promotes the standby, the shop resumes by itself, reports
//! not ready only while there is no primary, and loses no order a client saw
//! acknowledged. (With `synchronous_commit = local` the same storm does lose
//! acknowledged orders: `bench/failover` measures how many.) Also: a COMMIT left waiting for a standby
//! that never answers is cut at `database.commit_wait_ms` and reported as of
//! unknown outcome, which the client's retry under its key resolves.

mod common;

use common::autofailover::Formation;
use common::pg::PgCluster;
use common::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BEFORE_KILL: Duration = Duration::from_secs(3);
/// How long the primary's replication is stalled before it dies.
const STALL: Duration = Duration::from_secs(1);
const AFTER_RECOVERY: Duration = Duration::from_secs(4);
/// A failover is the monitor noticing (3 s unhealthy, tuned down from 20 s),
/// waiting for the old primary to be demoted (5 s, down from 30 s), then
/// promoting: well within this.
const FAILOVER_WITHIN: Duration = Duration::from_secs(60);
/// A request begun this soon after the promotion may have waited on the dead
/// primary, and /readyz may lag the monitor by one of its own probes.
const GRACE: Duration = Duration::from_secs(3);
const KEY_PATIENCE: Duration = Duration::from_secs(60);

/// When /readyz was asked, and its status (None: no answer).
type Probe = (Instant, Option<u16>);

/// What one storm through a failover saw.
struct Outcome {
    acked: usize,
    lost: Vec<String>,
    failover: Duration,
}

/// Runs a checkout storm, kills the primary, waits for the promotion and
/// for the shop to serve again, and counts acknowledged orders that the new
/// primary does not have. `synchronous_commit` is Mercato's setting (None:
/// the server's, which pg_auto_failover makes synchronous).
async fn storm_through_failover(synchronous_commit: Option<&str>) -> Option<(Outcome, Formation)> {
    let mut f = match tokio::task::block_in_place(|| Formation::start(2, "shop")) {
        Ok(f) => f,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return None;
        }
    };
    let mut extra = vec![
        ("MERCATO_ORDERS_CHECKOUT_LEASE_MS", "3000"),
        ("MERCATO_HTTP_REQUEST_TIMEOUT_MS", "2500"),
        ("MERCATO_DATABASE_COMMIT_WAIT_MS", "2000"),
    ];
    if let Some(mode) = synchronous_commit {
        extra.push(("MERCATO_DATABASE_SYNCHRONOUS_COMMIT", mode));
    }
    let srv = Arc::new(TestServer::start_on(0, vec![("MERCATO_DATABASE_URL".into(), f.url("shop"))], &extra));
    let shop_pid = srv.pid();
    let shop = storm::Shop::open(&srv, "Failover").await;
    let tokens = shop.tokens();

    // /readyz, watched throughout
    let readiness: Arc<Mutex<Vec<Probe>>> = Arc::default();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (srv, readiness, watching) = (srv.clone(), readiness.clone(), watching.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                let r = try_send(srv.client.get(srv.url("/readyz"))).await.ok().map(|r| r.status);
                readiness.lock().unwrap().push((Instant::now(), r));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let storm = storm::Storm::start(&srv, &shop, KEY_PATIENCE);
    tokio::time::sleep(BEFORE_KILL).await;

    // The link to the standby stalls, then the primary's host dies: what
    // the standby never received is gone. Synchronous commits wait through
    // the stall, so nothing acknowledged is in that gap; asynchronous ones
    // are acknowledged from the primary's disk alone.
    let senders = tokio::task::block_in_place(|| f.stall_replication(0));
    assert!(senders > 0, "the primary streams to no standby: {}", f.describe());
    tokio::time::sleep(STALL).await;
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| f.kill(0));
    let standby = f.name(1).to_string();
    tokio::task::block_in_place(|| {
        f.wait("the standby's promotion", || {
            f.state(&standby).is_some_and(|(r, _)| r == "wait_primary" || r == "primary")
        })
    });
    let promoted_at = Instant::now();
    let ready = poll_until(FAILOVER_WITHIN, || async {
        try_send(srv.client.get(srv.url("/readyz"))).await.is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(ready, "/readyz not 200 {FAILOVER_WITHIN:?} after the promotion: {}", f.describe());
    let recovered_at = Instant::now();
    eprintln!(
        "primary killed: standby promoted after {:?}, shop ready {:?} later",
        promoted_at - killed_at,
        recovered_at - promoted_at
    );
    tokio::time::sleep(AFTER_RECOVERY).await;
    let seen = storm.stop(KEY_PATIENCE).await;
    watching.store(false, Ordering::Relaxed);
    watcher.await.expect("readiness watcher");
    assert_eq!(srv.pid(), shop_pid, "the shop was restarted");
    let (before, after) = seen.around(killed_at, recovered_at + GRACE);
    assert!(before >= 10, "only {before} orders before the kill: not a meaningful load");
    assert!(after >= storm::CUSTOMERS, "only {after} orders acknowledged after recovery: the shop did not resume");
    assert!(seen.stuck.is_empty(), "Idempotency-Keys never answered after the failover: {:?}", seen.stuck);

    // not ready only while there was no primary
    let readiness = readiness.lock().unwrap().clone();
    let misplaced: Vec<String> = readiness
        .iter()
        .filter(|(at, status)| *status != Some(200) && (*at < killed_at || *at > promoted_at + GRACE))
        .map(|(at, status)| format!("{status:?} at {:+.2}s", storm::signed_secs(*at, killed_at)))
        .collect();
    assert!(
        misplaced.is_empty(),
        "/readyz not ready outside the failover (promoted at {:+.2}s): {misplaced:?}",
        storm::signed_secs(promoted_at, killed_at)
    );
    // failures only during the failover, and only as "unavailable" or
    // "outcome unknown" (both 503)
    let misplaced = seen.misplaced_failures(killed_at, recovered_at + GRACE);
    assert!(misplaced.is_empty(), "failures outside the failover, or not 503: {misplaced:#?}");
    let refused = seen.unexpected_answers();
    assert!(refused.is_empty(), "unexpected answers during the load: {refused:#?}");

    let mut lost = Vec::new();
    for a in &seen.acked {
        let r = srv.get(&format!("/orders/{}", a.id), Some(tokens[a.customer])).await;
        match r.status {
            200 => {}
            404 => lost.push(format!(
                "{} (key {}, acknowledged {:+.3}s)",
                a.id,
                a.key,
                storm::signed_secs(a.at, killed_at)
            )),
            other => panic!("reading acknowledged order {}: {other} {}", a.id, r.text),
        }
    }
    if lost.is_empty() {
        let lists = storm::verify_acknowledged(&srv, &seen.acked, &tokens).await;
        shop.assert_stock_settles(&srv, &lists, "the failover").await;
    }
    Some((Outcome { acked: seen.acked.len(), lost, failover: promoted_at - killed_at }, f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_primary_under_a_checkout_storm_loses_no_acknowledged_order() {
    let Some((outcome, mut f)) = storm_through_failover(None).await else { return };
    assert!(
        outcome.lost.is_empty(),
        "{} of {} acknowledged orders lost in the failover (after {:?}): {:#?}",
        outcome.lost.len(),
        outcome.acked,
        outcome.failover,
        outcome.lost
    );
    // The old primary's host comes back: it rejoins as the standby, by itself.
    tokio::task::block_in_place(|| {
        f.restart(0);
        let (old, new) = (f.name(0).to_string(), f.name(1).to_string());
        f.wait("the old primary to rejoin as the standby", || {
            f.state(&old).is_some_and(|(r, g)| r == "secondary" && g == "secondary")
                && f.state(&new).is_some_and(|(r, _)| r == "primary")
        });
    });
}

/// What a failover costs with each `synchronous_commit` (from
/// `MERCATO_FAILOVER_COMMIT`, default `local`: Mercato's sessions do not
/// wait for the standby). Not a pass/fail property: `bench/failover` runs it
/// and records how many acknowledged orders each failover lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement (bench/failover), not a property"]
async fn measure_orders_lost_in_a_failover() {
    let mode = std::env::var("MERCATO_FAILOVER_COMMIT").unwrap_or_else(|_| "local".into());
    let Some((outcome, _f)) = storm_through_failover(Some(&mode)).await else { return };
    let line = format!(
        "synchronous_commit={mode} lost={} acknowledged={} failover_s={:.1}",
        outcome.lost.len(),
        outcome.acked,
        outcome.failover.as_secs_f64()
    );
    eprintln!("{line}");
    if let Ok(path) = std::env::var("MERCATO_FAILOVER_REPORT") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("report file");
        writeln!(file, "{line}").expect("writing the report");
    }
}

/// A standby that never confirms: every COMMIT would wait forever (the
/// server does not bound it by statement_timeout). Mercato cuts the wait at
/// `commit_wait_ms`, answers 503 with the outcome unknown, and stays
/// usable; once the standby is back, the client's retry under the same key
/// gets the one order that was placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_no_standby_confirms_is_cut_and_its_retry_finds_the_order() {
    let pg = match PgCluster::start_new() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let url = pg.create_database("shop");
    let srv = TestServer::start_on(
        0,
        vec![("MERCATO_DATABASE_URL".into(), url)],
        &[
            ("MERCATO_DATABASE_COMMIT_WAIT_MS", "500"),
            // also the Idempotency-Key claim's lease
            ("MERCATO_ORDERS_CHECKOUT_LEASE_MS", "3000"),
        ],
    );
    let admin = srv.admin_token().await;
    let cat = srv.create_category(&admin, &unique_str("Cut"), None).await;
    let sku = unique_str("CUT").to_uppercase();
    srv.create_product(&admin, &id_of(&cat["id"]), "QA Cut Widget", &[(&sku, 1000, 10)]).await;
    let token = srv.new_customer().await;
    assert_eq!(srv.add_to_cart(&token, &sku, 2).await.status, 200);

    // the standby goes silent: a synchronous one that does not exist
    tokio::task::block_in_place(|| pg.set("synchronous_standby_names", "nobody"));
    let key = unique_str("cut-key");
    let started = Instant::now();
    let r = srv.place_order_with(&token, &key, json!({"shipping_address": address()})).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "an order whose commit no standby confirmed: {}", r.text);
    assert_eq!(r.body["code"], json!("outcome-unknown"), "the answer must say the outcome is unknown: {}", r.text);
    assert!(took < Duration::from_secs(10), "the cut took {took:?}");
    // reads still work: the pool is not wedged by commits stuck on the standby
    assert_eq!(srv.get(&format!("/products?q={sku}"), None).await.status, 200);
    assert_eq!(srv.get_root("/readyz").await.status, 200, "a primary without its standby is still a primary");

    // the standby is back: the retry under the same key resolves it
    tokio::task::block_in_place(|| pg.set("synchronous_standby_names", ""));
    let mut placed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let r = srv.place_order_with(&token, &key, json!({"shipping_address": address()})).await;
        if r.status == 201 {
            placed = Some(r);
            break;
        }
        assert!(
            r.status == 503 || (r.status == 409 && r.text.contains("in-progress")),
            "retry under the key: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let placed = placed.expect("the retry under the key never got the order");
    let orders = srv.collect_all("/orders", Some(&token)).await;
    assert_eq!(orders.len(), 1, "one order, not two: {orders:?}");
    assert_eq!(id_of(&orders[0]["id"]), id_of(&placed.body["id"]));
    let (available, reserved, sold) = srv.stock(&admin, &sku).await;
    assert_eq!((available, reserved, sold), (8, 2, 0), "stock after the cut and the retry");
}
