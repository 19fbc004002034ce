//! The payments domain's surface: its use cases ([`Payments`]), their types
//! and its events.

use crate::event;
use mercato_core::{Error, Id, Millis, Money};
use mercato_platform::steps::Step;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    RequiresPayment,
    Processing,
    Succeeded,
}

impl PaymentStatus {
    /// The status stored as `s`; anything unknown still requires payment.
    pub fn from_db(s: &str) -> PaymentStatus {
        match s {
            "processing" => PaymentStatus::Processing,
            "succeeded" => PaymentStatus::Succeeded,
            _ => PaymentStatus::RequiresPayment,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub id: Id,
    pub order_id: Id,
    pub status: PaymentStatus,
    pub amount: Money,
    pub refunded: Money,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub id: Id,
    pub order_id: Id,
    pub amount: Money,
    pub reason: String,
    pub created_at: Millis,
}

pub enum PayOutcome {
    Succeeded(Payment),
    /// The provider confirms later (webhook); the order stays unpaid until then.
    Processing(Payment),
}

/// The header carrying the signature of a provider's notification to
/// [`Payments::handle_webhook`].
pub const SIGNATURE_HEADER: &str = "mercato-signature";

/// What the payments domain does for the HTTP edge and the orders domain:
/// one payment intent per order, charged at most once.
#[async_trait::async_trait]
pub trait Payments: Send + Sync {
    async fn for_order(&self, order: Id) -> Result<Option<Payment>, Error>;
    /// `order`'s payment if an attempt of it was asked for under the
    /// client's `Idempotency-Key` `key`: how a retry whose first answer was
    /// lost with a crashed instance gets that answer back.
    async fn by_request(&self, order: Id, key: &str) -> Result<Option<Payment>, Error>;
    /// Charges `amount` for `order` with the card. A second call for a paid
    /// order returns the payment without charging again. `before` (the
    /// caller's steps that must hold before a charge, such as claiming the
    /// order) commits with the start of the attempt, in its transaction
    /// where they share a database; a refusal of any of them charges
    /// nothing. `request_key`, the client's `Idempotency-Key`, is kept
    /// with the attempt (see `by_request`). When the charge succeeds, `then` (the caller's steps that
    /// follow a payment) runs after the success is recorded, likewise;
    /// should they fail once it is recorded, the payment still succeeded and
    /// `payment.succeeded` tells the caller's subscriber.
    async fn pay(
        &self,
        order: Id,
        amount: Money,
        card_number: &str,
        request_key: Option<&str>,
        before: Vec<Step>,
        then: Vec<Step>,
    ) -> Result<PayOutcome, Error>;
    /// A signed notification from the provider; the payment it settled, if any.
    async fn handle_webhook(&self, signature: &str, body: &[u8]) -> Result<Option<Payment>, Error>;
    /// Asks the provider about attempts left processing for longer than
    /// `older_than_ms`; the payments that settled.
    async fn reconcile(&self, older_than_ms: i64) -> Result<Vec<Payment>, Error>;
    /// Gives back `amount` (all that is left when None) of `order`'s payment.
    async fn refund(&self, order: Id, amount: Option<i64>, reason: &str) -> Result<Refund, Error>;
}

/// `payment.succeeded`: the order's payment was captured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaymentSucceeded {
    #[schema(value_type = String)]
    pub payment_id: Id,
    #[schema(value_type = String)]
    pub order_id: Id,
    #[schema(value_type = crate::MoneySchema)]
    pub amount: Money,
}
event!(PaymentSucceeded, aggregate "payment", "payment.succeeded", version 1, |e| e.order_id);

/// `payment.refunded`: the provider refunded `amount` of the order's payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaymentRefunded {
    #[schema(value_type = String)]
    pub order_id: Id,
    #[schema(value_type = String)]
    pub refund_id: Id,
    #[schema(value_type = crate::MoneySchema)]
    pub amount: Money,
}
event!(PaymentRefunded, aggregate "payment", "payment.refunded", version 1, |e| e.order_id);
