//! The orders' SQL: every statement on its tables, each in the caller's
//! transaction. Loading an order with its items and history, writing a new
//! one, `transition` (the one conditional state change every move goes
//! through, with its history entry and event), and the checkout records.

use crate::model::{Action, HistoryEntry, Order, OrderItem, OrderStatus, next};
use mercato_contracts::orders::{
    AdminFilter, Begun, OrderPlaced, OrderRefundRecorded, OrderStatusChanged, PaidOutcome, Payable,
};
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_platform::db::Param;
use mercato_platform::events::publish;
use mercato_platform::ids::first_id_at;
use mercato_platform::shards::Serving;
use mercato_platform::{Row, Tx, now_ms, params};

const ORDER_COLUMNS: &str = "id, customer_id, status, currency, subtotal, discount, shipping, tax, total, refunded, \
     shipping_address, shipping_method, payment_due_at, created_at, updated_at, discounts, flash_sale_id";

pub(crate) fn load_order(tx: &mut dyn Tx, id: Id) -> Result<Option<Order>, Error> {
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
pub(crate) fn transition(
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

// ---- checkout records (`checkouts`): see placing.rs ----

/// What an earlier request with the same Idempotency-Key left behind.
pub(crate) enum Earlier {
    /// It placed an order: its answer is replayed.
    Done(String, Id),
    /// It stopped half-way (a crash, or a refusal whose compensation did not
    /// finish) and its lease ran out: what it held is to be given back
    /// before the checkout starts over.
    Abandoned(Id),
    /// Like `Abandoned`, and what it held is back: the key is free.
    Released(Id),
}

pub(crate) fn in_progress(retry_after_secs: u64) -> Error {
    Error::new(ErrorCode::IdempotencyInProgress, "a request with this Idempotency-Key is in progress")
        .with_retry_after(retry_after_secs)
}

/// The record of an earlier checkout with `key`, if any. Errors when it was
/// made with a different body, or is still being worked on.
pub(crate) fn earlier_checkout(
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
        "released" => Ok(Some(Earlier::Released(order_id))),
        _ => Ok(Some(Earlier::Abandoned(order_id))),
    }
}

/// Step 1 of a checkout: the key's record, `pending` under `order_id` with
/// a lease, or what an earlier request with the key left.
pub(crate) fn begin_checkout(
    tx: &mut dyn Tx,
    customer: Id,
    key: &str,
    fingerprint: &str,
    order_id: Id,
    lease: i64,
) -> Result<Begun, Error> {
    let now = now_ms();
    let claimed = tx.execute(
        "INSERT INTO checkouts (customer_id, idempotency_key, fingerprint, order_id, state, lease_until, created_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6) ON CONFLICT (customer_id, idempotency_key) DO NOTHING",
        params![customer, key, fingerprint, order_id, now + lease, now],
    )?;
    if claimed == 1 {
        return Ok(Begun::Mine);
    }
    // On PostgreSQL the insert waited for a concurrent request
    // with this key to commit; this read sees its record.
    match earlier_checkout(tx, customer, key, fingerprint, now)? {
        Some(Earlier::Done(body, id)) => Ok(Begun::Replay(body, id)),
        Some(Earlier::Released(old)) => {
            let taken = tx.execute(
                "UPDATE checkouts SET order_id = $1, state = 'pending', lease_until = $2 \
                 WHERE customer_id = $3 AND idempotency_key = $4 AND order_id = $5 AND state = 'released'",
                params![order_id, now + lease, customer, key, old],
            )?;
            if taken == 0 {
                return Err(in_progress(1));
            }
            Ok(Begun::Mine)
        }
        Some(Earlier::Abandoned(old)) => Ok(Begun::Abandoned(old)),
        None => Err(in_progress(1)),
    }
}

/// Fences the key's record of attempt `order_id` if its lease ran out while
/// `pending`: the attempt can no longer place its order once its holds are
/// being given back.
pub(crate) fn fence_checkout(tx: &mut dyn Tx, customer: Id, key: &str, order_id: Id) -> Result<(), Error> {
    tx.execute(
        "UPDATE checkouts SET state = 'abandoned' WHERE customer_id = $1 AND idempotency_key = $2 \
         AND order_id = $3 AND state = 'pending' AND lease_until <= $4",
        params![customer, key, order_id, now_ms()],
    )?;
    Ok(())
}

/// Extends the lease of the key's `pending` record of attempt `order_id`.
pub(crate) fn renew_checkout(tx: &mut dyn Tx, customer: Id, key: &str, order_id: Id, lease: i64) -> Result<(), Error> {
    tx.execute(
        "UPDATE checkouts SET lease_until = $1 WHERE customer_id = $2 AND idempotency_key = $3 \
         AND order_id = $4 AND state = 'pending'",
        params![now_ms() + lease, customer, key, order_id],
    )?;
    Ok(())
}

/// Step 4's condition: the key's record moves from `pending` to `done` with
/// the answer; false when the sweeper gave the attempt up meanwhile.
pub(crate) fn finish_checkout(
    tx: &mut dyn Tx,
    customer: Id,
    key: &str,
    order_id: Id,
    body: &str,
) -> Result<bool, Error> {
    Ok(tx.execute(
        "UPDATE checkouts SET state = 'done', response = $1, lease_until = $2 \
         WHERE customer_id = $3 AND idempotency_key = $4 AND order_id = $5 AND state = 'pending'",
        params![body, now_ms(), customer, key, order_id],
    )? == 1)
}

/// Moves the key's record of `order_id` from state `from` to `to` (None:
/// deletes it).
pub(crate) fn move_checkout(
    tx: &mut dyn Tx,
    customer: Id,
    key: &str,
    order_id: Id,
    from: &str,
    to: Option<&str>,
) -> Result<(), Error> {
    const WHERE: &str = "customer_id = $1 AND idempotency_key = $2 AND order_id = $3 AND state = $4";
    match to {
        Some(to) => tx.execute(
            &format!("UPDATE checkouts SET state = $5 WHERE {WHERE}"),
            params![customer, key, order_id, from, to],
        )?,
        None => tx.execute(&format!("DELETE FROM checkouts WHERE {WHERE}"), params![customer, key, order_id, from])?,
    };
    Ok(())
}

/// Whether a `pending` record's lease ran out before `now`.
pub(crate) fn any_checkout_expired(tx: &mut dyn Tx, now: i64, serving: Serving) -> Result<bool, Error> {
    let sql = format!(
        "SELECT 1 FROM checkouts WHERE state = 'pending' AND lease_until < $1{} LIMIT 1",
        serving.only("order_id")
    );
    Ok(tx.query_opt(&sql, params![now])?.is_some())
}

/// Fences every `pending` record whose lease ran out before `now`: its attempt
/// can no longer place its order.
pub(crate) fn fence_expired_checkouts(tx: &mut dyn Tx, now: i64, serving: Serving) -> Result<u64, Error> {
    let sql = format!(
        "UPDATE checkouts SET state = 'abandoned' WHERE state = 'pending' AND lease_until < $1{}",
        serving.only("order_id")
    );
    Ok(tx.execute(&sql, params![now])?)
}

/// Up to 200 fenced records whose holds are still to be given back:
/// (customer, key, order).
pub(crate) fn abandoned_checkouts(tx: &mut dyn Tx, serving: Serving) -> Result<Vec<(Id, String, Id)>, Error> {
    let sql = format!(
        "SELECT customer_id, idempotency_key, order_id FROM checkouts WHERE state = 'abandoned'{} LIMIT 200",
        serving.only("order_id")
    );
    tx.query(&sql, params![])?.iter().map(|r| Ok((r.id(0)?, r.text(1)?, r.id(2)?))).collect()
}

/// Deletes up to `batch` records of checkouts finished before `cutoff`; how
/// many. A finished checkout's lease_until is the time it finished, and
/// (state, lease_until) is indexed.
pub(crate) fn purge_done_checkouts(tx: &mut dyn Tx, cutoff: i64, batch: u64) -> Result<u64, Error> {
    Ok(tx.execute(
        &format!(
            "DELETE FROM checkouts WHERE (customer_id, idempotency_key) IN \
             (SELECT customer_id, idempotency_key FROM checkouts \
              WHERE state = 'done' AND lease_until < $1 LIMIT {batch})"
        ),
        params![cutoff],
    )?)
}

// ---- payment, refunds, expiry ----

/// The order is paid (its payment just succeeded). Already paid (a
/// duplicate report): nothing. Cancelled meanwhile: the payment must be
/// refunded. Its held units are sold by the inventory domain afterwards
/// (directly, and by the `order.paid` subscriber after a crash).
pub(crate) fn paid_in(tx: &mut dyn Tx, hid: Id, id: Id) -> Result<PaidOutcome, Error> {
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
pub(crate) fn release_payment_lease_in(tx: &mut dyn Tx, id: Id) -> Result<(), Error> {
    tx.execute(
        "UPDATE orders SET payment_lock_until = NULL WHERE id = $1 AND status = 'pending_payment'",
        params![id],
    )?;
    Ok(())
}

/// Extends the payment claim on unpaid order `id`; nothing once it is paid,
/// cancelled or released.
pub(crate) fn renew_payment_lease(tx: &mut dyn Tx, id: Id, lease: i64) -> Result<(), Error> {
    tx.execute(
        "UPDATE orders SET payment_lock_until = $1 WHERE id = $2 AND status = 'pending_payment' \
         AND payment_lock_until IS NOT NULL",
        params![now_ms() + lease, id],
    )?;
    Ok(())
}

/// What paying order `id` needs to know of it, if it exists.
pub(crate) fn payable(tx: &mut dyn Tx, id: Id) -> Result<Option<Payable>, Error> {
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
}

/// Claims unpaid order `id` for one payment for `lease` ms; refused while
/// another payment holds it or once it is no longer unpaid.
pub(crate) fn lease_payment(tx: &mut dyn Tx, id: Id, lease: i64) -> Result<(), Error> {
    let now = now_ms();
    let locked = tx.execute(
        "UPDATE orders SET payment_lock_until = $1 WHERE id = $2 AND status = 'pending_payment' \
         AND (payment_lock_until IS NULL OR payment_lock_until < $3)",
        params![now + lease, id, now],
    )?;
    if locked == 0 {
        let status = tx.query_one("SELECT status FROM orders WHERE id = $1", params![id])?.text(0)?;
        return Err(match status.as_str() {
            "pending_payment" => Error::conflict("a payment for this order is already in progress").with_retry_after(2),
            other => Error::illegal_transition(other, "pay"),
        });
    }
    Ok(())
}

/// Order `id`'s status as stored, if it exists.
pub(crate) fn status(tx: &mut dyn Tx, id: Id) -> Result<Option<OrderStatus>, Error> {
    tx.query_opt("SELECT status FROM orders WHERE id = $1", params![id])?
        .map(|r| OrderStatus::parse(r.str(0)?))
        .transpose()
}

/// The flash sale order `id` was bought in, if any.
pub(crate) fn flash_sale_of(tx: &mut dyn Tx, id: Id) -> Result<Option<Id>, Error> {
    Ok(tx
        .query_opt("SELECT flash_sale_id FROM orders WHERE id = $1", params![id])?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten()
        .map(Id))
}

/// Counts `amount` as refunded on order `id`; a full refund of an order not
/// cancelled moves it to refunded (history entry `hid`).
pub(crate) fn add_refunded(tx: &mut dyn Tx, hid: Id, id: Id, amount: i64) -> Result<(), Error> {
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
}

/// Up to 200 unpaid orders whose payment window closed by `now`, oldest due first.
pub(crate) fn overdue(tx: &mut dyn Tx, now: i64, serving: Serving) -> Result<Vec<Id>, Error> {
    let sql = format!(
        "SELECT id FROM orders WHERE status = 'pending_payment' AND payment_due_at <= $1{} \
         ORDER BY payment_due_at LIMIT 200",
        serving.only("id")
    );
    tx.query(&sql, params![now])?.iter().map(|r| r.id(0)).collect()
}

pub(crate) fn exists(tx: &mut dyn Tx, id: Id) -> Result<bool, Error> {
    Ok(tx.query_opt("SELECT 1 FROM orders WHERE id = $1", params![id])?.is_some())
}

/// Ids of the orders `filter` admits below id `before`, newest first, at
/// most `limit`.
pub(crate) fn list_ids(
    tx: &mut dyn Tx,
    filter: &AdminFilter,
    before: Option<i64>,
    limit: usize,
    serving: Serving,
) -> Result<Vec<Id>, Error> {
    let mut sql = format!("SELECT id FROM orders WHERE 1 = 1{}", serving.only("id"));
    let mut args: Vec<Param<'_>> = Vec::new();
    if let Some(s) = filter.status {
        args.push(Param::Text(s.as_str()));
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
    // Ids are minted when orders are placed: a time range is an id range
    // (which the primary key, and monthly partitions, narrow at once), with
    // a minute's margin for the instant between minting and `created_at`.
    let margin = 60_000;
    if let Some(from) = filter.created_from {
        args.push(Param::Int(first_id_at(from - margin).0));
        sql.push_str(&format!(" AND id >= ${}", args.len()));
        args.push(Param::Int(from));
        sql.push_str(&format!(" AND created_at >= ${}", args.len()));
    }
    if let Some(to) = filter.created_to {
        args.push(Param::Int(first_id_at(to + margin).0));
        sql.push_str(&format!(" AND id < ${}", args.len()));
        args.push(Param::Int(to));
        sql.push_str(&format!(" AND created_at < ${}", args.len()));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
    tx.query(&sql, &args)?.iter().map(|r| r.id(0)).collect()
}

/// Records that this database serves `shards` (a database seen for the
/// first time).
pub(crate) fn record_shards(tx: &mut dyn Tx, shards: &[i64], logical: i64) -> Result<(), Error> {
    for s in shards {
        tx.execute(
            "INSERT INTO order_shards (shard, logical, state) VALUES ($1, $2, 'serving') ON CONFLICT (shard) DO NOTHING",
            params![*s, logical],
        )?;
    }
    Ok(())
}

/// Sets shard `shard`'s state here (a move's steps), recording it if new.
pub(crate) fn set_shard_state(tx: &mut dyn Tx, shard: i64, logical: i64, state: &str) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO order_shards (shard, logical, state) VALUES ($1, $2, $3) \
         ON CONFLICT (shard) DO UPDATE SET state = excluded.state",
        params![shard, logical, state],
    )?;
    Ok(())
}

/// Takes shard `shard` for a move's freeze: waits for the writes on it under
/// way (they hold it `FOR KEY SHARE`) and keeps new ones waiting until the
/// transaction ends. Its state.
pub(crate) fn freeze_shard(tx: &mut dyn Tx, shard: i64) -> Result<Option<String>, Error> {
    let row = tx.query_opt("SELECT state FROM order_shards WHERE shard = $1 FOR UPDATE", params![shard])?;
    row.map(|r| r.text(0)).transpose()
}

/// When the migration that made order ids carry their shard was applied
/// here: orders minted before it may live in a shard other than their
/// customer's (ids then ended in any bits).
pub(crate) fn shards_since(tx: &mut dyn Tx) -> Result<Option<i64>, Error> {
    let row =
        tx.query_opt("SELECT applied_at FROM schema_migrations WHERE component = 'orders' AND version = 5", &[])?;
    row.map(|r| r.int(0)).transpose()
}

/// Whether this database holds an order with an id below `id`.
pub(crate) fn any_order_before(tx: &mut dyn Tx, id: Id) -> Result<bool, Error> {
    Ok(tx.query_opt("SELECT 1 FROM orders WHERE id < $1 LIMIT 1", params![id])?.is_some())
}

/// Whether this database holds any order at all.
pub(crate) fn any_order(tx: &mut dyn Tx) -> Result<bool, Error> {
    Ok(tx.query_opt("SELECT id FROM orders LIMIT 1", &[])?.is_some())
}

// A shard's move (see `moving`): PostgreSQL's logical replication of the
// shard's rows from the database it leaves to the one it goes to.

/// The orders' tables a logical shard's rows live in, each with the column
/// holding an id minted in the shard; children first, the order deletes go
/// in. (Payments' rows live with their order's, and move with them.)
pub const SHARD_TABLES: &[(&str, &str)] = &[
    ("order_history", "order_id"),
    ("order_items", "order_id"),
    ("checkouts", "order_id"),
    ("orders", "id"),
    ("order_shard_marks", "shard"),
];

/// The condition selecting shard `shard`'s rows of a table by `column`.
fn in_shard(column: &str, shard: i64, logical: i64) -> String {
    if column == "shard" {
        return format!("shard = {shard}");
    }
    format!("{} = {shard}", mercato_platform::shards::shard_sql(column, logical as u16))
}

/// The server's `wal_level`.
pub(crate) fn wal_level(tx: &mut dyn Tx) -> Result<String, Error> {
    tx.query_one("SHOW wal_level", &[])?.text(0)
}

/// Deletes up to `batch` rows of shard `shard` from `table` (selected by
/// `column`); how many went. For the rows a move left behind, or a copy a
/// failed move left. PostgreSQL only, as moves are.
pub(crate) fn delete_shard_rows(
    tx: &mut dyn Tx,
    table: &str,
    column: &str,
    shard: i64,
    logical: i64,
    batch: i64,
) -> Result<u64, Error> {
    let cond = in_shard(column, shard, logical);
    Ok(tx.execute(
        &format!("DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE {cond} LIMIT {batch})"),
        &[],
    )?)
}

/// Moves shard `shard`'s marker on, and returns it: a write replicated
/// after every write on the shard before it.
pub(crate) fn bump_mark(tx: &mut dyn Tx, shard: i64) -> Result<i64, Error> {
    tx.query_one(
        "INSERT INTO order_shard_marks (shard, mark) VALUES ($1, 1) \
         ON CONFLICT (shard) DO UPDATE SET mark = order_shard_marks.mark + 1 RETURNING mark",
        params![shard],
    )?
    .int(0)
}

pub(crate) fn mark(tx: &mut dyn Tx, shard: i64) -> Result<Option<i64>, Error> {
    tx.query_opt("SELECT mark FROM order_shard_marks WHERE shard = $1", params![shard])?.map(|r| r.int(0)).transpose()
}

/// Publishes shard `shard`'s rows (and only them) under `name`, and makes a
/// slot for them. Updated and deleted rows are told apart by every column
/// where the shard's column is not in the primary key (PostgreSQL filters
/// rows on the replica identity).
pub(crate) fn publish_shard(
    tx: &mut dyn Tx,
    name: &str,
    tables: &[(&str, &str)],
    shard: i64,
    logical: i64,
) -> Result<(), Error> {
    for (table, _) in tables.iter().filter(|(_, c)| !matches!(*c, "id" | "shard")) {
        tx.execute(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL"), &[])?;
    }
    let tables: Vec<String> =
        tables.iter().map(|(t, c)| format!("{t} WHERE ({})", in_shard(c, shard, logical))).collect();
    // Partitioned tables publish as themselves, whatever partitions each
    // side has.
    tx.execute(
        &format!("CREATE PUBLICATION {name} FOR TABLE {} WITH (publish_via_partition_root = true)", tables.join(", ")),
        &[],
    )?;
    tx.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", params![name])?;
    Ok(())
}

/// Drops what [`publish_shard`] made, those that exist.
pub(crate) fn unpublish_shard(tx: &mut dyn Tx, name: &str, tables: &[(&str, &str)]) -> Result<(), Error> {
    tx.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
        params![name],
    )?;
    tx.execute(&format!("DROP PUBLICATION IF EXISTS {name}"), &[])?;
    for (table, _) in tables.iter().filter(|(_, c)| !matches!(*c, "id" | "shard")) {
        tx.execute(&format!("ALTER TABLE {table} REPLICA IDENTITY DEFAULT"), &[])?;
    }
    Ok(())
}

/// Subscribes to publication `name` on the database at `conninfo`, copying
/// its rows first. Outside a transaction (PostgreSQL requires it).
pub(crate) fn subscribe(tx: &mut dyn Tx, name: &str, conninfo: &str) -> Result<(), Error> {
    let conninfo = conninfo.replace('\'', "''");
    tx.execute(
        &format!(
            "CREATE SUBSCRIPTION {name} CONNECTION '{conninfo}' PUBLICATION {name} \
             WITH (create_slot = false, slot_name = '{name}', copy_data = true)"
        ),
        &[],
    )?;
    Ok(())
}

/// Whether subscription `name` exists here.
pub(crate) fn subscribed(tx: &mut dyn Tx, name: &str) -> Result<bool, Error> {
    Ok(tx.query_opt("SELECT 1 FROM pg_subscription WHERE subname = $1", params![name])?.is_some())
}

/// How many of subscription `name`'s tables are not yet copied and caught up.
pub(crate) fn tables_syncing(tx: &mut dyn Tx, name: &str) -> Result<i64, Error> {
    tx.query_one(
        "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid \
         WHERE s.subname = $1 AND r.srsubstate NOT IN ('r', 's')",
        params![name],
    )?
    .int(0)
}

/// Drops subscription `name` here, leaving its slot to the publisher's side
/// ([`unpublish_shard`]). Outside a transaction.
pub(crate) fn unsubscribe(tx: &mut dyn Tx, name: &str) -> Result<(), Error> {
    if subscribed(tx, name)? {
        tx.execute(&format!("ALTER SUBSCRIPTION {name} DISABLE"), &[])?;
        tx.execute(&format!("ALTER SUBSCRIPTION {name} SET (slot_name = NONE)"), &[])?;
        tx.execute(&format!("DROP SUBSCRIPTION {name}"), &[])?;
    }
    Ok(())
}

/// How many orders of shard `shard` this database holds.
pub(crate) fn count_shard_orders(tx: &mut dyn Tx, shard: i64, logical: i64) -> Result<i64, Error> {
    tx.query_one(&format!("SELECT count(*) FROM orders WHERE {}", in_shard("id", shard, logical)), &[])?.int(0)
}

/// Whether replication slot `name` exists here.
pub(crate) fn slot_exists(tx: &mut dyn Tx, name: &str) -> Result<bool, Error> {
    Ok(tx.query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", params![name])?.is_some())
}

// Monthly partitions (PostgreSQL; see `partitions`).

/// Whether `orders` is partitioned here (migration 8, PostgreSQL).
pub(crate) fn partitioned(tx: &mut dyn Tx) -> Result<bool, Error> {
    let row = tx.query_opt("SELECT relkind::text FROM pg_class WHERE oid = to_regclass('orders')", &[])?;
    Ok(row.map(|r| r.text(0)).transpose()?.as_deref() == Some("p"))
}

/// Serialises the making of partitions across instances, to the end of
/// the transaction.
pub(crate) fn lock_partitions(tx: &mut dyn Tx) -> Result<(), Error> {
    tx.query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(72154701)) AS locked", &[])?;
    Ok(())
}

/// The order id where the last partition of `orders` ends.
pub(crate) fn partitions_end(tx: &mut dyn Tx) -> Result<Option<i64>, Error> {
    let rows = tx.query(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = to_regclass('orders')",
        &[],
    )?;
    let mut end = None;
    for r in &rows {
        // FOR VALUES FROM (...) TO ('123')
        let bound = r.text(0)?;
        let to = bound.rsplit("TO (").next().unwrap_or_default();
        let digits: String = to.chars().filter(|c| c.is_ascii_digit() || *c == '-').collect();
        if let Ok(v) = digits.parse::<i64>() {
            end = end.max(Some(v));
        }
    }
    Ok(end)
}

/// Partition `name` of `table` for order ids from `from` up to `to`.
pub(crate) fn create_partition(tx: &mut dyn Tx, table: &str, name: &str, from: i64, to: i64) -> Result<(), Error> {
    tx.execute(
        &format!("CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES FROM ({from}) TO ({to})"),
        &[],
    )?;
    Ok(())
}
