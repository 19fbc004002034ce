//! The port every payment provider adapter implements.

use mercato_core::{Error, Id, Money};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        provider_ref: String,
    },
    /// The provider will confirm later, through a webhook.
    Pending {
        provider_ref: String,
    },
    Declined {
        code: String,
        message: String,
    },
}

/// A verified webhook, reduced to what the payments domain acts on.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub event_id: String,
    pub attempt_id: Id,
    pub outcome: ChargeOutcome,
}

#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Charges `amount`. `attempt_id` is the idempotency key: calling twice with
    /// the same id charges once and returns the first outcome.
    async fn charge(&self, attempt_id: Id, amount: Money, card_number: &str) -> Result<ChargeOutcome, Error>;
    /// What happened to an attempt, for reconciling after a crash.
    async fn retrieve(&self, attempt_id: Id) -> Result<Option<ChargeOutcome>, Error>;
    async fn refund(&self, attempt_id: Id, refund_id: Id, amount: Money) -> Result<(), Error>;
    /// Verifies and parses a webhook delivery.
    fn parse_webhook(&self, signature: &str, body: &[u8]) -> Result<ProviderEvent, Error>;
}
