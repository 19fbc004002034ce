//! Plain rules, without I/O: endpoint validation, event-pattern matching, the
//! retry schedule, the payload timestamp format and the signature.

use mercato_core::Error;

use std::time::Duration;

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_PATTERNS: usize = 50;
pub const MAX_PATTERN_LEN: usize = 100;
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "Mercato-Signature";
/// Header carrying `evt_<event id>`: the same on every attempt, so receivers
/// can drop duplicates (delivery is at least once).
pub const ID_HEADER: &str = "Mercato-Webhook-Id";

/// Checks an endpoint URL: absolute http(s) with a host, no credentials, at
/// most 2048 characters. Returns it trimmed.
pub fn validate_url(raw: &str) -> Result<String, Error> {
    let url = raw.trim();
    if url.is_empty() {
        return Err(Error::field("url", "is required"));
    }
    if url.len() > MAX_URL_LEN {
        return Err(Error::field("url", format!("must be at most {MAX_URL_LEN} characters")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| Error::field("url", format!("is not a valid URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::field("url", "must use http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::field("url", "must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::field("url", "must not carry credentials"));
    }
    if parsed.fragment().is_some() {
        return Err(Error::field("url", "must not have a fragment"));
    }
    Ok(url.to_string())
}

/// Checks event patterns: `*` (every event), an exact kind (`order.paid`) or a
/// prefix ending in `.` (`order.`); 1 to 50 of them. Duplicates are dropped,
/// order is kept.
pub fn validate_patterns(patterns: Vec<String>) -> Result<Vec<String>, Error> {
    if patterns.is_empty() {
        return Err(Error::field("events", "must list at least one event pattern"));
    }
    if patterns.len() > MAX_PATTERNS {
        return Err(Error::field("events", format!("must list at most {MAX_PATTERNS} event patterns")));
    }
    let mut out: Vec<String> = Vec::with_capacity(patterns.len());
    for p in patterns {
        let p = p.trim().to_string();
        if !valid_pattern(&p) {
            return Err(Error::field(
                "events",
                format!(
                    "'{p}' is not an event pattern: use '*', an event type such as 'order.paid', or a prefix such as 'order.'"
                ),
            ));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn valid_pattern(p: &str) -> bool {
    if p == "*" {
        return true;
    }
    if p.is_empty() || p.len() > MAX_PATTERN_LEN {
        return false;
    }
    let body = p.strip_suffix('.').unwrap_or(p);
    !body.is_empty()
        && body.split('.').all(|seg| {
            !seg.is_empty()
                && seg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

/// Whether an endpoint subscribed to `patterns` wants an event of `kind`.
pub fn matches(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| p == "*" || p == kind || (p.ends_with('.') && kind.starts_with(p.as_str())))
}

/// How failed attempts are retried: exponential backoff (factor 2) from `base`,
/// capped at `cap`, with full jitter (a uniformly random delay between zero
/// and the exponential ceiling), until `max_attempts` attempts have failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: u32,
    /// Full jitter on (the default). Off makes every delay equal its ceiling:
    /// only for tests that assert exact schedules.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(3600), max_attempts: 10, jitter: true }
    }
}

impl RetryPolicy {
    /// The largest delay after the `failures`-th consecutive failed attempt
    /// (1-based): `min(cap, base * 2^(failures - 1))`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(40);
        let base = self.base.as_millis().min(u64::MAX as u128) as u64;
        let ms = base.saturating_mul(1u64 << exp);
        Duration::from_millis(ms).min(self.cap)
    }

    /// The delay before the next attempt after the `failures`-th failure.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        if !self.jitter {
            return ceiling;
        }
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { rand::random_range(0..=ms) })
    }

    /// Whether a delivery that has failed `failures` times is given up.
    pub fn exhausted(&self, failures: u32) -> bool {
        failures >= self.max_attempts
    }
}

pub use mercato_platform::rfc3339;
pub use mercato_platform::signature::{sign, verify};

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host_and_short() {
        assert_eq!(validate_url(" https://example.com/hook ").unwrap(), "https://example.com/hook");
        assert!(validate_url("http://127.0.0.1:8080/x?y=1").is_ok());
        for bad in ["", "ftp://example.com", "example.com/hook", "https://", "https://u:p@example.com", "mailto:a@b"] {
            assert!(validate_url(bad).is_err(), "{bad} must be refused");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(validate_url(&long).is_err());
        let just = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        assert_eq!(just.len(), MAX_URL_LEN);
        assert!(validate_url(&just).is_ok());
    }

    #[test]
    fn patterns_are_star_exact_kinds_or_dot_prefixes() {
        assert_eq!(
            validate_patterns(v(&["order.", "*", "order.", "stock.changed"])).unwrap(),
            v(&["order.", "*", "stock.changed"])
        );
        for bad in ["", "order*", "order.*", ".order", "order..paid", "Order.paid", "order paid", "**"] {
            assert!(validate_patterns(v(&[bad])).is_err(), "{bad:?} must be refused");
        }
        assert!(validate_patterns(vec![]).is_err());
        let many: Vec<String> = (0..51).map(|i| format!("k{i}.x")).collect();
        assert!(validate_patterns(many.clone()).is_err());
        assert!(validate_patterns(many[..50].to_vec()).is_ok());
    }

    #[test]
    fn matching_is_exact_or_by_dot_prefix() {
        let p = v(&["order.", "stock.changed"]);
        assert!(matches(&p, "order.paid"));
        assert!(matches(&p, "stock.changed"));
        assert!(!matches(&p, "orders.paid"));
        assert!(!matches(&p, "stock.changed.more"));
        assert!(!matches(&p, "product.created"));
        assert!(matches(&v(&["*"]), "anything.at_all"));
        assert!(!matches(&v(&["order.paid"]), "order.paid_late"));
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_with_full_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_secs(1));
        assert_eq!(p.ceiling(2), Duration::from_secs(2));
        assert_eq!(p.ceiling(5), Duration::from_secs(16));
        assert_eq!(p.ceiling(13), Duration::from_secs(3600));
        assert_eq!(p.ceiling(100), Duration::from_secs(3600));
        for n in 1..=12 {
            let mut sum = Duration::ZERO;
            for _ in 0..200 {
                let d = p.delay(n);
                assert!(d <= p.ceiling(n));
                sum += d;
            }
            // Full jitter: the mean is about half the ceiling, not the ceiling.
            let mean = sum / 200;
            assert!(mean > p.ceiling(n) / 4 && mean < p.ceiling(n) * 3 / 4, "attempt {n}: mean {mean:?}");
        }
        let fixed = RetryPolicy { jitter: false, ..p };
        assert_eq!(fixed.delay(3), Duration::from_secs(4));
        assert!(!p.exhausted(9));
        assert!(p.exhausted(10));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_735_689_600_000), "2025-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_825_845_123), "2000-02-29T12:04:05.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn signatures_match_an_independent_hmac_and_verify() {
        let body = br#"{"id":"evt_1"}"#;
        // Computed with Python's hmac module.
        assert_eq!(
            sign(b"whsec_test", 1_700_000_000, body),
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
        let header = sign(b"whsec_test", 1_000, body);
        assert!(verify(b"whsec_test", &header, body, 1_010, 300).is_ok());
        assert!(verify(b"whsec_test", &header, br#"{"id":"evt_2"}"#, 1_010, 300).is_err());
        assert!(verify(b"other", &header, body, 1_010, 300).is_err());
        assert!(verify(b"whsec_test", &header, body, 1_301, 300).is_err());
    }
}
