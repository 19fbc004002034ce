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
//! - `flash`: the flash-sale purchase (the flash-sale domain's counter
//!   decides who may buy; the unit, the record and the order follow), and
//!   the creation of a sale, whose units inventory sets aside first.

mod cancel;
mod flash;
mod pay;
mod place;

use mercato_contracts::cart::Cart;
use mercato_contracts::catalog::Catalog;
use mercato_contracts::checkout::Checkout;
use mercato_contracts::flashsale::{FlashSale, FlashSales, NewFlashSale};
use mercato_contracts::inventory::Inventory;
use mercato_contracts::orders::{Address, Order, OrderStatus, OrderStatusChanged, Orders, PaymentResult, Placed};
use mercato_contracts::payments::{PaymentSucceeded, Payments};
use mercato_contracts::promotions::Promotions;
use mercato_core::{Error, Id};
use mercato_platform::events::{EventBus, Received};
use mercato_platform::ids::IdGen;
use mercato_platform::now_ms;
use std::sync::Arc;

/// The processes, over the domains they call.
#[derive(Clone)]
pub struct CheckoutService {
    inner: Arc<Inner>,
}

/// The domains the processes call, each through its surface: an
/// in-process service or, later, a remote client.
pub struct Surfaces {
    pub orders: Arc<dyn Orders>,
    pub cart: Arc<dyn Cart>,
    pub inventory: Arc<dyn Inventory>,
    pub promotions: Arc<dyn Promotions>,
    pub payments: Arc<dyn Payments>,
    pub catalog: Arc<dyn Catalog>,
    pub flash: Arc<dyn FlashSales>,
}

struct Inner {
    ids: IdGen,
    bus: EventBus,
    orders: Arc<dyn Orders>,
    cart: Arc<dyn Cart>,
    inventory: Arc<dyn Inventory>,
    promotions: Arc<dyn Promotions>,
    payments: Arc<dyn Payments>,
    catalog: Arc<dyn Catalog>,
    flash: Arc<dyn FlashSales>,
}

impl CheckoutService {
    /// `ids` mints order and sale ids; `bus` carries the reactions below.
    pub fn new(ids: IdGen, bus: EventBus, s: Surfaces) -> Self {
        let Surfaces { orders, cart, inventory, promotions, payments, catalog, flash } = s;
        CheckoutService {
            inner: Arc::new(Inner { ids, bus, orders, cart, inventory, promotions, payments, catalog, flash }),
        }
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
        // An unpaid flash order's unit goes back to its sale.
        self.inner.bus.on_with(
            &self.inner,
            "flashsale.on-order-cancelled",
            &["order.cancelled"],
            |inner, e: Received<OrderStatusChanged>| async move {
                match e.data {
                    OrderStatusChanged {
                        order_id, flash_sale_id: Some(_), from: OrderStatus::PendingPayment, ..
                    } => CheckoutService { inner }.on_order_cancelled(order_id).await,
                    _ => Ok(()),
                }
            },
        );
    }

    /// One pass of background upkeep: cancels overdue unpaid orders, gives
    /// back what checkouts that crashed (and were never retried) held,
    /// settles payments a crash left open, finishes or undoes flash-sale
    /// purchases a crash left pending and closes ended sales. Safe to run on
    /// every instance at once: every move is conditional.
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
        self.sweep_flash().await?;
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
    async fn pay(&self, customer: Id, id: Id, card_number: &str, key: Option<&str>) -> Result<PaymentResult, Error> {
        self.pay_order(customer, id, card_number, key).await
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
    async fn create_flash_sale(&self, new: NewFlashSale) -> Result<FlashSale, Error> {
        self.create_sale(new).await
    }
    async fn purchase_flash(
        &self,
        sale: Id,
        customer: Id,
        key: &str,
        address: Option<Address>,
    ) -> Result<(Order, bool), Error> {
        self.purchase(sale, customer, key, address).await
    }
}
