//! The orders domain's surface: its use cases ([`Orders`]), the order and
//! its parts, its events and the order statuses they carry.

use crate::cart::Totals;
use crate::event;
use crate::payments::Payment;
use crate::promotions::Applied;
use mercato_core::{Error, Id, Millis, Money};
use mercato_platform::steps::Step;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
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
    /// Placed at or after this time (ms since 1970).
    pub created_from: Option<Millis>,
    /// Placed before this time.
    pub created_to: Option<Millis>,
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

/// What a new order is made of, priced by the process that places it.
pub struct Draft {
    pub customer_id: Id,
    pub items: Vec<OrderItem>,
    pub totals: Totals,
    pub discounts: Vec<Applied>,
    pub shipping_address: Option<Address>,
    pub shipping_method: String,
    pub flash_sale_id: Option<Id>,
}

/// What a checkout's first step found under its Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// A new record, `pending` under this attempt's order id.
    Mine,
    /// A finished checkout: its answer and order, to replay.
    Replay(String, Id),
    /// An attempt whose lease ran out: it must be fenced and what it held
    /// given back before the key is used again.
    Abandoned(Id),
}

/// A checkout record whose attempt was given up (fenced), its holds still to
/// be given back.
#[derive(Debug, Clone)]
pub struct Abandoned {
    pub customer_id: Id,
    pub key: String,
    pub order_id: Id,
}

/// What marking an order paid did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaidOutcome {
    /// Already paid (a repeated report): nothing.
    #[default]
    Nothing,
    /// Paid now: its held units are to be sold.
    Paid,
    /// Cancelled meanwhile: the payment must be refunded.
    Refund,
}

/// What the step that marks an order paid saw: `seen` inside its
/// transaction (what steps joined to it may look at), `settled` once it
/// committed.
#[derive(Debug, Default)]
pub struct Marked {
    pub seen: Mutex<PaidOutcome>,
    pub settled: Mutex<Option<PaidOutcome>>,
}

/// What paying an order needs to know of it.
#[derive(Debug, Clone)]
pub struct Payable {
    pub customer_id: Id,
    pub status: OrderStatus,
    pub total: Money,
    pub payment_due_at: Option<Millis>,
}

/// Who cancels an order: a customer only an unpaid one, an admin also a
/// paid one, with a reason for its history.
#[derive(Debug, Clone)]
pub enum CancelledBy {
    Customer,
    Admin { reason: Option<String> },
}

/// What the orders domain does: its reads and admin moves for the HTTP
/// edge, and the orders' part of the processes that span domains
/// (`mercato_contracts::checkout`), each a step or a single write on the
/// orders' own tables. Every move of an order is a conditional state change,
/// so a repeated call changes nothing twice.
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
    async fn fulfil(&self, id: Id) -> Result<Order, Error>;
    async fn complete(&self, id: Id) -> Result<Order, Error>;

    // ---- placing an order ----

    /// A new order id for `customer`: it carries the customer's logical
    /// shard (stage 7), so the order is found from its id alone wherever
    /// the shard's database is.
    fn new_order_id(&self, customer: Id) -> Result<Id, Error>;
    /// A new unpaid order `id` of `draft`, due for payment within the
    /// configured window. Nothing is written.
    fn draft(&self, id: Id, draft: Draft) -> Order;
    /// The stored answer of a finished checkout with this key, if any; an
    /// error if the key was used with another body or is still in progress.
    async fn replay(&self, customer: Id, key: &str, fingerprint: &str) -> Result<Option<Placed>, Error>;
    /// A checkout's first step: the key's record, `pending` under
    /// `order_id` with a lease. Anything but [`Begun::Mine`] goes in `begun`
    /// and refuses the step.
    fn begin_step(
        &self,
        customer: Id,
        key: &str,
        fingerprint: &str,
        order_id: Id,
        begun: Arc<Mutex<Option<Begun>>>,
    ) -> Step;
    /// A checkout's commit point: the key's record moves from `pending` to
    /// `done` with the answer `body`, in the transaction that writes the
    /// order; refused once the attempt was given up.
    fn place_step(&self, customer: Id, key: &str, order: Order, cart_id: Id, body: String) -> Result<Step, Error>;
    /// Writes the order of a flash-sale purchase; nothing if it exists.
    fn place_flash_step(&self, order: Order) -> Result<Step, Error>;
    /// How long a checkout's record or a payment's claim lasts unrenewed:
    /// the process holding it renews it every third of that.
    fn claim_lease(&self) -> std::time::Duration;
    /// Extends the lease of the key's `pending` record of `order_id` (its
    /// checkout is still running).
    async fn renew_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error>;
    /// Fences the key's record of abandoned attempt `order_id`, so it can no
    /// longer place its order while its holds are given back.
    async fn fence_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error>;
    /// Forgets the key's `pending` record of `order_id` (its attempt was
    /// refused and compensated), so the key may be used again.
    async fn forget_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error>;
    /// Marks the key's abandoned record of `order_id` released: its holds
    /// are back and the key is free.
    async fn release_checkout(&self, customer: Id, key: &str, order_id: Id) -> Result<(), Error>;
    /// Fences the `pending` records whose lease ran out before `now`, then
    /// lists (up to 200) fenced records whose holds are still to be given
    /// back. A pass with nothing to do is one read.
    async fn abandoned_checkouts(&self, now: Millis) -> Result<Vec<Abandoned>, Error>;
    /// Forgets finished checkouts older than the Idempotency-Key replay
    /// window (24 hours); how many.
    async fn purge_checkouts(&self) -> Result<u64, Error>;

    // ---- paying and refunding ----

    /// What paying order `id` needs to know of it, if it exists.
    async fn payable(&self, id: Id) -> Result<Option<Payable>, Error>;
    /// Claims unpaid order `id` for one payment (a lease), so neither a
    /// cancel nor expiry slips in while it is charged; refused while another
    /// payment holds it or once it is no longer unpaid. `leased` is set once
    /// the claim is committed.
    fn lease_payment_step(&self, id: Id, leased: Arc<AtomicBool>) -> Step;
    async fn release_payment_lease(&self, id: Id) -> Result<(), Error>;
    /// Extends the payment claim on unpaid order `id` (its payment is still running).
    async fn renew_payment_lease(&self, id: Id) -> Result<(), Error>;
    /// Marks order `id` paid (its payment succeeded); what it did goes in
    /// `marked`.
    fn mark_paid_step(&self, id: Id, marked: Arc<Marked>) -> Result<Step, Error>;
    async fn status(&self, id: Id) -> Result<Option<OrderStatus>, Error>;
    /// Checks a refund of `amount` (None: all not yet refunded) is legal for
    /// order `id` now; the amount it comes to.
    async fn refundable(&self, id: Id, amount: Option<i64>) -> Result<i64, Error>;
    /// Counts `amount` as refunded; a full refund moves a paid order to
    /// `refunded`.
    async fn record_refund(&self, id: Id, amount: i64) -> Result<(), Error>;

    // ---- cancelling ----

    /// Cancels order `id`; the status it left.
    async fn cancel(&self, id: Id, by: CancelledBy) -> Result<OrderStatus, Error>;
    /// Cancels unpaid order `id` whose payment window closed; false if it
    /// had moved on.
    async fn expire(&self, id: Id) -> Result<bool, Error>;
    /// Up to 200 unpaid orders whose payment window closed by `now`.
    async fn overdue(&self, now: Millis) -> Result<Vec<Id>, Error>;
    /// The flash sale order `id` was bought in, if any.
    async fn flash_sale_of(&self, id: Id) -> Result<Option<Id>, Error>;
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
