//! The orders domain's settings, the `[orders]` section.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersSettings {
    /// Unpaid orders are cancelled, and their stock released, after this long.
    pub payment_timeout_secs: u64,
    /// How often the expiry sweeper looks for overdue orders.
    pub sweep_interval_ms: u64,
    /// How long a claim lasts unrenewed: a checkout's Idempotency-Key
    /// record, a payment's claim on its order, a keyed request's stored
    /// answer. The request holding one renews it every third of this while
    /// it runs; when its process dies the claim lapses, a retry takes it
    /// over and the sweeper gives back what a checkout held. So this is how
    /// long a client waits after the instance serving it died.
    pub checkout_lease_ms: u64,
    /// Logical shards orders are spread over by customer (stage 7): order
    /// ids carry theirs, so this is fixed for the life of the shop's data.
    /// At most 256.
    pub logical_shards: u16,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        OrdersSettings {
            payment_timeout_secs: 900,
            sweep_interval_ms: 1000,
            checkout_lease_ms: 10_000,
            logical_shards: mercato_platform::shards::MAX_LOGICAL,
        }
    }
}

impl OrdersSettings {
    /// The rules a configuration must keep, each error naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.payment_timeout_secs == 0 {
            return Err("orders.payment_timeout_secs: must be positive".into());
        }
        // Renewed every third: shorter, and a busy database could let a
        // live request's claim lapse between two renewals.
        if self.checkout_lease_ms < 3_000 {
            return Err("orders.checkout_lease_ms: must be at least 3000".into());
        }
        if !(1..=mercato_platform::shards::MAX_LOGICAL).contains(&self.logical_shards) {
            return Err(format!(
                "orders.logical_shards: must be between 1 and {}",
                mercato_platform::shards::MAX_LOGICAL
            ));
        }
        Ok(())
    }
}
