//! The platform's configuration sections: logging, databases, HTTP, cache
//! and events. The root configuration, which adds each domain's own section
//! and loads them all, is assembled by the binary (`mercato::config`).

use crate::db::Synchronous;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// The outbox relays (one per database): see `mercato_platform::events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Failures of one subscriber on one event before the event is
    /// dead-lettered for it (listed and redriven by the admin API).
    pub max_attempts: u32,
    /// The wait after a subscriber's first failure; doubles with each one
    /// after, up to a minute.
    pub retry_base_ms: u64,
    /// How long an instance's relay lease lasts unrenewed: how long effects
    /// (webhooks, restocks, saga mends) wait when the instance running them
    /// dies. Renewed every third of it.
    pub lease_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { max_attempts: 8, retry_base_ms: 500, lease_ms: 10_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for humans, `json` for log shippers.
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `mercato=debug,tower_http=info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Empty: embedded SQLite in `data_dir`. `postgres://...`: a server.
    pub url: Secret,
    /// SQLite durability: `normal` survives a process crash, `full` also power loss.
    pub synchronous: Synchronous,
    /// Read connections to keep open.
    pub pool_size: usize,
    /// Most transactions committed together by the embedded writer.
    pub max_batch: usize,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// PostgreSQL: statements (and lock waits) running longer are cancelled.
    pub statement_timeout_ms: u64,
    /// PostgreSQL: a COMMIT still unconfirmed after this long (a
    /// synchronous standby that does not answer, a primary cut off) is
    /// cancelled, and its request answered 503 with the outcome unknown
    /// (a retry under the same Idempotency-Key finds out).
    pub commit_wait_ms: u64,
    /// PostgreSQL: `synchronous_commit` for Mercato's sessions (`on`,
    /// `remote_apply`, `remote_write`, `local`, `off`); unset keeps the
    /// server's. With a synchronous standby, `on` loses no acknowledged
    /// order in a failover; `local` acknowledges without the standby,
    /// faster, and a failover can lose the last moments' orders.
    pub synchronous_commit: Option<crate::db::SynchronousCommit>,
    /// Domains given a database of their own (`[database.domains.orders]`);
    /// the others use `url`.
    pub domains: std::collections::BTreeMap<String, DomainDatabase>,
    /// PostgreSQL streaming replicas of `url` (`{domain}` as in `url`): a
    /// list, or one comma-separated string in the environment. Reads that
    /// tolerate staleness go to them (see ARCHITECTURE.md, "Replicas").
    #[serde(deserialize_with = "secret_list")]
    pub replicas: Vec<Secret>,
    /// A replica further behind its primary than this serves no reads until
    /// it has caught up.
    pub replica_max_lag_ms: u64,
    /// How often replicas' positions are sampled. A client's reads go to the
    /// primary for up to about this long after each of its writes.
    pub replica_check_interval_ms: u64,
}

/// One domain's own database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainDatabase {
    /// `postgres://...` or `sqlite:PATH`, as `database.url`.
    pub url: Secret,
    /// Streaming replicas of this domain's own database.
    #[serde(deserialize_with = "secret_list")]
    pub replicas: Vec<Secret>,
    /// Orders only (stage 7): the databases its logical shards are spread
    /// over, in contiguous even ranges, in place of `url`. Append only:
    /// the order names where existing shards live.
    #[serde(deserialize_with = "secret_list")]
    pub shards: Vec<Secret>,
}

impl DatabaseConfig {
    /// Where `domain`'s tables live: its own `[database.domains.<domain>]`
    /// url, else `url`, in which `{domain}` stands for the domain's name
    /// (one database per domain from a single setting). Empty: the embedded
    /// default in `data_dir`.
    pub fn url_for(&self, domain: &str) -> String {
        let own = self.domains.get(domain);
        // A sharded domain's home is its first shard database.
        if let Some(first) = own.and_then(|d| d.shards.first()).filter(|u| !u.is_empty()) {
            return first.expose().to_string();
        }
        match own.map(|d| d.url.expose()).filter(|u| !u.is_empty()) {
            Some(url) => url.replace("{domain}", domain),
            None => self.url.expose().replace("{domain}", domain),
        }
    }
}

impl DatabaseConfig {
    /// The databases `domain`'s logical shards are spread over (empty: all
    /// in its one database).
    pub fn shards_for(&self, domain: &str) -> Vec<String> {
        self.domains
            .get(domain)
            .map(|d| d.shards.iter().map(|u| u.expose().to_string()).filter(|u| !u.is_empty()).collect())
            .unwrap_or_default()
    }

    /// The replicas of `domain`'s database: its own when it has a database of
    /// its own, else `replicas`.
    pub fn replicas_for(&self, domain: &str) -> Vec<String> {
        let own = self.domains.get(domain).filter(|d| !d.url.is_empty());
        let list = own.map_or(&self.replicas, |d| &d.replicas);
        list.iter().map(|r| r.expose().replace("{domain}", domain)).filter(|r| !r.is_empty()).collect()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: Secret::default(),
            synchronous: Synchronous::Normal,
            pool_size: 4,
            max_batch: 64,
            migrate_on_start: true,
            statement_timeout_ms: 5_000,
            commit_wait_ms: 5_000,
            synchronous_commit: None,
            domains: Default::default(),
            replicas: Vec::new(),
            replica_max_lag_ms: 5_000,
            replica_check_interval_ms: 50,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// A request running longer than this is answered 503 and abandoned.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// On SIGTERM, how long the instance goes on accepting requests while
    /// `/readyz` answers 503, so that load balancers checking it stop
    /// sending new ones before the listener closes (HAProxy: at least
    /// `inter` x `fall`; Kubernetes: the readiness probe's period x failure
    /// threshold). 0 closes the listener at once, right for one instance.
    pub drain_delay_ms: u64,
    /// Proxies (addresses or CIDR blocks) whose forwarding header names the
    /// client; from any other peer the header is ignored. A list, or one
    /// comma-separated string (`MERCATO_HTTP_TRUSTED_PROXIES=10.0.0.0/8,127.0.0.1`).
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
    /// The header those proxies append to: `x-forwarded-for` or `forwarded` (RFC 7239).
    pub forwarded_header: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: 256 * 1024,
            request_timeout_ms: 30_000,
            shutdown_grace_secs: 30,
            drain_delay_ms: 0,
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".into(),
        }
    }
}

/// A list setting given either as a list or, as environment variables give
/// it, as one comma-separated string.
fn secret_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    Ok(list_or_csv(d)?.into_iter().map(Secret::new).collect())
}

fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(items) => items,
        Form::Csv(s) => s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect(),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Entries kept in each in-process cache (products excepted).
    pub l1_max_entries: u64,
    /// Megabytes of products kept in process; rendered product pages get
    /// half as much again. Bounded by memory, not entries, so that a large
    /// catalog cannot grow the process without bound.
    pub l1_max_mb: u64,
    /// Seconds an in-process entry lives without being invalidated.
    pub l1_ttl_secs: u64,
    /// Shared second-level cache and coordination store, e.g.
    /// `redis://127.0.0.1:6379/0`. Empty: one instance, in-process only.
    pub redis_url: Secret,
    /// Seconds a Redis entry lives without being invalidated.
    pub l2_ttl_secs: u64,
    /// Random extra TTL, in percent, so that entries filled together do not
    /// all expire together.
    pub ttl_jitter_percent: u64,
    /// Seconds a "does not exist" answer is remembered.
    pub negative_ttl_secs: u64,
    /// Longest wait for one Redis command before it counts as a failure.
    pub redis_timeout_ms: u64,
    /// Consecutive Redis failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// Milliseconds the open breaker skips Redis before one probe.
    pub breaker_open_ms: u64,
    /// Most cache-miss loads running against the database at once.
    pub max_concurrent_loads: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            l1_max_entries: 50_000,
            l1_max_mb: 64,
            l1_ttl_secs: 60,
            redis_url: Secret::default(),
            l2_ttl_secs: 300,
            ttl_jitter_percent: 20,
            negative_ttl_secs: 30,
            redis_timeout_ms: 100,
            breaker_failures: 3,
            breaker_open_ms: 1_000,
            max_concurrent_loads: 64,
        }
    }
}
