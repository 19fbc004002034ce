//! Fixed-window counters for abuse limits (login failures per account and per
//! address). With Redis configured the counters are shared, so that spreading
//! attempts over several instances does not multiply the limit; the
//! in-process counters stand in while Redis is unreachable (the limit then
//! holds per instance, which is still a limit).

use crate::redis::Redis;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct RateLimiter {
    window: Duration,
    counters: Cache<String, Arc<parking_lot::Mutex<(Instant, u32)>>>,
    redis: Option<Redis>,
}

fn redis_key(key: &str) -> String {
    format!("mercato:rl:{key}")
}

/// KEYS: counter. ARGV: window ms. The window starts at the first failure.
fn record_script() -> &'static redis::Script {
    static S: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        redis::Script::new(
            r"local n = redis.call('INCR', KEYS[1])
              if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
              return n",
        )
    })
}

impl RateLimiter {
    pub fn new(window: Duration, redis: Option<Redis>) -> Self {
        RateLimiter { window, counters: Cache::builder().max_capacity(100_000).time_to_live(window).build(), redis }
    }

    /// Seconds until `key` may try again, if it has used up `limit` in this window.
    pub async fn blocked(&self, key: &str, limit: u32) -> Option<u64> {
        if let Some(redis) = &self.redis {
            let k = redis_key(key);
            let shared = redis
                .run("ratelimit.get", |mut c| async move {
                    redis::pipe().get(&k).pttl(&k).query_async::<(Option<u32>, i64)>(&mut c).await
                })
                .await;
            if let Some((count, ttl_ms)) = shared {
                return (count.unwrap_or(0) >= limit && ttl_ms > 0).then(|| (ttl_ms as u64).div_ceil(1000).max(1));
            }
        }
        let entry = self.counters.get(key)?;
        let (start, count) = *entry.lock();
        let elapsed = start.elapsed();
        if elapsed >= self.window || count < limit {
            return None;
        }
        Some((self.window - elapsed).as_secs().max(1))
    }

    pub async fn record(&self, key: &str) {
        // Always counted locally too: if Redis goes away mid-attack, the local
        // counter already knows about the attempts made through this instance.
        let entry = self.counters.get_with(key.to_string(), || Arc::new(parking_lot::Mutex::new((Instant::now(), 0))));
        {
            let mut guard = entry.lock();
            if guard.0.elapsed() >= self.window {
                *guard = (Instant::now(), 0);
            }
            guard.1 += 1;
        }
        if let Some(redis) = &self.redis {
            let (k, window) = (redis_key(key), self.window.as_millis() as u64);
            redis
                .run("ratelimit.record", |mut c| async move {
                    record_script().key(k).arg(window).invoke_async::<i64>(&mut c).await
                })
                .await;
        }
    }

    pub async fn reset(&self, key: &str) {
        self.counters.invalidate(key);
        if let Some(redis) = &self.redis {
            let k = redis_key(key);
            redis
                .run(
                    "ratelimit.reset",
                    |mut c| async move { redis::cmd("DEL").arg(k).query_async::<i64>(&mut c).await },
                )
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn blocks_after_the_limit_until_reset(rl: RateLimiter) {
        for _ in 0..3 {
            assert!(rl.blocked("a", 3).await.is_none());
            rl.record("a").await;
        }
        assert!(rl.blocked("a", 3).await.is_some());
        assert!(rl.blocked("b", 3).await.is_none());
        rl.reset("a").await;
        assert!(rl.blocked("a", 3).await.is_none());
    }

    #[tokio::test]
    async fn in_process() {
        blocks_after_the_limit_until_reset(RateLimiter::new(Duration::from_secs(60), None)).await;
    }

    #[tokio::test]
    async fn shared_through_redis_by_two_instances() {
        if crate::redis::testing::binary().is_none() {
            eprintln!("SKIPPED: redis-server not found");
            return;
        }
        let server = crate::redis::testing::RedisServer::start();
        let open = || Some(Redis::open(&server.url(), Default::default()).unwrap());
        blocks_after_the_limit_until_reset(RateLimiter::new(Duration::from_secs(60), open())).await;
        let (a, b) =
            (RateLimiter::new(Duration::from_secs(60), open()), RateLimiter::new(Duration::from_secs(60), open()));
        a.record("k").await;
        b.record("k").await;
        assert!(a.blocked("k", 3).await.is_none());
        b.record("k").await;
        let wait = a.blocked("k", 3).await.expect("3 failures across two instances reach the limit of 3");
        assert!((1..=60).contains(&wait));
    }
}
