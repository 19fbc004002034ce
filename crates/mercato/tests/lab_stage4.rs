//! Stage 4 on real components: `deploy/lab up 4` starts PostgreSQL, Redis,
//! three instances, nginx and HAProxy; a mixed load (product pages, cart
//! adds, checkouts and payments with Idempotency-Keys, retried as a real
//! client would) runs through both balancers while one instance is
//! SIGKILLed and then every instance is restarted in turn (SIGTERM, drain,
//! start). Afterwards no acknowledged order is lost or doubled, stock is
//! conserved, client-visible failures stayed in the seconds after the kill,
//! and the rolling restart failed no request at all.
//!
//! Runs with `MERCATO_TEST_LAB=1` (once per CI run: it brings its own
//! PostgreSQL and Redis, so the storage passes need not repeat it). Needs
//! nginx, haproxy, redis-server, curl and PostgreSQL's server binaries
//! (`.ci/run` installs them); without them it prints SKIPPED and what is missing.

mod common;

use common::lab::*;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_behind_nginx_and_haproxy_survive_a_kill_and_a_rolling_restart() {
    if !lab_enabled(4) {
        return;
    }
    let lab = Lab::up(4, 29400);
    let (nginx, haproxy) = (lab.value("url"), lab.value("haproxy"));
    for name in ["postgres", "redis", "mercato-1", "mercato-2", "mercato-3", "nginx", "haproxy"] {
        assert!(lab.pid(name).is_some(), "deploy/lab status 4 does not list {name}");
    }

    let shop = TestServer::external(&nginx);
    let admin = shop.admin_token().await;
    let initial = 1_000_000;
    let sku = shop.quick_sku(&admin, 1500, initial).await;
    let slug = shop.get("/products?limit=1", None).await.expect(200)["items"][0]["slug"].as_str().unwrap().to_string();

    let mut load = Load::new(&sku, &slug);
    for i in 0..8 {
        let entry = if i % 2 == 0 { nginx.clone() } else { haproxy.clone() };
        let token = TestServer::external(&entry).new_customer().await;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        load.add(client, entry, token);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(load.paid() > 0, "no order was paid through the balancers");

    // SIGKILL one instance under load.
    let killed_at = Instant::now();
    lab.kill("mercato-2");
    // HAProxy's active checks take it out of rotation.
    let stats = format!("{};csv", lab.value("haproxy_stats"));
    let down = poll_until(Duration::from_secs(3), || async {
        let csv = reqwest::get(&stats).await.unwrap().text().await.unwrap();
        csv.lines().any(|l| l.starts_with("mercato,mercato-2,") && l.contains(",DOWN,"))
    })
    .await;
    assert!(down, "HAProxy still routes to the killed instance 3 s after the kill");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_kill = load.seen.lock().unwrap().failures.len();

    // Rolling restart of every instance, the killed one included.
    let rolling_from = Instant::now();
    for name in ["mercato-1", "mercato-2", "mercato-3"] {
        lab.restart(name).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rolled = rolling_from.elapsed();
    let csv = reqwest::get(&stats).await.unwrap().text().await.unwrap();
    for i in 1..=3 {
        let up = csv.lines().any(|l| l.starts_with(&format!("mercato,mercato-{i},")) && l.contains(",UP"));
        assert!(up, "mercato-{i} is not back in HAProxy's rotation after the rolling restart:\n{csv}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = load.finish().await;
    let kill_failures: Vec<_> = seen.failures.iter().filter(|(at, _)| *at < rolling_from).collect();
    let roll_failures: Vec<_> = seen.failures.iter().filter(|(at, _)| *at >= rolling_from).collect();
    eprintln!(
        "{} requests; {} paid orders; {} failed first attempts around the kill, {} during the rolling restart \
         ({rolled:?}); longest wait on a request in progress {:?}",
        seen.requests,
        seen.paid.len(),
        kill_failures.len(),
        roll_failures.len(),
        seen.longest_in_progress
    );
    assert_eq!(after_kill, kill_failures.len());
    for (at, what) in &kill_failures {
        let since = at.saturating_duration_since(killed_at);
        assert!(
            *at >= killed_at && since < Duration::from_secs(3),
            "a request failed {since:?} after the kill (bound 3 s), or before it: {what}"
        );
    }
    assert!(roll_failures.is_empty(), "the rolling restart failed requests: {roll_failures:?}");
    // A request caught on the killed instance waits at most for its claim to
    // lapse (orders.checkout_lease_ms, 10 s) and, for a payment whose charge
    // was under way, for reconciliation (attempts older than 10 s).
    assert!(
        seen.longest_in_progress < Duration::from_secs(25),
        "a client waited {:?} for a request the killed instance held",
        seen.longest_in_progress
    );
    assert_nothing_lost_or_doubled(&shop, &admin, &sku, initial, &seen).await;
}
