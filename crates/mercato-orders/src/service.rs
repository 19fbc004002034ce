//! The orders service: its handle on the domain's database and on the
//! services it calls, the reactions it subscribes, and its reads (an order,
//! its owner's view of it, the admin listing).
//!
//! What it does to orders lives beside it, one module per responsibility, as
//! further `impl OrdersService` blocks: `checkout` and `flash` place orders,
//! `payment` pays them, `lifecycle` moves them on, `refunds` gives money back,
//! `sweep` is the background upkeep, and `store` holds every statement on the
//! domain's tables.

use crate::model::{Address, HistoryEntry, Order, OrderItem, OrderStatus};
use crate::settings::OrdersSettings;
use crate::store::{self, load_order};
use mercato_contracts::cart::Cart;
use mercato_contracts::inventory::Inventory;
use mercato_contracts::orders::{AdminFilter, Orders, PaymentResult, Placed};
use mercato_contracts::payments::{PaymentSucceeded, Payments};
use mercato_contracts::promotions::Promotions;
use mercato_core::{Currency, Error, Id, Money};
use mercato_platform::events::{EventBus, Received};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, now_ms};
use std::sync::Arc;

#[derive(Clone)]
pub struct OrdersService {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) ids: IdGen,
    pub(crate) bus: EventBus,
    pub(crate) cart: Arc<dyn Cart>,
    pub(crate) inventory: Arc<dyn Inventory>,
    pub(crate) payments: Arc<dyn Payments>,
    pub(crate) promotions: Arc<dyn Promotions>,
    pub(crate) cfg: OrdersSettings,
    currency: Currency,
}

impl OrdersService {
    pub fn new(
        db: Db,
        ids: IdGen,
        bus: EventBus,
        cart: Arc<dyn Cart>,
        inventory: Arc<dyn Inventory>,
        payments: Arc<dyn Payments>,
        promotions: Arc<dyn Promotions>,
        cfg: OrdersSettings,
        currency: Currency,
    ) -> Self {
        OrdersService { inner: Arc::new(Inner { db, ids, bus, cart, inventory, payments, promotions, cfg, currency }) }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub async fn get(&self, id: Id) -> Result<Order, Error> {
        self.inner.db.lookup(move |tx| load_order(tx, id)).await?.ok_or_else(|| Error::not_found("order not found"))
    }

    /// An order as its owner sees it: another customer's order does not exist.
    pub async fn get_for(&self, customer: Id, id: Id) -> Result<Order, Error> {
        let order = self.get(id).await?;
        if order.customer_id != customer {
            return Err(Error::not_found("order not found"));
        }
        Ok(order)
    }

    /// Newest first, keyset-paginated by id.
    pub async fn list(
        &self,
        filter: AdminFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Order>, Option<String>), Error> {
        if limit == 0 || limit > 100 {
            return Err(Error::field("limit", "must be between 1 and 100"));
        }
        let before = match cursor {
            Some(c) => {
                Some(c.parse::<i64>().map_err(|_| Error::field("cursor", "is not a cursor this listing returned"))?)
            }
            None => None,
        };
        self.inner
            .db
            .read(move |tx| {
                let ids = store::list_ids(tx, &filter, before, limit + 1)?;
                let more = ids.len() > limit;
                let mut orders = Vec::with_capacity(limit);
                for id in ids.into_iter().take(limit) {
                    if let Some(o) = load_order(tx, id)? {
                        orders.push(o);
                    }
                }
                let next = if more { orders.last().map(|o| o.id.to_string()) } else { None };
                Ok((orders, next))
            })
            .await
    }

    /// The orders' reactions to other domains' events. Call once at start-up.
    pub fn subscribe(&self) {
        self.inner.bus.on_with(
            &self.inner,
            "orders.on-payment",
            &["payment.succeeded"],
            |inner, e: Received<PaymentSucceeded>| async move {
                OrdersService { inner }.on_payment_succeeded(e.data.order_id).await
            },
        );
    }

    /// A new unpaid order, due for payment within the configured timeout.
    pub(crate) fn new_order(
        &self,
        id: Id,
        customer: Id,
        items: Vec<OrderItem>,
        totals: &mercato_contracts::cart::Totals,
        discounts: Vec<mercato_contracts::promotions::Applied>,
        shipping_address: Option<Address>,
        flash_sale_id: Option<Id>,
        shipping_method: String,
    ) -> Order {
        let now = now_ms();
        Order {
            id,
            customer_id: customer,
            status: OrderStatus::PendingPayment,
            currency: self.inner.currency,
            items,
            subtotal: totals.subtotal,
            discount: totals.discount,
            discounts,
            shipping: totals.shipping,
            tax: totals.tax,
            total: totals.total,
            refunded: Money::zero(self.inner.currency),
            shipping_address,
            flash_sale_id,
            shipping_method,
            payment_due_at: Some(now + (self.inner.cfg.payment_timeout_secs as i64) * 1000),
            created_at: now,
            updated_at: now,
            history: vec![HistoryEntry {
                from: None,
                to: OrderStatus::PendingPayment,
                actor: "customer".into(),
                note: flash_sale_id.map(|_| "flash sale".into()),
                at: now,
            }],
        }
    }
}

#[async_trait::async_trait]
impl Orders for OrdersService {
    async fn get(&self, id: Id) -> Result<Order, Error> {
        OrdersService::get(self, id).await
    }
    async fn get_for(&self, customer: Id, id: Id) -> Result<Order, Error> {
        OrdersService::get_for(self, customer, id).await
    }
    async fn list(
        &self,
        filter: AdminFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Order>, Option<String>), Error> {
        OrdersService::list(self, filter, limit, cursor).await
    }
    async fn place(
        &self,
        customer: Id,
        address: Address,
        shipping_method: Option<String>,
        key: Option<String>,
        fingerprint: String,
    ) -> Result<Placed, Error> {
        OrdersService::place(self, customer, address, shipping_method, key, fingerprint).await
    }
    async fn place_flash(
        &self,
        order_id: Id,
        customer: Id,
        sale_id: Id,
        item: OrderItem,
        address: Option<Address>,
    ) -> Result<Order, Error> {
        OrdersService::place_flash(self, order_id, customer, sale_id, item, address).await
    }
    async fn pay(&self, customer: Id, id: Id, card_number: &str) -> Result<PaymentResult, Error> {
        OrdersService::pay(self, customer, id, card_number).await
    }
    async fn on_payment_succeeded(&self, id: Id) -> Result<(), Error> {
        OrdersService::on_payment_succeeded(self, id).await
    }
    async fn cancel_by_customer(&self, customer: Id, id: Id) -> Result<Order, Error> {
        OrdersService::cancel_by_customer(self, customer, id).await
    }
    async fn cancel_by_admin(&self, id: Id, reason: Option<String>) -> Result<Order, Error> {
        OrdersService::cancel_by_admin(self, id, reason).await
    }
    async fn fulfil(&self, id: Id) -> Result<Order, Error> {
        OrdersService::fulfil(self, id).await
    }
    async fn complete(&self, id: Id) -> Result<Order, Error> {
        OrdersService::complete(self, id).await
    }
    async fn refund(&self, id: Id, amount: Option<i64>, reason: Option<String>) -> Result<Order, Error> {
        OrdersService::refund(self, id, amount, reason).await
    }
}
