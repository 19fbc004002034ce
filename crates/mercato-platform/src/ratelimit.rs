//! Fixed-window counters for abuse limits (login failures per account and per
//! address). The in-process store is right for one instance; a shared store
//! (Redis) takes its place when several instances serve one shop.

use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct RateLimiter {
    window: Duration,
    counters: Cache<String, Arc<parking_lot::Mutex<(Instant, u32)>>>,
}

impl RateLimiter {
    pub fn new(window: Duration) -> Self {
        RateLimiter { window, counters: Cache::builder().max_capacity(100_000).time_to_live(window).build() }
    }

    /// Seconds until `key` may try again, if it has used up `limit` in this window.
    pub fn blocked(&self, key: &str, limit: u32) -> Option<u64> {
        let entry = self.counters.get(key)?;
        let (start, count) = *entry.lock();
        let elapsed = start.elapsed();
        if elapsed >= self.window || count < limit {
            return None;
        }
        Some((self.window - elapsed).as_secs().max(1))
    }

    pub fn record(&self, key: &str) {
        let entry = self.counters.get_with(key.to_string(), || Arc::new(parking_lot::Mutex::new((Instant::now(), 0))));
        let mut guard = entry.lock();
        if guard.0.elapsed() >= self.window {
            *guard = (Instant::now(), 0);
        }
        guard.1 += 1;
    }

    pub fn reset(&self, key: &str) {
        self.counters.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_reset() {
        let rl = RateLimiter::new(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(rl.blocked("a", 3).is_none());
            rl.record("a");
        }
        assert!(rl.blocked("a", 3).is_some());
        assert!(rl.blocked("b", 3).is_none());
        rl.reset("a");
        assert!(rl.blocked("a", 3).is_none());
    }
}
