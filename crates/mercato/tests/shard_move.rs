//! Stage 7: `mercato shards move` under a checkout storm. Orders over 4
//! logical shards on two PostgreSQL clusters of the test's own (the source
//! with `wal_level = logical`); the storm's busiest shard moves from the
//! first to the second while every customer keeps checking out. No
//! acknowledged order is lost, none is doubled, failures (if any) fall
//! inside the move and are 503s, the shard's rows end in the destination
//! only, and the shop restarts on the new map.

mod common;

use common::pg::PgCluster;
use common::*;
use mercato_platform::shards::shard_of_customer;
use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOGICAL: u16 = 4;
const KEY_PATIENCE: Duration = Duration::from_secs(30);

/// Order ids in `url`'s database, and those of logical shard `shard`.
async fn orders_at(url: &str, shard: i64) -> (HashSet<i64>, usize) {
    let db = open_url(url);
    let ids: HashSet<i64> = db
        .read(|tx| {
            let rows = tx.query("SELECT id FROM orders", &[])?;
            rows.iter().map(|r| r.int(0)).collect()
        })
        .await
        .expect("reading a shard database");
    let of_shard = ids.iter().filter(|id| (*id & 0xFF) % i64::from(LOGICAL) == shard).count();
    (ids, of_shard)
}

/// Payments in `url`'s database whose order is in logical shard `shard`.
async fn payments_at(url: &str, shard: i64) -> i64 {
    let sql = format!("SELECT count(*) FROM payment_intents WHERE (order_id & 255) % {LOGICAL} = {shard}");
    open_url(url).read(move |tx| tx.query_one(&sql, &[])?.int(0)).await.expect("reading a shard database")
}

/// Runs `mercato shards ...` with the shop's sharding configuration.
fn shards_command(urls: &str, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mercato"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MERCATO_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .arg("shards")
        .args(args)
        .env("MERCATO_DATA_DIR", dir.path())
        .env("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", urls)
        .env("MERCATO_ORDERS_LOGICAL_SHARDS", LOGICAL.to_string())
        .env("MERCATO_LOG_LEVEL", "warn")
        .output()
        .expect("running mercato shards");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_a_shard_under_a_checkout_storm_loses_and_doubles_no_order() {
    if std::env::var("MERCATO_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) || sharded_shape() {
        eprintln!("SKIPPED: this test starts PostgreSQL clusters of its own (it runs once, in the embedded pass)");
        return;
    }
    let (mut source, mut dest) = match (PgCluster::start_new(), PgCluster::start_new()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => {
            eprintln!("SKIPPED: {why} (apt-get install postgresql)");
            return;
        }
    };
    // Both can be a move's source: the shard goes there and back.
    tokio::task::block_in_place(|| {
        for cluster in [&mut source, &mut dest] {
            cluster.set("wal_level", "logical");
            cluster.stop_fast();
            cluster.start();
        }
    });
    let urls = [source.create_database("orders"), dest.create_database("orders")];
    let shards = urls.join(",");
    // The other domains stay embedded; a short lease lets a checkout cut by
    // a failure be retried within the test's patience.
    let env = [
        ("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", shards.as_str()),
        ("MERCATO_ORDERS_LOGICAL_SHARDS", "4"),
        ("MERCATO_ORDERS_CHECKOUT_LEASE_MS", "3000"),
        ("MERCATO_HTTP_REQUEST_TIMEOUT_MS", "2500"),
    ];
    let srv = Arc::new(TestServer::start_with(0, &env));
    let shop = storm::Shop::open(&srv, "Move").await;

    // The storm's busiest shard of the first database (shards 0 and 1).
    let of = |c: &str| shard_of_customer(mercato_core::Id(c.parse().unwrap()), LOGICAL);
    let in_shard = |s: u16| shop.customers.iter().filter(|c| of(&c.2) == s).count();
    let shard = if in_shard(0) >= in_shard(1) { 0 } else { 1 };
    let movers = in_shard(shard);
    assert!(movers > 0, "no customer of the storm lives in shard 0 or 1");

    let storm = storm::Storm::start(&srv, &shop, KEY_PATIENCE);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let move_began = Instant::now();
    let (ok, out, err) =
        tokio::task::block_in_place(|| shards_command(&shards, &["move", "--shard", &shard.to_string(), "--to", "2"]));
    let move_ended = Instant::now();
    assert!(ok, "the move failed:\n{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("the move's JSON report");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = storm.stop(KEY_PATIENCE).await;
    let (before, after) = seen.around(move_began, move_ended);
    eprintln!(
        "moved shard {shard} ({movers} of {} customers) in {:?}: {report}; {before} orders before the move, {after} \
         after it, {} calls failed",
        storm::CUSTOMERS,
        move_ended - move_began,
        seen.failed().len()
    );
    assert_eq!(report["orders"].as_i64().map(|n| n > 0), Some(true), "the destination got none of the shard's orders");
    assert!(report["freeze_ms"].as_u64().is_some(), "the report says how long writes were held: {report}");

    // The load went on through the move, and nothing went wrong outside it.
    assert!(before >= 10, "only {before} orders before the move: not a meaningful load");
    assert!(after >= storm::CUSTOMERS, "only {after} orders acknowledged after the move");
    let misplaced = seen.misplaced_failures(move_began, move_ended);
    assert!(misplaced.is_empty(), "failures outside the move, or not 503: {misplaced:#?}");
    let unexpected = seen.unexpected_answers();
    assert!(unexpected.is_empty(), "unexpected answers during the load: {unexpected:#?}");
    assert!(seen.stuck.is_empty(), "Idempotency-Keys never answered: {:?}", seen.stuck);

    // Every acknowledged order is there for its owner and replays, and stock
    // matches the orders.
    let lists = storm::verify_acknowledged(&srv, &seen.acked, &shop.tokens()).await;
    shop.assert_stock_settles(&srv, &lists, "the move").await;

    // The shard's rows are in the destination only, and no order is in both.
    let ((in_source, left), (in_dest, arrived)) =
        (orders_at(&urls[0], i64::from(shard)).await, orders_at(&urls[1], i64::from(shard)).await);
    assert_eq!(left, 0, "the source still holds {left} orders of the moved shard");
    assert!(
        arrived as i64 >= report["orders"].as_i64().unwrap_or(i64::MAX),
        "the destination lost orders since the move"
    );
    let (paid_left, paid_arrived) =
        (payments_at(&urls[0], i64::from(shard)).await, payments_at(&urls[1], i64::from(shard)).await);
    assert_eq!(paid_left, 0, "the source still holds payments of the moved shard");
    assert!(paid_arrived > 0, "no payment of the moved shard is in the destination: they live with their orders");
    let both: Vec<&i64> = in_source.intersection(&in_dest).collect();
    assert!(both.is_empty(), "orders in both databases: {both:?}");
    let movers_acked: Vec<i64> = seen
        .acked
        .iter()
        .filter(|a| of(&shop.customers[a.customer].2) == shard)
        .map(|a| a.id.parse().unwrap())
        .collect();
    assert!(!movers_acked.is_empty(), "no order of the moved shard was acknowledged");
    let missing: Vec<&i64> = movers_acked.iter().filter(|id| !in_dest.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged orders of the moved shard not in the destination: {missing:?}");

    // The map as the databases record it, and a shop started on it.
    let (ok, listed, err) = tokio::task::block_in_place(|| shards_command(&shards, &["list"]));
    assert!(ok, "{err}");
    let line = |db: usize| listed.lines().find(|l| l.starts_with(&format!("database {db}:"))).unwrap_or_default();
    let other = 1 - shard;
    assert!(line(1).contains(&format!("moved {shard}")) && line(1).contains(&format!("serving {other}")), "{listed}");
    assert!(line(2).contains("serving") && line(2).contains(&shard.to_string()), "{listed}");
    let srv = Arc::try_unwrap(srv).ok().expect("the storm is done").restart();
    let mover = shop.customers.iter().position(|c| of(&c.2) == shard).unwrap();
    let token = &shop.customers[mover].1;
    assert_eq!(srv.add_to_cart(token, &shop.skus[0], 1).await.status, 200);
    let r = srv.place_order(token, &unique_str("after-restart")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: i64 = id_of(&r.body["id"]).parse().unwrap();
    assert!(
        orders_at(&urls[1], i64::from(shard)).await.0.contains(&id),
        "a new order of the shard is not in its new home"
    );
    let mine = srv.collect_all("/orders", Some(token)).await;
    let expected = lists[mover].len() + 1;
    assert_eq!(mine.len(), expected, "the customer's history after the move");

    // And back to the first database, where its old copy was deleted.
    let (ok, out, err) =
        tokio::task::block_in_place(|| shards_command(&shards, &["move", "--shard", &shard.to_string(), "--to", "1"]));
    assert!(ok, "the move back failed:\n{err}");
    let back: serde_json::Value = serde_json::from_str(out.trim()).expect("the move's JSON report");
    assert_eq!(back["orders"].as_i64(), Some(arrived as i64 + 1), "{back}");
    assert_eq!(srv.collect_all("/orders", Some(token)).await.len(), expected, "the history after moving back");
    assert_eq!(orders_at(&urls[1], i64::from(shard)).await.1, 0, "the second database kept the shard's orders");
    assert_eq!(srv.add_to_cart(token, &shop.skus[0], 1).await.status, 200);
    let r = srv.place_order(token, &unique_str("back")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id: i64 = id_of(&r.body["id"]).parse().unwrap();
    assert!(orders_at(&urls[0], i64::from(shard)).await.0.contains(&id), "a new order is not in the shard's home");
}
