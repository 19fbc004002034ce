//! The outbox relay with several instances on one database: effects run once
//! for the fleet, projections on every instance, a failing subscriber holds
//! back only itself, and a row whose transaction commits late is not
//! skipped. Runs on PostgreSQL too when `MERCATO_TEST_POSTGRES_URL` is set
//! (CI sets it), where transactions really do commit out of id order.

use mercato_core::Error;
use mercato_platform::events::{EventBus, Outboxes, Relay, RelayOptions, emit, spawn_relay};
use mercato_platform::{Databases, Db, db::testing, params};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<HashMap<i64, usize>>>;

async fn database(dir: &std::path::Path) -> Db {
    let db = testing::fresh(dir);
    db.migrate("platform", mercato_platform::MIGRATIONS).await.unwrap();
    db
}

fn options(holder: &str) -> RelayOptions {
    let mut o = RelayOptions::new(holder);
    o.lease = Duration::from_millis(1500);
    o.poll = Duration::from_millis(50);
    o.batch = 64;
    o
}

/// Counts, per event id, the calls of a subscriber.
fn counter(seen: &Seen) -> impl Fn(mercato_platform::events::Event) -> std::future::Ready<Result<(), Error>> + use<> {
    let seen = seen.clone();
    move |e| {
        *seen.lock().entry(e.id).or_default() += 1;
        std::future::ready(Ok(()))
    }
}

async fn emit_many(db: &Db, kind: &'static str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for chunk in 0..n.div_ceil(10) {
        let k = (n - chunk * 10).min(10);
        let rows = db
            .write(move |tx| {
                let mut ids = Vec::new();
                for i in 0..k {
                    emit(tx, "order", &i.to_string(), kind, &serde_json::json!({ "i": i }))?;
                    ids.push(tx.query_one("SELECT MAX(id) FROM outbox", params![])?.int(0)?);
                }
                Ok(ids)
            })
            .await
            .unwrap();
        ids.extend(rows.into_iter().map(|id| id * 16));
    }
    ids
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_run_once_for_the_fleet_and_projections_on_every_instance() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let (effect, proj_a, proj_b): (Seen, Seen, Seen) = Default::default();
    let (a, b) = (EventBus::new(), EventBus::new());
    for (bus, proj) in [(&a, &proj_a), (&b, &proj_b)] {
        bus.subscribe("restock", &["order."], counter(&effect));
        bus.project("index", &["order."], counter(proj));
    }
    let relays =
        [spawn_relay(db.clone(), 0, a.clone(), options("a")), spawn_relay(db.clone(), 0, b.clone(), options("b"))];
    tokio::time::sleep(Duration::from_millis(200)).await; // both relays have read the head

    // Two writers, as two instances taking orders.
    let (w1, w2) = (emit_many(&db, "order.placed", 300), emit_many(&db, "order.paid", 300));
    let (mut ids, more) = tokio::join!(w1, w2);
    ids.extend(more);
    a.wake();
    b.wake();
    let n = ids.len();
    until("every event reached every subscriber", Duration::from_secs(30), || {
        effect.lock().len() == n && proj_a.lock().len() == n && proj_b.lock().len() == n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // any repeat would show now
    for id in &ids {
        assert_eq!(effect.lock().get(id), Some(&1), "the effect ran once for the fleet for event {id}");
        assert_eq!(proj_a.lock().get(id), Some(&1), "instance a projected event {id} once");
        assert_eq!(proj_b.lock().get(id), Some(&1), "instance b projected event {id} once");
    }
    relays.iter().for_each(|r| r.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_always_fails_is_dead_lettered_and_holds_back_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let (fine, broken_calls): (Seen, Seen) = Default::default();
    let mended = Arc::new(AtomicBool::new(false));
    let bus = EventBus::new();
    bus.subscribe("fine", &[""], counter(&fine));
    let (calls, ok) = (broken_calls.clone(), mended.clone());
    bus.subscribe("broken", &["order.paid"], move |e| {
        *calls.lock().entry(e.id).or_default() += 1;
        let ok = ok.load(Ordering::SeqCst);
        async move { if ok { Ok(()) } else { Err(Error::unavailable("the downstream is down")) } }
    });
    let mut opts = options("only");
    opts.max_attempts = 3;
    opts.retry_base = Duration::from_millis(100);
    let relay = spawn_relay(db.clone(), 0, bus.clone(), opts);

    let paid = emit_many(&db, "order.paid", 4).await;
    let placed = emit_many(&db, "order.placed", 60).await;
    bus.wake();
    let total = paid.len() + placed.len();
    until("the healthy subscriber handled everything", Duration::from_secs(10), || fine.lock().len() == total).await;
    let outboxes = Outboxes::new(Databases::single(db.clone()), bus.clone());
    let dead_so_far = outboxes.dead_letters(100).await.unwrap().len();
    assert!(dead_so_far < paid.len(), "the healthy subscriber finished while the broken one was still retrying");

    until("every event the broken subscriber wants is dead-lettered", Duration::from_secs(20), || {
        broken_calls.lock().len() == paid.len() && broken_calls.lock().values().all(|n| *n == 3)
    })
    .await;
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = outboxes.dead_letters(100).await.unwrap();
        if letters.len() == paid.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(letters.len(), paid.len());
    assert!(
        letters.iter().all(|d| d.subscriber == "broken" && d.attempts == 3 && d.error.contains("downstream is down"))
    );
    let mut dead_ids: Vec<i64> = letters.iter().map(|d| d.event.id).collect();
    dead_ids.sort();
    assert_eq!(dead_ids, paid);

    // Still broken: the redrive says so and the letter stays, one attempt more.
    let err = outboxes.redrive(paid[0], "broken").await.unwrap_err();
    assert_eq!(err.code, mercato_core::ErrorCode::Conflict);
    let letters = outboxes.dead_letters(100).await.unwrap();
    assert_eq!(letters.iter().find(|d| d.event.id == paid[0]).map(|d| d.attempts), Some(4));

    // Mended: each redrive is handled and its letter is gone.
    mended.store(true, Ordering::SeqCst);
    for id in &paid {
        outboxes.redrive(*id, "broken").await.unwrap();
    }
    assert!(outboxes.dead_letters(100).await.unwrap().is_empty());
    assert_eq!(outboxes.redrive(paid[0], "broken").await.unwrap_err().code, mercato_core::ErrorCode::NotFound);
    assert_eq!(outboxes.redrive(paid[0], "fine").await.unwrap_err().code, mercato_core::ErrorCode::NotFound);

    // And the broken subscriber's cursor went on: a new event reaches it.
    let next = emit_many(&db, "order.paid", 1).await;
    bus.wake();
    until("the mended subscriber takes new events", Duration::from_secs(10), || {
        broken_calls.lock().get(&next[0]) == Some(&1)
    })
    .await;
    relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_relaying_instance_dies_another_takes_over_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let effect: Seen = Default::default();
    let (a, b) = (EventBus::new(), EventBus::new());
    a.subscribe("restock", &[""], counter(&effect));
    b.subscribe("restock", &[""], counter(&effect));
    let first = spawn_relay(db.clone(), 0, a.clone(), options("a"));
    let mut ids = emit_many(&db, "order.paid", 50).await;
    a.wake();
    until("instance a handled the first events", Duration::from_secs(10), || effect.lock().len() == 50).await;
    // ... and wrote its cursor (a death before that write would replay them,
    // which is allowed, but not what this test is about).
    for _ in 0..200 {
        let done = db
            .read(|tx| {
                let head = tx.query_one("SELECT MAX(seq) FROM outbox", params![])?.opt_int(0)?;
                let cursor =
                    tx.query_opt("SELECT position FROM outbox_cursors WHERE subscriber = 'restock'", params![])?;
                Ok(cursor.map(|r| r.int(0)).transpose()? == head)
            })
            .await
            .unwrap();
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // b starts while a still holds the lease: it must not run effects.
    let mut standby = Relay::new(db.clone(), 0, b.clone(), options("b")).await.unwrap();
    standby.pass().await.unwrap();
    assert!(!standby.leading(), "a second instance must not run effects while the first holds the lease");

    first.abort(); // SIGKILL, as far as the database can tell
    ids.extend(emit_many(&db, "order.paid", 50).await);
    let second = spawn_relay(db.clone(), 0, b.clone(), options("b"));
    until("instance b took over and handled the rest", Duration::from_secs(15), || effect.lock().len() == 100).await;
    for id in &ids {
        assert_eq!(effect.lock().get(id), Some(&1), "event {id}: once, neither lost nor repeated");
    }
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_transaction_commits_late_is_still_published() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let effect: Seen = Default::default();
    let bus = EventBus::new();
    bus.subscribe("restock", &[""], counter(&effect));
    let relay = spawn_relay(db.clone(), 0, bus.clone(), options("only"));
    // The slow transaction takes its outbox id first and commits last.
    let slow = {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(|tx| {
                emit(tx, "order", "slow", "order.paid", &serde_json::json!({}))?;
                std::thread::sleep(Duration::from_millis(800));
                Ok(())
            })
            .await
            .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    emit_many(&db, "order.paid", 5).await;
    bus.wake();
    slow.await.unwrap();
    bus.wake();
    until("all six events, the late one included", Duration::from_secs(10), || effect.lock().len() == 6).await;
    relay.abort();
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Ping {
    n: i64,
}

impl mercato_platform::events::DomainEvent for Ping {
    const AGGREGATE: &'static str = "ping";
    const VERSION: u32 = 1;
    const TYPES: &'static [&'static str] = &["ping.sent"];
    fn event_type(&self) -> &'static str {
        "ping.sent"
    }
    fn aggregate_id(&self) -> String {
        self.n.to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_subscribers_read_their_versions_and_dead_letter_newer_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let got: Arc<Mutex<Vec<(i64, i64)>>> = Default::default();
    let bus = EventBus::new();
    let g = got.clone();
    bus.on("pinged", &["ping.sent"], move |e: mercato_platform::events::Received<Ping>| {
        g.lock().push((e.id, e.data.n));
        std::future::ready(Ok(()))
    });
    let mut opts = options("only");
    opts.max_attempts = 2;
    opts.retry_base = Duration::from_millis(20);
    let relay = spawn_relay(db.clone(), 0, bus.clone(), opts);
    db.write(|tx| {
        mercato_platform::events::publish(tx, &Ping { n: 1 })?;
        // A version this build does not know, as from a newer instance
        // during a rolling upgrade.
        mercato_platform::events::publish(tx, &Ping { n: 2 })?;
        tx.execute("UPDATE outbox SET version = 2 WHERE aggregate_id = '2'", params![])?;
        mercato_platform::events::publish(tx, &Ping { n: 3 })?;
        Ok(())
    })
    .await
    .unwrap();
    bus.wake();
    until("versions 1 read, the newer one skipped", Duration::from_secs(10), || got.lock().len() == 2).await;
    assert_eq!(got.lock().iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![1, 3]);
    let outboxes = Outboxes::new(Databases::single(db.clone()), bus.clone());
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = outboxes.dead_letters(10).await.unwrap();
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.version, 2);
    assert!(letters[0].error.contains("reads up to version 1"), "{}", letters[0].error);
    relay.abort();
}
