//! The orders domain's settings, the `[orders]` section.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersSettings {
    /// Unpaid orders are cancelled, and their stock released, after this long.
    pub payment_timeout_secs: u64,
    /// How often the expiry sweeper looks for overdue orders.
    pub sweep_interval_ms: u64,
    /// How long a checkout holds its Idempotency-Key. A checkout still unfinished
    /// after this is presumed crashed: a retry takes it over, and the sweeper
    /// releases its stock. Must exceed `http.request_timeout_ms`.
    pub checkout_lease_ms: u64,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        OrdersSettings { payment_timeout_secs: 900, sweep_interval_ms: 1000, checkout_lease_ms: 60_000 }
    }
}

impl OrdersSettings {
    /// The rules a configuration must keep, each error naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.payment_timeout_secs == 0 {
            return Err("orders.payment_timeout_secs: must be positive".into());
        }
        Ok(())
    }
}
