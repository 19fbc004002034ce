//! The payments domain's events.

use crate::event;
use mercato_core::{Id, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
