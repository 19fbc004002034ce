//! The orders domain's surface: its use cases ([`Orders`]), the order and
//! its parts, its events and the order statuses they carry.

use crate::event;
use crate::payments::Payment;
use mercato_core::{Error, Id, Millis, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Address {
    pub fn validate(mut self) -> Result<Address, Error> {
        fn required(field: &str, v: &str, max: usize) -> Result<String, Error> {
            let t = v.trim();
            if t.is_empty() || t.chars().count() > max {
                return Err(Error::field(field, format!("must be 1 to {max} characters")));
            }
            Ok(t.to_string())
        }
        self.name = required("shipping_address.name", &self.name, 200)?;
        self.line1 = required("shipping_address.line1", &self.line1, 200)?;
        self.city = required("shipping_address.city", &self.city, 100)?;
        self.postal_code = required("shipping_address.postal_code", &self.postal_code, 20)?;
        let country = self.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::field(
                "shipping_address.country",
                "must be an ISO 3166-1 alpha-2 code such as US or DE",
            ));
        }
        self.country = country;
        for (field, v, max) in [
            ("shipping_address.line2", &mut self.line2, 200),
            ("shipping_address.region", &mut self.region, 100),
            ("shipping_address.phone", &mut self.phone, 40),
        ] {
            if let Some(s) = v {
                if s.chars().count() > max {
                    return Err(Error::field(field, format!("must be at most {max} characters")));
                }
                if s.trim().is_empty() {
                    *v = None;
                }
            }
        }
        Ok(self)
    }
}

/// An order's line: the cart's line as checkout priced it.
pub type OrderItem = crate::lines::PricedLine;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: Id,
    pub customer_id: Id,
    pub status: OrderStatus,
    pub currency: mercato_core::Currency,
    pub items: Vec<OrderItem>,
    pub subtotal: Money,
    pub discount: Money,
    /// Each promotion that made up `discount`, as applied at checkout.
    #[serde(default)]
    pub discounts: Vec<crate::promotions::Applied>,
    pub shipping: Money,
    pub tax: Money,
    pub total: Money,
    pub refunded: Money,
    /// None for a flash-sale purchase made without one (given before shipping).
    pub shipping_address: Option<Address>,
    /// Set when the order was bought in a flash sale: its unit belongs to the
    /// sale's allocation and returns there if the order is not paid.
    #[serde(default)]
    pub flash_sale_id: Option<Id>,
    pub shipping_method: String,
    /// When an unpaid order will be cancelled and its stock released.
    pub payment_due_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Default)]
pub struct AdminFilter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<Id>,
}

/// The answer to a checkout: the order as first created, and whether this was a
/// replay of an earlier request with the same key.
pub struct Placed {
    pub body: String,
    pub order_id: Id,
    pub replayed: bool,
}

/// What paying for an order came to.
pub enum PaymentResult {
    Paid(Payment),
    Processing(Payment),
}

/// What the orders domain does for the HTTP edge and for the flash-sale
/// purchase. Every move of an order is a conditional state change, so a
/// repeated call changes nothing twice.
#[async_trait::async_trait]
pub trait Orders: Send + Sync {
    async fn get(&self, id: Id) -> Result<Order, Error>;
    /// An order as its owner sees it: another customer's order does not exist.
    async fn get_for(&self, customer: Id, id: Id) -> Result<Order, Error>;
    /// Newest first, keyset-paginated by id; the cursor of the next page.
    async fn list(
        &self,
        filter: AdminFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Order>, Option<String>), Error>;
    /// Turns the customer's cart into an order, at most once per
    /// Idempotency-Key (`fingerprint` identifies the request's body).
    async fn place(
        &self,
        customer: Id,
        address: Address,
        shipping_method: Option<String>,
        key: Option<String>,
        fingerprint: String,
    ) -> Result<Placed, Error>;
    /// Creates the order of a flash-sale purchase, whose unit the caller has
    /// already moved into a reservation keyed by `order_id`. Idempotent on
    /// `order_id`.
    async fn place_flash(
        &self,
        order_id: Id,
        customer: Id,
        sale_id: Id,
        item: OrderItem,
        address: Option<Address>,
    ) -> Result<Order, Error>;
    /// Pays `customer`'s order `id` with the card.
    async fn pay(&self, customer: Id, id: Id, card_number: &str) -> Result<PaymentResult, Error>;
    /// The order's payment succeeded (a provider's late confirmation).
    async fn on_payment_succeeded(&self, id: Id) -> Result<(), Error>;
    async fn cancel_by_customer(&self, customer: Id, id: Id) -> Result<Order, Error>;
    async fn cancel_by_admin(&self, id: Id, reason: Option<String>) -> Result<Order, Error>;
    async fn fulfil(&self, id: Id) -> Result<Order, Error>;
    async fn complete(&self, id: Id) -> Result<Order, Error>;
    /// Refunds `amount` (all that is left when None) of a paid order.
    async fn refund(&self, id: Id, amount: Option<i64>, reason: Option<String>) -> Result<Order, Error>;
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_validated_and_normalised() {
        let a = Address {
            name: " Ann ".into(),
            line1: "1 Main St".into(),
            line2: Some("  ".into()),
            city: "Springfield".into(),
            region: None,
            postal_code: "12345".into(),
            country: "us".into(),
            phone: None,
        };
        let v = a.clone().validate().unwrap();
        assert_eq!(v.name, "Ann");
        assert_eq!(v.country, "US");
        assert_eq!(v.line2, None);
        let mut bad = a.clone();
        bad.country = "USA".into();
        assert!(bad.validate().is_err());
        let mut bad = a;
        bad.city = " ".into();
        assert!(bad.validate().is_err());
    }
}
