//! Checkout is a saga over four domains (each in a database of its own under
//! `MERCATO_TEST_SHAPE=split`, as CI runs this). A storm of checkouts (half
//! of them with a coupon), payments and cancellations, SIGKILLed three times
//! and restarted on the same databases; once the sagas settle: no
//! acknowledged order lost or doubled, stock conserved
//! (initial = available + reserved + sold), nothing reserved for an order
//! that no longer needs it, and the coupon counted exactly once per order
//! that still uses it.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const CUSTOMERS: usize = 16;
const KILLS: usize = 3;
const STOCK: i64 = 100_000;
const COUPON: &str = "STORM10";

#[derive(Debug, Clone)]
struct Checkout {
    customer: usize,
    key: String,
    body: Value,
    /// The order id, when acknowledged (201) before a kill.
    acked: Option<String>,
    /// The answer was lost in a kill: the key may or may not have an order.
    lost: bool,
}

async fn storm(srv: Arc<TestServer>, tokens: Vec<String>, sku: String, log: Arc<Mutex<Vec<Checkout>>>, round: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = JoinSet::new();
    for (c, token) in tokens.into_iter().enumerate() {
        let (srv, sku, stop, log) = (srv.clone(), sku.clone(), stop.clone(), log.clone());
        set.spawn(async move {
            let mut iter = 0usize;
            while !stop.load(Ordering::Relaxed) {
                iter += 1;
                let add = srv.rb(Method::POST, "/cart/items", Some(&token)).json(&json!({"sku": sku, "quantity": 1}));
                match try_send(add).await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => panic!("add to cart during the storm: {} {}", r.status, r.text),
                    Err(_) => return, // the kill
                }
                if iter.is_multiple_of(2) {
                    let coupon = srv.rb(Method::POST, "/cart/coupon", Some(&token)).json(&json!({"code": COUPON}));
                    match try_send(coupon).await {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => panic!("coupon during the storm: {} {}", r.status, r.text),
                        Err(_) => return,
                    }
                }
                let key = format!("storm-{round}-{c}-{iter}-{}", unique());
                let body = json!({"shipping_address": address()});
                let order = srv.rb(Method::POST, "/orders", Some(&token)).header("Idempotency-Key", &key).json(&body);
                let answer = try_send(order).await;
                let mut checkout = Checkout { customer: c, key, body, acked: None, lost: answer.is_err() };
                if let Ok(r) = &answer {
                    assert_eq!(r.status, 201, "checkout during the storm: {}", r.text);
                    checkout.acked = Some(id_of(&r.body["id"]));
                }
                log.lock().unwrap().push(checkout.clone());
                let Some(id) = checkout.acked else { return };
                let follow = if iter.is_multiple_of(5) {
                    srv.rb(Method::POST, &format!("/orders/{id}/cancel"), Some(&token))
                } else {
                    srv.rb(Method::POST, &format!("/orders/{id}/payments"), Some(&token))
                        .json(&json!({"method": "test_card", "card_number": CARD_OK}))
                };
                if try_send(follow).await.is_err() {
                    return;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sigkill_pid(srv.pid().expect("server pid"));
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        r.expect("storm task panicked");
    }
}

/// Every order of the shop, from the admin list.
async fn all_orders(srv: &TestServer, admin: &str) -> Vec<Value> {
    srv.collect_all("/admin/orders", Some(admin)).await
}

/// What the orders say stock and the coupon should be, against what they
/// are; None when they agree.
async fn disagreement(srv: &TestServer, admin: &str, sku: &str, coupon_id: &str) -> Option<String> {
    let orders = all_orders(srv, admin).await;
    let (mut pending, mut sold, mut coupon_uses) = (0, 0, 0);
    for o in &orders {
        let qty: i64 = o["items"].as_array().unwrap().iter().map(|l| l["quantity"].as_i64().unwrap()).sum();
        let status = o["status"].as_str().unwrap();
        match status {
            "pending_payment" => pending += qty,
            "paid" => sold += qty,
            "cancelled" => {}
            other => return Some(format!("unexpected status {other}")),
        }
        let used = o["discounts"].as_array().unwrap().iter().any(|d| d["code"] == json!(COUPON));
        if used && status != "cancelled" {
            coupon_uses += 1;
        }
    }
    let (available, reserved, sold_stock) = srv.stock(admin, sku).await;
    let promo = srv.get(&format!("/admin/promotions/{coupon_id}"), Some(admin)).await;
    let used = promo.body["used"].as_i64().unwrap();
    let agree =
        available + reserved + sold_stock == STOCK && reserved == pending && sold_stock == sold && used == coupon_uses;
    (!agree).then(|| {
        format!(
            "{} orders; stock available {available} + reserved {reserved} + sold {sold_stock} (initial {STOCK}); \
             pending units {pending}, paid units {sold}; coupon used {used}, by live orders {coupon_uses}",
            orders.len()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_sigkills_during_a_checkout_storm_leave_every_saga_settled() {
    let settings = [
        ("MERCATO_ORDERS_CHECKOUT_LEASE_MS", "3000"),
        ("MERCATO_HTTP_REQUEST_TIMEOUT_MS", "2500"),
        ("MERCATO_ORDERS_SWEEP_INTERVAL_MS", "200"),
    ];
    let mut srv = Arc::new(TestServer::start_with(0, &settings));
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, STOCK).await;
    let coupon = srv
        .post(
            "/admin/promotions",
            Some(&admin),
            json!({"code": COUPON, "name": "Storm", "kind": "percentage", "value": 1000}),
        )
        .await
        .expect(201)
        .clone();
    let coupon_id = id_of(&coupon["id"]);
    let tokens: Vec<String> = make_customers(&srv, CUSTOMERS, 8, "storm").await.into_iter().map(|c| c.1).collect();

    let log: Arc<Mutex<Vec<Checkout>>> = Arc::default();
    let mut lost = 0;
    for round in 0..KILLS {
        storm(srv.clone(), tokens.clone(), sku.clone(), log.clone(), round).await;
        let stopped = Arc::try_unwrap(srv).unwrap_or_else(|_| panic!("server still shared"));
        srv = Arc::new(stopped.restart());
        // A key whose answer the kill swallowed answers 201 once retried, as
        // a client would retry it: the order it made, or, if it made none,
        // one from the cart it was sent with (still there: the customer sent
        // nothing since). A saga the kill cut short holds the key until its
        // lease runs out, then the retry takes it over.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut checkouts = std::mem::take(&mut *log.lock().unwrap());
        for c in checkouts.iter_mut().filter(|c| c.lost && c.acked.is_none()) {
            let mut r = srv.place_order_with(&tokens[c.customer], &c.key, c.body.clone()).await;
            while r.status == 409 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                r = srv.place_order_with(&tokens[c.customer], &c.key, c.body.clone()).await;
            }
            assert_eq!(r.status, 201, "retry of key {} after kill {round}: {}", c.key, r.text);
            c.acked = Some(id_of(&r.body["id"]));
            lost += 1;
        }
        *log.lock().unwrap() = checkouts;
    }
    let checkouts = log.lock().unwrap().clone();
    let acked: Vec<&Checkout> = checkouts.iter().filter(|c| c.acked.is_some()).collect();
    eprintln!("{} checkouts acknowledged, {lost} lost in flight and retried over {KILLS} kills", acked.len());
    assert!(acked.len() >= 30, "too few checkouts for a meaningful storm: {}", acked.len());
    assert!(lost > 0, "no checkout was in flight at any kill: the kills interrupted nothing");
    // No acknowledged order lost, none doubled by a replay.
    let before = all_orders(&srv, &admin).await.len();
    for c in &acked {
        let id = c.acked.as_ref().unwrap();
        let r = srv.get(&format!("/orders/{id}"), Some(&tokens[c.customer])).await;
        assert_eq!(r.status, 200, "acknowledged order {id} lost: {}", r.text);
        let replay = srv.place_order_with(&tokens[c.customer], &c.key, c.body.clone()).await;
        assert_eq!(replay.status, 201, "{}", replay.text);
        assert_eq!(&id_of(&replay.body["id"]), id, "key {} replayed to another order", c.key);
    }
    assert_eq!(all_orders(&srv, &admin).await.len(), before, "replays created orders");
    let keys: HashMap<&str, usize> = checkouts.iter().fold(HashMap::new(), |mut m, c| {
        *m.entry(c.key.as_str()).or_default() += 1;
        m
    });
    assert!(before <= keys.len(), "{before} orders from {} keys", keys.len());

    // Sagas a kill cut short are compensated by the sweeper once their lease
    // runs out; then the numbers agree.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match disagreement(&srv, &admin, &sku, &coupon_id).await {
            None => break,
            Some(report) if Instant::now() >= deadline => panic!("the sagas did not settle: {report}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    let dead = srv.get("/admin/events/dead-letters", Some(&admin)).await;
    assert_eq!(dead.expect(200)["items"], json!([]), "no reaction given up on");
}
