//! The orders domain's events, and the order statuses they carry.

use crate::event;
use mercato_core::{Error, Id, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Fulfilled,
    Completed,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "pending_payment" => OrderStatus::PendingPayment,
            "paid" => OrderStatus::Paid,
            "fulfilled" => OrderStatus::Fulfilled,
            "completed" => OrderStatus::Completed,
            "cancelled" => OrderStatus::Cancelled,
            "refunded" => OrderStatus::Refunded,
            other => return Err(Error::field("status", format!("'{other}' is not an order status"))),
        })
    }
}

/// `order.placed`: a checkout (or a flash-sale purchase) created the order,
/// awaiting payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderPlaced {
    #[schema(value_type = String)]
    pub order_id: Id,
    #[schema(value_type = String)]
    pub customer_id: Id,
    /// The cart it came from; none for a flash-sale purchase.
    #[schema(value_type = Option<String>)]
    pub cart_id: Option<Id>,
    #[schema(value_type = Option<String>)]
    pub flash_sale_id: Option<Id>,
    #[schema(value_type = crate::MoneySchema)]
    pub total: Money,
}
event!(OrderPlaced, aggregate "order", "order.placed", version 1, |e| e.order_id);

/// `order.<to>`: the order moved from `from` to `to` (`order.paid`,
/// `order.fulfilled`, `order.completed`, `order.cancelled`,
/// `order.refunded`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderStatusChanged {
    #[schema(value_type = String)]
    pub order_id: Id,
    pub from: OrderStatus,
    pub to: OrderStatus,
    /// What moved it: `pay`, `fulfil`, `complete`, `cancel`, `expire` (the
    /// payment window closed) or `refund`.
    pub action: String,
    #[schema(value_type = Option<String>)]
    pub flash_sale_id: Option<Id>,
}

impl crate::DomainEvent for OrderStatusChanged {
    const AGGREGATE: &'static str = "order";
    const VERSION: u32 = 1;
    const TYPES: &'static [&'static str] = &[
        "order.pending_payment",
        "order.paid",
        "order.fulfilled",
        "order.completed",
        "order.cancelled",
        "order.refunded",
    ];
    fn event_type(&self) -> &'static str {
        match self.to {
            OrderStatus::PendingPayment => "order.pending_payment",
            OrderStatus::Paid => "order.paid",
            OrderStatus::Fulfilled => "order.fulfilled",
            OrderStatus::Completed => "order.completed",
            OrderStatus::Cancelled => "order.cancelled",
            OrderStatus::Refunded => "order.refunded",
        }
    }
    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
}

/// `order.refund_recorded`: `amount` (minor units) was refunded; `full` when
/// the order is now refunded in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderRefundRecorded {
    #[schema(value_type = String)]
    pub order_id: Id,
    pub amount: i64,
    pub full: bool,
}
event!(OrderRefundRecorded, aggregate "order", "order.refund_recorded", version 1, |e| e.order_id);
