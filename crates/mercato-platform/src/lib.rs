//! What every Mercato domain shares: configuration, databases, ids, the outbox
//! and event bus, the cache, rate limiting and telemetry.
//!
//! Architecture invariant: this crate knows no domain and no HTTP. Domains
//! depend on it; it never depends on them.

pub mod cache;
pub mod config;
pub mod databases;
pub mod db;
pub mod events;
pub mod fleet;
pub mod idempotency;
pub mod ids;
pub mod ratelimit;
pub mod redis;
pub mod secret;
pub mod shards;
pub mod signature;
pub mod steps;
pub mod telemetry;

pub use databases::Databases;
pub use db::{Db, DbError, Migration, Row, Tx};
/// How background work is told to stop (on SIGTERM, after the drain).
pub use tokio_util::sync::CancellationToken;

/// RFC 3339 UTC timestamp from epoch milliseconds, always with three
/// fractional digits so every timestamp in the API has the same shape.
pub fn rfc3339(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Migrations of the tables the platform itself owns, in every database.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "outbox, inbox, id leases, settings",
        sql: r#"
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            aggregate TEXT NOT NULL,
            aggregate_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            delivered_at INTEGER
        );
        CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL;
        CREATE TABLE inbox (
            consumer TEXT NOT NULL,
            event_id INTEGER NOT NULL,
            processed_at INTEGER NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );
        CREATE TABLE id_nodes (
            node INTEGER PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        );
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
    "#,
    },
    Migration {
        version: 2,
        name: "idempotency keys",
        sql: r#"
        CREATE TABLE idempotency_keys (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            state TEXT NOT NULL,
            status INTEGER,
            headers TEXT,
            body BLOB,
            lease_until INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (scope, key)
        );
        CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
    "#,
    },
    Migration {
        version: 3,
        name: "outbox publication order and event versions, subscriber cursors, dead letters, leases",
        // Rows already delivered keep their id as their place in the order;
        // the rest are sequenced by the relay like any new row.
        sql: r#"
        ALTER TABLE outbox ADD COLUMN seq INTEGER;
        ALTER TABLE outbox ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
        UPDATE outbox SET seq = id WHERE delivered_at IS NOT NULL;
        DROP INDEX outbox_pending;
        ALTER TABLE outbox DROP COLUMN delivered_at;
        CREATE UNIQUE INDEX outbox_seq ON outbox (seq);
        CREATE INDEX outbox_unsequenced ON outbox (id) WHERE seq IS NULL;
        CREATE TABLE outbox_cursors (
            subscriber TEXT PRIMARY KEY,
            position INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            last_error TEXT,
            retry_at INTEGER NOT NULL
        );
        CREATE TABLE outbox_dead (
            subscriber TEXT NOT NULL,
            event_id INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT NOT NULL,
            dead_at INTEGER NOT NULL,
            PRIMARY KEY (subscriber, event_id)
        );
        CREATE INDEX inbox_age ON inbox (processed_at);
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        );
    "#,
    },
];

/// Takes or renews the lease `name` in `db` for `holder` until `ttl_ms` from
/// now. Returns false while another holder's lease runs. The lease is how
/// work that must happen once for the whole fleet (an outbox relay's
/// effects, a sweeper) picks one instance without a coordinator; its holder
/// must still write conditionally, since a lease can lapse mid-work.
pub async fn try_lease(db: &Db, name: &'static str, holder: &str, ttl_ms: i64) -> mercato_core::Result<bool> {
    let holder = holder.to_string();
    db.write(move |tx| {
        let now = now_ms();
        let taken = tx.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
            params![name, &holder, now + ttl_ms, now],
        )?;
        Ok(taken == 1)
    })
    .await
}

/// Renews a lease for as long as the work that holds it runs, so that the
/// lease can be short: if the process dies, the lease lapses within one
/// length and another request (or the sweeper) may take the work over,
/// instead of waiting for a length sized to outlast the slowest request.
pub struct KeepAlive {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// Calls `renew` every `every` (a third of the lease, so two renewals
    /// may fail before it lapses) until [`KeepAlive::stop`] or drop.
    pub fn start<F, Fut>(every: std::time::Duration, what: &'static str, renew: F) -> KeepAlive
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = mercato_core::Result<()>> + Send,
    {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                // Never cut in the middle: `stop` waits for a renewal under
                // way, so none lands after the holder let the lease go.
                if let Err(e) = renew().await {
                    tracing::warn!(lease = what, error = %e, "renewing a lease failed; it lapses unless the next renewal lands");
                }
            }
        });
        KeepAlive { stop, task }
    }

    /// Stops renewing; returns once no renewal is under way.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Gives up the lease `name` if `holder` has it, so that another instance
/// takes the work over at once rather than when the lease runs out (a
/// draining instance hands its leases on this way).
pub async fn release_lease(db: &Db, name: &'static str, holder: &str) -> mercato_core::Result<()> {
    let holder = holder.to_string();
    db.write(move |tx| {
        tx.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", params![name, &holder])?;
        Ok(())
    })
    .await
}

/// Reads a setting shared by every instance (generated secrets live here so a
/// second instance sees the same values as the first).
pub async fn setting_get_or_init(
    db: &Db,
    key: &'static str,
    init: impl FnOnce() -> String,
) -> mercato_core::Result<String> {
    let candidate = init();
    db.write(move |tx| {
        tx.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            crate::params![key, &candidate],
        )?;
        tx.query_one("SELECT value FROM settings WHERE key = $1", crate::params![key])?.text(0)
    })
    .await
}

/// Guards cache fills against a classic race: a read that started before a
/// write must not store what it read after the write invalidated the cache.
/// Readers take `current()` before reading the store and fill only if
/// `unchanged(seen)`; writers `bump()` when they invalidate.
#[derive(Default)]
pub struct Generation(std::sync::atomic::AtomicU64);

impl Generation {
    pub fn current(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
    pub fn bump(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
    pub fn unchanged(&self, seen: u64) -> bool {
        self.current() == seen
    }
}

/// A [`Generation`] per key (hashed into shards, 256 by default), for caches
/// whose writes touch a few keys at a time: a write to one key does not stop
/// fills of the others (except the few sharing its shard).
///
/// An `epoch` counts every bump of any key. A reader that does not yet know
/// which keys it will read (a product found by slug) takes the epoch before
/// reading and fills only if it is unchanged afterwards.
pub struct KeyedGeneration {
    shards: Box<[Generation]>,
    epoch: Generation,
}

impl Default for KeyedGeneration {
    fn default() -> Self {
        KeyedGeneration::with_shards(256)
    }
}

impl KeyedGeneration {
    pub fn with_shards(n: usize) -> Self {
        KeyedGeneration { shards: (0..n.max(1)).map(|_| Generation::default()).collect(), epoch: Generation::default() }
    }
    fn shard<K: std::hash::Hash + ?Sized>(&self, key: &K) -> &Generation {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key);
        &self.shards[(h % self.shards.len() as u64) as usize]
    }
    pub fn current<K: std::hash::Hash + ?Sized>(&self, key: &K) -> u64 {
        self.shard(key).current()
    }
    pub fn bump<K: std::hash::Hash + ?Sized>(&self, key: &K) {
        // The epoch first: a reader that finds it unchanged after sampling a
        // key's generation sampled it before this bump.
        self.epoch.bump();
        self.shard(key).bump();
    }
    /// Every key at once (a cache dropped whole).
    pub fn bump_all(&self) {
        self.epoch.bump();
        self.shards.iter().for_each(Generation::bump);
    }
    /// Moves whenever any key's generation does, just before it.
    pub fn epoch(&self) -> u64 {
        self.epoch.current()
    }
    pub fn unchanged<K: std::hash::Hash + ?Sized>(&self, key: &K, seen: u64) -> bool {
        self.shard(key).unchanged(seen)
    }
}

/// 32 random bytes, base64url without padding: for tokens and secrets.
pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 hex digest: tokens are stored hashed, so a database leak does not
/// leak usable credentials.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
