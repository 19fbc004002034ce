//! The two-level cache against a real, private redis-server: two hubs stand
//! for two instances of the shop.

use mercato_platform::cache::{CacheHub, CacheOptions, Tiered};
use mercato_platform::redis::testing::{RedisServer, binary};
use mercato_platform::redis::{Redis, RedisOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn instance(url: &str) -> CacheHub {
    let redis = Redis::open(
        url,
        RedisOptions {
            timeout: Duration::from_millis(200),
            breaker_failures: 2,
            breaker_open: Duration::from_millis(300),
        },
    )
    .unwrap();
    let hub = CacheHub::new(Some(redis), 8, CacheOptions::default());
    hub.spawn_listener();
    hub
}

async fn get(cache: &Tiered<i64, String>, key: i64, source: &str, loads: &AtomicUsize) -> Option<String> {
    let source = source.to_string();
    cache
        .get_or_load(&key, || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(source))
        })
        .await
        .unwrap()
        .map(|v| v.to_string())
}

macro_rules! require_redis {
    () => {
        if binary().is_none() {
            eprintln!("SKIPPED: redis-server not found; install it (apt-get install redis-server) to run this test");
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_on_one_instance_serves_the_other_and_an_invalidation_reaches_both() {
    require_redis!();
    let server = RedisServer::start();
    let (a, b) = (instance(&server.url()), instance(&server.url()));
    let (ca, cb): (Tiered<i64, String>, Tiered<i64, String>) = (a.tiered("p"), b.tiered("p"));
    tokio::time::sleep(Duration::from_millis(200)).await; // listeners subscribed
    let loads = AtomicUsize::new(0);

    assert_eq!(get(&ca, 1, "v1", &loads).await.as_deref(), Some("v1"));
    assert_eq!(get(&cb, 1, "from-db", &loads).await.as_deref(), Some("v1"), "B must be served from L2");
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // A writes: B's L1 copy must go within a second, without B asking Redis.
    ca.invalidate(&1).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if cb.peek(&1).is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "B still holds the old value after 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(&cb, 1, "v2", &loads).await.as_deref(), Some("v2"));
    assert_eq!(get(&ca, 1, "unused", &loads).await.as_deref(), Some("v2"), "A reads B's fresh fill from L2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_fill_racing_an_invalidation_does_not_reach_redis() {
    require_redis!();
    let server = RedisServer::start();
    let (a, b) = (instance(&server.url()), instance(&server.url()));
    let (ca, cb): (Tiered<i64, String>, Tiered<i64, String>) = (a.tiered("p"), b.tiered("p"));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = ca.clone();
    let slow = tokio::spawn(async move {
        reader
            .get_or_load(&5, || async move {
                let _ = started_tx.send(());
                let _ = go_rx.await; // read "old" from the database, then stall
                Ok(Some("old".to_string()))
            })
            .await
    });
    started_rx.await.unwrap();
    cb.invalidate(&5).await; // B's write commits while A's read is in flight
    go_tx.send(()).unwrap();
    slow.await.unwrap().unwrap();
    let loads = AtomicUsize::new(0);
    assert_eq!(get(&cb, 5, "new", &loads).await.as_deref(), Some("new"), "the stale fill must have been refused");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_is_skipped_and_used_again_when_it_returns() {
    require_redis!();
    let mut server = RedisServer::start();
    let a = instance(&server.url());
    let ca: Tiered<i64, String> = a.tiered("p");
    let loads = Arc::new(AtomicUsize::new(0));
    server.kill();
    let started = Instant::now();
    for i in 0..200 {
        assert_eq!(get(&ca, i, "db", &loads).await.as_deref(), Some("db"));
    }
    // Breaker: a couple of timeouts at most, then Redis is skipped.
    assert!(started.elapsed() < Duration::from_secs(3), "200 reads took {:?} with Redis down", started.elapsed());
    assert_eq!(loads.load(Ordering::SeqCst), 200);

    server.restart();
    let b = instance(&server.url());
    let cb: Tiered<i64, String> = b.tiered("p");
    let deadline = Instant::now() + Duration::from_secs(5);
    // Once the breaker lets a probe through, A fills Redis again and B reads it.
    for key in 1000.. {
        get(&ca, key, "filled-by-a", &loads).await;
        let before = loads.load(Ordering::SeqCst);
        let got = get(&cb, key, "from-db", &loads).await;
        if got.as_deref() == Some("filled-by-a") && loads.load(Ordering::SeqCst) == before {
            break;
        }
        assert!(Instant::now() < deadline, "A never used Redis again after it came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
