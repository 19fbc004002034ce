//! A storm of checkouts, a SIGKILL in the middle of it, a restart on the same
//! data dir: every acknowledged write survives, idempotency keys still replay,
//! and stock accounting is consistent with the orders.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

const TASKS: usize = 40;
/// How long a retried key whose answer was lost in the crash may stay "in progress".
const LOST_KEY_SETTLE_SECS: u64 = 10;
/// How long an asynchronous payment accepted before the crash may take to settle after it.
const ASYNC_SETTLE_SECS: u64 = 15;

/// What one HTTP call answered: a status and body, or nothing (server gone).
#[derive(Debug, Clone)]
enum Outcome {
    Answer(u16, Value),
    Lost(String),
}

impl Outcome {
    fn status(&self) -> Option<u16> {
        match self {
            Outcome::Answer(s, _) => Some(*s),
            Outcome::Lost(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Attempt {
    customer: usize,
    key: String,
    body: Value,
    order: Outcome,
    /// "pay", "pay_async" or "cancel", and its outcome.
    follow_up: Option<(&'static str, Outcome)>,
}

async fn call(rb: reqwest::RequestBuilder) -> Outcome {
    match try_send(rb).await {
        Ok(r) => Outcome::Answer(r.status, r.body),
        Err(e) => Outcome::Lost(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_checkout_storm_loses_nothing() {
    // A short checkout lease (the shortest allowed; running requests renew
    // it) so that keys caught mid-checkout by the kill can be retried within
    // the test's patience.
    let srv = Arc::new(TestServer::start_with(
        0,
        &[("MERCATO_ORDERS_CHECKOUT_LEASE_MS", "3000"), ("MERCATO_HTTP_REQUEST_TIMEOUT_MS", "2500")],
    ));
    let admin = srv.admin_token().await;

    // one product, three SKUs, known stock (initial + admin set + adjustment)
    let cat = srv.create_category(&admin, &unique_str("Crash"), None).await;
    let skus: Vec<String> = (0..3).map(|i| format!("{}-{i}", unique_str("CR").to_uppercase())).collect();
    srv.create_product(
        &admin,
        &id_of(&cat["id"]),
        "QA Crash Widget",
        &[(&skus[0], 1000, 3000), (&skus[1], 1500, 3000), (&skus[2], 700, 3000)],
    )
    .await;
    srv.post(
        &format!("/admin/inventory/{}/adjustments", skus[0]),
        Some(&admin),
        json!({"delta": 25, "reason": "found more"}),
    )
    .await
    .expect(200);
    srv.put(&format!("/admin/inventory/{}", skus[1]), Some(&admin), json!({"available": 2500, "reason": "recount"}))
        .await
        .expect(200);
    let initial: HashMap<String, i64> =
        [(skus[0].clone(), 3025), (skus[1].clone(), 2500), (skus[2].clone(), 3000)].into_iter().collect();
    for sku in &skus {
        assert_eq!(srv.stock(&admin, sku).await, (initial[sku], 0, 0), "setup stock of {sku}");
    }

    let customers = make_customers(&srv, TASKS, 8, "crash").await;
    let emails: Vec<String> = customers.iter().map(|c| c.0.clone()).collect();

    // the storm
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Attempt>>> = Arc::new(Mutex::new(Vec::new()));
    let add_refusals: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let adds_lost = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for (c, (_, token, _)) in customers.iter().enumerate() {
        let (srv, token, skus, stop, log) = (srv.clone(), token.clone(), skus.clone(), stop.clone(), log.clone());
        let (add_refusals, adds_lost) = (add_refusals.clone(), adds_lost.clone());
        set.spawn(async move {
            let mut iter = 0usize;
            while !stop.load(Ordering::Relaxed) {
                iter += 1;
                let sku = &skus[(c + iter) % skus.len()];
                let qty = 1 + (iter % 2) as i64;
                let add =
                    call(srv.rb(Method::POST, "/cart/items", Some(&token)).json(&json!({"sku": sku, "quantity": qty})))
                        .await;
                match &add {
                    Outcome::Answer(200, _) => {}
                    Outcome::Answer(s, b) => {
                        add_refusals.lock().unwrap().push(format!("{s} {b}"));
                        continue;
                    }
                    Outcome::Lost(_) => {
                        adds_lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                let key = format!("crash-{c}-{iter}-{}", unique());
                let body = json!({"shipping_address": address()});
                let order =
                    call(srv.rb(Method::POST, "/orders", Some(&token)).header("Idempotency-Key", &key).json(&body))
                        .await;
                let mut attempt = Attempt { customer: c, key, body, order: order.clone(), follow_up: None };
                if let Outcome::Answer(201, o) = &order {
                    let id = o["id"].as_str().unwrap_or_default().to_string();
                    if iter.is_multiple_of(7) {
                        let r = call(srv.rb(Method::POST, &format!("/orders/{id}/cancel"), Some(&token))).await;
                        attempt.follow_up = Some(("cancel", r));
                    } else if iter.is_multiple_of(11) {
                        let r = call(
                            srv.rb(Method::POST, &format!("/orders/{id}/payments"), Some(&token))
                                .json(&json!({"method": "test_card", "card_number": CARD_ASYNC})),
                        )
                        .await;
                        attempt.follow_up = Some(("pay_async", r));
                    } else if !iter.is_multiple_of(5) {
                        let r = call(
                            srv.rb(Method::POST, &format!("/orders/{id}/payments"), Some(&token))
                                .json(&json!({"method": "test_card", "card_number": CARD_OK})),
                        )
                        .await;
                        attempt.follow_up = Some(("pay", r));
                    }
                }
                let lost = matches!(attempt.order, Outcome::Lost(_))
                    || matches!(attempt.follow_up, Some((_, Outcome::Lost(_))));
                log.lock().unwrap().push(attempt);
                if lost {
                    break;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = srv.pid().expect("server pid");
    sigkill_pid(pid);
    stop.store(true, Ordering::Relaxed);
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(r) = set.join_next().await {
            r.expect("storm task panicked");
        }
    })
    .await;
    assert!(joined.is_ok(), "storm tasks did not stop after the kill");

    let attempts = log.lock().unwrap().clone();
    let created: Vec<&Attempt> = attempts.iter().filter(|a| a.order.status() == Some(201)).collect();
    let unexpected: Vec<String> = attempts
        .iter()
        .filter_map(|a| match &a.order {
            Outcome::Answer(s, b) if *s != 201 && !(*s == 409 && b["code"] == json!("out-of-stock")) => {
                Some(format!("order {}: {s} {b}", a.key))
            }
            _ => None,
        })
        .collect();
    let follow_up_failures: Vec<String> = attempts
        .iter()
        .filter_map(|a| match &a.follow_up {
            Some(("pay", Outcome::Answer(s, b))) if *s != 201 => Some(format!("pay after {}: {s} {b}", a.key)),
            Some(("cancel", Outcome::Answer(s, b))) if *s != 200 => Some(format!("cancel after {}: {s} {b}", a.key)),
            Some(("pay_async", Outcome::Answer(s, b))) if *s != 202 => {
                Some(format!("async pay after {}: {s} {b}", a.key))
            }
            _ => None,
        })
        .collect();
    eprintln!(
        "storm: {} attempts, {} orders acknowledged, {} paid, {} cancelled, {} lost in flight",
        attempts.len(),
        created.len(),
        attempts.iter().filter(|a| matches!(a.follow_up, Some(("pay", Outcome::Answer(201, _))))).count(),
        attempts.iter().filter(|a| matches!(a.follow_up, Some(("cancel", Outcome::Answer(200, _))))).count(),
        attempts
            .iter()
            .filter(|a| matches!(a.order, Outcome::Lost(_)) || matches!(a.follow_up, Some((_, Outcome::Lost(_)))))
            .count(),
    );
    if let Some(reason) = attempts.iter().find_map(|a| match (&a.order, &a.follow_up) {
        (Outcome::Lost(e), _) | (_, Some((_, Outcome::Lost(e)))) => Some(e.clone()),
        _ => None,
    }) {
        eprintln!("first in-flight loss: {reason}");
    }
    let refusals = add_refusals.lock().unwrap().clone();
    let orders_lost = attempts
        .iter()
        .filter(|a| matches!(a.order, Outcome::Lost(_)) || matches!(a.follow_up, Some((_, Outcome::Lost(_)))))
        .count();
    eprintln!("add-to-cart: {} refused, {} lost in flight", refusals.len(), adds_lost.load(Ordering::Relaxed));
    assert!(
        refusals.is_empty(),
        "add-to-cart refused during the storm (stock is ample): {:#?}",
        &refusals[..refusals.len().min(5)]
    );
    assert!(
        orders_lost + adds_lost.load(Ordering::Relaxed) > 0,
        "no request was in flight at the kill; the crash did not interrupt the storm"
    );
    assert!(
        created.len() >= 20,
        "the storm acknowledged only {} orders before the kill; not a meaningful test",
        created.len()
    );
    assert!(unexpected.is_empty(), "unexpected order answers during the storm: {unexpected:#?}");
    assert!(follow_up_failures.is_empty(), "unexpected pay/cancel answers during the storm: {follow_up_failures:#?}");

    // restart on the same data dir
    let srv = Arc::try_unwrap(srv).unwrap_or_else(|_| panic!("server still shared"));
    let srv = Arc::new(srv.restart());
    let admin = srv.admin_token().await;
    let tokens = relogin_customers(&srv, &emails, 8).await;

    let mut violations: Vec<String> = Vec::new();
    // 0. right after the restart, a key whose answer was lost in the crash can be retried: it answers
    // 201 (the order, committed or not), and is not stuck "in progress"
    let deadline = std::time::Instant::now() + Duration::from_secs(LOST_KEY_SETTLE_SECS);
    let started = std::time::Instant::now();
    for a in attempts.iter().filter(|a| matches!(a.order, Outcome::Lost(_))) {
        let mut r = srv.place_order_with(&tokens[a.customer], &a.key, a.body.clone()).await;
        while r.status == 409
            && r.body["code"] == json!("idempotency-key-in-progress")
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            r = srv.place_order_with(&tokens[a.customer], &a.key, a.body.clone()).await;
        }
        eprintln!("lost key {} answered {} after {:?}", a.key, r.status, started.elapsed());
        if r.status != 201 {
            violations.push(format!(
                "retry of key {} (answer lost in the crash) {:?} after the restart: expected 201, got {} {}",
                a.key,
                started.elapsed(),
                r.status,
                r.text
            ));
            continue;
        }
        let again = srv.place_order_with(&tokens[a.customer], &a.key, a.body.clone()).await;
        if again.status != 201 || again.body["id"] != r.body["id"] {
            violations.push(format!("retried key {} answered {} then {} {}", a.key, r.text, again.status, again.text));
        }
    }

    // 1. every acknowledged order exists, for its owner, in the acknowledged state
    for a in &created {
        let Outcome::Answer(_, body) = &a.order else { unreachable!() };
        let id = id_of(&body["id"]);
        let r = srv.get(&format!("/orders/{id}"), Some(&tokens[a.customer])).await;
        assert_eq!(r.status, 200, "acknowledged order {id} (key {}) lost in the crash: {}", a.key, r.text);
        assert_eq!(id_of(&r.body["id"]), id);
        let status = r.body["status"].as_str().unwrap_or_default();
        match &a.follow_up {
            Some(("pay", Outcome::Answer(201, _))) => {
                assert_eq!(status, "paid", "order {id} was paid (201) before the crash, now {status}");
            }
            Some(("cancel", Outcome::Answer(200, _))) => {
                assert_eq!(status, "cancelled", "order {id} was cancelled before the crash, now {status}");
            }
            Some(("pay_async", Outcome::Answer(202, _))) => {
                assert!(["pending_payment", "paid"].contains(&status), "order {id} with an async payment: {status}");
            }
            Some((_, Outcome::Lost(_))) => {
                assert!(["pending_payment", "paid", "cancelled"].contains(&status), "order {id}: {status}");
            }
            _ => assert_eq!(status, "pending_payment", "order {id} was neither paid nor cancelled, now {status}"),
        }
    }

    // 2. each customer's orders, before replays
    let mut lists_before: Vec<Vec<String>> = Vec::new();
    for (c, token) in tokens.iter().enumerate() {
        let ids: Vec<String> = srv.collect_all("/orders", Some(token)).await.iter().map(|o| id_of(&o["id"])).collect();
        let unique_ids: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique_ids.len(), ids.len(), "customer {c}: an order listed twice");
        let acknowledged: Vec<String> = created
            .iter()
            .filter(|a| a.customer == c)
            .map(|a| match &a.order {
                Outcome::Answer(_, b) => id_of(&b["id"]),
                Outcome::Lost(_) => unreachable!(),
            })
            .collect();
        for id in &acknowledged {
            assert!(ids.contains(id), "customer {c}: acknowledged order {id} missing from the list");
        }
        let possible = attempts
            .iter()
            .filter(|a| a.customer == c && matches!(a.order, Outcome::Answer(201, _) | Outcome::Lost(_)))
            .count();
        assert!(
            ids.len() <= possible,
            "customer {c}: {} orders but only {possible} keys could have created one",
            ids.len()
        );
        lists_before.push(ids);
    }

    // 3. replaying every acknowledged key returns the same order and creates nothing
    for a in &created {
        let Outcome::Answer(_, body) = &a.order else { unreachable!() };
        let id = id_of(&body["id"]);
        let r = srv.place_order_with(&tokens[a.customer], &a.key, a.body.clone()).await;
        assert_eq!(r.status, 201, "replay of key {} after restart: {}", a.key, r.text);
        assert_eq!(id_of(&r.body["id"]), id, "replay of key {} after restart made a new order", a.key);
    }
    for (c, token) in tokens.iter().enumerate() {
        let ids: Vec<String> = srv.collect_all("/orders", Some(token)).await.iter().map(|o| id_of(&o["id"])).collect();
        assert_eq!(ids.len(), lists_before[c].len(), "customer {c}: replays created orders");
    }
    let all_admin = srv.collect_all("/admin/orders", Some(&admin)).await;
    assert_eq!(all_admin.len(), lists_before.iter().map(Vec::len).sum::<usize>(), "admin list vs. customers' lists");

    // the restarted server still takes payments (for an order nobody tried to
    // pay: one whose charge was in flight at the kill is rightly refused as
    // "in progress" until reconciliation settles it)
    let never_paid: Vec<(usize, String)> = created
        .iter()
        .filter(|a| a.follow_up.is_none())
        .filter_map(|a| match &a.order {
            Outcome::Answer(_, body) => Some((a.customer, id_of(&body["id"]))),
            Outcome::Lost(_) => None,
        })
        .collect();
    if let Some((c, id)) = find_pending(&srv, &tokens, &never_paid).await {
        let r = srv.pay(&tokens[c], &id, CARD_OK).await;
        assert_eq!(r.status, 201, "payment after restart: {}", r.text);
        assert!(srv.wait_order_status(&tokens[c], &id, "paid", Duration::from_secs(3)).await);
    }

    // 3b. asynchronous payments accepted (202) before the crash still settle
    let async_paid: Vec<(usize, String)> = attempts
        .iter()
        .filter(|a| matches!(a.follow_up, Some(("pay_async", Outcome::Answer(202, _)))))
        .map(|a| match &a.order {
            Outcome::Answer(_, b) => (a.customer, id_of(&b["id"])),
            Outcome::Lost(_) => unreachable!(),
        })
        .collect();
    eprintln!("{} asynchronous payments were accepted before the crash", async_paid.len());
    let started = std::time::Instant::now();
    for (c, id) in &async_paid {
        let left = Duration::from_secs(ASYNC_SETTLE_SECS).saturating_sub(started.elapsed());
        if !srv.wait_order_status(&tokens[*c], id, "paid", left).await {
            violations.push(format!(
                "order {id}: async payment accepted (202) before the crash, still {} {ASYNC_SETTLE_SECS} s after the restart",
                srv.order_status(&tokens[*c], id).await
            ));
        }
    }

    // 4. stock accounting converges and matches the orders
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let (ok, report) = stock_report(&srv, &admin, &tokens, &lists_before, &skus, &initial).await;
        if ok {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let diag = diagnose(&srv, &tokens, &lists_before, &attempts).await;
            violations.push(format!("stock accounting inconsistent after the crash:\n{report}\n{diag}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Checks, for every SKU, initial == available + reserved + sold,
/// reserved == units in pending_payment orders, sold == units in paid orders.
async fn stock_report(
    srv: &TestServer,
    admin: &str,
    tokens: &[String],
    lists: &[Vec<String>],
    skus: &[String],
    initial: &HashMap<String, i64>,
) -> (bool, String) {
    let mut pending: HashMap<String, i64> = HashMap::new();
    let mut paid: HashMap<String, i64> = HashMap::new();
    for (c, ids) in lists.iter().enumerate() {
        for id in ids {
            let o = srv.get(&format!("/orders/{id}"), Some(&tokens[c])).await.body;
            let bucket = match o["status"].as_str() {
                Some("pending_payment") => &mut pending,
                Some("paid") => &mut paid,
                _ => continue,
            };
            for line in o["items"].as_array().cloned().unwrap_or_default() {
                let sku = line["sku"].as_str().unwrap_or_default().to_string();
                *bucket.entry(sku).or_default() += line["quantity"].as_i64().unwrap_or(0);
            }
        }
    }
    let mut ok = true;
    let mut report = String::new();
    for sku in skus {
        let (a, r, s) = srv.stock(admin, sku).await;
        let want_r = pending.get(sku).copied().unwrap_or(0);
        let want_s = paid.get(sku).copied().unwrap_or(0);
        report.push_str(&format!(
            "{sku}: initial {} vs available {a} + reserved {r} + sold {s} = {}; reserved {r} vs pending qty {want_r}; sold {s} vs paid qty {want_s}\n",
            initial[sku],
            a + r + s
        ));
        ok &= a + r + s == initial[sku] && r == want_r && s == want_s;
    }
    (ok, report)
}

/// Orders touched by requests that were in flight at the kill, and orders
/// nobody was told about, with their state after the restart.
async fn diagnose(srv: &TestServer, tokens: &[String], lists: &[Vec<String>], attempts: &[Attempt]) -> String {
    let acknowledged: HashSet<String> = attempts
        .iter()
        .filter_map(|a| match &a.order {
            Outcome::Answer(201, b) => b["id"].as_str().map(str::to_string),
            _ => None,
        })
        .collect();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    let mut out = String::new();
    for (c, ids) in lists.iter().enumerate() {
        for id in ids {
            let o = srv.get(&format!("/orders/{id}"), Some(&tokens[c])).await.body;
            let status = o["status"].as_str().unwrap_or("?").to_string();
            *statuses.entry(status.clone()).or_default() += 1;
            if !acknowledged.contains(id) {
                out.push_str(&format!("unacknowledged order {id} (customer {c}): {status}, items {}\n", o["items"]));
            }
        }
    }
    for a in attempts {
        if let (Outcome::Answer(201, b), Some((what, Outcome::Lost(_)))) = (&a.order, &a.follow_up) {
            let id = b["id"].as_str().unwrap_or_default();
            let status = srv.order_status(&tokens[a.customer], id).await;
            out.push_str(&format!("{what} in flight at the kill for order {id}: now {status}, items {}\n", b["items"]));
        }
    }
    format!("orders by status: {statuses:?}\n{out}")
}

async fn find_pending(srv: &TestServer, tokens: &[String], candidates: &[(usize, String)]) -> Option<(usize, String)> {
    for (c, id) in candidates {
        if srv.order_status(&tokens[*c], id).await == "pending_payment" {
            return Some((*c, id.clone()));
        }
    }
    None
}
