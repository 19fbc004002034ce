//! The customers domain's settings, the `[auth]` section: sessions, login
//! throttling and password hashing.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Access-token lifetime.
    pub token_ttl_secs: u64,
    /// Login attempts one client may make at once for one account; each
    /// after waits twice as long as the one before (1 s, 2 s, 4 s...), up
    /// to `login_window_secs`. Another client is not slowed by them.
    pub login_failures_per_account: u32,
    /// Login attempts one client may make at once across accounts, then
    /// likewise slowed. Successful logins are not counted.
    pub login_failures_per_address: u32,
    /// A count is forgotten after this long without attempts, and no wait
    /// is longer.
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
