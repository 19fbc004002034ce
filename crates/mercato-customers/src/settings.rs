//! The customers domain's settings, the `[auth]` section: sessions, login
//! throttling and password hashing.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
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

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token_ttl_secs: 3600,
            login_failures_per_account: 5,
            login_failures_per_address: 50,
            login_window_secs: 900,
            argon2_memory_kib: 19_456,
        }
    }
}
