//! Every domain in a PostgreSQL database of its own, and the payments
//! database stopped for 30 s under load: paying answers a clear 503
//! problem+json while it is gone, everything else (browsing, carts,
//! checkout, readiness) keeps serving, and once it is back every order is
//! paid and the stock adds up, with nothing left held.
//!
//! Needs `MERCATO_TEST_POSTGRES_URL` (the other domains' databases) and the
//! PostgreSQL server binaries (a private cluster for payments, so stopping it
//! harms no other test).

mod common;

use common::pg::PgCluster;
use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const OUTAGE: Duration = Duration::from_secs(30);
const CUSTOMERS: usize = 4;
const STOCK: i64 = 10_000;

#[derive(Default)]
struct Tally {
    /// (what, status) of every answer while payments was down.
    during: Vec<(&'static str, u16, Value)>,
    /// Orders placed, paid or not.
    orders: Vec<(String, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_payments_database_fails_only_payments_and_everything_settles_after() {
    let Some(base) = std::env::var("MERCATO_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!(
            "SKIPPED: set MERCATO_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1/postgres) to run this test"
        );
        return;
    };
    let mut payments_db = match PgCluster::start_new() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: {why}; install postgresql to run this test");
            return;
        }
    };
    let split = SplitPostgres::create(&base);
    let payments_url = payments_db.create_database("payments");
    let srv = TestServer::start_sharing_split(
        0,
        &split,
        &[("MERCATO_DATABASE_DOMAINS_PAYMENTS_URL", &payments_url), ("MERCATO_HTTP_REQUEST_TIMEOUT_MS", "20000")],
    );
    let srv = Arc::new(srv);
    let admin = srv.admin_token().await;
    let sku = srv.quick_sku(&admin, 1200, STOCK).await;
    let mut tokens = Vec::new();
    for _ in 0..CUSTOMERS {
        tokens.push(srv.new_customer().await);
    }
    // Before: the whole path works.
    let first = srv.order_one(&tokens[0], &sku, 1).await;
    srv.pay(&tokens[0], &id_of(&first["id"]), CARD_OK).await.expect(201);

    payments_db.stop_fast();
    let down_at = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut load = JoinSet::new();
    for token in tokens.clone() {
        let (srv, sku, stop, tally) = (srv.clone(), sku.clone(), stop.clone(), tally.clone());
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = srv.get("/products?limit=5", None).await;
                tally.lock().unwrap().during.push(("browse", r.status, r.body.clone()));
                let r = srv.add_to_cart(&token, &sku, 1).await;
                tally.lock().unwrap().during.push(("cart", r.status, r.body.clone()));
                let r = srv.place_order(&token, &unique_str("key")).await;
                tally.lock().unwrap().during.push(("checkout", r.status, r.body.clone()));
                if r.status != 201 {
                    continue;
                }
                let order = id_of(&r.body["id"]);
                tally.lock().unwrap().orders.push((token.clone(), order.clone()));
                let r = srv.pay(&token, &order, CARD_OK).await;
                tally.lock().unwrap().during.push(("pay", r.status, r.body.clone()));
            }
        });
    }
    let ready = srv.get_root("/readyz").await;
    assert_eq!(ready.status, 200, "the instance stays in rotation: {}", ready.text);
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    payments_db.start();

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let count = |what: &str, ok: fn(u16) -> bool| tally.during.iter().filter(|(w, s, _)| *w == what && ok(*s)).count();
    for what in ["browse", "cart", "checkout"] {
        let failed: Vec<_> = tally.during.iter().filter(|(w, s, _)| *w == what && *s >= 400).collect();
        assert!(failed.is_empty(), "{what} must not need payments' database: {failed:?}");
    }
    assert!(count("checkout", |s| s == 201) >= CUSTOMERS, "checkouts went on during the outage");
    let pays: Vec<_> = tally.during.iter().filter(|(w, _, _)| *w == "pay").collect();
    assert!(!pays.is_empty());
    for (_, status, body) in &pays {
        assert_eq!(*status, 503, "paying without the payments database: {body}");
        assert_eq!(body["code"], "unavailable", "{body}");
        assert_eq!(body["status"], 503, "a problem document: {body}");
    }

    // Back: every order placed during the outage can be paid (payment is
    // idempotent per order), and then none holds stock.
    for (token, order) in &tally.orders {
        let mut paid = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !paid && Instant::now() < deadline {
            let r = srv.pay(token, order, CARD_OK).await;
            paid = r.status == 201 || (r.status == 409 && srv.order_status(token, order).await == "paid");
            if !paid {
                assert!(r.status == 503 || r.status == 409, "paying after the outage: {} {}", r.status, r.text);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        assert!(paid, "order {order} could not be paid after the outage");
    }
    let orders = tally.orders.len() as i64 + 1;
    let settled =
        poll_until(Duration::from_secs(30), || async { srv.stock(&admin, &sku).await == (STOCK - orders, 0, orders) })
            .await;
    assert!(settled, "stock after settling: {:?}, {orders} orders, all paid", srv.stock(&admin, &sku).await);
    let dead = srv.get("/admin/events/dead-letters", Some(&admin)).await;
    assert_eq!(dead.expect(200)["items"], serde_json::json!([]), "no event given up on");
}
