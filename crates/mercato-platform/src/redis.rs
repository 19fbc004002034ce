//! The shared Redis connection: one multiplexed connection per process that
//! reconnects by itself, a per-command timeout, and a circuit breaker so that
//! a slow or dead Redis costs the shop one timeout per breaker period instead
//! of one per request.
//!
//! Everything that uses Redis here treats it as an accelerator or as a
//! coordination point with a database behind it: callers get `None` when Redis
//! is skipped or failed, and fall back to their source of truth.

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Longest wait for one command before it counts as a failure.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips Redis before letting one probe through.
    pub breaker_open: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions { timeout: Duration::from_millis(100), breaker_failures: 3, breaker_open: Duration::from_secs(1) }
    }
}

/// Closed -> (n failures) -> open for `open` -> one probe (half-open) -> closed
/// on success, open again on failure.
struct Breaker {
    failures: AtomicU32,
    threshold: u32,
    /// Milliseconds since `origin` until which Redis is skipped; 0 when closed.
    open_until: AtomicU64,
    open_for: Duration,
    origin: Instant,
}

impl Breaker {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    /// Whether a command may go to Redis now. While open, the first caller
    /// after the period claims the probe by pushing the deadline forward, so
    /// exactly one request pays for finding out whether Redis is back.
    fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now();
        now >= until
            && self
                .open_until
                .compare_exchange(until, now + self.open_for.as_millis() as u64, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Release);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("redis is reachable again; circuit closed");
            metrics::gauge!("mercato_redis_breaker_open").set(0.0);
        }
    }

    fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold {
            let until = self.now() + self.open_for.as_millis() as u64;
            if self.open_until.swap(until, Ordering::AcqRel) == 0 {
                tracing::warn!(failures = n, "redis failing; circuit open, serving without it");
                metrics::gauge!("mercato_redis_breaker_open").set(1.0);
            }
        }
    }

    fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
    breaker: Breaker,
}

impl Redis {
    /// Does not connect: the first command does, so the shop starts (and
    /// serves from its database) while Redis is still down.
    pub fn open(url: &str, opts: RedisOptions) -> Result<Redis, mercato_core::Error> {
        let client = redis::Client::open(url)
            .map_err(|e| mercato_core::Error::internal(format!("cache.redis_url is not a Redis URL: {e}")))?;
        Ok(Redis {
            inner: Arc::new(Inner {
                client,
                conn: Mutex::new(None),
                timeout: opts.timeout,
                breaker: Breaker {
                    failures: AtomicU32::new(0),
                    threshold: opts.breaker_failures.max(1),
                    open_until: AtomicU64::new(0),
                    open_for: opts.breaker_open,
                    origin: Instant::now(),
                },
            }),
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    pub fn available(&self) -> bool {
        !self.inner.breaker.is_open()
    }

    fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let mut slot = self.inner.conn.lock();
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let c = ConnectionManager::new_lazy_with_config(self.inner.client.clone(), config)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one command (or script, or pipeline) unless the breaker is open.
    /// `None` means "no answer from Redis": the caller uses its fallback.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.try_run(op, f).await.ok()
    }

    /// Like [`run`](Self::run), but tells a skipped call (breaker open) from a
    /// failed one, for callers that must not guess (flash-sale stock).
    pub async fn try_run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.inner.breaker.allow() {
            metrics::counter!("mercato_redis_skipped_total", "op" => op).increment(1);
            return Err(RedisUnavailable::Skipped);
        }
        let conn = match self.connection() {
            Ok(c) => c,
            Err(e) => {
                self.inner.breaker.failure();
                tracing::debug!(op, error = %e, "redis connection failed");
                return Err(RedisUnavailable::Failed);
            }
        };
        match tokio::time::timeout(self.inner.timeout, f(conn)).await {
            Ok(Ok(v)) => {
                self.inner.breaker.success();
                Ok(v)
            }
            Ok(Err(e))
                if !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()) =>
            {
                // The server answered (a script error, a wrong type): Redis is
                // up, the command was wrong. Not the breaker's business.
                self.inner.breaker.success();
                tracing::warn!(op, error = %e, "redis command failed");
                metrics::counter!("mercato_redis_errors_total", "op" => op).increment(1);
                Err(RedisUnavailable::Failed)
            }
            Ok(Err(e)) => {
                self.inner.breaker.failure();
                tracing::debug!(op, error = %e, "redis unreachable");
                metrics::counter!("mercato_redis_errors_total", "op" => op).increment(1);
                Err(RedisUnavailable::Failed)
            }
            Err(_) => {
                self.inner.breaker.failure();
                metrics::counter!("mercato_redis_errors_total", "op" => op).increment(1);
                Err(RedisUnavailable::Failed)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisUnavailable {
    /// The breaker is open: nothing was sent.
    Skipped,
    /// Sent, but no usable answer (timeout, connection lost, error reply):
    /// the command may or may not have run.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_ms: u64) -> Breaker {
        Breaker {
            failures: AtomicU32::new(0),
            threshold,
            open_until: AtomicU64::new(0),
            open_for: Duration::from_millis(open_ms),
            origin: Instant::now(),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_lets_one_probe_through() {
        let b = breaker(3, 50);
        b.failure();
        b.failure();
        assert!(b.allow(), "two failures must not open a breaker with threshold 3");
        b.success();
        b.failure();
        b.failure();
        assert!(b.allow(), "a success resets the count");
        b.failure();
        assert!(!b.allow(), "third consecutive failure opens it");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow(), "after the open period one probe goes through");
        assert!(!b.allow(), "only one");
        b.success();
        assert!(b.allow() && b.allow(), "a successful probe closes it");
    }

    #[tokio::test]
    async fn a_dead_server_is_skipped_after_the_threshold() {
        // Port 1 on loopback: nothing listens, connections are refused at once.
        let r = Redis::open(
            "redis://127.0.0.1:1/",
            RedisOptions {
                timeout: Duration::from_millis(200),
                breaker_failures: 2,
                breaker_open: Duration::from_secs(60),
            },
        )
        .unwrap();
        for _ in 0..2 {
            let got =
                r.try_run("ping", |mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await;
            assert_eq!(got, Err(RedisUnavailable::Failed));
        }
        let got =
            r.try_run("ping", |mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await;
        assert_eq!(got, Err(RedisUnavailable::Skipped));
        assert!(!r.available());
    }
}

/// A private `redis-server` for tests that kill or restart Redis: own port, no
/// persistence, stopped on drop. The machine's shared Redis stays untouched.
pub mod testing {
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct RedisServer {
        pub port: u16,
        child: Option<Child>,
    }

    /// Where `redis-server` is, or `None` (the caller skips, saying why).
    pub fn binary() -> Option<String> {
        let candidates = [std::env::var("MERCATO_TEST_REDIS_SERVER").unwrap_or_default(), "redis-server".into()];
        candidates
            .into_iter()
            .filter(|c| !c.is_empty())
            .find(|c| Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())
    }

    impl RedisServer {
        /// Starts one on a free port; panics if `redis-server` is missing
        /// (check [`binary`] first to skip instead).
        pub fn start() -> RedisServer {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            let mut s = RedisServer { port, child: None };
            s.restart();
            s
        }

        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }

        /// SIGKILL: no goodbye to clients, nothing saved (there is nothing to save).
        pub fn kill(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        /// (Re)starts on the same port, empty, and waits until it answers.
        pub fn restart(&mut self) {
            self.kill();
            let bin = binary().expect("redis-server not found (apt-get install redis-server)");
            let child = Command::new(bin)
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting redis-server");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.kill();
        }
    }
}
