//! A checkout storm as careful clients make it, for tests that break the
//! database under it (a crash, a failover): what each call got, which
//! orders were acknowledged, and the checks that none of them was lost.

use super::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One HTTP exchange of the load, with when it began and ended.
#[derive(Debug, Clone)]
pub struct Call {
    pub what: &'static str,
    pub started: Instant,
    pub ended: Instant,
    /// None: no answer at all (transport error).
    pub status: Option<u16>,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct Acked {
    pub customer: usize,
    pub key: String,
    pub id: String,
    pub at: Instant,
}

#[derive(Default)]
pub struct Load {
    pub calls: Mutex<Vec<Call>>,
    pub acked: Mutex<Vec<Acked>>,
    /// Keys still unanswered (no 201) when the client's patience ran out.
    pub stuck: Mutex<Vec<String>>,
    pub stop: AtomicBool,
}

impl Load {
    pub async fn call(&self, what: &'static str, rb: reqwest::RequestBuilder) -> Option<Resp> {
        let started = Instant::now();
        let r = try_send(rb).await;
        let ended = Instant::now();
        let (status, body) = match &r {
            Ok(r) => (Some(r.status), r.text.clone()),
            Err(e) => (None, e.clone()),
        };
        self.calls.lock().unwrap().push(Call { what, started, ended, status, body });
        r.ok()
    }
}

pub fn retryable(r: &Option<Resp>) -> bool {
    match r {
        None => true,
        Some(r) => r.status >= 500 || (r.status == 409 && r.body["code"] == json!("idempotency-key-in-progress")),
    }
}

/// One customer's checkouts, as a careful client makes them: a failed add is
/// retried, an order is retried with the same Idempotency-Key until it is
/// answered, and every third order is paid (once, not retried).
pub async fn customer(
    srv: Arc<TestServer>,
    load: Arc<Load>,
    c: usize,
    token: String,
    skus: Vec<String>,
    patience: Duration,
) {
    let mut iter = 0usize;
    while !load.stop.load(Ordering::Relaxed) {
        iter += 1;
        let sku = &skus[(c + iter) % skus.len()];
        let qty = 1 + (iter % 3) as i64;
        let add = loop {
            let r = load
                .call(
                    "add",
                    srv.rb(Method::POST, "/cart/items", Some(&token)).json(&json!({"sku": sku, "quantity": qty})),
                )
                .await;
            if !retryable(&r) || load.stop.load(Ordering::Relaxed) {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if add.is_none_or(|r| r.status != 200) {
            continue;
        }
        let key = format!("storm-{c}-{iter}-{}", unique());
        let body = json!({"shipping_address": address()});
        let patience = Instant::now() + patience;
        let order = loop {
            let r = load
                .call(
                    "order",
                    srv.rb(Method::POST, "/orders", Some(&token)).header("Idempotency-Key", &key).json(&body),
                )
                .await;
            if !retryable(&r) {
                break r;
            }
            if Instant::now() >= patience {
                load.stuck.lock().unwrap().push(key.clone());
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let Some(order) = order.filter(|r| r.status == 201) else { continue };
        let id = id_of(&order.body["id"]);
        load.acked.lock().unwrap().push(Acked { customer: c, key, id: id.clone(), at: Instant::now() });
        if iter.is_multiple_of(3) {
            load.call(
                "pay",
                srv.rb(Method::POST, &format!("/orders/{id}/payments"), Some(&token))
                    .json(&json!({"method": "test_card", "card_number": CARD_OK})),
            )
            .await;
        }
    }
}

/// Every acknowledged order is there for its owner, each customer's history
/// lists exactly the acknowledged ones (once each), and each key replays its
/// order. Returns each customer's listed order ids.
pub async fn verify_acknowledged(srv: &TestServer, acked: &[Acked], tokens: &[&str]) -> Vec<Vec<String>> {
    for a in acked {
        let r = srv.get(&format!("/orders/{}", a.id), Some(tokens[a.customer])).await;
        assert_eq!(r.status, 200, "acknowledged order {} (key {}) lost: {}", a.id, a.key, r.text);
    }
    let mut lists: Vec<Vec<String>> = Vec::new();
    for (c, token) in tokens.iter().enumerate() {
        let listed: Vec<String> =
            srv.collect_all("/orders", Some(token)).await.iter().map(|o| id_of(&o["id"])).collect();
        let want: HashSet<&String> = acked.iter().filter(|a| a.customer == c).map(|a| &a.id).collect();
        let have: HashSet<&String> = listed.iter().collect();
        assert_eq!(have.len(), listed.len(), "customer {c}: an order listed twice");
        assert_eq!(have, want, "customer {c}: the orders listed are not the ones acknowledged");
        lists.push(listed);
    }
    // a key answered across the fault still replays its order
    for a in acked {
        let r = srv.place_order_with(tokens[a.customer], &a.key, json!({"shipping_address": address()})).await;
        assert_eq!(r.status, 201, "replay of key {}: {}", a.key, r.text);
        assert_eq!(id_of(&r.body["id"]), a.id, "replay of key {} made another order", a.key);
    }
    lists
}

pub fn signed_secs(t: Instant, origin: Instant) -> f64 {
    if t >= origin { (t - origin).as_secs_f64() } else { -(origin - t).as_secs_f64() }
}

/// Per SKU: STOCK == available + reserved + sold, reserved == units in
/// pending orders, sold == units in paid ones.
pub async fn stock_report(
    srv: &TestServer,
    admin: &str,
    tokens: &[&str],
    lists: &[Vec<String>],
    skus: &[String],
    stock: i64,
) -> (bool, String) {
    let mut pending: HashMap<String, i64> = HashMap::new();
    let mut paid: HashMap<String, i64> = HashMap::new();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for (c, ids) in lists.iter().enumerate() {
        for id in ids {
            let o: Value = srv.get(&format!("/orders/{id}"), Some(tokens[c])).await.body;
            let status = o["status"].as_str().unwrap_or("?").to_string();
            *statuses.entry(status.clone()).or_default() += 1;
            let bucket = match status.as_str() {
                "pending_payment" => &mut pending,
                "paid" => &mut paid,
                _ => continue,
            };
            for line in o["items"].as_array().cloned().unwrap_or_default() {
                let sku = line["sku"].as_str().unwrap_or_default().to_string();
                *bucket.entry(sku).or_default() += line["quantity"].as_i64().unwrap_or(0);
            }
        }
    }
    let mut ok = true;
    let mut report = format!("orders by status: {statuses:?}\n");
    for sku in skus {
        let (a, r, s) = srv.stock(admin, sku).await;
        let (want_r, want_s) = (pending.get(sku).copied().unwrap_or(0), paid.get(sku).copied().unwrap_or(0));
        report.push_str(&format!(
            "{sku}: {stock} vs available {a} + reserved {r} + sold {s} = {}; reserved {r} vs pending {want_r}; sold {s} vs paid {want_s}\n",
            a + r + s
        ));
        ok &= a + r + s == stock && r == want_r && s == want_s;
    }
    (ok, report)
}
