//! Events committed just before a SIGKILL are delivered after the restart:
//! the outbox relay resumes where it stopped, and outgoing webhooks carry each
//! event to a subscriber, signed.

mod common;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A webhook receiver on an ephemeral port that records every delivery.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let r = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                r.lock().unwrap().push((headers, v));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn created_ids(received: &Received) -> HashSet<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["type"] == json!("product.created"))
        .filter_map(|(_, v)| {
            v["data"]["id"].as_str().map(str::to_string).or_else(|| v["data"]["id"].as_i64().map(|i| i.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_committed_before_a_sigkill_are_delivered_after_restart() {
    let (url, received) = receiver().await;
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let r = srv.post("/admin/webhooks", Some(&admin), json!({"url": url, "events": ["product.created"]})).await;
    let endpoint = r.expect(201).clone();
    assert!(endpoint["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{endpoint}");

    let cat = srv.create_category(&admin, &unique_str("Crash"), None).await;
    let mut created = HashSet::new();
    for i in 0..40 {
        let p = srv
            .create_product(
                &admin,
                &id_of(&cat["id"]),
                &format!("Crash item {i}"),
                &[(&unique_str("SKU").to_uppercase(), 100, 1)],
            )
            .await;
        created.insert(id_of(&p["id"]));
    }
    // Killed right after the last commit: some events are surely not delivered yet.
    let mut srv = srv;
    srv.sigkill();
    let before = created_ids(&received).len();
    let srv = srv.restart();

    let all = poll_until(Duration::from_secs(15), || async { created_ids(&received).is_superset(&created) }).await;
    let got = created_ids(&received);
    assert!(
        all,
        "after restart {} of {} product.created events arrived (before the kill: {before})",
        got.len(),
        created.len()
    );
    // Every delivery is signed and names its event.
    for (headers, body) in received.lock().unwrap().iter() {
        assert!(headers.get("mercato-signature").and_then(|v| v.to_str().ok()).is_some_and(|s| s.contains("v1=")));
        assert!(body["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
    }
    // And the deliveries are visible through the admin API.
    let admin = srv.admin_token().await;
    let deliveries =
        srv.get(&format!("/admin/webhooks/{}/deliveries?limit=100", id_of(&endpoint["id"])), Some(&admin)).await;
    let deliveries = deliveries.expect(200).clone();
    let items = deliveries["items"].as_array().unwrap();
    assert!(items.len() >= 40, "{deliveries}");
    assert!(items.iter().all(|d| !d["attempts"].as_array().unwrap().is_empty()));
}
