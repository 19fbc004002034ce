//! The processes that span domains: placing an order from the cart, paying
//! it, cancelling and refunding it. They stand above the domains and reach
//! each only through its surface (`mercato_contracts`), as steps the domain
//! offers ([`mercato_platform::steps`]) or single calls, so each domain may
//! live in a database of its own, or behind a remote service, and the
//! process stays one definition:
//!
//! - `place`: the checkout, a saga keyed by the order id (begin, reserve,
//!   redeem, place, retire the cart), one transaction when the domains share
//!   a database.
//! - `pay`: the order leased while the payments domain charges, then marked
//!   paid and its units sold, with the payment's own record when they share a
//!   database; a payment that lands on a cancelled order is refunded.
//! - `cancel`: cancel or expire an order and give back what it held, or
//!   refund it.
//!
//! The flash-sale purchase is the flash-sale domain's own (its counter
//! decides), and calls the orders' surface for its order.

mod cancel;
mod pay;
mod place;

use mercato_contracts::cart::Cart;
use mercato_contracts::checkout::Checkout;
use mercato_contracts::inventory::Inventory;
use mercato_contracts::orders::{Address, Order, Orders, PaymentResult, Placed};
use mercato_contracts::payments::{PaymentSucceeded, Payments};
use mercato_contracts::promotions::Promotions;
use mercato_core::{Error, Id};
use mercato_platform::events::{EventBus, Received};
use mercato_platform::ids::IdGen;
use mercato_platform::now_ms;
use std::sync::Arc;

/// The domains a process calls, through their surfaces.
#[derive(Clone)]
pub struct CheckoutService {
    inner: Arc<Inner>,
}

struct Inner {
    ids: IdGen,
    bus: EventBus,
    orders: Arc<dyn Orders>,
    cart: Arc<dyn Cart>,
    inventory: Arc<dyn Inventory>,
    promotions: Arc<dyn Promotions>,
    payments: Arc<dyn Payments>,
}

impl CheckoutService {
    /// `bus` is scoped to the orders' database: the reactions below change
    /// orders first, so their inbox lives there.
    pub fn new(
        ids: IdGen,
        bus: EventBus,
        orders: Arc<dyn Orders>,
        cart: Arc<dyn Cart>,
        inventory: Arc<dyn Inventory>,
        promotions: Arc<dyn Promotions>,
        payments: Arc<dyn Payments>,
    ) -> Self {
        CheckoutService { inner: Arc::new(Inner { ids, bus, orders, cart, inventory, promotions, payments }) }
    }

    /// The processes' reactions to events. Call once at start-up.
    pub fn subscribe(&self) {
        // A payment reported only by the provider's event (a crash between
        // charging and marking the order paid) settles the order.
        self.inner.bus.on_with(
            &self.inner,
            "orders.on-payment",
            &["payment.succeeded"],
            |inner, e: Received<PaymentSucceeded>| async move {
                CheckoutService { inner }.settle(e.data.order_id).await
            },
        );
    }

    /// One pass of background upkeep: cancels overdue unpaid orders, gives
    /// back what checkouts that crashed (and were never retried) held, and
    /// settles payments a crash left open. Safe to run on every instance at
    /// once: every move is conditional.
    pub async fn sweep(&self) -> Result<usize, Error> {
        let now = now_ms();
        let mut n = 0;
        for id in self.inner.orders.overdue(now).await? {
            if self.expire(id).await? {
                n += 1;
            }
        }
        let abandoned = self.inner.orders.abandoned_checkouts(now).await?;
        n += abandoned.len();
        for a in abandoned {
            self.release_abandoned(a.customer_id, &a.key, a.order_id).await?;
        }
        for payment in self.inner.payments.reconcile(10_000).await? {
            self.settle(payment.order_id).await?;
            n += 1;
        }
        Ok(n)
    }
}

#[async_trait::async_trait]
impl Checkout for CheckoutService {
    async fn place(
        &self,
        customer: Id,
        address: Address,
        shipping_method: Option<String>,
        key: Option<String>,
        fingerprint: String,
    ) -> Result<Placed, Error> {
        self.place_order(customer, address, shipping_method, key, fingerprint).await
    }
    async fn pay(&self, customer: Id, id: Id, card_number: &str) -> Result<PaymentResult, Error> {
        self.pay_order(customer, id, card_number).await
    }
    async fn on_payment_succeeded(&self, id: Id) -> Result<(), Error> {
        self.settle(id).await
    }
    async fn cancel_by_customer(&self, customer: Id, id: Id) -> Result<Order, Error> {
        self.cancel_for_customer(customer, id).await
    }
    async fn cancel_by_admin(&self, id: Id, reason: Option<String>) -> Result<Order, Error> {
        self.cancel_for_admin(id, reason).await
    }
    async fn refund(&self, id: Id, amount: Option<i64>, reason: Option<String>) -> Result<Order, Error> {
        self.refund_order(id, amount, reason).await
    }
}
