//! The orders' SQL and row mapping shared by the service's modules: loading an
//! order with its items and history, writing a new one, and `transition`, the
//! one conditional state change every move goes through (with its history
//! entry and event, in the caller's transaction).

use crate::model::{Action, HistoryEntry, Order, OrderItem, OrderStatus, next};
use mercato_contracts::orders::{OrderPlaced, OrderStatusChanged};
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_platform::events::publish;
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
