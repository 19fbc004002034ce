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
use tokio::task::JoinSet;

/// Clients in a storm, and the stock of each of its SKUs (never runs out).
pub const CUSTOMERS: usize = 12;
pub const STOCK: i64 = 50_000;

/// What a storm buys and who buys it.
pub struct Shop {
    pub admin: String,
    pub skus: Vec<String>,
    /// (email, token, customer id), as `make_customers` gives them.
    pub customers: Vec<(String, String, String)>,
}

impl Shop {
    /// Three SKUs of [`STOCK`] units each and [`CUSTOMERS`] logged-in customers.
    pub async fn open(srv: &Arc<TestServer>, tag: &str) -> Shop {
        let admin = srv.admin_token().await;
        let cat = srv.create_category(&admin, &unique_str(tag), None).await;
        let skus: Vec<String> = (0..3).map(|i| format!("{}-{i}", unique_str(tag).to_uppercase())).collect();
        srv.create_product(
            &admin,
            &id_of(&cat["id"]),
            &format!("QA {tag} Widget"),
            &[(&skus[0], 1000, STOCK), (&skus[1], 1500, STOCK), (&skus[2], 700, STOCK)],
        )
        .await;
        let customers = make_customers(srv, CUSTOMERS, 6, tag).await;
        Shop { admin, skus, customers }
    }

    pub fn tokens(&self) -> Vec<&str> {
        self.customers.iter().map(|c| c.1.as_str()).collect()
    }

    /// Waits (a few seconds: effects run after their commit) until stock is
    /// conserved and matches the orders of `lists`, or panics saying how not.
    pub async fn assert_stock_settles(&self, srv: &TestServer, lists: &[Vec<String>], after: &str) {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let (ok, report) = stock_report(srv, &self.admin, &self.tokens(), lists, &self.skus, STOCK).await;
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "stock accounting inconsistent after {after}:\n{report}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Every customer of a [`Shop`] checking out in a loop until stopped.
pub struct Storm {
    pub load: Arc<Load>,
    clients: JoinSet<()>,
}

/// What a stopped storm saw.
pub struct Seen {
    pub calls: Vec<Call>,
    pub acked: Vec<Acked>,
    pub stuck: Vec<String>,
}

impl Storm {
    /// Starts it; a client retries one Idempotency-Key for up to `patience`.
    pub fn start(srv: &Arc<TestServer>, shop: &Shop, patience: Duration) -> Storm {
        let load = Arc::new(Load::default());
        let mut clients = JoinSet::new();
        for (c, (_, token, _)) in shop.customers.iter().enumerate() {
            clients.spawn(customer(srv.clone(), load.clone(), c, token.clone(), shop.skus.clone(), patience));
        }
        Storm { load, clients }
    }

    /// Stops the clients (each finishes its key, within `patience`).
    pub async fn stop(mut self, patience: Duration) -> Seen {
        self.load.stop.store(true, Ordering::Relaxed);
        let joined = tokio::time::timeout(patience + Duration::from_secs(15), async {
            while let Some(r) = self.clients.join_next().await {
                r.expect("load task panicked");
            }
        })
        .await;
        assert!(joined.is_ok(), "the load did not stop");
        Seen {
            calls: self.load.calls.lock().unwrap().clone(),
            acked: self.load.acked.lock().unwrap().clone(),
            stuck: self.load.stuck.lock().unwrap().clone(),
        }
    }
}

impl Seen {
    /// Calls answered 5xx or not at all.
    pub fn failed(&self) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.status.is_none_or(|s| s >= 500)).collect()
    }

    /// Failures that ended before `fault`, began after `recovered`, or were
    /// anything but 503, described relative to `fault`.
    pub fn misplaced_failures(&self, fault: Instant, recovered: Instant) -> Vec<String> {
        self.failed()
            .into_iter()
            .filter(|c| c.ended < fault || c.started > recovered || c.status != Some(503))
            .map(|c| {
                format!(
                    "{} {:?} began {:+.2}s, ended {:+.2}s after the fault (recovered at {:+.2}s): {}",
                    c.what,
                    c.status,
                    signed_secs(c.started, fault),
                    signed_secs(c.ended, fault),
                    signed_secs(recovered, fault),
                    c.body
                )
            })
            .collect()
    }

    /// Answers other than success, a failure, or "key in progress".
    pub fn unexpected_answers(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| match (c.what, c.status) {
                (_, None) => false,
                (_, Some(s)) if s >= 500 => false,
                ("add", Some(200)) | ("order", Some(201)) | ("pay", Some(201)) => false,
                ("order", Some(409)) => !c.body.contains("idempotency-key-in-progress"),
                _ => true,
            })
            .map(|c| format!("{} {:?}: {}", c.what, c.status, c.body))
            .collect()
    }

    /// Orders acknowledged before `fault` and after `recovered`, printed
    /// with the rest of the figures.
    pub fn around(&self, fault: Instant, recovered: Instant) -> (usize, usize) {
        let before = self.acked.iter().filter(|a| a.at < fault).count();
        let after = self.acked.iter().filter(|a| a.at > recovered).count();
        eprintln!(
            "load: {} calls, {} orders acknowledged ({before} before the fault, {after} after recovery), \
             {} failed calls, {} stuck keys",
            self.calls.len(),
            self.acked.len(),
            self.failed().len(),
            self.stuck.len()
        );
        (before, after)
    }
}

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
