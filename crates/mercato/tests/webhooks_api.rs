//! Scratch black-box check of the outgoing-webhooks admin API.

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            g.lock().unwrap().push(text);
                            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await
                                .unwrap();
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, got)
}

#[tokio::test]
async fn admin_webhooks_api() {
    let srv = TestServer::start(0);
    let admin = srv.admin_token().await;
    let (url, got) = receiver().await;
    let r = srv
        .post("/admin/webhooks", Some(&admin), json!({"url": url, "events": ["customer."], "description": "crm"}))
        .await;
    let ep = r.expect(201).clone();
    let secret = ep["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let id = ep["id"].as_str().unwrap().to_string();
    srv.post("/admin/webhooks", Some(&admin), json!({"url": "ftp://x", "events": ["*"]}))
        .await
        .expect_problem(422, "validation");
    srv.post("/admin/webhooks", Some(&admin), json!({"url": url, "events": ["*"], "bogus": 1})).await.expect(422);
    let customer = srv.register_and_login(&format!("{}@example.com", unique_str("wh"))).await;
    srv.post("/admin/webhooks", Some(&customer), json!({"url": url, "events": ["*"]})).await.expect(403);
    let list = srv.get("/admin/webhooks", Some(&admin)).await.expect(200).clone();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("secret").is_none());
    let one = srv.get(&format!("/admin/webhooks/{id}"), Some(&admin)).await.expect(200).clone();
    assert!(one.get("secret").is_none());
    srv.get("/admin/webhooks/abc", Some(&admin)).await.expect(404);
    srv.get("/admin/webhooks/deliveries", Some(&admin)).await.expect(404);
    assert!(
        poll_until(Duration::from_secs(10), || {
            let g = got.clone();
            async move { !g.lock().unwrap().is_empty() }
        })
        .await,
        "no webhook received"
    );
    let req = got.lock().unwrap()[0].clone();
    println!("{req}");
    assert!(req.to_ascii_lowercase().contains("mercato-signature: t="));
    let body: Value = serde_json::from_str(&req[req.find("\r\n\r\n").unwrap() + 4..]).expect("a JSON body");
    assert_eq!(body["type"], "customer.registered", "{body}");
    assert_eq!(body["version"], 1, "the event's schema version: {body}");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("evt_")), "{body}");
    assert!(body["data"]["id"].as_str().is_some_and(|id| id.parse::<i64>().is_ok()), "the typed event: {body}");
    let deliveries =
        srv.get(&format!("/admin/webhooks/{id}/deliveries?limit=10"), Some(&admin)).await.expect(200).clone();
    println!("{deliveries:#}");
    let d: &Value = &deliveries["items"][0];
    assert!(d["event_id"].as_str().unwrap().starts_with("evt_"));
    let did = d["id"].as_str().unwrap().to_string();
    srv.get(&format!("/admin/webhooks/{id}/deliveries?limit=0"), Some(&admin)).await.expect(422);
    let re =
        srv.post_empty(&format!("/admin/webhooks/deliveries/{did}/redeliver"), Some(&admin)).await.expect(202).clone();
    assert_eq!(re["status"], "pending");
    let p = srv
        .patch(&format!("/admin/webhooks/{id}"), Some(&admin), json!({"active": false, "events": ["order."]}))
        .await
        .expect(200)
        .clone();
    assert_eq!(p["active"], false);
    assert_eq!(srv.delete(&format!("/admin/webhooks/{id}"), Some(&admin)).await.status, 204);
    srv.get(&format!("/admin/webhooks/{id}"), Some(&admin)).await.expect(404);
    let spec = srv.get("/openapi.json", None).await.expect(200).clone();
    for path in [
        "/api/v1/admin/webhooks",
        "/api/v1/admin/webhooks/{id}",
        "/api/v1/admin/webhooks/{id}/deliveries",
        "/api/v1/admin/webhooks/deliveries/{id}/redeliver",
        "/api/v1/admin/events/dead-letters",
        "/api/v1/admin/events/dead-letters/{event_id}/{subscriber}/redrive",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} missing from openapi");
    }
    // Every event's schema is documented, and the envelope lists them all.
    let schemas = &spec["components"]["schemas"];
    let envelope = schemas["WebhookEvent"]["description"].as_str().expect("the webhook envelope's schema");
    for (event, schema) in [
        ("order.placed", "OrderPlaced"),
        ("order.paid", "OrderStatusChanged"),
        ("order.cancelled", "OrderStatusChanged"),
        ("payment.succeeded", "PaymentSucceeded"),
        ("stock.changed", "StockChanged"),
        ("product.published", "ProductChanged"),
        ("customer.registered", "CustomerRegistered"),
    ] {
        assert!(envelope.contains(&format!("| `{event}` | [{schema}]")), "{event} missing from the envelope's table");
        assert!(schemas[schema]["properties"].is_object(), "{schema} missing from components");
    }
    assert!(schemas["OrderStatus"]["enum"].as_array().is_some_and(|v| v.contains(&json!("pending_payment"))));
}
