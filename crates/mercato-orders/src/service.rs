use crate::model::{Action, Address, HistoryEntry, Order, OrderItem, OrderStatus, next};
use mercato_cart::CartService;
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_inventory::{InventoryService, Line};
use mercato_payments::{PayOutcome, Payment, PaymentsService};
use mercato_platform::config::OrdersConfig;
use mercato_platform::db::Param;
use mercato_platform::events::{EventBus, emit};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, Row, Tx, now_ms, params};
use mercato_promotions::PromotionsService;
use std::sync::Arc;

#[derive(Clone)]
pub struct OrdersService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    cart: CartService,
    inventory: InventoryService,
    payments: PaymentsService,
    promotions: PromotionsService,
    cfg: OrdersConfig,
    currency: Currency,
}

/// The answer to a checkout: the order as first created, and whether this was a
/// replay of an earlier request with the same key.
pub struct Placed {
    pub body: String,
    pub order_id: Id,
    pub replayed: bool,
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

/// What an earlier request with the same Idempotency-Key left behind.
enum Earlier {
    /// It placed an order: its answer is replayed.
    Done(String, Id),
    /// It was abandoned (a crash of an earlier version, mid-saga): what it
    /// held is given back and the checkout starts over.
    Abandoned(Id),
}

enum PaidOutcome {
    /// The order is now paid; its held units of these SKUs were sold.
    Paid(Vec<String>),
    /// The payment landed on a cancelled order.
    Refund,
    Nothing,
}

/// The order is paid (its payment just succeeded): the transition and, in
/// the same transaction, its held units sold. Already paid (a duplicate
/// report): nothing. Cancelled meanwhile: the payment must be refunded.
fn paid_in(tx: &mut dyn Tx, hid: Id, id: Id) -> Result<PaidOutcome, Error> {
    match transition(tx, hid, id, Action::Pay, None, "payment", None) {
        Ok(_) => {
            Ok(PaidOutcome::Paid(mercato_inventory::transition_in(tx, id, "held", "committed")?.unwrap_or_default()))
        }
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

/// Finished checkouts forgotten per write job by [`purge_checkouts`].
const PURGE_BATCH: u64 = 1_000;

/// Forgets finished checkouts that ended before `cutoff` (ms): past it, a
/// request with the same key is a new checkout, as with every other
/// Idempotency-Key. Each record keeps its whole answer (about 1.4 KB an
/// order) and nothing else removes them. Deletes in batches, so the writer is
/// never held for long; returns how many went.
pub async fn purge_checkouts(db: &Db, cutoff: i64) -> Result<u64, Error> {
    let mut total = 0;
    loop {
        // A finished checkout's lease_until is the time it finished, and
        // (state, lease_until) is indexed.
        let n = db
            .write(move |tx| {
                Ok(tx.execute(
                    &format!(
                        "DELETE FROM checkouts WHERE (customer_id, idempotency_key) IN \
                         (SELECT customer_id, idempotency_key FROM checkouts \
                          WHERE state = 'done' AND lease_until < $1 LIMIT {PURGE_BATCH})"
                    ),
                    params![cutoff],
                )?)
            })
            .await?;
        total += n;
        if n < PURGE_BATCH {
            return Ok(total);
        }
    }
}

/// What paying an order needs to know of it.
struct Payable {
    customer_id: Id,
    status: OrderStatus,
    total: Money,
    payment_due_at: Option<i64>,
}

enum Written {
    Placed(Vec<String>),
    Replay(String, Id),
}

fn in_progress(retry_after_secs: u64) -> Error {
    Error::new(ErrorCode::IdempotencyInProgress, "a request with this Idempotency-Key is in progress")
        .with_retry_after(retry_after_secs)
}

/// The record of an earlier checkout with `key`, if any. Errors when it was
/// made with a different body, or is still being worked on.
fn earlier_checkout(
    tx: &mut dyn Tx,
    customer: Id,
    key: &str,
    fingerprint: &str,
    now: i64,
) -> Result<Option<Earlier>, Error> {
    let Some(row) = tx.query_opt(
        "SELECT fingerprint, order_id, state, lease_until, response FROM checkouts WHERE customer_id = $1 AND idempotency_key = $2",
        params![customer, key],
    )?
    else {
        return Ok(None);
    };
    if row.str(0)? != fingerprint {
        return Err(Error::new(
            ErrorCode::IdempotencyMismatch,
            "this Idempotency-Key was used with a different request body",
        ));
    }
    let (order_id, lease_until) = (row.id(1)?, row.int(3)?);
    match row.str(2)? {
        "done" => Ok(Some(Earlier::Done(row.opt_text(4)?.unwrap_or_default(), order_id))),
        "pending" if lease_until > now => Err(in_progress(((lease_until - now) / 1000).max(1) as u64)),
        _ => Ok(Some(Earlier::Abandoned(order_id))),
    }
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
        emit(
            tx,
            "order",
            &order.to_string(),
            &format!("order.{}", to.as_str()),
            &serde_json::json!({
                "order_id": order, "from": from, "to": to, "action": action.verb(),
                "flash_sale_id": row.opt_int(2)?.map(Id),
            }),
        )?;
    }
    Ok((from, to))
}

/// Writes a new order: its row, items, first history entry and the
/// `order.placed` event, in the caller's transaction.
fn insert_order(
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
    emit(
        tx,
        "order",
        &o.id.to_string(),
        "order.placed",
        &serde_json::json!({
            "order_id": o.id, "customer_id": o.customer_id, "cart_id": cart_id,
            "flash_sale_id": o.flash_sale_id, "total": o.total,
        }),
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

    /// Turns the customer's cart into an order, at most once per key.
    ///
    /// Everything the order changes (the key's record, the stock reservation,
    /// promotion uses, the order and its `order.placed` event, the retired
    /// cart) is written in one transaction: a checkout is all there or not at
    /// all, whatever crashes, and it costs one commit instead of a saga's five.
    pub async fn place(
        &self,
        customer: Id,
        address: Address,
        shipping_method: Option<String>,
        key: Option<String>,
        fingerprint: String,
    ) -> Result<Placed, Error> {
        let address = address.validate()?;
        let key = match key {
            Some(k) if k.is_empty() || k.len() > 255 => {
                return Err(Error::validation("Idempotency-Key must be 1 to 255 characters"));
            }
            Some(k) => k,
            None => format!("auto-{}", mercato_platform::random_token()),
        };
        // A repeated request is answered from its record before the cart is
        // looked at (the first one emptied it). Both are read in one
        // transaction: under write load each read transaction starts from an
        // empty page cache. A request that also sets the shipping method
        // reads the cart after setting it.
        let (k, f, read_cart) = (key.clone(), fingerprint.clone(), shipping_method.is_none());
        let (earlier, read) = self
            .inner
            .db
            .lookup(move |tx| match earlier_checkout(tx, customer, &k, &f, now_ms())? {
                Some(Earlier::Done(body, id)) => Ok((Some((body, id)), None)),
                _ if read_cart => Ok((None, mercato_cart::checkout_read_in(tx, customer)?)),
                _ => Ok((None, None)),
            })
            .await?;
        if let Some((body, order_id)) = earlier {
            return Ok(Placed { body, order_id, replayed: true });
        }
        let read = match &shipping_method {
            None => read,
            Some(code) => {
                self.inner.cart.set_shipping_method(&mercato_cart::CartOwner::Customer(customer), code).await?;
                self.inner.db.lookup(move |tx| mercato_cart::checkout_read_in(tx, customer)).await?
            }
        };
        let cart = self.inner.cart.price_checkout(read).await?;
        if !cart.unavailable.is_empty() {
            return Err(Error::conflict(format!(
                "no longer available: {}; remove them from the cart",
                cart.unavailable.join(", ")
            ))
            .with_details(serde_json::json!({ "unavailable": cart.unavailable })));
        }
        let Some(cart_id) = cart.id.filter(|_| !cart.items.is_empty()) else {
            // A concurrent request with this key may have placed the order
            // (and emptied the cart) since the first look.
            if let Some(replay) = self.replay(customer, &key, &fingerprint).await? {
                return Ok(replay);
            }
            return Err(Error::new(ErrorCode::EmptyCart, "the cart is empty"));
        };
        // A coupon that stopped applying since it was added is an error, not a
        // silent price change: the customer confirms the new total first.
        if let Some(problem) = cart.coupon_problem.clone() {
            return Err(problem);
        }
        let lines: Vec<Line> = cart.items.iter().map(|l| Line { sku: l.sku.clone(), quantity: l.quantity }).collect();
        let items = cart
            .items
            .iter()
            .map(|l| OrderItem {
                sku: l.sku.clone(),
                product_id: l.product_id,
                name: l.name.clone(),
                options: l.options.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
                line_total: l.line_total,
            })
            .collect();
        let order_id = self.inner.ids.next();
        let order = self.new_order(
            order_id,
            customer,
            items,
            &cart.totals,
            cart.discounts.clone(),
            Some(address),
            None,
            cart.shipping_method.clone(),
        );
        let body = serde_json::to_string(&order).map_err(|e| Error::internal(e.to_string()))?;
        let history_id = self.inner.ids.next();
        let discounts = cart.discounts;
        let counts_uses = !discounts.is_empty();
        let promotions = self.inner.promotions.clone();
        let (k, b) = (key, body.clone());
        let written = self
            .inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let mut released = Vec::new();
                match earlier_checkout(tx, customer, &k, &fingerprint, now)? {
                    Some(Earlier::Done(body, id)) => return Ok(Written::Replay(body, id)),
                    Some(Earlier::Abandoned(old)) => {
                        // An attempt of an earlier version crashed after
                        // reserving: what it held comes back first.
                        mercato_promotions::release_in(tx, old)?;
                        released = mercato_inventory::transition_in(tx, old, "held", "released")?.unwrap_or_default();
                        tx.execute(
                            "DELETE FROM checkouts WHERE customer_id = $1 AND idempotency_key = $2",
                            params![customer, &k],
                        )?;
                    }
                    None => {}
                }
                let claimed = tx.execute(
                    "INSERT INTO checkouts (customer_id, idempotency_key, fingerprint, order_id, state, lease_until, created_at, response) \
                     VALUES ($1, $2, $3, $4, 'done', $5, $5, $6) ON CONFLICT (customer_id, idempotency_key) DO NOTHING",
                    params![customer, &k, &fingerprint, order_id, now, &b],
                )?;
                if claimed == 0 {
                    // Another request with this key committed first (on
                    // PostgreSQL this insert waited for it): its answer is ours.
                    return match earlier_checkout(tx, customer, &k, &fingerprint, now)? {
                        Some(Earlier::Done(body, id)) => Ok(Written::Replay(body, id)),
                        _ => Err(in_progress(1)),
                    };
                }
                let mut skus = mercato_inventory::reserve_in(tx, order_id, &lines)?;
                skus.append(&mut released);
                promotions.redeem_in(tx, order_id, customer, &discounts)?;
                insert_order(tx, &order, history_id, Some(cart_id), Some(&k))?;
                mercato_cart::convert_in(tx, cart_id, order_id)?;
                Ok(Written::Placed(skus))
            })
            .await;
        match written? {
            Written::Replay(body, order_id) => Ok(Placed { body, order_id, replayed: true }),
            Written::Placed(skus) => {
                self.inner.inventory.stock_written(&skus);
                if counts_uses {
                    // Only then did cached promotion counts change.
                    self.inner.promotions.redeemed();
                }
                self.inner.bus.wake();
                Ok(Placed { body, order_id, replayed: false })
            }
        }
    }

    /// The stored answer of a finished checkout with this key, if there is one.
    async fn replay(&self, customer: Id, key: &str, fingerprint: &str) -> Result<Option<Placed>, Error> {
        let (k, f) = (key.to_string(), fingerprint.to_string());
        Ok(match self.inner.db.lookup(move |tx| earlier_checkout(tx, customer, &k, &f, now_ms())).await? {
            Some(Earlier::Done(body, order_id)) => Some(Placed { body, order_id, replayed: true }),
            _ => None,
        })
    }

    /// Forgets finished checkouts older than the replay window of
    /// Idempotency-Keys (24 hours).
    pub async fn purge_checkouts(&self) -> Result<u64, Error> {
        purge_checkouts(&self.inner.db, now_ms() - mercato_platform::idempotency::RETENTION_MS).await
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
        let hid = self.inner.ids.next();
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
        let hid = self.inner.ids.next();
        // Claiming the order (a lease, so one payment runs at a time) commits
        // with the payment attempt; the order's payment with the payment's.
        let claimed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let claim = claimed.clone();
        let begin = move |tx: &mut dyn Tx| {
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
            claim.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        };
        let settled = move |tx: &mut dyn Tx, succeeded: bool| match succeeded {
            // Idempotent: an order a webhook already marked paid stays as it is.
            true => paid_in(tx, hid, id),
            // Declined: the customer may try again (or cancel) right away.
            false => {
                release_payment_lease_in(tx, id)?;
                Ok(PaidOutcome::Nothing)
            }
        };
        let result = self.inner.payments.pay_with(id, order.total, card_number, begin, settled).await;
        let failed_after_claim = result.as_ref().is_err_and(|e| e.code != ErrorCode::PaymentDeclined)
            && claimed.load(std::sync::atomic::Ordering::Relaxed);
        if failed_after_claim {
            // The provider could not be reached (a decline clears the claim in
            // its own transaction; a refused claim never held it): do not
            // leave the order claimed.
            let _ = self.inner.db.write(move |tx| release_payment_lease_in(tx, id)).await;
        }
        match result? {
            (PayOutcome::Succeeded(payment), paid) => {
                if self.after_paid(id, paid.unwrap_or(PaidOutcome::Nothing)).await? {
                    return Err(Error::illegal_transition("cancelled", "pay").with_details(
                        serde_json::json!({ "reason": "the order was cancelled; the payment was refunded" }),
                    ));
                }
                Ok(PaymentResult::Paid(payment))
            }
            // The lease stays until the webhook settles it or it runs out.
            (PayOutcome::Processing(payment), _) => Ok(PaymentResult::Processing(payment)),
        }
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
        let hid = self.inner.ids.next();
        let outcome = self.inner.db.write(move |tx| paid_in(tx, hid, id)).await?;
        self.inner.bus.wake();
        self.after_paid(id, outcome).await?;
        Ok(())
    }

    /// What follows a committed [`paid_in`]: displayed stock, or the refund
    /// of a payment that landed on a cancelled order (then `true`).
    async fn after_paid(&self, id: Id, outcome: PaidOutcome) -> Result<bool, Error> {
        match outcome {
            PaidOutcome::Paid(skus) => self.inner.inventory.stock_written(&skus),
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
    fn new_order(
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
        let history_id = self.inner.ids.next();
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
        let hid = self.inner.ids.next();
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
                emit(
                    tx,
                    "order",
                    &id.to_string(),
                    "order.refund_recorded",
                    &serde_json::json!({ "order_id": id, "amount": amount, "full": full }),
                )?;
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
        let stale = self
            .inner
            .db
            .read(move |tx| {
                tx.query(
                    "SELECT customer_id, idempotency_key, order_id FROM checkouts WHERE state = 'pending' AND lease_until < $1 LIMIT 200",
                    params![now],
                )?
                .iter()
                .map(|r| Ok((r.id(0)?, r.text(1)?, r.id(2)?)))
                .collect::<Result<Vec<_>, Error>>()
            })
            .await?;
        for (customer, key, order_id) in stale {
            let abandoned = self
                .inner
                .db
                .write(move |tx| {
                    Ok(tx.execute(
                        "UPDATE checkouts SET state = 'abandoned' WHERE customer_id = $1 AND idempotency_key = $2 AND order_id = $3 AND state = 'pending' AND lease_until < $4",
                        params![customer, &key, order_id, now_ms()],
                    )?)
                })
                .await?;
            if abandoned == 1 {
                self.inner.promotions.release(order_id).await?;
                self.inner.inventory.release(order_id).await?;
                n += 1;
            }
        }
        for payment in self.inner.payments.reconcile(10_000).await? {
            self.on_payment_succeeded(payment.order_id).await?;
            n += 1;
        }
        Ok(n)
    }
}
