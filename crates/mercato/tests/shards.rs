//! Stage 7: orders spread by customer over 4 logical shards on 2 databases
//! (files of their own, or databases on `MERCATO_TEST_POSTGRES_URL`'s
//! server). Each order lives in the database its id's shard maps to, a
//! customer's orders all in one; the admin listing across both databases
//! pages newest first, and neither skips nor repeats an order while orders
//! are being placed.

mod common;

use common::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const LOGICAL: i64 = 4;

/// Two shard databases: SQLite files in a directory the test keeps, or
/// PostgreSQL databases on the test server.
fn shard_urls(dir: &std::path::Path) -> (Vec<String>, Option<SharedDatabase>, Option<SharedDatabase>) {
    match (SharedDatabase::create(), SharedDatabase::create()) {
        (Some(a), Some(b)) => (vec![a.0.clone(), b.0.clone()], Some(a), Some(b)),
        _ => ((0..2).map(|i| format!("sqlite:{}/orders-{i}.db", dir.display())).collect(), None, None),
    }
}

/// `t` as RFC 3339, escaped for a query string.
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap().replace('+', "%2B").replace(':', "%3A")
}

/// (order id, customer id) of every order in `db`.
async fn orders_in(db: &mercato_platform::Db) -> Vec<(i64, i64)> {
    db.read(|tx| {
        let rows = tx.query("SELECT id, customer_id FROM orders", &[])?;
        Ok(rows.iter().map(|r| (r.int(0).unwrap(), r.int(1).unwrap())).collect())
    })
    .await
    .expect("reading a shard database")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_live_in_their_shards_database_and_admin_paging_across_shards_is_exact_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (urls, _a, _b) = shard_urls(dir.path());
    let srv = Arc::new(TestServer::start_with(
        0,
        &[("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", &urls.join(",")), ("MERCATO_ORDERS_LOGICAL_SHARDS", "4")],
    ));
    let admin = srv.admin_token().await;
    let cat = srv.create_category(&admin, &unique_str("Shards"), None).await;
    let sku = unique_str("SHD").to_uppercase();
    srv.create_product(&admin, &id_of(&cat["id"]), "QA Shard Widget", &[(&sku, 500, 100_000)]).await;
    let customers = make_customers(&srv, 16, 6, "shard").await;

    // Some orders first, from every customer.
    for (_, token, _) in &customers {
        for _ in 0..3 {
            assert_eq!(srv.add_to_cart(token, &sku, 1).await.status, 200);
            let r = srv.place_order(token, &unique_str("first")).await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
    }
    let before: Vec<String> =
        srv.collect_all("/admin/orders", Some(&admin)).await.iter().map(|o| id_of(&o["id"])).collect();
    assert_eq!(before.len(), 48);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let split = rfc3339(time::OffsetDateTime::now_utc());
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Orders keep coming while the admin pages through, 7 at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut placing = Vec::new();
    for (_, token, _) in customers.iter().take(8) {
        let (srv, token, sku, stop) = (srv.clone(), token.clone(), sku.clone(), stop.clone());
        placing.push(tokio::spawn(async move {
            let mut placed = 0;
            while !stop.load(Ordering::Relaxed) {
                if srv.add_to_cart(&token, &sku, 1).await.status == 200
                    && srv.place_order(&token, &unique_str("during")).await.status == 201
                {
                    placed += 1;
                }
            }
            placed
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/orders?limit=7&cursor={c}"),
            None => "/admin/orders?limit=7".to_string(),
        };
        let r = srv.get(&path, Some(&admin)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.extend(r.body["items"].as_array().unwrap().iter().map(|o| id_of(&o["id"]).parse::<i64>().unwrap()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut during = 0;
    for p in placing {
        during += p.await.unwrap();
    }
    assert!(during > 0, "no order was placed while paging");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "pages are not newest first across shards");
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an order was listed twice");
    let missing: Vec<&String> = before.iter().filter(|id| !unique.contains(&id.parse::<i64>().unwrap())).collect();
    assert!(missing.is_empty(), "orders placed before paging began were skipped: {missing:?}");

    // Where the rows are: each order in the database of its id's shard
    // (shards 0-1 in the first, 2-3 in the second), a customer's in one.
    let (first, second) = (orders_in(&open_url(&urls[0])).await, orders_in(&open_url(&urls[1])).await);
    assert!(!first.is_empty() && !second.is_empty(), "orders are not spread: {} and {}", first.len(), second.len());
    for (i, rows) in [&first, &second].into_iter().enumerate() {
        for (id, _) in rows {
            let shard = id & 0xFF;
            assert!(shard < LOGICAL, "order {id} carries shard {shard}, beyond the 4 configured");
            assert_eq!((shard * 2 / LOGICAL) as usize, i, "order {id} (shard {shard}) is in the wrong database");
        }
    }
    let homes = |c: i64| [&first, &second].iter().filter(|rows| rows.iter().any(|(_, cust)| *cust == c)).count();
    for (_, _, customer) in &customers {
        assert_eq!(homes(customer.parse().unwrap()), 1, "customer {customer}'s orders are in more than one database");
    }
    // Filtered by when they were placed, across both databases.
    let ids = |v: Vec<serde_json::Value>| v.iter().map(|o| id_of(&o["id"])).collect::<HashSet<String>>();
    let early = ids(srv.collect_all(&format!("/admin/orders?created_to={split}"), Some(&admin)).await);
    assert_eq!(early, before.iter().cloned().collect::<HashSet<_>>(), "orders placed before {split}");
    let late = ids(srv.collect_all(&format!("/admin/orders?created_from={split}"), Some(&admin)).await);
    assert!(late.len() >= during && late.is_disjoint(&early), "orders placed from {split}");
    let r = srv.get("/admin/orders?created_from=yesterday", Some(&admin)).await;
    assert_problem(&r, 422, "validation");

    let total = srv.collect_all("/admin/orders", Some(&admin)).await.len();
    assert_eq!(total, first.len() + second.len(), "the listing across shards misses or repeats orders");

    // A customer's history and an order's page, through the shard.
    for (_, token, customer) in customers.iter().take(4) {
        let mine = srv.collect_all("/orders", Some(token)).await;
        assert!(mine.len() >= 3);
        for o in &mine {
            assert_eq!(
                o["customer_id"].as_str().map(str::to_string).unwrap_or_else(|| id_of(&o["customer_id"])),
                *customer
            );
            let r = srv.get(&format!("/orders/{}", id_of(&o["id"])), Some(token)).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    }
}

/// Runs `mercato serve` on `data_dir` with `env`, expecting it to refuse to
/// start; returns what it said.
fn refused(data_dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mercato"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MERCATO_")) {
        cmd.env_remove(k);
    }
    cmd.arg("serve")
        .env("MERCATO_LISTEN", "127.0.0.1:0")
        .env("MERCATO_DATA_DIR", data_dir)
        .env("MERCATO_SEED_PRODUCTS", "0")
        .env("MERCATO_LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("running mercato");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("waiting for mercato").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("mercato started with {env:?}; it must refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("mercato's output");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The databases record which logical shards they serve, so the shards
/// list is only the set of databases: reordered, or given a new database
/// (which serves nothing until a shard is moved to it), the shop starts and
/// finds every order. A configuration that would send statements where the
/// orders are not (another number of logical shards, a database left out)
/// is refused at start, saying why, instead of losing orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_configuration_that_does_not_match_the_data_is_refused() {
    if std::env::var("MERCATO_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) || sharded_shape() {
        eprintln!("SKIPPED: this test configures embedded files itself (it runs in the embedded pass)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (format!("sqlite:{}/a.db", dir.path().display()), format!("sqlite:{}/b.db", dir.path().display()));
    let both = format!("{a},{b}");
    let mut srv = TestServer::start_with(
        0,
        &[("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", &both), ("MERCATO_ORDERS_LOGICAL_SHARDS", "4")],
    );
    let token = srv.new_customer().await;
    let admin = srv.admin_token().await;
    let cat = srv.create_category(&admin, &unique_str("Map"), None).await;
    let sku = unique_str("MAP").to_uppercase();
    srv.create_product(&admin, &id_of(&cat["id"]), "QA Map", &[(&sku, 100, 10)]).await;
    assert_eq!(srv.add_to_cart(&token, &sku, 1).await.status, 200);
    let placed = srv.place_order(&token, &unique_str("map")).await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    srv.sigterm_and_wait(Duration::from_secs(20)).expect("the server stops");

    // Reordered: the same shop, on the same data, finds its order.
    let reversed = format!("{b},{a}");
    let mut srv = srv.restart_with(&[("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", &reversed)]);
    let r = srv.get(&format!("/orders/{}", id_of(&placed.body["id"])), Some(&token)).await;
    assert_eq!(r.status, 200, "the order after the list was reordered: {}", r.text);
    srv.sigterm_and_wait(Duration::from_secs(20)).expect("the server stops");

    let data = tempfile::tempdir().unwrap();
    let said = tokio::task::block_in_place(|| {
        refused(
            data.path(),
            &[("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", &both), ("MERCATO_ORDERS_LOGICAL_SHARDS", "8")],
        )
    });
    assert!(said.contains("cannot change"), "{said}");
    let alone = format!("{a},sqlite:{}/c.db", dir.path().display());
    let said = tokio::task::block_in_place(|| {
        refused(
            data.path(),
            &[("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", &alone), ("MERCATO_ORDERS_LOGICAL_SHARDS", "4")],
        )
    });
    assert!(said.contains("no configured orders database serves logical shards 2-3"), "{said}");

    // A shop that ran on one database, given a second: the new one serves
    // nothing until a shard is moved there.
    let mut one = TestServer::start(0);
    let token = one.new_customer().await;
    let admin = one.admin_token().await;
    let cat = one.create_category(&admin, &unique_str("One"), None).await;
    let sku = unique_str("ONE").to_uppercase();
    one.create_product(&admin, &id_of(&cat["id"]), "QA One", &[(&sku, 100, 10)]).await;
    assert_eq!(one.add_to_cart(&token, &sku, 1).await.status, 200);
    let placed = one.place_order(&token, &unique_str("one")).await;
    assert_eq!(placed.status, 201);
    one.sigterm_and_wait(Duration::from_secs(20)).expect("the server stops");
    let shards =
        format!("sqlite:{},sqlite:{}/d.db", one.data_path().join("mercato.db").display(), dir.path().display());
    let two = one.restart_with(&[("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", &shards)]);
    let r = two.get(&format!("/orders/{}", id_of(&placed.body["id"])), Some(&token)).await;
    assert_eq!(r.status, 200, "the one database's order once a second is listed: {}", r.text);
    assert_eq!(two.add_to_cart(&token, &sku, 1).await.status, 200);
    assert_eq!(two.place_order(&token, &unique_str("two")).await.status, 201);
    assert_eq!(two.collect_all("/orders", Some(&token)).await.len(), 2);
}
