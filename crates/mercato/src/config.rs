//! Configuration: built-in defaults (embedded, zero setup), then an optional
//! TOML file, then `MERCATO_*` environment variables, then command-line flags.
//! Parsed and validated once, here; the rest of the code reads typed fields.
//!
//! The root is assembled here, above the domains: the platform's sections
//! come from `mercato_platform::config`, each domain's from its own crate
//! (`[shop]` from the cart, `[orders]`, `[payments]`, `[auth]` from
//! customers), and this module adds the binary's own (`admin`, `seed`).

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use mercato_cart::ShopSettings;
use mercato_customers::AuthSettings;
use mercato_orders::OrdersSettings;
use mercato_payments::PaymentsSettings;
use mercato_platform::config::{CacheConfig, DatabaseConfig, EventsConfig, HttpConfig, LogConfig};
use mercato_platform::databases;
use mercato_platform::secret::Secret;
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
    pub auth: AuthSettings,
    pub admin: AdminConfig,
    pub seed: SeedConfig,
    pub shop: ShopSettings,
    pub orders: OrdersSettings,
    pub payments: PaymentsSettings,
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
            auth: AuthSettings::default(),
            admin: AdminConfig::default(),
            seed: SeedConfig::default(),
            shop: ShopSettings::default(),
            orders: OrdersSettings::default(),
            payments: PaymentsSettings::default(),
            cache: CacheConfig::default(),
            events: EventsConfig::default(),
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
        self.shop.validate()?;
        self.orders.validate()?;
        mercato_http::forwarded::TrustedProxies::parse(&self.http.trusted_proxies, &self.http.forwarded_header)?;
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
            if !databases::DOMAINS.contains(&domain.as_str()) && domain != databases::PLATFORM {
                return Err(format!(
                    "database.domains.{domain}: not a domain; use one of {}, {}",
                    databases::PLATFORM,
                    databases::DOMAINS.join(", ")
                ));
            }
            let scheme_ok = |url: &str| ["sqlite:", "postgres://", "postgresql://"].iter().any(|s| url.starts_with(s));
            if !d.shards.is_empty() {
                if domain != "orders" {
                    return Err(format!("database.domains.{domain}.shards: only orders are sharded"));
                }
                if !d.url.is_empty() {
                    return Err(format!(
                        "database.domains.{domain}: give either url or shards (its first shard database is its home)"
                    ));
                }
                if d.shards.iter().any(|u| !scheme_ok(u.expose())) {
                    return Err(format!("database.domains.{domain}.shards: use postgres://... or sqlite:PATH URLs"));
                }
                if d.shards.len() > usize::from(self.orders.logical_shards) {
                    return Err(format!(
                        "database.domains.{domain}.shards: more databases than orders.logical_shards ({})",
                        self.orders.logical_shards
                    ));
                }
                continue;
            }
            if !scheme_ok(d.url.expose()) {
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
        self.shop.currency()
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
    fn trusted_proxies_come_as_a_list_or_a_comma_separated_variable() {
        let c = Config::load(None, env(&[("MERCATO_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")])).unwrap();
        assert_eq!(c.http.trusted_proxies, vec!["10.0.0.0/8", "127.0.0.1"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.toml");
        std::fs::write(
            &file,
            "[http]\ntrusted_proxies = [\"::1\", \"192.168.0.0/16\"]\nforwarded_header = \"forwarded\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(c.http.trusted_proxies, vec!["::1", "192.168.0.0/16"]);
        let bad = Config::load(None, env(&[("MERCATO_HTTP_TRUSTED_PROXIES", "10.0.0.0/8,nginx")])).unwrap_err();
        assert!(bad.contains("http.trusted_proxies") && bad.contains("nginx"), "{bad}");
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
    fn orders_shards_come_from_a_list_and_only_orders_have_them() {
        let c = Config::load(
            None,
            env(&[("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", "postgres://o@a/orders,postgres://o@b/orders")]),
        )
        .unwrap();
        assert_eq!(c.database.shards_for("orders"), vec!["postgres://o@a/orders", "postgres://o@b/orders"]);
        assert_eq!(c.database.url_for("orders"), "postgres://o@a/orders", "the first shard database is the home");
        assert!(c.database.shards_for("cart").is_empty());
        let bad =
            Config::load(None, env(&[("MERCATO_DATABASE_DOMAINS_CART_SHARDS", "postgres://x@a/c,postgres://x@b/c")]));
        assert!(bad.unwrap_err().contains("only orders are sharded"));
        let bad = Config::load(
            None,
            env(&[
                ("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", "postgres://o@a/o,postgres://o@b/o"),
                ("MERCATO_DATABASE_DOMAINS_ORDERS_URL", "postgres://o@c/o"),
            ]),
        );
        assert!(bad.unwrap_err().contains("either url or shards"));
        let bad = Config::load(None, env(&[("MERCATO_ORDERS_LOGICAL_SHARDS", "300")]));
        assert!(bad.unwrap_err().contains("orders.logical_shards"));
        let bad = Config::load(
            None,
            env(&[
                ("MERCATO_ORDERS_LOGICAL_SHARDS", "1"),
                ("MERCATO_DATABASE_DOMAINS_ORDERS_SHARDS", "sqlite:a,sqlite:b"),
            ]),
        );
        assert!(bad.unwrap_err().contains("more databases than orders.logical_shards"));
    }

    #[test]
    fn printed_config_masks_secrets() {
        let c = Config::load(None, env(&[("MERCATO_ADMIN_PASSWORD", "hunter22")])).unwrap();
        let printed = c.to_toml_masked();
        assert!(!printed.contains("hunter22"));
        assert!(printed.contains("password = \"********\""));
    }
}
