//! Stage 8 on real components: `deploy/lab up 8` starts two sites, each two
//! instances behind two nginx behind two layer-4 HAProxy (TCP mode) that
//! share the site's virtual address through keepalived, on hosts that are
//! network namespaces; dnsmasq answers the shop's name with both sites. The
//! sites share one PostgreSQL and one Redis (a real second data centre would
//! need replication across sites, which this lab does not build).
//!
//! Shoppers resolve the name through the lab's dnsmasq, as a browser would,
//! and use every address it gives (half of them site b first, as round robin
//! hands out). Under their load the active layer-4 balancer of site a is
//! killed (keepalived moves the address to its standby), then all of site b
//! goes down. Afterwards no acknowledged order is lost or doubled, stock is
//! conserved, and client-visible failures stayed within seconds of each fault.
//!
//! Runs with `MERCATO_TEST_LAB=1` (see lab_stage4.rs); needs, on top of stage
//! 4's tools, keepalived, dnsmasq, dig and iproute2, and root (it creates
//! network namespaces and bridges).

mod common;

use common::lab::*;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a site's address may go unanswered when its active layer-4
/// balancer dies: three missed VRRP adverts (advert_int 1 s) and the
/// standby's skew, about 3.6 s, with room for a loaded machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(6);

fn resolve(dns: &str, name: &str) -> Vec<std::net::IpAddr> {
    let (host, port) = dns.split_once(':').unwrap();
    let out = std::process::Command::new("dig")
        .args(["+short", "+time=1", "+tries=2", "-p", port, &format!("@{host}"), name, "A"])
        .output()
        .expect("running dig");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

async fn serves(url: &str) -> bool {
    let c = reqwest::Client::builder().timeout(Duration::from_millis(800)).build().unwrap();
    c.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sites_behind_dns_survive_losing_a_layer4_balancer_and_a_whole_site() {
    if !lab_enabled(8) {
        return;
    }
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref().ok() != Some("0") {
        eprintln!("SKIPPED: stage 8 creates network namespaces and bridges, which needs root");
        return;
    }
    let lab = Lab::up(8, 29800);
    let (site_a, site_b, name) = (lab.value("site_a"), lab.value("site_b"), lab.value("name"));
    for p in ["keepalived-a1", "keepalived-a2", "haproxy-b2", "nginx-b1", "dnsmasq", "mercato-b2"] {
        assert!(lab.pid(p).is_some(), "deploy/lab status 8 does not list {p}");
    }

    // Round robin: both sites in every answer.
    let addrs = resolve(&lab.value("dns"), &name);
    let vip = |url: &str| url.trim_start_matches("http://").parse::<std::net::IpAddr>().unwrap();
    let (vip_a, vip_b) = (vip(&site_a), vip(&site_b));
    assert!(addrs.contains(&vip_a) && addrs.contains(&vip_b) && addrs.len() == 2, "DNS answered {addrs:?}");

    let shop = TestServer::external(&site_a);
    let admin = shop.admin_token().await;
    let initial = 1_000_000;
    let sku = shop.quick_sku(&admin, 1500, initial).await;
    let slug = shop.get("/products?limit=1", None).await.expect(200)["items"][0]["slug"].as_str().unwrap().to_string();

    let mut load = Load::new(&sku, &slug);
    for i in 0..6 {
        // What a resolver hands out in turn: a first, or b first.
        let order: Vec<SocketAddr> = if i % 2 == 0 { vec![vip_a, vip_b] } else { vec![vip_b, vip_a] }
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 80))
            .collect();
        let client = reqwest::Client::builder()
            .resolve_to_addrs(&name, &order)
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let token = TestServer::external(&site_a).new_customer().await;
        let entry = format!("http://{name}");
        load.add(client, entry, token);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(load.paid() > 0, "no order was paid through the sites");

    // The active layer-4 balancer of site a dies: keepalived moves the
    // address to the standby.
    let l4_killed = Instant::now();
    lab.kill("haproxy-a1");
    lab.kill("keepalived-a1");
    let mut back = None;
    while l4_killed.elapsed() < Duration::from_secs(15) {
        if serves(&site_a).await {
            back = Some(l4_killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = back.expect("site a's address never came back after its active balancer died");
    assert!(back < FAILOVER_BOUND, "site a's address came back after {back:?} (bound {FAILOVER_BOUND:?})");
    tokio::time::sleep(Duration::from_secs(4)).await;

    // All of site b goes down: its balancers and its instances.
    let paid_before = load.paid();
    let site_down = Instant::now();
    for p in [
        "haproxy-b1",
        "haproxy-b2",
        "keepalived-b1",
        "keepalived-b2",
        "nginx-b1",
        "nginx-b2",
        "mercato-b1",
        "mercato-b2",
    ] {
        lab.kill(p);
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!serves(&site_b).await, "site b still answers");
    let paid_after = load.paid();
    assert!(paid_after > paid_before + 6, "shoppers did not go on against site a: {paid_before} then {paid_after}");
    let seen = load.finish().await;
    eprintln!(
        "{} requests; {} paid orders; site a's address back {back:?} after its balancer died; {} failed first \
         attempts: {:?}; longest wait on a request in progress {:?}",
        seen.requests,
        seen.paid.len(),
        seen.failures.len(),
        seen.failures.iter().map(|(at, what)| (at.saturating_duration_since(l4_killed), what)).collect::<Vec<_>>(),
        seen.longest_in_progress
    );
    for (at, what) in &seen.failures {
        let near = |fault: Instant, bound: Duration| *at >= fault && at.saturating_duration_since(fault) < bound;
        assert!(
            near(l4_killed, FAILOVER_BOUND) || near(site_down, Duration::from_secs(4)),
            "a request failed away from both faults ({:?} after the balancer died): {what}",
            at.saturating_duration_since(l4_killed)
        );
    }
    assert!(seen.longest_in_progress < Duration::from_secs(25), "waited {:?}", seen.longest_in_progress);
    assert_nothing_lost_or_doubled(&shop, &admin, &sku, initial, &seen).await;
}
