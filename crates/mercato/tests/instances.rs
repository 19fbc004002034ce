//! Stage 4: instances that hold nothing another instance needs. An embedded
//! database refuses a second instance; a draining instance reports not
//! ready, goes on serving through its drain delay, then closes; behind a
//! trusted proxy the login throttle keys on the real client. On PostgreSQL:
//! fleet jobs run on one instance at a time and move when it drains or dies,
//! and each instance's search index follows changes made through the other,
//! including those made while it was down.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn a_second_instance_on_one_embedded_database_is_refused_with_what_to_do() {
    if std::env::var("MERCATO_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) || split_shape() {
        eprintln!(
            "SKIPPED: this test needs the default embedded database (it runs in the pass without MERCATO_TEST_POSTGRES_URL and MERCATO_TEST_SHAPE)"
        );
        return;
    }
    let first = TestServer::start(0);
    let db = first.data_path().join("mercato.db");
    let other_dir = tempfile::tempdir().unwrap();
    for (what, data_dir, url) in [
        ("the same data directory", first.data_path().to_path_buf(), None),
        ("the same file by URL", other_dir.path().to_path_buf(), Some(format!("sqlite:{}", db.display()))),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mercato"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MERCATO_")) {
            cmd.env_remove(k);
        }
        cmd.arg("serve")
            .env("MERCATO_LISTEN", "127.0.0.1:0")
            .env("MERCATO_DATA_DIR", &data_dir)
            .env("MERCATO_SEED_PRODUCTS", "0")
            .env("MERCATO_LOG_LEVEL", "warn");
        if let Some(url) = &url {
            cmd.env("MERCATO_DATABASE_URL", url);
        }
        // `output` waits: a second instance that started would hang the test.
        let out = cmd.output().expect("running a second mercato");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: a second instance started: {stderr}");
        assert!(
            stderr.contains("serves one instance only")
                && stderr.contains("MERCATO_DATABASE_URL=postgres://")
                && stderr.contains(&format!("pid {}", first.pid().unwrap())),
            "{what}: the refusal does not say who holds it and what to do instead: {stderr}"
        );
    }
    // The first instance was not disturbed.
    assert!(first.client.get(first.url("/readyz")).send_blocking_ok());
}

/// Blocking GET for the synchronous test above.
trait SendBlocking {
    fn send_blocking_ok(self) -> bool;
}

impl SendBlocking for reqwest::RequestBuilder {
    fn send_blocking_ok(self) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { self.send().await.is_ok_and(|r| r.status().is_success()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_instance_reports_not_ready_serves_through_its_delay_then_closes() {
    let delay = Duration::from_millis(1500);
    let mut srv = TestServer::start_with(3, &[("MERCATO_HTTP_DRAIN_DELAY_MS", "1500")]);
    let fresh = reqwest::Client::new();
    assert_eq!(fresh.get(srv.url("/readyz")).send().await.unwrap().status(), 200);
    let pid = srv.pid().unwrap();
    let signalled = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Not ready, yet still serving, and telling clients to reconnect elsewhere.
    let ready = fresh.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<serde_json::Value>().await.unwrap()["draining"], true);
    let page = fresh.get(srv.api("/products?limit=2")).send().await.unwrap();
    assert_eq!(page.status(), 200, "a draining instance still serves during its delay");
    assert_eq!(page.headers().get("connection").and_then(|v| v.to_str().ok()), Some("close"));

    // Then the listener closes, and not before the delay.
    let mut refused_at = None;
    while signalled.elapsed() < Duration::from_secs(10) {
        if fresh.get(srv.url("/healthz")).timeout(Duration::from_secs(1)).send().await.is_err() {
            refused_at = Some(signalled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_at = refused_at.expect("the listener never closed");
    assert!(refused_at >= delay - Duration::from_millis(100), "closed after {refused_at:?}, before the drain delay");
    let status = tokio::task::block_in_place(|| srv.sigterm_and_wait(Duration::from_secs(15)));
    assert!(status.is_some_and(|s| s.success()), "did not exit cleanly: {status:?}\n{}", srv.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_trusted_proxy_the_login_throttle_keys_on_the_forwarded_client() {
    let limits = [("MERCATO_AUTH_LOGIN_FAILURES_PER_ADDRESS", "3"), ("MERCATO_AUTH_LOGIN_FAILURES_PER_ACCOUNT", "100")];
    let trusted = [limits[0], limits[1], ("MERCATO_HTTP_TRUSTED_PROXIES", "127.0.0.1/32, ::1")];
    let fail = |srv: &TestServer, client: &'static str, n: usize| {
        let rb = srv
            .client
            .post(srv.api("/auth/login"))
            .header("x-forwarded-for", client)
            .json(&json!({"email": format!("nobody{n}@example.com"), "password": "wrong-password"}));
        async move { rb.send().await.unwrap().status().as_u16() }
    };

    // Trusted: each forwarded client has its own allowance.
    let srv = TestServer::start_with(0, &trusted);
    for n in 0..3 {
        assert_eq!(fail(&srv, "198.51.100.1", n).await, 401);
    }
    assert_eq!(fail(&srv, "198.51.100.1", 3).await, 429, "the fourth failure of one client is throttled");
    // A forged first hop does not change who the proxy says the client is.
    assert_eq!(fail(&srv, "203.0.113.5, 198.51.100.1", 4).await, 429);
    assert_eq!(fail(&srv, "198.51.100.2", 5).await, 401, "another client behind the same proxy is not");

    // Not trusted (the default): the header is the client's own claim and is
    // ignored, so every attempt counts against the peer's address.
    let srv = TestServer::start_with(0, &limits);
    for (n, client) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"].into_iter().enumerate() {
        assert_eq!(fail(&srv, client, n).await, 401);
    }
    assert_eq!(fail(&srv, "198.51.100.4", 3).await, 429, "a forged header escaped the throttle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_id_from_the_proxy_passes_through_and_a_bad_one_is_replaced() {
    let srv = TestServer::start(0);
    let r = srv.client.get(srv.url("/healthz")).header("x-request-id", "nginx-7f3a2b").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "nginx-7f3a2b");
    let r = srv.client.get(srv.url("/healthz")).header("x-request-id", "a b\"<script>").send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!id.is_empty() && !id.contains(' '), "a request id unsafe to log was kept: {id}");
    let r = srv.client.get(srv.url("/healthz")).send().await.unwrap();
    assert!(r.headers().contains_key("x-request-id"), "every response carries an id");
}

fn postgres() -> Option<SharedDatabase> {
    let db = SharedDatabase::create();
    if db.is_none() {
        eprintln!(
            "SKIPPED: set MERCATO_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1/postgres) to run this test"
        );
    }
    db
}

async fn sweeps(srv: &TestServer) -> f64 {
    srv.metric("fleet_job_runs_total{job=\"orders.sweep\"}").await
}

/// Polls until `srv` has swept (again) after `since`, returning how long that took.
async fn takes_over(srv: &TestServer, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let before = sweeps(srv).await;
    while start.elapsed() < within {
        if sweeps(srv).await > before {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_jobs_run_on_one_instance_and_move_when_it_drains_or_dies() {
    let Some(db) = postgres() else { return };
    // A lease of 1.5 s: a dead holder's jobs wait at most that, plus a look.
    let settings = [("MERCATO_ORDERS_SWEEP_INTERVAL_MS", "100"), ("MERCATO_EVENTS_LEASE_MS", "1500")];
    let mut a = TestServer::start_sharing(0, &db, &settings);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = TestServer::start_sharing(0, &db, &settings);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ran_a, ran_b) = (sweeps(&a).await, sweeps(&b).await);
    assert!(ran_a >= 5.0 && ran_b == 0.0, "the sweeper ran on both instances: a {ran_a}, b {ran_b}");

    // Drained: it hands the lease on, and the other takes over within about a second.
    let handed = tokio::spawn({
        let b_url = b.url("/metrics");
        async move {
            let c = reqwest::Client::new();
            let read = || async {
                let text = c.get(&b_url).send().await.unwrap().text().await.unwrap();
                text.lines()
                    .filter_map(|l| l.strip_prefix("fleet_job_runs_total{job=\"orders.sweep\"} "))
                    .filter_map(|v| v.trim().parse::<f64>().ok())
                    .sum::<f64>()
            };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if read().await > 0.0 {
                    return Some(start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None
        }
    });
    let status = tokio::task::block_in_place(|| a.sigterm_and_wait(Duration::from_secs(15)));
    assert!(status.is_some_and(|s| s.success()));
    let took = handed.await.unwrap().expect("the other instance never took the sweeper over");
    assert!(
        took < Duration::from_millis(1400),
        "after a drain the takeover took {took:?}: the lease was not handed on"
    );

    // Killed: nobody hands it on; the lease lapses and the survivor takes over.
    let mut b = b;
    let c = TestServer::start_sharing(0, &db, &settings);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sweeps(&c).await, 0.0, "a newcomer took the job from a live holder");
    b.sigkill();
    let took = takes_over(&c, Duration::from_secs(10)).await.expect("no instance took the job over from a dead one");
    assert!(took < Duration::from_millis(1500 + 1000 + 500), "takeover after a kill took {took:?}");
}

async fn search_total(srv: &TestServer, word: &str) -> i64 {
    srv.get(&format!("/search?q={word}"), None).await.expect(200)["total"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_instance_search_index_follows_changes_made_through_any_instance() {
    let Some(db) = postgres() else { return };
    let a = TestServer::start_sharing(0, &db, &[]);
    let b = TestServer::start_sharing(0, &db, &[]);
    let admin = a.admin_token().await;
    let category = id_of(&a.create_category(&admin, &unique_str("Lamps"), None).await["id"]);
    let bound = Duration::from_secs(2);
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let word = format!("zephyrine{i}x{}", unique());
        let made = Instant::now();
        let sku = unique_str("LAMP").to_uppercase();
        let p = writer.create_product(&admin, &category, &format!("Lamp {word}"), &[(&sku, 1999, 3)]).await;
        let found = poll_until(bound, || async { search_total(reader, &word).await == 1 }).await;
        assert!(found, "a product made through one instance was not found through the other within {bound:?}");
        slowest = slowest.max(made.elapsed());
        // And an unpublishing made through the reader shows in the writer's index.
        reader
            .patch(&format!("/admin/products/{}", id_of(&p["id"])), Some(&admin), json!({"status": "archived"}))
            .await
            .expect(200);
        let gone = poll_until(bound, || async { search_total(writer, &word).await == 0 }).await;
        assert!(gone, "a product archived through one instance stayed in the other's index past {bound:?}");
    }
    eprintln!("slowest cross-instance index update: {slowest:?}");

    // An instance that was down when a change was made finds it on its way
    // back up (its projection starts at the head; the catch-up covers the gap).
    tokio::time::sleep(Duration::from_millis(1500)).await; // b records how far it followed
    let mut b = b;
    b.sigkill();
    let word = format!("nocturne{}", unique());
    let sku = unique_str("LAMP").to_uppercase();
    a.create_product(&admin, &category, &format!("Lamp {word}"), &[(&sku, 2599, 2)]).await;
    let b = b.restart();
    let found = poll_until(bound, || async { search_total(&b, &word).await == 1 }).await;
    assert!(found, "a product made while an instance was down is missing from its index after the restart");
}
