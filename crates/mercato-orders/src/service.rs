use crate::model::{Action, Address, HistoryEntry, Order, OrderItem, OrderStatus, next};
use mercato_cart::CartService;
use mercato_contracts::orders::{OrderPlaced, OrderRefundRecorded, OrderStatusChanged};
use mercato_contracts::payments::PaymentSucceeded;
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_inventory::InventoryService;
use mercato_payments::{PayOutcome, Payment, PaymentsService};
use mercato_platform::config::OrdersConfig;
use mercato_platform::db::Param;
use mercato_platform::events::{EventBus, Received, publish};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, Row, Tx, now_ms, params};
use mercato_promotions::PromotionsService;
use std::sync::Arc;

#[derive(Clone)]
pub struct OrdersService {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) ids: IdGen,
    pub(crate) bus: EventBus,
    pub(crate) cart: CartService,
    pub(crate) inventory: InventoryService,
    payments: PaymentsService,
    pub(crate) promotions: PromotionsService,
    pub(crate) cfg: OrdersConfig,
    currency: Currency,
}

pub enum PaymentResult {
    Paid(Payment),
    Processing(Payment),
}

#[derive(Debug, Clone, Default)]
pub struct AdminFilter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<Id>,
}

enum PaidOutcome {
    /// The order is now paid; its held units are to be sold.
    Paid,
    /// The payment landed on a cancelled order.
    Refund,
    Nothing,
}

/// The order is paid (its payment just succeeded). Already paid (a
/// duplicate report): nothing. Cancelled meanwhile: the payment must be
/// refunded. Its held units are sold by the inventory domain afterwards
/// (directly, and by the `order.paid` subscriber after a crash).
fn paid_in(tx: &mut dyn Tx, hid: Id, id: Id) -> Result<PaidOutcome, Error> {
    match transition(tx, hid, id, Action::Pay, None, "payment", None) {
        Ok(_) => Ok(PaidOutcome::Paid),
        Err(e) if e.code == ErrorCode::IllegalTransition => {
            let status = tx.query_one("SELECT status FROM orders WHERE id = $1", params![id])?.text(0)?;
            if status != "cancelled" {
                return Ok(PaidOutcome::Nothing);
            }
            // Cancelled after it was paid (an admin cancel, which refunds it
            // itself): this is a late report of the payment already applied,
            // not a payment that landed on a cancelled order.
            let was_paid = tx
                .query_opt("SELECT 1 FROM order_history WHERE order_id = $1 AND to_status = 'paid'", params![id])?
                .is_some();
            Ok(if was_paid { PaidOutcome::Nothing } else { PaidOutcome::Refund })
        }
        Err(e) => Err(e),
    }
}

/// Lets another payment of unpaid order `id` start at once.
fn release_payment_lease_in(tx: &mut dyn Tx, id: Id) -> Result<(), Error> {
    tx.execute(
        "UPDATE orders SET payment_lock_until = NULL WHERE id = $1 AND status = 'pending_payment'",
        params![id],
    )?;
    Ok(())
}

/// What paying an order needs to know of it.
struct Payable {
    customer_id: Id,
    status: OrderStatus,
    total: Money,
    payment_due_at: Option<i64>,
}

const ORDER_COLUMNS: &str = "id, customer_id, status, currency, subtotal, discount, shipping, tax, total, refunded, \
     shipping_address, shipping_method, payment_due_at, created_at, updated_at, discounts, flash_sale_id";

fn load_order(tx: &mut dyn Tx, id: Id) -> Result<Option<Order>, Error> {
    let Some(r) = tx.query_opt(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"), params![id])? else {
        return Ok(None);
    };
    let currency: Currency = r.str(3)?.parse()?;
    let m = |r: &Row, i: usize| -> Result<Money, Error> { Ok(Money::new(r.int(i)?, currency)) };
    let items = tx
        .query(
            "SELECT sku, product_id, name, options, quantity, unit_price, line_total FROM order_items WHERE order_id = $1 ORDER BY line",
            params![id],
        )?
        .iter()
        .map(|i| {
            Ok(OrderItem {
                sku: i.text(0)?,
                product_id: i.id(1)?,
                name: i.text(2)?,
                options: serde_json::from_str(i.str(3)?).unwrap_or_default(),
                quantity: i.int(4)?,
                unit_price: m(i, 5)?,
                line_total: m(i, 6)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let history = tx
        .query(
            "SELECT from_status, to_status, actor, note, at FROM order_history WHERE order_id = $1 ORDER BY id",
            params![id],
        )?
        .iter()
        .map(|h| {
            Ok(HistoryEntry {
                from: h.opt_text(0)?.map(|s| OrderStatus::parse(&s)).transpose()?,
                to: OrderStatus::parse(h.str(1)?)?,
                actor: h.text(2)?,
                note: h.opt_text(3)?,
                at: h.int(4)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Some(Order {
        id: r.id(0)?,
        customer_id: r.id(1)?,
        status: OrderStatus::parse(r.str(2)?)?,
        currency,
        items,
        subtotal: m(&r, 4)?,
        discount: m(&r, 5)?,
        shipping: m(&r, 6)?,
        tax: m(&r, 7)?,
        total: m(&r, 8)?,
        refunded: m(&r, 9)?,
        discounts: r.opt_text(15)?.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
        shipping_address: serde_json::from_str(r.str(10)?).map_err(|e| Error::internal(e.to_string()))?,
        flash_sale_id: r.opt_int(16)?.map(Id),
        shipping_method: r.text(11)?,
        payment_due_at: r.opt_int(12)?,
        created_at: r.int(13)?,
        updated_at: r.int(14)?,
        history,
    }))
}

fn history(
    tx: &mut dyn Tx,
    id: Id,
    order: Id,
    from: Option<OrderStatus>,
    to: OrderStatus,
    actor: &str,
    note: Option<&str>,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO order_history (id, order_id, from_status, to_status, actor, note, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![id, order, from.map(|s| s.as_str()), to.as_str(), actor, note, now_ms()],
    )?;
    Ok(())
}

/// Moves `order` by `action` if its status still allows it, recording history
/// and the event in the same transaction. Returns (from, to).
///
/// `required_from` narrows the legal starting states (a customer may cancel
/// only an unpaid order, though an admin may also cancel a paid one). While a
/// payment holds the order's lease, nothing but the payment itself may move it.
fn transition(
    tx: &mut dyn Tx,
    history_id: Id,
    order: Id,
    action: Action,
    required_from: Option<OrderStatus>,
    actor: &str,
    note: Option<&str>,
) -> Result<(OrderStatus, OrderStatus), Error> {
    let row = tx
        .query_opt("SELECT status, payment_lock_until, flash_sale_id FROM orders WHERE id = $1", params![order])?
        .ok_or_else(|| Error::not_found("order not found"))?;
    let from = OrderStatus::parse(row.str(0)?)?;
    if required_from.is_some_and(|r| r != from) {
        return Err(Error::illegal_transition(from.as_str(), action.verb()));
    }
    let to = next(from, action)?;
    let now = now_ms();
    let locked = row.opt_int(1)?.is_some_and(|until| until > now);
    if locked && action != Action::Pay {
        return Err(Error::illegal_transition(from.as_str(), action.verb())
            .with_details(serde_json::json!({ "reason": "a payment for this order is in progress" })));
    }
    let moved = tx.execute(
        "UPDATE orders SET status = $1, updated_at = $2, payment_lock_until = NULL WHERE id = $3 AND status = $4",
        params![to.as_str(), now, order, from.as_str()],
    )?;
    if moved == 0 {
        return Err(Error::new(ErrorCode::Transient, "order changed concurrently"));
    }
    if from != to {
        history(tx, history_id, order, Some(from), to, actor, note)?;
        publish(
            tx,
            &OrderStatusChanged {
                order_id: order,
                from,
                to,
                action: action.verb().to_string(),
                flash_sale_id: row.opt_int(2)?.map(Id),
            },
        )?;
    }
    Ok((from, to))
}

/// Writes a new order: its row, items, first history entry and the
/// `order.placed` event, in the caller's transaction.
pub(crate) fn insert_order(
    tx: &mut dyn Tx,
    o: &Order,
    history_id: Id,
    cart_id: Option<Id>,
    key: Option<&str>,
) -> Result<(), Error> {
    let (address, discounts) = (to_json(&o.shipping_address)?, to_json(&o.discounts)?);
    tx.execute(
        &format!(
            "INSERT INTO orders ({ORDER_COLUMNS}, cart_id, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13, $13, $14, $15, $16, $17)"
        ),
        params![
            o.id,
            o.customer_id,
            o.status.as_str(),
            o.currency.as_str(),
            o.subtotal.amount,
            o.discount.amount,
            o.shipping.amount,
            o.tax.amount,
            o.total.amount,
            &address,
            &o.shipping_method,
            o.payment_due_at,
            o.created_at,
            &discounts,
            o.flash_sale_id,
            cart_id,
            key
        ],
    )?;
    for (i, item) in o.items.iter().enumerate() {
        let options = serde_json::to_string(&item.options).unwrap_or_else(|_| "{}".into());
        tx.execute(
            "INSERT INTO order_items (order_id, line, sku, product_id, name, options, quantity, unit_price, line_total) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            params![o.id, i as i64, &item.sku, item.product_id, &item.name, &options, item.quantity, item.unit_price.amount, item.line_total.amount],
        )?;
    }
    let note = o.flash_sale_id.map(|_| "flash sale");
    history(tx, history_id, o.id, None, OrderStatus::PendingPayment, "customer", note)?;
    publish(
        tx,
        &OrderPlaced {
            order_id: o.id,
            customer_id: o.customer_id,
            cart_id,
            flash_sale_id: o.flash_sale_id,
            total: o.total,
        },
    )
}

/// A value as JSON text, for a TEXT column.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::internal(e.to_string()))
}

impl OrdersService {
    pub fn new(
        db: Db,
        ids: IdGen,
        bus: EventBus,
        cart: CartService,
        inventory: InventoryService,
        payments: PaymentsService,
        promotions: PromotionsService,
        cfg: OrdersConfig,
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
                let mut sql = String::from("SELECT id FROM orders WHERE 1 = 1");
                let mut args: Vec<Param<'_>> = Vec::new();
                let status = filter.status.map(|s| s.as_str());
                if let Some(s) = status {
                    args.push(Param::Text(s));
                    sql.push_str(&format!(" AND status = ${}", args.len()));
                }
                if let Some(c) = filter.customer_id {
                    args.push(Param::Int(c.0));
                    sql.push_str(&format!(" AND customer_id = ${}", args.len()));
                }
                if let Some(b) = before {
                    args.push(Param::Int(b));
                    sql.push_str(&format!(" AND id < ${}", args.len()));
                }
                sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
                let ids: Vec<Id> = tx.query(&sql, &args)?.iter().map(|r| r.id(0)).collect::<Result<_, _>>()?;
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

    async fn move_order(
        &self,
        id: Id,
        action: Action,
        required_from: Option<OrderStatus>,
        actor: &str,
        note: Option<String>,
    ) -> Result<(OrderStatus, OrderStatus), Error> {
        let hid = self.inner.ids.next()?;
        let actor = actor.to_string();
        let r = self
            .inner
            .db
            .write(move |tx| transition(tx, hid, id, action, required_from, &actor, note.as_deref()))
            .await?;
        self.inner.bus.wake();
        Ok(r)
    }

    /// A customer cancels their own unpaid order; its stock comes back.
    pub async fn cancel_by_customer(&self, customer: Id, id: Id) -> Result<Order, Error> {
        let order = self.get_for(customer, id).await?;
        if order.status != OrderStatus::PendingPayment {
            return Err(Error::illegal_transition(order.status.as_str(), "cancel"));
        }
        self.move_order(id, Action::Cancel, Some(OrderStatus::PendingPayment), "customer", None).await?;
        self.release_holds(id).await?;
        self.get(id).await
    }

    /// Pays `customer`'s order with a test card. The order is leased for the
    /// duration of the charge, so a cancel or the expiry sweeper cannot slip in
    /// between "the order is unpaid" and "the card was charged".
    pub async fn pay(&self, customer: Id, id: Id, card_number: &str) -> Result<PaymentResult, Error> {
        // Only what paying needs: the items and history of a full load are
        // two more queries on every payment.
        let order = self
            .inner
            .db
            .lookup(move |tx| {
                let Some(r) = tx.query_opt(
                    "SELECT customer_id, status, total, currency, payment_due_at FROM orders WHERE id = $1",
                    params![id],
                )?
                else {
                    return Ok(None);
                };
                Ok(Some(Payable {
                    customer_id: r.id(0)?,
                    status: OrderStatus::parse(r.str(1)?)?,
                    total: Money::new(r.int(2)?, r.str(3)?.parse()?),
                    payment_due_at: r.opt_int(4)?,
                }))
            })
            .await?
            .filter(|o| o.customer_id == customer)
            .ok_or_else(|| Error::not_found("order not found"))?;
        if order.status != OrderStatus::PendingPayment {
            return Err(Error::illegal_transition(order.status.as_str(), "pay"));
        }
        if order.payment_due_at.is_some_and(|due| due <= now_ms()) {
            self.expire(id).await?;
            return Err(Error::illegal_transition("cancelled", "pay")
                .with_details(serde_json::json!({ "reason": "payment window closed" })));
        }
        let lease = self.inner.cfg.checkout_lease_ms as i64;
        // The order is claimed (a lease, so one payment runs at a time and
        // neither a cancel nor the expiry sweeper slips in) before the
        // payments domain starts the attempt.
        self.inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let locked = tx.execute(
                    "UPDATE orders SET payment_lock_until = $1 WHERE id = $2 AND status = 'pending_payment' \
                     AND (payment_lock_until IS NULL OR payment_lock_until < $3)",
                    params![now + lease, id, now],
                )?;
                if locked == 0 {
                    let status = tx.query_one("SELECT status FROM orders WHERE id = $1", params![id])?.text(0)?;
                    return Err(match status.as_str() {
                        "pending_payment" => {
                            Error::conflict("a payment for this order is already in progress").with_retry_after(2)
                        }
                        other => Error::illegal_transition(other, "pay"),
                    });
                }
                Ok(())
            })
            .await?;
        match self.inner.payments.pay(id, order.total, card_number).await {
            Ok(PayOutcome::Succeeded(payment)) => {
                // Idempotent: an order a webhook already marked paid stays
                // as it is. A crash before this commit is mended by the
                // `payment.succeeded` subscriber.
                let hid = self.inner.ids.next()?;
                let outcome = self.inner.db.write(move |tx| paid_in(tx, hid, id)).await?;
                self.inner.bus.wake();
                if self.after_paid(id, outcome).await? {
                    return Err(Error::illegal_transition("cancelled", "pay").with_details(
                        serde_json::json!({ "reason": "the order was cancelled; the payment was refunded" }),
                    ));
                }
                Ok(PaymentResult::Paid(payment))
            }
            // The lease stays until the webhook settles it or it runs out.
            Ok(PayOutcome::Processing(payment)) => Ok(PaymentResult::Processing(payment)),
            Err(e) => {
                // Declined (the customer may try again, or cancel, at once),
                // refused, or the provider unreachable: the order is not
                // claimed any more.
                let _ = self.inner.db.write(move |tx| release_payment_lease_in(tx, id)).await;
                Err(e)
            }
        }
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

    /// Marks the order paid once its payment succeeded (from the synchronous
    /// answer, a webhook or reconciliation). Idempotent. A payment that lands
    /// on an order already cancelled is refunded.
    pub async fn on_payment_succeeded(&self, id: Id) -> Result<(), Error> {
        // The synchronous answer, the webhook and the `payment.succeeded`
        // event all report one payment: after the first, a read shows the
        // order paid and no write is queued.
        let status = self
            .inner
            .db
            .lookup(move |tx| {
                tx.query_opt("SELECT status FROM orders WHERE id = $1", params![id])?.map(|r| r.text(0)).transpose()
            })
            .await?;
        if !matches!(status.as_deref(), Some("pending_payment") | Some("cancelled")) {
            return Ok(());
        }
        let hid = self.inner.ids.next()?;
        let outcome = self.inner.db.write(move |tx| paid_in(tx, hid, id)).await?;
        self.inner.bus.wake();
        self.after_paid(id, outcome).await?;
        Ok(())
    }

    /// What follows a committed [`paid_in`]: displayed stock, or the refund
    /// of a payment that landed on a cancelled order (then `true`).
    async fn after_paid(&self, id: Id, outcome: PaidOutcome) -> Result<bool, Error> {
        match outcome {
            PaidOutcome::Paid => {
                self.inner.inventory.commit(id).await?;
            }
            PaidOutcome::Refund => {
                tracing::warn!(order_id = %id, "payment succeeded for a cancelled order; refunding");
                let refund =
                    self.inner.payments.refund(id, None, "payment settled after the order was cancelled").await?;
                self.add_refunded(id, refund.amount.amount).await?;
                return Ok(true);
            }
            PaidOutcome::Nothing => {}
        }
        Ok(false)
    }

    async fn expire(&self, id: Id) -> Result<bool, Error> {
        match self.move_order(id, Action::Expire, None, "system", Some("payment window closed".into())).await {
            Ok(_) => {
                self.release_holds(id).await?;
                Ok(true)
            }
            Err(e) if e.code == ErrorCode::IllegalTransition => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A new unpaid order, due for payment within the configured timeout.
    pub(crate) fn new_order(
        &self,
        id: Id,
        customer: Id,
        items: Vec<OrderItem>,
        totals: &mercato_cart::Totals,
        discounts: Vec<mercato_promotions::Applied>,
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

    /// What an unpaid order held comes back: its stock and its coupon uses.
    /// (The `order.cancelled` subscriber does the same, for crash safety.)
    async fn release_holds(&self, id: Id) -> Result<(), Error> {
        let flash = self
            .inner
            .db
            .lookup(move |tx| {
                Ok(tx
                    .query_opt("SELECT flash_sale_id FROM orders WHERE id = $1", params![id])?
                    .map(|r| r.opt_int(0))
                    .transpose()?
                    .flatten())
            })
            .await?;
        if flash.is_some() {
            // The unit goes back to its sale: the flash-sale domain does that
            // when it hears `order.cancelled`.
            return Ok(());
        }
        self.inner.inventory.release(id).await?;
        self.inner.promotions.release(id).await
    }

    /// Creates the order for a flash-sale purchase: one unit at the sale price.
    /// The caller has already moved the unit into a reservation keyed by
    /// `order_id`. Idempotent on `order_id`.
    pub async fn place_flash(
        &self,
        order_id: Id,
        customer: Id,
        sale_id: Id,
        item: OrderItem,
        address: Option<Address>,
    ) -> Result<Order, Error> {
        let address = address.map(Address::validate).transpose()?;
        let lines = [mercato_cart::PricedLine {
            sku: item.sku.clone(),
            product_id: item.product_id,
            name: item.name.clone(),
            options: item.options.clone(),
            quantity: item.quantity,
            unit_price: item.unit_price,
            line_total: item.line_total,
        }];
        let totals = self.inner.cart.totals_for(&lines)?;
        let method = self.inner.cart.shipping_methods()[0].code.clone();
        let order = self.new_order(order_id, customer, vec![item], &totals, vec![], address, Some(sale_id), method);
        let history_id = self.inner.ids.next()?;
        let o = order.clone();
        let created = self
            .inner
            .db
            .write(move |tx| {
                if tx.query_opt("SELECT 1 FROM orders WHERE id = $1", params![o.id])?.is_some() {
                    return Ok(false);
                }
                insert_order(tx, &o, history_id, None, None)?;
                Ok(true)
            })
            .await?;
        self.inner.bus.wake();
        if created { Ok(order) } else { self.get(order_id).await }
    }

    pub async fn fulfil(&self, id: Id) -> Result<Order, Error> {
        self.move_order(id, Action::Fulfil, None, "admin", None).await?;
        self.get(id).await
    }

    pub async fn complete(&self, id: Id) -> Result<Order, Error> {
        self.move_order(id, Action::Complete, None, "admin", None).await?;
        self.get(id).await
    }

    /// Admin cancel: an unpaid order releases its stock; a paid one is refunded
    /// in full and its units go back on the shelf.
    pub async fn cancel_by_admin(&self, id: Id, reason: Option<String>) -> Result<Order, Error> {
        let (from, _) = self.move_order(id, Action::Cancel, None, "admin", reason.clone()).await?;
        if from == OrderStatus::Paid {
            let order = self.get(id).await?;
            let remaining = order.total.amount - order.refunded.amount;
            if remaining > 0 {
                self.inner.payments.refund(id, Some(remaining), reason.as_deref().unwrap_or("order cancelled")).await?;
                self.add_refunded(id, remaining).await?;
            }
            self.inner.inventory.restock(id).await?;
        } else {
            self.release_holds(id).await?;
        }
        self.get(id).await
    }

    /// Refunds `amount` (None: everything not yet refunded) through the provider.
    pub async fn refund(&self, id: Id, amount: Option<i64>, reason: Option<String>) -> Result<Order, Error> {
        let order = self.get(id).await?;
        let remaining = order.total.amount - order.refunded.amount;
        let amount = amount.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            return Err(Error::field(
                "amount",
                format!("must be between 1 and {remaining} (the amount not yet refunded)"),
            ));
        }
        next(order.status, Action::Refund { full: amount == remaining })?;
        self.inner.payments.refund(id, Some(amount), reason.as_deref().unwrap_or("refund")).await?;
        self.add_refunded(id, amount).await?;
        self.get(id).await
    }

    async fn add_refunded(&self, id: Id, amount: i64) -> Result<(), Error> {
        let hid = self.inner.ids.next()?;
        self.inner
            .db
            .write(move |tx| {
                tx.execute(
                    "UPDATE orders SET refunded = refunded + $1, updated_at = $2 WHERE id = $3",
                    params![amount, now_ms(), id],
                )?;
                let r = tx.query_one("SELECT refunded, total, status FROM orders WHERE id = $1", params![id])?;
                let full = r.int(0)? >= r.int(1)?;
                let status = OrderStatus::parse(r.str(2)?)?;
                publish(tx, &OrderRefundRecorded { order_id: id, amount, full })?;
                if full && status != OrderStatus::Cancelled {
                    transition(tx, hid, id, Action::Refund { full: true }, None, "admin", None)?;
                }
                Ok(())
            })
            .await?;
        self.inner.bus.wake();
        Ok(())
    }

    /// One pass of background upkeep: cancels overdue unpaid orders, releases
    /// stock held by checkouts that crashed and were never retried, and settles
    /// payments a crash left open. Safe to run on every instance at once.
    pub async fn sweep(&self) -> Result<usize, Error> {
        let now = now_ms();
        let overdue = self
            .inner
            .db
            .read(move |tx| {
                tx.query(
                    "SELECT id FROM orders WHERE status = 'pending_payment' AND payment_due_at <= $1 ORDER BY payment_due_at LIMIT 200",
                    params![now],
                )?
                .iter()
                .map(|r| r.id(0))
                .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut n = 0;
        for id in overdue {
            if self.expire(id).await? {
                n += 1;
            }
        }
        n += self.sweep_checkouts(now).await?;
        for payment in self.inner.payments.reconcile(10_000).await? {
            self.on_payment_succeeded(payment.order_id).await?;
            n += 1;
        }
        Ok(n)
    }
}
