//! 200 customers race for 50 units of one SKU: exactly 50 orders win.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const STOCK: i64 = 50;
const CUSTOMERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checkout_never_oversells() {
    let srv = Arc::new(TestServer::start(0));
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1999, STOCK).await;
    assert_eq!(srv.stock(&admin, &sku).await, (STOCK, 0, 0));

    let customers = make_customers(&srv, CUSTOMERS, 8, "race").await;
    // every customer puts the one unit in their cart (stock is not reserved by carts)
    {
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        let mut set = JoinSet::new();
        for (_, token, _) in &customers {
            let (srv, sem, token, sku) = (srv.clone(), sem.clone(), token.clone(), sku.clone());
            set.spawn(async move {
                let _p = sem.acquire_owned().await.unwrap();
                let r = srv.add_to_cart(&token, &sku, 1).await;
                assert_eq!(r.status, 200, "add to cart: {}", r.text);
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("cart task panicked");
        }
    }
    assert_eq!(srv.stock(&admin, &sku).await, (STOCK, 0, 0), "carts must not reserve stock");

    // all at once
    let barrier = Arc::new(Barrier::new(CUSTOMERS));
    let mut set = JoinSet::new();
    for (i, (_, token, _)) in customers.iter().enumerate() {
        let (srv, token, barrier) = (srv.clone(), token.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            let r = srv.place_order(&token, &format!("race-{i}")).await;
            (i, r)
        });
    }
    let mut created = Vec::new();
    let mut out_of_stock = 0;
    let mut unexpected = Vec::new();
    while let Some(res) = set.join_next().await {
        let (i, r) = res.expect("order task panicked");
        match r.status {
            201 => {
                assert_eq!(r.body["status"], json!("pending_payment"), "{}", r.text);
                assert_eq!(r.body["items"][0]["quantity"], json!(1), "{}", r.text);
                created.push((i, id_of(&r.body["id"])));
            }
            409 => {
                assert_problem(&r, 409, "out-of-stock");
                out_of_stock += 1;
            }
            _ => unexpected.push(format!("customer {i}: {} {}", r.status, r.text)),
        }
    }
    assert!(unexpected.is_empty(), "{} answers were neither 201 nor 409: {:#?}", unexpected.len(), unexpected);
    assert_eq!(created.len() as i64, STOCK, "number of 201 answers");
    assert_eq!(out_of_stock, CUSTOMERS - STOCK as usize, "number of 409 out-of-stock answers");
    let ids: HashSet<&String> = created.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), created.len(), "two customers got the same order id");

    assert_eq!(srv.stock(&admin, &sku).await, (0, STOCK, 0), "stock after the race");
    let all = srv.collect_all("/admin/orders", Some(&admin)).await;
    assert_eq!(all.len() as i64, STOCK, "orders existing after the race");
    let listed: HashSet<String> = all.iter().map(|o| id_of(&o["id"])).collect();
    let expected: HashSet<String> = created.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(listed, expected, "admin list differs from the 201 answers");
    let pending = srv.collect_all("/admin/orders?status=pending_payment", Some(&admin)).await;
    assert_eq!(pending.len() as i64, STOCK);

    // each winner sees exactly their own order
    for (i, id) in &created {
        let mine = srv.collect_all("/orders", Some(&customers[*i].1)).await;
        assert_eq!(mine.len(), 1, "customer {i}");
        assert_eq!(id_of(&mine[0]["id"]), *id);
    }

    // and all winners cancelling at once return every unit
    let barrier = Arc::new(Barrier::new(created.len()));
    let mut set = JoinSet::new();
    for (i, id) in created.clone() {
        let (srv, token, barrier) = (srv.clone(), customers[i].1.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            srv.post_empty(&format!("/orders/{id}/cancel"), Some(&token)).await
        });
    }
    while let Some(res) = set.join_next().await {
        let r = res.expect("cancel task panicked");
        assert_eq!(r.status, 200, "concurrent cancel: {}", r.text);
        assert_eq!(r.body["status"], json!("cancelled"));
    }
    assert_eq!(srv.stock(&admin, &sku).await, (STOCK, 0, 0), "stock after cancelling every order");
}

/// Ten identical requests with one Idempotency-Key at once: one order, one reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replays_of_one_idempotency_key_create_one_order() {
    let srv = Arc::new(TestServer::start(0));
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 10).await;
    let token = srv.new_customer().await;
    srv.add_to_cart(&token, &sku, 2).await.expect(200);

    let n = 10;
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (srv, token, barrier) = (srv.clone(), token.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            srv.place_order(&token, "same-key-for-everyone").await
        });
    }
    let mut ids = HashSet::new();
    let mut others = Vec::new();
    while let Some(res) = set.join_next().await {
        let r = res.expect("task panicked");
        match r.status {
            201 => {
                ids.insert(id_of(&r.body["id"]));
            }
            409 if r.body["code"] == json!("idempotency-key-in-progress") => {
                assert_problem(&r, 409, "idempotency-key-in-progress")
            }
            _ => others.push(format!("{} {}", r.status, r.text)),
        }
    }
    assert!(others.is_empty(), "answers other than 201 / 409 idempotency-key-in-progress: {others:#?}");
    assert_eq!(ids.len(), 1, "one key produced several orders: {ids:?}");
    assert_eq!(srv.collect_all("/orders", Some(&token)).await.len(), 1);
    assert_eq!(srv.stock(&admin, &sku).await, (8, 2, 0), "one key reserved more than once");
    // once settled, a replay answers the same order
    let r = srv.place_order(&token, "same-key-for-everyone").await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(ids.contains(&id_of(&r.body["id"])));
}

/// Ten payments of one order at once: exactly one succeeds, the stock is sold once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_payments_of_one_order_charge_once() {
    let srv = Arc::new(TestServer::start(0));
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 10).await;
    let token = srv.new_customer().await;
    let order = srv.order_one(&token, &sku, 3).await;
    let id = id_of(&order["id"]);

    let n = 10;
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (srv, token, barrier, id) = (srv.clone(), token.clone(), barrier.clone(), id.clone());
        set.spawn(async move {
            barrier.wait().await;
            srv.pay(&token, &id, CARD_OK).await
        });
    }
    let mut succeeded = 0;
    let mut others = Vec::new();
    while let Some(res) = set.join_next().await {
        let r = res.expect("task panicked");
        match r.status {
            201 => succeeded += 1,
            409 => assert_problem_status(&r, 409),
            _ => others.push(format!("{} {}", r.status, r.text)),
        }
    }
    assert!(others.is_empty(), "answers other than 201/409: {others:#?}");
    assert_eq!(succeeded, 1, "payments that succeeded for one order");
    assert!(srv.wait_order_status(&token, &id, "paid", std::time::Duration::from_secs(3)).await);
    let settled =
        poll_until(std::time::Duration::from_secs(3), || async { srv.stock(&admin, &sku).await == (7, 0, 3) }).await;
    assert!(settled, "stock after concurrent payments: {:?}", srv.stock(&admin, &sku).await);
}

/// Pay and cancel racing on the same orders: each order ends in exactly one of
/// the two states and the stock agrees with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pay_and_cancel_race_leaves_consistent_stock() {
    let srv = Arc::new(TestServer::start(0));
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 100).await;
    let customers = make_customers(&srv, 20, 8, "paycancel").await;
    let mut orders = Vec::new();
    for (_, token, _) in &customers {
        let o = srv.order_one(token, &sku, 2).await;
        orders.push((token.clone(), id_of(&o["id"])));
    }
    assert_eq!(srv.stock(&admin, &sku).await, (60, 40, 0));

    let barrier = Arc::new(Barrier::new(orders.len() * 2));
    let mut set = JoinSet::new();
    for (i, (token, id)) in orders.iter().enumerate() {
        for action in ["pay", "cancel"] {
            let (srv, token, id, barrier) = (srv.clone(), token.clone(), id.clone(), barrier.clone());
            set.spawn(async move {
                barrier.wait().await;
                let r = if action == "pay" {
                    srv.pay(&token, &id, CARD_OK).await
                } else {
                    srv.post_empty(&format!("/orders/{id}/cancel"), Some(&token)).await
                };
                (i, action, r)
            });
        }
    }
    let mut outcome: Vec<(Option<u16>, Option<u16>)> = vec![(None, None); orders.len()];
    let mut texts: Vec<Vec<String>> = vec![Vec::new(); orders.len()];
    while let Some(res) = set.join_next().await {
        let (i, action, r) = res.expect("task panicked");
        if r.status == 409 {
            assert_problem(&r, 409, "illegal-transition");
        }
        if action == "pay" {
            outcome[i].0 = Some(r.status);
        } else {
            outcome[i].1 = Some(r.status);
        }
        texts[i].push(format!("{action} -> {} {}", r.status, r.text));
    }
    let mut paid = 0i64;
    let mut cancelled = 0i64;
    let mut anomalies = Vec::new();
    for (i, (token, id)) in orders.iter().enumerate() {
        let o = srv.get(&format!("/orders/{id}"), Some(token)).await.body;
        let status = o["status"].as_str().unwrap_or("?").to_string();
        match (outcome[i], status.as_str()) {
            ((Some(201), Some(409)), "paid") => paid += 1,
            ((Some(409), Some(200)), "cancelled") => cancelled += 1,
            (answers, status) => anomalies.push(format!(
                "order {id}: pay/cancel answered {answers:?}, final status {status}, refunded {}; answers: {}",
                o.get("refunded").map(|v| v.to_string()).unwrap_or_else(|| "absent".into()),
                texts[i].join(" | ")
            )),
        }
    }
    assert!(
        anomalies.is_empty(),
        "{} of {} orders: both or neither of a racing pay and cancel succeeded ({paid} clean payments, {cancelled} clean cancels); stock now {:?}:\n{}",
        anomalies.len(),
        orders.len(),
        srv.stock(&admin, &sku).await,
        anomalies.join("\n")
    );
    let want = (100 - 2 * paid, 0, 2 * paid);
    let settled =
        poll_until(std::time::Duration::from_secs(3), || async { srv.stock(&admin, &sku).await == want }).await;
    assert!(
        settled,
        "stock {:?} != {want:?} after {paid} payments and {cancelled} cancellations",
        srv.stock(&admin, &sku).await
    );
}

/// Ten concurrent adds of one SKU to one customer's cart: no add is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_to_one_cart_are_not_lost() {
    let srv = Arc::new(TestServer::start(0));
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 100).await;
    let token = srv.new_customer().await;

    let n = 10;
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (srv, token, barrier, sku) = (srv.clone(), token.clone(), barrier.clone(), sku.clone());
        set.spawn(async move {
            barrier.wait().await;
            srv.add_to_cart(&token, &sku, 1).await
        });
    }
    while let Some(res) = set.join_next().await {
        let r = res.expect("task panicked");
        assert_eq!(r.status, 200, "concurrent add: {}", r.text);
    }
    let cart = srv.get("/cart", Some(&token)).await;
    let lines = cart.body["items"].as_array().expect("items");
    assert_eq!(lines.len(), 1, "one SKU became several lines: {}", cart.text);
    assert_eq!(lines[0]["quantity"], json!(n), "adds were lost: {}", cart.text);
}

/// Payments arriving around the payment deadline while the expiry sweeper
/// runs: an order whose payment answered 201 is paid, never cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_racing_expiry_is_consistent() {
    let srv = Arc::new(TestServer::start_with(
        0,
        &[("MERCATO_ORDERS_PAYMENT_TIMEOUT_SECS", "2"), ("MERCATO_ORDERS_SWEEP_INTERVAL_MS", "50")],
    ));
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1000, 100).await;
    let customers = make_customers(&srv, 20, 8, "expiry").await;

    let mut set = JoinSet::new();
    for (i, (_, token, _)) in customers.iter().enumerate() {
        let o = srv.order_one(token, &sku, 1).await;
        let placed = tokio::time::Instant::now();
        let id = id_of(&o["id"]);
        // fire between 1.7 s and 2.3 s after placement
        let at = placed + std::time::Duration::from_millis(1700 + (i as u64 % 13) * 50);
        let (srv, token) = (srv.clone(), token.clone());
        set.spawn(async move {
            tokio::time::sleep_until(at).await;
            let r = srv.pay(&token, &id, CARD_OK).await;
            (token, id, r)
        });
    }
    let mut results = Vec::new();
    while let Some(res) = set.join_next().await {
        results.push(res.expect("task panicked"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut paid = 0i64;
    let mut anomalies = Vec::new();
    for (token, id, r) in &results {
        let o = srv.get(&format!("/orders/{id}"), Some(token)).await.body;
        let status = o["status"].as_str().unwrap_or("?");
        match (r.status, status) {
            (201, "paid") => paid += 1,
            (409, "cancelled") if r.body["code"] == json!("illegal-transition") => {}
            (s, st) => {
                anomalies.push(format!("order {id}: payment answered {s} {}, final status {st}, order {o}", r.text))
            }
        }
    }
    eprintln!("payment vs. expiry: {paid} paid, {} expired first", results.len() as i64 - paid);
    assert!(anomalies.is_empty(), "payment vs. expiry race:\n{}", anomalies.join("\n"));
    let want = (100 - paid, 0, paid);
    let settled =
        poll_until(std::time::Duration::from_secs(3), || async { srv.stock(&admin, &sku).await == want }).await;
    assert!(settled, "stock {:?} != {want:?} with {paid} paid orders", srv.stock(&admin, &sku).await);
}

/// Multi-line orders racing for a scarce SKU: a refused order reserves nothing
/// of its other (plentiful) line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_multi_line_orders_reserve_nothing() {
    let srv = Arc::new(TestServer::start(0));
    let admin = srv.admin_token().await;
    let plenty = srv.quick_sku(&admin, 500, 1000).await;
    let scarce = srv.quick_sku(&admin, 900, 20).await;
    let customers = make_customers(&srv, 60, 8, "multiline").await;
    for (_, token, _) in &customers {
        srv.add_to_cart(token, &plenty, 2).await.expect(200);
        srv.add_to_cart(token, &scarce, 1).await.expect(200);
    }
    let barrier = Arc::new(Barrier::new(customers.len()));
    let mut set = JoinSet::new();
    for (i, (_, token, _)) in customers.iter().enumerate() {
        let (srv, token, barrier) = (srv.clone(), token.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            srv.place_order(&token, &format!("multi-{i}")).await
        });
    }
    let mut ok = 0i64;
    let mut others = Vec::new();
    while let Some(res) = set.join_next().await {
        let r = res.expect("task panicked");
        match r.status {
            201 => ok += 1,
            409 if r.body["code"] == json!("out-of-stock") => {}
            _ => others.push(format!("{} {}", r.status, r.text)),
        }
    }
    assert!(others.is_empty(), "{} unexpected answers, e.g. {:#?}", others.len(), &others[..others.len().min(3)]);
    assert_eq!(ok, 20, "orders that got the 20 scarce units");
    assert_eq!(srv.stock(&admin, &scarce).await, (0, 20, 0));
    assert_eq!(srv.stock(&admin, &plenty).await, (1000 - 2 * ok, 2 * ok, 0), "refused orders left reservations behind");

    // A refused checkout is rolled back whole: the customer keeps the cart,
    // and the same key places the order once the SKU is back in stock.
    let refused: Vec<usize> = {
        let mut v = Vec::new();
        for (i, (_, token, _)) in customers.iter().enumerate() {
            if srv.collect_all("/orders", Some(token)).await.is_empty() {
                v.push(i);
            }
        }
        v
    };
    assert_eq!(refused.len(), customers.len() - 20);
    let (i, token) = (refused[0], &customers[refused[0]].1);
    let cart = srv.get("/cart", Some(token)).await;
    assert_eq!(cart.body["items"].as_array().map(Vec::len), Some(2), "refused checkout took the cart: {}", cart.text);
    srv.put(&format!("/admin/inventory/{scarce}"), Some(&admin), json!({"available": 1, "reason": "restock"}))
        .await
        .expect(200);
    let r = srv.place_order(token, &format!("multi-{i}")).await;
    assert_eq!(r.status, 201, "retry with the same key after a restock: {}", r.text);
    assert_eq!(srv.stock(&admin, &scarce).await, (0, 21, 0));
    let replay = srv.place_order(token, &format!("multi-{i}")).await;
    assert_eq!(id_of(&replay.body["id"]), id_of(&r.body["id"]), "the retried key does not replay its order");
}

/// `shop.max_cart_lines` holds when adds of new lines race: each add counts
/// the lines after its insert and after updating the cart row, which on
/// PostgreSQL waits for a concurrent add to the same cart to commit.
#[tokio::test]
async fn a_cart_never_exceeds_its_line_limit_under_concurrent_adds() {
    let srv = Arc::new(TestServer::start_with(0, &[("MERCATO_SHOP_MAX_CART_LINES", "3")]));
    let admin = srv.admin_token().await;
    let mut skus = Vec::new();
    for _ in 0..7 {
        skus.push(srv.quick_sku(&admin, 1000, 50).await);
    }
    let customer = srv.new_customer().await;
    srv.add_to_cart(&customer, &skus[0], 1).await.expect(200);

    // Six new lines at once for two free places.
    let mut adds = JoinSet::new();
    for sku in &skus[1..] {
        let (srv, customer, sku) = (srv.clone(), customer.clone(), sku.clone());
        adds.spawn(async move { srv.add_to_cart(&customer, &sku, 1).await });
    }
    let (mut added, mut refused) = (0, 0);
    while let Some(r) = adds.join_next().await {
        let r = r.unwrap();
        match r.status {
            200 => added += 1,
            _ => {
                r.expect_problem(422, "validation");
                refused += 1;
            }
        }
    }
    let cart = srv.get("/cart", Some(&customer)).await;
    let lines = cart.body["items"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(lines, 3, "the cart fills up to its limit and no further: {}", cart.text);
    assert_eq!((added, refused), (2, 4), "two adds landed, the rest were refused");
    // A line already in the cart can still grow.
    let r = srv.add_to_cart(&customer, &skus[0], 2).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(cart_quantity(&r.body, &skus[0]), 3, "{}", r.text);
}

fn cart_quantity(cart: &serde_json::Value, sku: &str) -> i64 {
    cart["items"]
        .as_array()
        .and_then(|items| items.iter().find(|l| l["sku"] == sku))
        .and_then(|l| l["quantity"].as_i64())
        .unwrap_or(0)
}
