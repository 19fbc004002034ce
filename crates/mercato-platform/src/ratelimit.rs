//! Throttles for abuse limits (login attempts per account and client, and per
//! client). An attempt is counted *before* it is made, atomically, so a
//! burst of parallel attempts cannot all pass a check made before any of
//! them is counted. The first `free` attempts pass at once; each one after
//! must wait twice as long after the previous attempt as the one before it
//! (1 s, 2 s, 4 s... up to the window), and the count is forgotten after a
//! window without attempts. With Redis configured the counts are shared, so
//! that spreading attempts over several instances does not multiply them;
//! the in-process counts stand in while Redis is unreachable (the throttle
//! then holds per instance, which is still a throttle).

use crate::redis::Redis;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct RateLimiter {
    window: Duration,
    /// Attempts counted, and when the last was let through.
    counters: Cache<String, Arc<parking_lot::Mutex<(u32, Instant)>>>,
    redis: Option<Redis>,
}

fn redis_key(key: &str) -> String {
    format!("mercato:rl2:{key}")
}

/// KEYS: the key's hash (n, last). ARGV: free attempts, window ms. Returns
/// 0 when the attempt is let through (and counted), else the ms to wait.
/// The server's clock, so that instances agree.
fn attempt_script() -> &'static redis::Script {
    static S: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        redis::Script::new(
            r"local t = redis.call('TIME')
              local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
              local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
              local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
              local free, window = tonumber(ARGV[1]), tonumber(ARGV[2])
              if n >= free then
                local delay = math.min(1000 * 2 ^ math.min(n - free, 30), window)
                if now - last < delay then return delay - (now - last) end
              end
              redis.call('HSET', KEYS[1], 'n', n + 1, 'last', now)
              redis.call('PEXPIRE', KEYS[1], window)
              return 0",
        )
    })
}

/// KEYS: the key's hash. Takes one counted attempt back, never below 0.
fn refund_script() -> &'static redis::Script {
    static S: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        redis::Script::new(
            r"if tonumber(redis.call('HGET', KEYS[1], 'n') or '0') > 0 then
                return redis.call('HINCRBY', KEYS[1], 'n', -1) end
              return 0",
        )
    })
}

/// How long the attempt after `n` counted ones waits after the last, when
/// `free` pass at once.
fn delay(n: u32, free: u32, window: Duration) -> Duration {
    if n < free { Duration::ZERO } else { Duration::from_secs(1u64 << (n - free).min(30)).min(window) }
}

impl RateLimiter {
    pub fn new(window: Duration, redis: Option<Redis>) -> Self {
        RateLimiter { window, counters: Cache::builder().max_capacity(100_000).time_to_live(window).build(), redis }
    }

    /// Counts one attempt for `key` and lets it through, or says how many
    /// seconds to wait (the attempt is then not counted).
    pub async fn attempt(&self, key: &str, free: u32) -> Result<(), u64> {
        // Always counted locally too: if Redis goes away mid-attack, the
        // local count already knows the attempts made through this instance.
        let local = {
            let entry =
                self.counters.get_with(key.to_string(), || Arc::new(parking_lot::Mutex::new((0, Instant::now()))));
            let mut state = entry.lock();
            if state.1.elapsed() >= self.window {
                *state = (0, Instant::now());
            }
            let wait = delay(state.0, free, self.window).saturating_sub(state.1.elapsed());
            if wait.is_zero() {
                *state = (state.0 + 1, Instant::now());
                Ok(())
            } else {
                Err(wait.as_millis() as u64)
            }
        };
        let shared = match &self.redis {
            Some(redis) => {
                let (k, window) = (redis_key(key), self.window.as_millis() as u64);
                redis
                    .run("ratelimit.attempt", |mut c| async move {
                        attempt_script().key(k).arg(free).arg(window).invoke_async::<u64>(&mut c).await
                    })
                    .await
            }
            None => None,
        };
        match shared.map(|wait| if wait == 0 { Ok(()) } else { Err(wait) }).unwrap_or(local) {
            Ok(()) => Ok(()),
            Err(ms) => Err(ms.div_ceil(1000).max(1)),
        }
    }

    /// Gives back one counted attempt (one that should not count against
    /// the key, such as a success from a shared address).
    pub async fn refund(&self, key: &str) {
        if let Some(entry) = self.counters.get(key) {
            let mut state = entry.lock();
            state.0 = state.0.saturating_sub(1);
        }
        if let Some(redis) = &self.redis {
            let k = redis_key(key);
            redis
                .run(
                    "ratelimit.refund",
                    |mut c| async move { refund_script().key(k).invoke_async::<i64>(&mut c).await },
                )
                .await;
        }
    }

    /// Forgets `key`'s attempts.
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

    async fn counts_before_and_grows_the_wait(rl: RateLimiter) {
        for _ in 0..3 {
            assert_eq!(rl.attempt("a", 3).await, Ok(()));
        }
        let wait = rl.attempt("a", 3).await.expect_err("the fourth attempt at once waits");
        assert_eq!(wait, 1, "the first wait is a second");
        assert_eq!(rl.attempt("b", 3).await, Ok(()), "another key is not affected");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(rl.attempt("a", 3).await, Ok(()), "after the wait, one more");
        assert_eq!(rl.attempt("a", 3).await, Err(2), "then twice as long");
        rl.refund("a").await;
        rl.reset("a").await;
        assert_eq!(rl.attempt("a", 3).await, Ok(()));
    }

    #[tokio::test]
    async fn in_process() {
        counts_before_and_grows_the_wait(RateLimiter::new(Duration::from_secs(60), None)).await;
    }

    #[tokio::test]
    async fn parallel_attempts_cannot_all_pass() {
        let rl = RateLimiter::new(Duration::from_secs(60), None);
        let tries = futures_util::future::join_all((0..200).map(|_| rl.attempt("k", 5))).await;
        assert_eq!(tries.iter().filter(|t| t.is_ok()).count(), 5);
    }

    #[tokio::test]
    async fn shared_through_redis_by_two_instances() {
        if crate::redis::testing::binary().is_none() {
            eprintln!("SKIPPED: redis-server not found");
            return;
        }
        let server = crate::redis::testing::RedisServer::start();
        let open = || Some(Redis::open(&server.url(), Default::default()).unwrap());
        counts_before_and_grows_the_wait(RateLimiter::new(Duration::from_secs(60), open())).await;
        let (a, b) =
            (RateLimiter::new(Duration::from_secs(60), open()), RateLimiter::new(Duration::from_secs(60), open()));
        let tries = futures_util::future::join_all((0..100).map(|i| {
            let l = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move { l.attempt("k", 3).await }
        }))
        .await;
        assert_eq!(tries.iter().filter(|t| t.is_ok()).count(), 3, "3 attempts across two instances, in parallel");
    }
}
