//! Configuration: built-in defaults (embedded, zero setup), then an optional
//! TOML file, then `MERCATO_*` environment variables, then command-line flags.
//! Parsed and validated once, here; the rest of the code reads typed fields.

use crate::db::Synchronous;
use crate::secret::Secret;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Top-level sections: `MERCATO_<SECTION>_<KEY>` maps to `<section>.<key>`;
/// any other `MERCATO_<KEY>` is a top-level key (`MERCATO_DATA_DIR`).
const SECTIONS: &[&str] =
    &["log", "database", "http", "auth", "admin", "seed", "shop", "orders", "payments", "cache", "events"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Where the embedded database (and later the search index) live.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub seed: SeedConfig,
    pub shop: ShopConfig,
    pub orders: OrdersConfig,
    pub payments: PaymentsConfig,
    pub cache: CacheConfig,
    pub events: EventsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./mercato-data"),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            admin: AdminConfig::default(),
            seed: SeedConfig::default(),
            shop: ShopConfig::default(),
            orders: OrdersConfig::default(),
            payments: PaymentsConfig::default(),
            cache: CacheConfig::default(),
            events: EventsConfig::default(),
        }
    }
}

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
    /// Domains given a database of their own (`[database.domains.orders]`);
    /// the others use `url`.
    pub domains: std::collections::BTreeMap<String, DomainDatabase>,
}

/// One domain's own database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainDatabase {
    /// `postgres://...` or `sqlite:PATH`, as `database.url`.
    pub url: Secret,
}

impl DatabaseConfig {
    /// Where `domain`'s tables live: its own `[database.domains.<domain>]`
    /// url, else `url`, in which `{domain}` stands for the domain's name
    /// (one database per domain from a single setting). Empty: the embedded
    /// default in `data_dir`.
    pub fn url_for(&self, domain: &str) -> String {
        match self.domains.get(domain).map(|d| d.url.expose()).filter(|u| !u.is_empty()) {
            Some(url) => url.replace("{domain}", domain),
            None => self.url.expose().replace("{domain}", domain),
        }
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
            domains: Default::default(),
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { body_limit_bytes: 256 * 1024, request_timeout_ms: 30_000, shutdown_grace_secs: 30 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Access-token lifetime.
    pub token_ttl_secs: u64,
    /// Failed logins allowed per account within `login_window_secs`.
    pub login_failures_per_account: u32,
    /// Failed logins allowed per client address within `login_window_secs`.
    pub login_failures_per_address: u32,
    pub login_window_secs: u64,
    /// Argon2id memory cost in KiB (OWASP's minimum for argon2id is 19456).
    pub argon2_memory_kib: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_secs: 3600,
            login_failures_per_account: 5,
            login_failures_per_address: 50,
            login_window_secs: 900,
            argon2_memory_kib: 19_456,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub email: String,
    /// Empty: a random password is generated on first run and printed.
    pub password: Secret,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { email: "admin@mercato.local".into(), password: Secret::default() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedConfig {
    /// Demo products created when `serve` finds an empty catalog (0 = none).
    pub products: u32,
    /// Units of stock each demo variant starts with.
    pub stock_per_variant: i64,
}

impl Default for SeedConfig {
    fn default() -> Self {
        SeedConfig { products: 10_000, stock_per_variant: 100 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopConfig {
    /// The one currency prices are kept in (ISO 4217).
    pub currency: String,
    /// Tax on (subtotal - discount [+ shipping]), in basis points (825 = 8.25%).
    pub tax_rate_bp: i64,
    pub tax_includes_shipping: bool,
    /// Most units of one SKU in a cart line.
    pub max_line_quantity: i64,
    /// Most distinct lines in a cart.
    pub max_cart_lines: usize,
    /// Flat-rate shipping methods; the first is the default.
    pub shipping_methods: Vec<ShippingMethod>,
}

impl Default for ShopConfig {
    fn default() -> Self {
        ShopConfig {
            currency: "USD".into(),
            tax_rate_bp: 0,
            tax_includes_shipping: true,
            max_line_quantity: 100,
            max_cart_lines: 100,
            shipping_methods: vec![
                ShippingMethod {
                    code: "standard".into(),
                    name: "Standard (3-5 days)".into(),
                    price: 499,
                    free_over: Some(5000),
                },
                ShippingMethod {
                    code: "express".into(),
                    name: "Express (next day)".into(),
                    price: 1499,
                    free_over: None,
                },
            ],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingMethod {
    pub code: String,
    pub name: String,
    /// Price in minor units of the shop currency.
    pub price: i64,
    /// Free when the discounted subtotal reaches this amount.
    #[serde(default)]
    pub free_over: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersConfig {
    /// Unpaid orders are cancelled, and their stock released, after this long.
    pub payment_timeout_secs: u64,
    /// How often the expiry sweeper looks for overdue orders.
    pub sweep_interval_ms: u64,
    /// How long a checkout holds its Idempotency-Key. A checkout still unfinished
    /// after this is presumed crashed: a retry takes it over, and the sweeper
    /// releases its stock. Must exceed `http.request_timeout_ms`.
    pub checkout_lease_ms: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig { payment_timeout_secs: 900, sweep_interval_ms: 1000, checkout_lease_ms: 60_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Secret the test provider signs webhooks with. Empty: generated once and
    /// stored in the database, so every instance shares it.
    pub webhook_secret: Secret,
    /// Where the test provider delivers webhooks. Empty: this server's own
    /// `/api/v1/payments/webhooks/test` on `listen`.
    pub webhook_url: String,
    /// Webhooks signed longer ago than this are rejected as replays.
    pub webhook_tolerance_secs: i64,
    /// How long the test provider takes to settle an asynchronous payment.
    pub async_settle_ms: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            webhook_secret: Secret::default(),
            webhook_url: String::new(),
            webhook_tolerance_secs: 300,
            async_settle_ms: 2000,
        }
    }
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

impl Config {
    /// Defaults < `path` (if given, or `./mercato.toml` if it exists) <
    /// `MERCATO_*` variables from `env`.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) if !p.exists() => return Err(format!("config file {} does not exist", p.display())),
            Some(p) => figment = figment.merge(Toml::file(p)),
            None if Path::new("mercato.toml").exists() => figment = figment.merge(Toml::file("mercato.toml")),
            None => {}
        }
        let vars: Vec<(String, String)> =
            env.into_iter().filter(|(k, _)| k.starts_with("MERCATO_") && k != "MERCATO_CONFIG").collect();
        figment = figment.merge(EnvMap(vars));
        let config: Config = figment.extract().map_err(|e| format!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| format!("listen: '{}' is not host:port", self.listen))?;
        self.shop.currency.parse::<mercato_core::Currency>().map_err(|e| format!("shop.currency: {}", e.message))?;
        if self.shop.shipping_methods.is_empty() {
            return Err("shop.shipping_methods: at least one method is needed".into());
        }
        if !(0..=10_000).contains(&self.shop.tax_rate_bp) {
            return Err("shop.tax_rate_bp: must be between 0 and 10000".into());
        }
        if self.shop.max_line_quantity < 1 {
            return Err("shop.max_line_quantity: must be at least 1".into());
        }
        if self.orders.checkout_lease_ms <= self.http.request_timeout_ms {
            return Err(
                "orders.checkout_lease_ms: must exceed http.request_timeout_ms, or a slow checkout could be taken over"
                    .into(),
            );
        }
        if self.orders.payment_timeout_secs == 0 {
            return Err("orders.payment_timeout_secs: must be positive".into());
        }
        if self.events.max_attempts == 0 {
            return Err("events.max_attempts: must be at least 1".into());
        }
        if self.events.lease_ms < 1000 {
            return Err("events.lease_ms: must be at least 1000".into());
        }
        let url = self.database.url.expose();
        if !url.is_empty() && !["sqlite:", "postgres://", "postgresql://"].iter().any(|s| url.starts_with(s)) {
            return Err(format!(
                "database.url: use postgres://... for PostgreSQL, or leave it empty for the embedded database (got scheme '{}')",
                url.split(':').next().unwrap_or("")
            ));
        }
        for (domain, d) in &self.database.domains {
            if !crate::databases::DOMAINS.contains(&domain.as_str()) && domain != crate::databases::PLATFORM {
                return Err(format!(
                    "database.domains.{domain}: not a domain; use one of {}, {}",
                    crate::databases::PLATFORM,
                    crate::databases::DOMAINS.join(", ")
                ));
            }
            let url = d.url.expose();
            if !["sqlite:", "postgres://", "postgresql://"].iter().any(|s| url.starts_with(s)) {
                return Err(format!("database.domains.{domain}.url: use postgres://... or sqlite:PATH"));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_toml_masked(&self) -> String {
        toml_render(&serde_json::to_value(self).unwrap_or_default())
    }

    pub fn currency(&self) -> mercato_core::Currency {
        self.shop.currency.parse().unwrap_or(mercato_core::Currency::USD)
    }
}

/// `MERCATO_*` variables as a figment provider, with the section mapping above.
struct EnvMap(Vec<(String, String)>);

impl figment::Provider for EnvMap {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("MERCATO_* environment variables")
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut root = figment::value::Dict::new();
        for (key, value) in &self.0 {
            let key = key.trim_start_matches("MERCATO_").to_ascii_lowercase();
            // "5" becomes a number and "true" a boolean, as fields expect;
            // string fields that may look numeric (secrets) accept both.
            let parsed: figment::value::Value = value.parse().unwrap_or_else(|_| value.clone().into());
            let section = SECTIONS.iter().find(|s| key.starts_with(&format!("{s}_")));
            match section {
                Some(section) => {
                    let field = key[section.len() + 1..].to_string();
                    let entry = root
                        .entry(section.to_string())
                        .or_insert_with(|| figment::value::Value::from(figment::value::Dict::new()));
                    let figment::value::Value::Dict(_, dict) = entry else { continue };
                    // MERCATO_DATABASE_DOMAINS_ORDERS_URL: database.domains.orders.url
                    let nested = (*section == "database")
                        .then(|| field.strip_prefix("domains_"))
                        .flatten()
                        .and_then(|rest| rest.split_once('_'));
                    match nested {
                        Some((domain, key)) => {
                            let domains = dict
                                .entry("domains".into())
                                .or_insert_with(|| figment::value::Value::from(figment::value::Dict::new()));
                            if let figment::value::Value::Dict(_, domains) = domains {
                                let d = domains
                                    .entry(domain.to_string())
                                    .or_insert_with(|| figment::value::Value::from(figment::value::Dict::new()));
                                if let figment::value::Value::Dict(_, d) = d {
                                    // A URL stays a string even when it looks like something else.
                                    d.insert(key.to_string(), value.clone().into());
                                }
                            }
                        }
                        None => {
                            dict.insert(field, parsed);
                        }
                    }
                }
                None => {
                    root.insert(key, parsed);
                }
            }
        }
        Ok(figment::Profile::Default.collect(root))
    }
}

fn toml_render(value: &serde_json::Value) -> String {
    // A small TOML writer for a two-level config: scalars first, then tables.
    fn scalar(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => format!("{s:?}"),
            serde_json::Value::Null => "\"\"".into(),
            serde_json::Value::Array(items) => {
                format!("[{}]", items.iter().map(scalar).collect::<Vec<_>>().join(", "))
            }
            serde_json::Value::Object(map) => format!(
                "{{ {} }}",
                map.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| format!("{k} = {}", scalar(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.to_string(),
        }
    }
    let mut out = String::new();
    let mut tables = String::new();
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            match v {
                serde_json::Value::Object(inner) => {
                    tables.push_str(&format!("\n[{k}]\n"));
                    for (ik, iv) in inner {
                        tables.push_str(&format!("{ik} = {}\n", scalar(iv)));
                    }
                }
                other => out.push_str(&format!("{k} = {}\n", scalar(other))),
            }
        }
    }
    out + &tables
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_embedded_and_valid() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(c.database.url.is_empty());
        assert_eq!(c.orders.payment_timeout_secs, 900);
    }

    #[test]
    fn environment_overrides_top_level_and_sections() {
        let c = Config::load(
            None,
            env(&[
                ("MERCATO_LISTEN", "127.0.0.1:9999"),
                ("MERCATO_DATA_DIR", "/tmp/x"),
                ("MERCATO_ADMIN_PASSWORD", "123456789"),
                ("MERCATO_ORDERS_PAYMENT_TIMEOUT_SECS", "5"),
                ("MERCATO_SHOP_TAX_RATE_BP", "825"),
                ("OTHER_VAR", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9999");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.admin.password.expose(), "123456789");
        assert_eq!(c.orders.payment_timeout_secs, 5);
        assert_eq!(c.shop.tax_rate_bp, 825);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(Config::load(None, env(&[("MERCATO_ORDERS_NOPE", "1")])).is_err());
        assert!(Config::load(None, env(&[("MERCATO_LISTEN", "nope")])).is_err());
        assert!(Config::load(None, env(&[("MERCATO_SHOP_CURRENCY", "usd")])).is_err());
    }

    #[test]
    fn domains_get_their_own_database_by_table_by_environment_or_by_placeholder() {
        let c = Config::load(
            None,
            env(&[
                ("MERCATO_DATABASE_URL", "postgres://shop@db/shop"),
                ("MERCATO_DATABASE_DOMAINS_ORDERS_URL", "postgres://orders_svc@db/orders"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database.url_for("orders"), "postgres://orders_svc@db/orders");
        assert_eq!(c.database.url_for("catalog"), "postgres://shop@db/shop");
        let c = Config::load(None, env(&[("MERCATO_DATABASE_URL", "sqlite:/data/{domain}.db")])).unwrap();
        assert_eq!(c.database.url_for("cart"), "sqlite:/data/cart.db");
        assert_eq!(c.database.url_for("platform"), "sqlite:/data/platform.db");
        let bad = Config::load(None, env(&[("MERCATO_DATABASE_DOMAINS_BASKET_URL", "postgres://x@y/z")]));
        assert!(bad.unwrap_err().contains("database.domains.basket"));
        let bad = Config::load(None, env(&[("MERCATO_DATABASE_DOMAINS_CART_URL", "mysql://x@y/z")]));
        assert!(bad.unwrap_err().contains("database.domains.cart.url"));
    }

    #[test]
    fn printed_config_masks_secrets() {
        let c = Config::load(None, env(&[("MERCATO_ADMIN_PASSWORD", "hunter22")])).unwrap();
        let printed = c.to_toml_masked();
        assert!(!printed.contains("hunter22"));
        assert!(printed.contains("password = \"********\""));
    }
}
