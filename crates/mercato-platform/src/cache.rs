//! Cache-aside in two levels: L1 in process (moka, bounded, short TTL) and,
//! when configured, L2 in Redis shared by every instance.
//!
//! The rules each piece is here for:
//! - **Freshness.** A write calls [`Tiered::invalidate`]: the local L1 entry is
//!   dropped at once; in Redis one script bumps the key's version, deletes the
//!   entry and publishes the key, and every instance's [`Invalidations`]
//!   listener drops its L1 copy.
//! - **No stale fill.** A reader that loaded from the database before a write
//!   must not store what it read after the write's invalidation. In L1 each
//!   entry remembers the local generation it was loaded under and is ignored
//!   once that generation moves; in L2 a fill is a compare-and-set on the
//!   key's version, read before the database was.
//! - **No stale fill from a replica.** When the database has read replicas
//!   (see [`Tiered::reads_from`]), an invalidation carries the commit
//!   position of the write behind it (in L1 per key shard, in Redis beside
//!   the key's version and in the message), and a fill's load runs under the
//!   highest position it was told of for that key: a replica that has not
//!   replayed it does not serve the load.
//! - **Breakdown.** Concurrent misses of one key share one load (single
//!   flight), and loads against the database are bounded by a semaphore.
//! - **Penetration.** "Does not exist" is cached too, for a shorter TTL; a
//!   membership filter in front (see the catalog) stops ids that were never
//!   minted.
//! - **Avalanche.** L2 TTLs carry random jitter; a slow or dead Redis is
//!   skipped by the [`Redis`] circuit breaker and the shop serves from L1 and
//!   the database. Invalidations that could not reach Redis are retried when it
//!   is back; until then its entries can be stale for at most their TTL.

use crate::Db;
use crate::redis::Redis;
use mercato_core::Error;
use moka::sync::Cache;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

/// Redis channel carrying invalidated keys as `namespace \x1f key`.
const CHANNEL: &str = "mercato:cache:invalidate";
const SEP: char = '\u{1f}';

#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub l1_max_entries: u64,
    /// Memory budget of an L1 made with [`CacheHub::tiered_weighed`].
    pub l1_max_bytes: u64,
    pub l1_ttl: Duration,
    pub l2_ttl: Duration,
    pub jitter_percent: u64,
    pub negative_ttl: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            l1_max_entries: 50_000,
            l1_max_bytes: 64 << 20,
            l1_ttl: Duration::from_secs(60),
            l2_ttl: Duration::from_secs(300),
            jitter_percent: 20,
            negative_ttl: Duration::from_secs(30),
        }
    }
}

/// Drops one key (`Some`) or everything (`None`) from one cache's L1; the
/// number is the invalidating write's commit position (0: unknown).
type Handler = Arc<dyn Fn(Option<&str>, u64) + Send + Sync>;

type Watcher = Arc<dyn Fn(&str) + Send + Sync>;

/// What every cache of one process shares: the Redis handle, the bound on
/// concurrent database loads, and the listener that fans invalidations out.
#[derive(Clone)]
pub struct CacheHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    redis: Option<Redis>,
    loads: Semaphore,
    options: CacheOptions,
    /// namespace -> what to do with an invalidated key (or with `None`: drop all).
    handlers: Mutex<HashMap<&'static str, Handler>>,
    /// Extra reactions to keys invalidated by any instance (see `watch`).
    watchers: Mutex<Vec<(&'static str, Watcher)>>,
    /// Invalidations that did not reach Redis (with their commit
    /// positions), retried when it answers again.
    missed: Mutex<HashMap<(&'static str, String), u64>>,
}

impl CacheHub {
    pub fn new(redis: Option<Redis>, max_concurrent_loads: usize, options: CacheOptions) -> CacheHub {
        CacheHub {
            inner: Arc::new(HubInner {
                redis,
                loads: Semaphore::new(max_concurrent_loads.max(1)),
                options,
                handlers: Mutex::new(HashMap::new()),
                watchers: Mutex::new(Vec::new()),
                missed: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn options(&self) -> &CacheOptions {
        &self.inner.options
    }

    pub fn redis(&self) -> Option<&Redis> {
        self.inner.redis.as_ref()
    }

    /// A cache in namespace `ns` (unique per process and per value type).
    pub fn tiered<K, V>(&self, ns: &'static str) -> Tiered<K, V>
    where
        K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.tiered_sized(ns, self.inner.options.l1_max_entries)
    }

    /// Like [`tiered`](Self::tiered) with its own L1 entry bound, for values
    /// much larger than a product (a listing page holds twenty summaries).
    pub fn tiered_sized<K, V>(&self, ns: &'static str, l1_max_entries: u64) -> Tiered<K, V>
    where
        K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let l1 = Cache::builder().max_capacity(l1_max_entries).time_to_live(self.inner.options.l1_ttl).build();
        self.tiered_with(ns, l1)
    }

    /// Like [`tiered`](Self::tiered) with L1 bounded by memory rather than
    /// by entries (`l1_max_bytes`), `weigh` estimating a value's heap bytes:
    /// for values numerous enough that an entry bound would either waste
    /// memory on a small catalog or exhaust it on a large one (products).
    pub fn tiered_weighed<K, V>(&self, ns: &'static str, weigh: fn(&V) -> usize) -> Tiered<K, V>
    where
        K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let o = &self.inner.options;
        let l1 = Cache::builder()
            .max_capacity(o.l1_max_bytes)
            // The entry, its key and moka's bookkeeping (measured: a budget
            // of 64 MB of estimated product bytes cost ~1.4x that in RSS).
            .weigher(move |_: &K, e: &Entry<V>| {
                u32::try_from(300 + e.value.as_deref().map_or(0, weigh)).unwrap_or(u32::MAX)
            })
            .time_to_live(o.l1_ttl)
            .build();
        self.tiered_with(ns, l1)
    }

    fn tiered_with<K, V>(&self, ns: &'static str, l1: Cache<K, Entry<V>>) -> Tiered<K, V>
    where
        K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let t = Tiered {
            inner: Arc::new(TieredInner {
                ns,
                hub: self.clone(),
                l1,
                generations: crate::KeyedGeneration::with_shards(GENERATION_SHARDS),
                floors: Floors::default(),
                source: std::sync::OnceLock::new(),
                flights: SingleFlight::default(),
                epoch: AtomicU64::new(UNKNOWN_EPOCH),
            }),
        };
        let weak = Arc::downgrade(&t.inner);
        self.inner.handlers.lock().insert(
            ns,
            Arc::new(move |key: Option<&str>, lsn: u64| {
                if let Some(inner) = weak.upgrade() {
                    metrics::counter!("mercato_cache_invalidations_total", "cache" => ns, "from" => "redis")
                        .increment(1);
                    match key.map(str::parse::<K>) {
                        Some(Ok(k)) => inner.drop_local(&k, lsn),
                        Some(Err(_)) => {}
                        None => inner.drop_all_local(lsn),
                    }
                }
            }),
        );
        t
    }

    /// Calls `f` with every key of namespace `ns` that any instance
    /// invalidates through Redis (this one included): how per-instance derived
    /// views, such as a local search index, hear about writes made elsewhere.
    pub fn watch(&self, ns: &'static str, f: impl Fn(&str) + Send + Sync + 'static) {
        self.inner.watchers.lock().push((ns, Arc::new(f)));
    }

    fn dispatch(&self, ns: &str, key: Option<&str>, lsn: u64) {
        let handler = self.inner.handlers.lock().get(ns).cloned();
        if let Some(h) = handler {
            h(key, lsn);
        }
        if let Some(key) = key {
            let watchers: Vec<_> =
                self.inner.watchers.lock().iter().filter(|(n, _)| *n == ns).map(|(_, f)| f.clone()).collect();
            for f in watchers {
                f(key);
            }
        }
    }

    fn drop_everything_local(&self) {
        let handlers: Vec<_> = self.inner.handlers.lock().values().cloned().collect();
        for h in handlers {
            h(None, 0);
        }
    }

    /// Listens for other instances' invalidations, and retries the ones this
    /// instance could not deliver. Reconnects forever; after any gap in the
    /// subscription it drops every L1 entry, since messages may have been missed.
    pub fn spawn_listener(&self) {
        let Some(redis) = self.inner.redis.clone() else { return };
        let hub = self.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut gap = false;
            loop {
                match redis.client().get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(CHANNEL).await.is_ok() {
                            if gap {
                                tracing::info!(
                                    "cache invalidation channel back; dropping L1 entries that may be stale"
                                );
                                hub.drop_everything_local();
                            }
                            let mut stream = pubsub.into_on_message();
                            while let Some(msg) = stream.next().await {
                                let Ok(text) = msg.get_payload::<String>() else { continue };
                                let mut parts = text.split(SEP);
                                let (Some(ns), Some(key)) = (parts.next(), parts.next()) else { continue };
                                let lsn = parts.next().and_then(|l| u64::from_str_radix(l, 16).ok()).unwrap_or(0);
                                hub.dispatch(ns, (key != "*").then_some(key), lsn);
                            }
                            tracing::warn!("cache invalidation channel lost; reconnecting");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "cache invalidation channel unavailable"),
                }
                gap = true;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                hub.retry_missed().await;
            }
        });
    }

    async fn retry_missed(&self) {
        let Some(redis) = &self.inner.redis else { return };
        if !redis.available() {
            return;
        }
        let batch: Vec<((&'static str, String), u64)> = self.inner.missed.lock().drain().collect();
        for (i, ((ns, key), lsn)) in batch.iter().enumerate() {
            if !self.invalidate_remote(ns, key, *lsn).await {
                self.miss_all(batch[i..].iter().cloned());
                return;
            }
        }
    }

    fn miss_all(&self, items: impl IntoIterator<Item = ((&'static str, String), u64)>) {
        let mut missed = self.inner.missed.lock();
        for (k, lsn) in items {
            let e = missed.entry(k).or_default();
            *e = (*e).max(lsn);
        }
    }

    fn keep_version_ms(&self) -> u64 {
        (self.inner.options.l2_ttl.as_millis() as u64 * 3).max(60_000)
    }

    /// Tells every instance that `key` (`*`: every key of `ns`) changed:
    /// moves its version (the namespace's epoch), so entries filled before
    /// become unreadable; with a commit position, records it as the floor
    /// for fills of the key (of any key).
    async fn invalidate_remote(&self, ns: &'static str, key: &str, lsn: u64) -> bool {
        let Some(redis) = &self.inner.redis else { return true };
        let whole = key == "*";
        let counter = if whole { epoch_key(ns) } else { version_key(ns, key) };
        let (floor, message) = (floor_key(ns, key), message(ns, key, lsn));
        let keep_ms = self.keep_version_ms();
        let lsn = if lsn > 0 { lsn_text(lsn) } else { String::new() };
        redis
            .run(if whole { "cache.flush" } else { "cache.invalidate" }, |mut c| async move {
                invalidate_script()
                    .key(counter)
                    .key(floor)
                    .arg(keep_ms)
                    .arg(CHANNEL)
                    .arg(message)
                    .arg(lsn)
                    .arg(if whole { "0" } else { "1" })
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await
            .is_some()
    }

    fn jittered(&self, base: Duration) -> u64 {
        let ms = base.as_millis() as u64;
        let extra = ms * self.inner.options.jitter_percent / 100;
        ms + if extra > 0 { rand::random_range(0..=extra) } else { 0 }
    }
}

fn data_key(ns: &str, key: &str) -> String {
    format!("mercato:c:{ns}:{key}")
}

fn epoch_key(ns: &str) -> String {
    format!("mercato:ce:{ns}")
}

fn version_key(ns: &str, key: &str) -> String {
    format!("mercato:cv:{ns}:{key}")
}

/// The commit position a fill of the key (`*`: of any key) must reflect.
fn floor_key(ns: &str, key: &str) -> String {
    format!("mercato:cl:{ns}:{key}")
}

/// Fixed width, so that Redis compares positions as strings.
fn lsn_text(lsn: u64) -> String {
    format!("{lsn:016X}")
}

fn message(ns: &str, key: &str, lsn: u64) -> String {
    if lsn > 0 { format!("{ns}{SEP}{key}{SEP}{lsn:X}") } else { format!("{ns}{SEP}{key}") }
}

/// KEYS: data, version. ARGV: expected version ("" when none), payload, ttl ms.
/// Stores only if no invalidation happened since the filler read the version.
fn fill_script() -> &'static redis::Script {
    static S: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        redis::Script::new(
            r"local v = redis.call('GET', KEYS[2]) or ''
              if v ~= ARGV[1] then return 0 end
              redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
              return 1",
        )
    })
}

/// KEYS: counter (a key's version, or a namespace's epoch), floor. ARGV:
/// ttl ms, channel, message, commit position ("" when none), "1" to expire
/// the counter (a version; an epoch must outlive every entry under it).
/// Moving the counter makes entries filled under it unreadable (see
/// `decode`, and the epoch in every data key); the floor keeps the highest
/// position (fixed-width hex, so string order is numeric order).
fn invalidate_script() -> &'static redis::Script {
    static S: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        redis::Script::new(
            r"redis.call('INCR', KEYS[1])
              if ARGV[5] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
              if ARGV[4] ~= '' then
                local old = redis.call('GET', KEYS[2])
                if not old or old < ARGV[4] then
                  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[1])
                end
              end
              redis.call('PUBLISH', ARGV[2], ARGV[3])
              return 1",
        )
    })
}

const GENERATION_SHARDS: usize = 4096;

struct Entry<V> {
    /// `None`: the source said "does not exist".
    value: Option<Arc<V>>,
    generation: u64,
    /// Negative entries live shorter than the cache's TTL.
    expires: Option<Instant>,
}

impl<V> Clone for Entry<V> {
    fn clone(&self) -> Self {
        Entry { value: self.value.clone(), generation: self.generation, expires: self.expires }
    }
}

type Flight<T> = Arc<OnceCell<Result<T, Error>>>;

/// Concurrent callers with the same key share one run of the work: the first
/// runs it, the others wait for its result. If the first caller is dropped
/// mid-way, a waiter takes over.
pub struct SingleFlight<K, T> {
    inflight: Mutex<HashMap<K, Flight<T>>>,
}

impl<K, T> Default for SingleFlight<K, T> {
    fn default() -> Self {
        SingleFlight { inflight: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq + Clone, T: Clone> SingleFlight<K, T> {
    pub async fn run<F, Fut>(&self, key: &K, work: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let flight = self.inflight.lock().entry(key.clone()).or_default().clone();
        let result = flight.get_or_init(work).await.clone();
        let mut inflight = self.inflight.lock();
        if inflight.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            inflight.remove(key);
        }
        result
    }
}

/// One cache of `K -> V` with both levels.
pub struct Tiered<K, V> {
    inner: Arc<TieredInner<K, V>>,
}

impl<K, V> Clone for Tiered<K, V> {
    fn clone(&self) -> Self {
        Tiered { inner: self.inner.clone() }
    }
}

struct TieredInner<K, V> {
    ns: &'static str,
    hub: CacheHub,
    l1: Cache<K, Entry<V>>,
    generations: crate::KeyedGeneration,
    /// Commit positions of invalidations seen, for fills from replicas.
    floors: Floors,
    /// The database loads read from, when it has replicas.
    source: std::sync::OnceLock<Db>,
    /// Keyed by the key's generation too: a caller that invalidated a key
    /// must not be handed the result of a load that began before.
    flights: SingleFlight<(K, u64), Option<Arc<V>>>,
    /// The namespace's epoch in Redis (part of every L2 key), or `UNKNOWN_EPOCH`
    /// until read. `invalidate_all` moves it, orphaning every L2 entry at once.
    epoch: AtomicU64,
}

const UNKNOWN_EPOCH: u64 = u64::MAX;

impl<K: Hash + Eq + Clone + Send + Sync + 'static, V: Send + Sync + 'static> TieredInner<K, V> {
    fn drop_local(&self, key: &K, lsn: u64) {
        // The floor before the generation: a fill that sees the new
        // generation also sees the floor.
        self.floors.raise(key, lsn);
        self.generations.bump(key);
        self.l1.invalidate(key);
    }

    fn drop_all_local(&self, lsn: u64) {
        self.floors.raise_all(lsn);
        self.epoch.store(UNKNOWN_EPOCH, Ordering::Release);
        self.generations.bump_all();
        self.l1.invalidate_all();
    }

    /// The database loads read from, if it has replicas.
    fn replicated(&self) -> Option<&Db> {
        self.source.get().filter(|db| db.has_replicas())
    }

    /// The commit position of this process's latest write to the source.
    fn written(&self) -> u64 {
        self.replicated().map_or(0, Db::last_commit_lsn)
    }
}

/// The highest commit position of the invalidations seen per key shard, and
/// for the whole cache.
struct Floors {
    shards: Box<[AtomicU64]>,
    all: AtomicU64,
    any: AtomicU64,
}

impl Default for Floors {
    fn default() -> Self {
        Floors { shards: (0..GENERATION_SHARDS).map(|_| AtomicU64::new(0)).collect(), all: 0.into(), any: 0.into() }
    }
}

impl Floors {
    fn shard<K: Hash + ?Sized>(&self, key: &K) -> &AtomicU64 {
        use std::hash::BuildHasher;
        let h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key);
        &self.shards[(h % self.shards.len() as u64) as usize]
    }
    fn raise<K: Hash + ?Sized>(&self, key: &K, lsn: u64) {
        if lsn > 0 {
            self.shard(key).fetch_max(lsn, Ordering::AcqRel);
            self.any.fetch_max(lsn, Ordering::AcqRel);
        }
    }
    fn raise_all(&self, lsn: u64) {
        if lsn > 0 {
            self.all.fetch_max(lsn, Ordering::AcqRel);
            self.any.fetch_max(lsn, Ordering::AcqRel);
        }
    }
    fn of<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.shard(key).load(Ordering::Acquire).max(self.all.load(Ordering::Acquire))
    }
}

impl<K, V> Tiered<K, V>
where
    K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The L1 entry if it is there and still current. `Some(None)` is a cached
    /// "does not exist".
    pub fn peek(&self, key: &K) -> Option<Option<Arc<V>>> {
        let e = self.inner.l1.get(key)?;
        if e.generation != self.inner.generations.current(key) || e.expires.is_some_and(|t| Instant::now() >= t) {
            return None;
        }
        Some(e.value)
    }

    /// The value for `key`: from L1, else L2, else `load` (the source of truth),
    /// run at most once at a time per key in this process.
    pub async fn get_or_load<F, Fut>(&self, key: &K, load: F) -> Result<Option<Arc<V>>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, Error>>,
    {
        if let Some(v) = self.peek(key) {
            return Ok(v);
        }
        let flight = (key.clone(), self.inner.generations.current(key));
        self.inner.flights.run(&flight, || self.fill(key, load)).await
    }

    /// Loads of this cache read `db`: with replicas, invalidations carry
    /// the position of the write behind them, and fills wait for it.
    pub fn reads_from(&self, db: &Db) {
        let _ = self.inner.source.set(db.clone());
    }

    /// The highest commit position of any invalidation seen: the floor for
    /// a read whose keys are learnt from it (see [`Tiered::adopt`]).
    pub fn floor_any(&self) -> u64 {
        self.inner.floors.any.load(Ordering::Acquire)
    }

    async fn fill<F, Fut>(&self, key: &K, load: F) -> Result<Option<Arc<V>>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, Error>>,
    {
        // A caller that missed L1 just before the previous flight for this key
        // stored its result starts a new flight: it must find that result here
        // rather than load again.
        if let Some(v) = self.peek(key) {
            return Ok(v);
        }
        let ns = self.inner.ns;
        let generation = self.inner.generations.current(key);
        let hub = &self.inner.hub;
        let skey = key.to_string();
        // Data keys carry the namespace's epoch (moved by `invalidate_all`);
        // versions are per key (moved by `invalidate`), and an entry is only
        // good while the version it was filled under is still the current one.
        let keys = [
            data_key(
                ns,
                &match self.epoch().await {
                    Some(epoch) => format!("{epoch}:{skey}"),
                    None => skey.clone(),
                },
            ),
            version_key(ns, &skey),
        ];
        let replicated = self.inner.replicated().cloned();
        let mut floor = self.inner.floors.of(key);
        let mut version = None;
        if let Some(redis) = hub.redis() {
            let k = keys.clone();
            // With replicas, the positions other instances' invalidations
            // left beside the version too.
            let floors = replicated.is_some().then(|| [floor_key(ns, &skey), floor_key(ns, "*")]);
            let got = redis
                .run("cache.get", |mut c| async move {
                    let mut cmd = redis::cmd("MGET");
                    cmd.arg(&k);
                    if let Some(f) = &floors {
                        cmd.arg(f);
                    }
                    let mut got = cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut c).await?.into_iter();
                    let data = got.next().flatten();
                    let version = got.next().flatten().map(|v| String::from_utf8_lossy(&v).into_owned());
                    let floor = got
                        .filter_map(|f| u64::from_str_radix(std::str::from_utf8(&f?).ok()?, 16).ok())
                        .max()
                        .unwrap_or(0);
                    Ok::<_, redis::RedisError>((data, version, floor))
                })
                .await;
            if let Some((data, v, remote_floor)) = got {
                floor = floor.max(remote_floor);
                let v = v.unwrap_or_default();
                if let Some(bytes) = data {
                    match decode::<V>(&bytes, &v) {
                        Some(value) => {
                            metrics::counter!("mercato_cache_l2_hits_total", "cache" => ns).increment(1);
                            let value = value.map(Arc::new);
                            self.store(key, value.clone(), generation);
                            return Ok(value);
                        }
                        None => metrics::counter!("mercato_cache_l2_stale_total", "cache" => ns).increment(1),
                    }
                }
                version = Some(v);
            }
        }
        let loaded = {
            let _permit = hub.inner.loads.acquire().await.map_err(|_| Error::internal("cache closed"))?;
            metrics::counter!("mercato_cache_loads_total", "cache" => ns).increment(1);
            match &replicated {
                Some(db) => crate::db::fill(db.name().into(), floor, load()).await?,
                None => load().await?,
            }
        };
        let value = loaded.map(Arc::new);
        if let (Some(redis), Some(expected)) = (hub.redis(), version) {
            let payload = encode(&expected, value.as_deref());
            let ttl = if value.is_some() {
                hub.jittered(hub.inner.options.l2_ttl)
            } else {
                hub.jittered(hub.inner.options.negative_ttl)
            };
            redis
                .run("cache.fill", |mut c| async move {
                    fill_script()
                        .key(&keys[0])
                        .key(&keys[1])
                        .arg(expected)
                        .arg(payload)
                        .arg(ttl)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await;
        }
        self.store(key, value.clone(), generation);
        Ok(value)
    }

    /// The namespace's current epoch in Redis (read once, and again after a
    /// flush); `None` without Redis or while it does not answer.
    async fn epoch(&self) -> Option<u64> {
        let known = self.inner.epoch.load(Ordering::Acquire);
        if known != UNKNOWN_EPOCH {
            return Some(known);
        }
        let redis = self.inner.hub.redis()?;
        let key = epoch_key(self.inner.ns);
        let epoch = redis
            .run(
                "cache.epoch",
                |mut c| async move { redis::cmd("GET").arg(key).query_async::<Option<u64>>(&mut c).await },
            )
            .await?
            .unwrap_or(0);
        // Unless a flush raced this read, remember it.
        let _ = self.inner.epoch.compare_exchange(UNKNOWN_EPOCH, epoch, Ordering::AcqRel, Ordering::Acquire);
        Some(epoch)
    }

    /// Drops every entry of this cache, here and (through Redis) on every
    /// instance: for derived views such as listing pages, which any write to
    /// any product may change.
    pub async fn invalidate_all(&self) {
        metrics::counter!("mercato_cache_flushes_total", "cache" => self.inner.ns).increment(1);
        let lsn = self.inner.written();
        self.inner.drop_all_local(lsn);
        let flushed = self.inner.hub.invalidate_remote(self.inner.ns, "*", lsn).await;
        if !flushed {
            self.inner.hub.miss_all([((self.inner.ns, "*".to_string()), lsn)]);
        }
    }

    fn store(&self, key: &K, value: Option<Arc<V>>, generation: u64) {
        let expires = value.is_none().then(|| Instant::now() + self.inner.hub.inner.options.negative_ttl);
        self.inner.l1.insert(key.clone(), Entry { value, generation, expires });
    }

    /// Whether misses go to a shared L2 before the database. A caller that
    /// would read the database itself to save a round trip should not bypass
    /// the L2 that protects a shared database from every instance's misses.
    pub fn shared(&self) -> bool {
        self.inner.hub.redis().is_some()
    }

    /// Taken before reading the source of truth for values to [`adopt`]:
    /// for reads that learn their keys as they go (a product found by slug).
    ///
    /// [`adopt`]: Tiered::adopt
    pub fn ticket(&self) -> u64 {
        self.inner.generations.epoch()
    }

    /// Puts into L1 a value the caller read from the source of truth after
    /// taking `ticket`, unless some invalidation happened since (the value
    /// may then be older than it); L2 is left to versioned fills. Returns the
    /// value as shared.
    pub fn adopt(&self, key: &K, value: Option<V>, ticket: u64) -> Option<Arc<V>> {
        let value = value.map(Arc::new);
        // Sampled before the check: an invalidation after the check moves the
        // key's generation past it, and the entry is dropped on its next read.
        let generation = self.inner.generations.current(key);
        if self.inner.generations.epoch() == ticket {
            self.store(key, value.clone(), generation);
        }
        value
    }

    /// Puts a value just written by this instance into L1 (not L2: a filler
    /// elsewhere may hold an older read, and only the versioned fill may win).
    pub fn prime(&self, key: &K, value: Arc<V>) {
        let generation = self.inner.generations.current(key);
        self.store(key, Some(value), generation);
    }

    /// After a write to `key` has committed: drops it here at once and, with
    /// Redis, everywhere. Returns once Redis has it (or has failed; the
    /// invalidation is then retried in the background).
    pub async fn invalidate(&self, key: &K) {
        metrics::counter!("mercato_cache_invalidations_total", "cache" => self.inner.ns, "from" => "local")
            .increment(1);
        let lsn = self.inner.written();
        self.inner.drop_local(key, lsn);
        let skey = key.to_string();
        if self.inner.hub.redis().is_some() && !self.inner.hub.invalidate_remote(self.inner.ns, &skey, lsn).await {
            self.inner.hub.miss_all([((self.inner.ns, skey), lsn)]);
        }
    }

    /// Drops a key from this instance only (another instance told us).
    pub fn invalidate_local(&self, key: &K) {
        self.inner.drop_local(key, self.inner.written());
    }
}

/// The version the entry was filled under, `|`, then `N` for "does not
/// exist" or `D` + JSON for a value.
fn encode<V: Serialize>(version: &str, value: Option<&V>) -> Vec<u8> {
    let mut out = format!("{version}|").into_bytes();
    match value.map(|v| serde_json::to_vec(v)) {
        Some(Ok(json)) => {
            out.push(b'D');
            out.extend_from_slice(&json);
        }
        _ => out.push(b'N'),
    }
    out
}

/// The value, if the entry is readable and was filled under `current` (an
/// entry filled before the key's latest invalidation is stale).
fn decode<V: DeserializeOwned>(bytes: &[u8], current: &str) -> Option<Option<V>> {
    let bar = bytes.iter().position(|b| *b == b'|')?;
    if &bytes[..bar] != current.as_bytes() {
        return None;
    }
    match bytes[bar + 1..].split_first()? {
        (b'N', _) => Some(None),
        (b'D', rest) => serde_json::from_slice(rest).ok().map(Some),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn hub() -> CacheHub {
        CacheHub::new(None, 8, CacheOptions::default())
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache: Tiered<i64, String> = hub().tiered("t");
        let loads = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load(&7, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(Some("seven".to_string()))
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().as_deref().map(String::as_str), Some("seven"));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_load_that_began_before_an_invalidation_is_not_served_after_it() {
        let cache: Tiered<i64, String> = hub().tiered("t");
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let c = cache.clone();
        let slow = tokio::spawn(async move {
            c.get_or_load(&1, || async move {
                let _ = started_tx.send(());
                let _ = go_rx.await;
                Ok(Some("old".to_string()))
            })
            .await
        });
        started_rx.await.unwrap();
        cache.invalidate(&1).await; // the write commits while the read is in flight
        go_tx.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap().as_deref().map(String::as_str), Some("old"));
        let now = cache.get_or_load(&1, || async { Ok(Some("new".to_string())) }).await.unwrap();
        assert_eq!(now.as_deref().map(String::as_str), Some("new"));
    }

    #[tokio::test]
    async fn an_adopted_read_is_kept_only_if_nothing_was_invalidated_since_its_ticket() {
        let cache: Tiered<i64, String> = hub().tiered("t");
        let ticket = cache.ticket();
        // Another key's write lands while the read is in flight: the reader
        // did not know its key yet, so it cannot tell and keeps nothing.
        cache.invalidate(&2).await;
        let served = cache.adopt(&1, Some("read before".to_string()), ticket);
        assert_eq!(served.as_deref().map(String::as_str), Some("read before"), "the caller still gets what it read");
        assert!(cache.peek(&1).is_none());
        let ticket = cache.ticket();
        cache.adopt(&1, Some("quiet".to_string()), ticket);
        assert_eq!(cache.peek(&1).flatten().as_deref().map(String::as_str), Some("quiet"));
        // Absence is adopted too (a slug that names nothing).
        let ticket = cache.ticket();
        cache.adopt(&3, None, ticket);
        assert_eq!(cache.peek(&3), Some(None));
        cache.invalidate(&1).await;
        assert!(cache.peek(&1).is_none(), "an invalidation still drops an adopted entry");
    }

    #[tokio::test]
    async fn absence_is_cached_and_errors_are_not() {
        let cache: Tiered<i64, String> = hub().tiered("t");
        let loads = AtomicUsize::new(0);
        for _ in 0..10 {
            let got = cache
                .get_or_load(&9, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                })
                .await
                .unwrap();
            assert!(got.is_none());
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let err = cache.get_or_load(&10, || async { Err(Error::unavailable("db down")) }).await;
        assert!(err.is_err());
        let ok = cache.get_or_load(&10, || async { Ok(Some("back".to_string())) }).await.unwrap();
        assert!(ok.is_some(), "an error must not be cached");
    }

    #[test]
    fn envelope_round_trips_and_knows_its_version() {
        assert_eq!(decode::<String>(&encode("3", Some(&"x".to_string())), "3"), Some(Some("x".to_string())));
        assert_eq!(decode::<String>(&encode::<String>("", None), ""), Some(None));
        assert_eq!(decode::<String>(&encode("3", Some(&"x".to_string())), "4"), None, "filled before an invalidation");
        assert_eq!(decode::<String>(b"garbage", ""), None);
    }
}
