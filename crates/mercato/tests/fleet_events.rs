//! Two instances sharing every domain's own PostgreSQL database (the split
//! shape): each outbox row reaches each subscriber once for the fleet, and a
//! subscriber that fails every time (its role lost a privilege) lands its
//! events in the dead-letter state while the other subscribers go on; once
//! mended, a redrive through the admin API applies them.
//!
//! Needs `MERCATO_TEST_POSTGRES_URL` (a superuser URL, as CI sets it).

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

fn postgres() -> Option<String> {
    let url = std::env::var("MERCATO_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!(
            "SKIPPED: set MERCATO_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1/postgres) to run this test"
        );
    }
    url
}

/// Handled events of `subscriber`, summed over the instances.
async fn handled(servers: &[&TestServer], subscriber: &str) -> i64 {
    let mut n = 0.0;
    for s in servers {
        n += s.metric(&format!("outbox_handled_total{{subscriber=\"{subscriber}\"}}")).await;
    }
    n as i64
}

async fn redrive(srv: &TestServer, admin: &str, event: &str) -> Resp {
    srv.post_empty(&format!("/admin/events/dead-letters/{event}/webhooks.outgoing/redrive"), Some(admin)).await
}

fn count(split: &SplitPostgres, part: &str, sql: &str) -> i64 {
    split.superuser(part, sql)[0].parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_publish_each_event_once_per_subscriber_and_dead_letter_a_broken_one() {
    let Some(base) = postgres() else { return };
    let split = SplitPostgres::create(&base);
    let settings = [("MERCATO_EVENTS_MAX_ATTEMPTS", "3"), ("MERCATO_EVENTS_RETRY_BASE_MS", "100")];
    let a = TestServer::start_sharing_split(0, &split, &settings);
    let b = TestServer::start_sharing_split(0, &split, &settings);
    let admin = a.admin_token().await;
    let sku = a.quick_sku(&admin, 1000, 100).await;
    // Nothing listens there: deliveries stay pending, which is all this
    // test needs of them.
    let endpoint = a
        .post("/admin/webhooks", Some(&admin), json!({"url": "http://127.0.0.1:9/hook", "events": ["order."]}))
        .await
        .expect(201)
        .clone();
    let endpoint_id = id_of(&endpoint["id"]);

    // The webhooks domain loses the right to record deliveries.
    let role = split.role("webhooks");
    split.superuser("webhooks", &format!("REVOKE INSERT ON webhook_deliveries FROM {role}"));

    let orders = 6;
    for i in 0..orders {
        let srv = if i % 2 == 0 { &a } else { &b };
        let token = srv.new_customer().await;
        let order = srv.order_one(&token, &sku, 1).await;
        srv.pay(&token, &id_of(&order["id"]), "4242424242424242").await.expect(201);
    }
    // The other subscribers went on: every paid order's stock is sold.
    assert!(
        poll_until(Duration::from_secs(20), || async { a.stock(&admin, &sku).await == (100 - orders, 0, orders) })
            .await,
        "stock after payment: {:?}",
        a.stock(&admin, &sku).await
    );

    // Every order event is dead-lettered for webhooks.outgoing, and only for it.
    let order_events = count(&split, "orders", "SELECT count(*) FROM outbox WHERE kind LIKE 'order.%'");
    assert!(order_events >= 2 * orders, "placed and paid per order: {order_events}");
    let mut letters = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        letters = b.get("/admin/events/dead-letters?limit=500", Some(&admin)).await.expect(200)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if letters.len() as i64 == order_events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_dead = letters.len() as i64 == order_events;
    assert!(all_dead, "dead letters: {letters:?}, order events: {order_events}");
    assert!(letters.iter().all(|d| d["subscriber"] == "webhooks.outgoing" && d["attempts"] == 3), "{letters:?}");
    assert!(
        letters.iter().all(|d| d["error"].as_str().is_some_and(|e| e.contains("permission denied"))),
        "{letters:?}"
    );

    // Each row once per subscriber, across both instances: handled plus
    // dead-lettered is every row of every database, and the restock
    // subscriber saw each payment and cancellation once.
    let rows: i64 = split.names().iter().map(|part| count(&split, part, "SELECT count(*) FROM outbox")).sum();
    let settled = poll_until(Duration::from_secs(20), || async {
        handled(&[&a, &b], "webhooks.outgoing").await + order_events == rows
    })
    .await;
    assert!(
        settled,
        "webhooks.outgoing handled {} + dead {order_events} != {rows} rows",
        handled(&[&a, &b], "webhooks.outgoing").await
    );
    let moves = count(&split, "orders", "SELECT count(*) FROM outbox WHERE kind IN ('order.paid', 'order.cancelled')");
    assert_eq!(handled(&[&a, &b], "inventory.on-order").await, moves);
    tokio::time::sleep(Duration::from_millis(1500)).await; // a second delivery would show by now
    assert_eq!(handled(&[&a, &b], "webhooks.outgoing").await + order_events, rows);
    assert_eq!(handled(&[&a, &b], "inventory.on-order").await, moves);

    // Still broken: a redrive says so (409) and the letter stays.
    let first = letters[0]["event_id"].as_str().unwrap().to_string();
    redrive(&a, &admin, &first).await.expect_problem(409, "conflict");

    // Mended: every redrive is applied, through either instance, and each
    // order event now has its delivery.
    split.superuser("webhooks", &format!("GRANT INSERT ON webhook_deliveries TO {role}"));
    for (i, letter) in letters.iter().enumerate() {
        let srv = if i % 2 == 0 { &a } else { &b };
        let r = redrive(srv, &admin, letter["event_id"].as_str().unwrap()).await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let left = a.get("/admin/events/dead-letters", Some(&admin)).await.expect(200)["items"].as_array().unwrap().len();
    assert_eq!(left, 0);
    let deliveries = a.collect_all(&format!("/admin/webhooks/{endpoint_id}/deliveries"), Some(&admin)).await;
    let delivered: HashSet<String> = deliveries.iter().map(|d| d["event_id"].as_str().unwrap().to_string()).collect();
    let dead: HashSet<String> = letters.iter().map(|d| d["event_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(delivered, dead, "one delivery per redriven event");
    redrive(&b, &admin, &first).await.expect_problem(404, "not-found");
}
