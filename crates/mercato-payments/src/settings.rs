//! The payments domain's settings, the `[payments]` section (the built-in
//! test provider's).
use mercato_platform::secret::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsSettings {
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

impl Default for PaymentsSettings {
    fn default() -> Self {
        PaymentsSettings {
            webhook_secret: Secret::default(),
            webhook_url: String::new(),
            webhook_tolerance_secs: 300,
            async_settle_ms: 2000,
        }
    }
}
