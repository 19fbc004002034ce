//! The flash sales' SQL: every statement on their tables (sales, purchase
//! records, per-customer holds), each running in the caller's transaction.

use crate::stock::{CHECKSUM_MODULUS, Holding};
use mercato_contracts::flashsale::{FlashSale, FlashSaleCreated, NewFlashSale, SaleState};
use mercato_core::{Error, ErrorCode, Id, Money};
use mercato_platform::events::publish;
use mercato_platform::{Row, Tx, now_ms, params};

pub(crate) const COLUMNS: &str =
    "id, sku, price, currency, quantity, starts_at, ends_at, per_customer_limit, created_at";

/// The purchase records that hold a unit: the database's answer to what the
/// counter should hold.
pub(crate) fn live_purchases(tx: &mut dyn Tx, sale: Id) -> Result<Vec<Holding>, Error> {
    tx.query(
        "SELECT order_id, customer_id FROM flash_purchases WHERE sale_id = $1 AND state IN ('pending', 'active')",
        params![sale],
    )?
    .iter()
    .map(|r| Ok(Holding { order: r.id(0)?, customer: r.id(1)? }))
    .collect()
}

pub(crate) fn limit_reached(limit: i64) -> Error {
    Error::new(ErrorCode::LimitReached, format!("at most {limit} per customer in this sale"))
}

pub(crate) fn sale_from(r: &Row) -> Result<FlashSale, Error> {
    Ok(FlashSale {
        id: r.id(0)?,
        sku: r.text(1)?,
        price: Money::new(r.int(2)?, r.str(3)?.parse()?),
        quantity: r.int(4)?,
        remaining: r.int(4)?,
        starts_at: r.int(5)?,
        ends_at: r.int(6)?,
        per_customer_limit: r.int(7)?,
        state: SaleState::Scheduled,
        created_at: r.int(8)?,
    })
}

/// Records sale `id` and its `flash_sale.created`.
pub(crate) fn insert_sale(tx: &mut dyn Tx, id: Id, n: &NewFlashSale) -> Result<FlashSale, Error> {
    tx.execute(
        &format!("INSERT INTO flash_sales ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
        params![
            id,
            &n.sku,
            n.price.amount,
            n.price.currency.as_str(),
            n.quantity,
            n.starts_at,
            n.ends_at,
            n.per_customer_limit,
            now_ms()
        ],
    )?;
    publish(tx, &FlashSaleCreated { id, sku: n.sku.clone(), quantity: n.quantity })?;
    let row = tx.query_one(&format!("SELECT {COLUMNS} FROM flash_sales WHERE id = $1"), params![id])?;
    sale_from(&row)
}

/// Every sale not closed, with the purchase records holding its units.
pub(crate) fn open_sales(tx: &mut dyn Tx) -> Result<Vec<(FlashSale, Vec<Holding>)>, Error> {
    let sales = tx
        .query(&format!("SELECT {COLUMNS} FROM flash_sales WHERE closed_at IS NULL"), params![])?
        .iter()
        .map(sale_from)
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(sales.len());
    for s in sales {
        let live = live_purchases(tx, s.id)?;
        out.push((s, live));
    }
    Ok(out)
}

pub(crate) fn open_sale(tx: &mut dyn Tx, id: Id) -> Result<Option<FlashSale>, Error> {
    tx.query_opt(&format!("SELECT {COLUMNS} FROM flash_sales WHERE id = $1 AND closed_at IS NULL"), params![id])?
        .map(|r| sale_from(&r))
        .transpose()
}

/// Units held by live purchase records of `sale`, and by `customer`.
pub(crate) fn live_counts(tx: &mut dyn Tx, sale: Id, customer: i64) -> Result<(i64, i64), Error> {
    let r = tx.query_one(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN customer_id = $2 THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM flash_purchases WHERE sale_id = $1 AND state IN ('pending', 'active')",
        params![sale, customer],
    )?;
    Ok((r.int(0)?, r.int(1)?))
}

/// The order and state of `customer`'s purchase in `sale_id` with `key`.
pub(crate) fn earlier_purchase(
    tx: &mut dyn Tx,
    sale_id: Id,
    customer: Id,
    key: &str,
) -> Result<Option<(Id, String)>, Error> {
    tx.query_opt(
        "SELECT order_id, state FROM flash_purchases WHERE sale_id = $1 AND customer_id = $2 AND idempotency_key = $3",
        params![sale_id, customer, key],
    )?
    .map(|r| Ok::<_, Error>((r.id(0)?, r.text(1)?)))
    .transpose()
}

/// A pending purchase record, within the customer's limit; false when one
/// exists for the key already.
pub(crate) fn record_purchase(
    tx: &mut dyn Tx,
    order_id: Id,
    sale_id: Id,
    customer: Id,
    key: &str,
    limit: i64,
) -> Result<bool, Error> {
    let inserted = tx.execute(
        "INSERT INTO flash_purchases (order_id, sale_id, customer_id, idempotency_key, state, created_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT DO NOTHING",
        params![order_id, sale_id, customer, key, now_ms()],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    // The limit holds in the database whatever the counter said
    // (it may have lost its data): a conditional upsert on one
    // row per customer, which concurrent transactions serialise on.
    let within = tx.execute(
        "INSERT INTO flash_holds (sale_id, customer_id, held) VALUES ($1, $2, 1) \
         ON CONFLICT (sale_id, customer_id) DO UPDATE SET held = flash_holds.held + 1 \
         WHERE flash_holds.held < $3",
        params![sale_id, customer, limit],
    )?;
    if within == 0 {
        return Err(limit_reached(limit));
    }
    Ok(true)
}

/// Moves purchase record `order` from state `from` to `to`.
pub(crate) fn mark(tx: &mut dyn Tx, order: Id, from: &str, to: &str) -> Result<u64, Error> {
    Ok(tx.execute(
        "UPDATE flash_purchases SET state = $1 WHERE order_id = $2 AND state = $3",
        params![to, order, from],
    )?)
}

/// Moves purchase record `order` from `from` to `released` and gives the
/// customer's hold back; the sale and customer if this call moved it.
pub(crate) fn release_record(tx: &mut dyn Tx, order: Id, from: &str) -> Result<Option<(Id, Id)>, Error> {
    let Some(row) =
        tx.query_opt("SELECT sale_id, customer_id FROM flash_purchases WHERE order_id = $1", params![order])?
    else {
        return Ok(None);
    };
    let (sale, customer) = (row.id(0)?, row.id(1)?);
    let moved = tx.execute(
        "UPDATE flash_purchases SET state = 'released' WHERE order_id = $1 AND state = $2",
        params![order, from],
    )?;
    if moved == 0 {
        return Ok(None);
    }
    tx.execute(
        "UPDATE flash_holds SET held = held - 1 WHERE sale_id = $1 AND customer_id = $2 AND held > 0",
        params![sale, customer],
    )?;
    Ok(Some((sale, customer)))
}

/// Up to 100 purchase records left pending since before `before`:
/// (order, sale, customer).
pub(crate) fn stale_pending(tx: &mut dyn Tx, before: i64) -> Result<Vec<(Id, Id, Id)>, Error> {
    tx.query(
        "SELECT order_id, sale_id, customer_id FROM flash_purchases WHERE state = 'pending' AND created_at < $1 LIMIT 100",
        params![before],
    )?
    .iter()
    .map(|r| Ok((r.id(0)?, r.id(1)?, r.id(2)?)))
    .collect()
}

/// Closes the sales that ended by `now`; their ids.
pub(crate) fn close_ended(tx: &mut dyn Tx, now: i64) -> Result<Vec<Id>, Error> {
    let ids = tx
        .query("SELECT id FROM flash_sales WHERE closed_at IS NULL AND ends_at <= $1", params![now])?
        .iter()
        .map(|r| r.id(0))
        .collect::<Result<Vec<_>, _>>()?;
    for id in &ids {
        tx.execute("UPDATE flash_sales SET closed_at = $1 WHERE id = $2", params![now, *id])?;
    }
    Ok(ids)
}

/// Ids of the sales open and not ended at `now`.
pub(crate) fn running(tx: &mut dyn Tx, now: i64) -> Result<Vec<Id>, Error> {
    tx.query("SELECT id FROM flash_sales WHERE closed_at IS NULL AND ends_at > $1", params![now])?
        .iter()
        .map(|r| r.id(0))
        .collect()
}

/// The count of live purchase records of `sale` and the sum of their order
/// ids modulo the counter's checksum modulus.
pub(crate) fn live_checksum(tx: &mut dyn Tx, sale: Id) -> Result<(i64, i64), Error> {
    let r = tx.query_one(
        &format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(order_id % {CHECKSUM_MODULUS}), 0) AS BIGINT) \
             FROM flash_purchases WHERE sale_id = $1 AND state IN ('pending', 'active')"
        ),
        params![sale],
    )?;
    Ok((r.int(0)?, r.int(1)?))
}

/// The live purchase records of `sale`, and the orders of those released
/// since `since` (read first, so a release between the two reads is missed
/// rather than taken for live).
pub(crate) fn live_and_released(tx: &mut dyn Tx, sale: Id, since: i64) -> Result<(Vec<Holding>, Vec<Id>), Error> {
    let released = tx
        .query(
            "SELECT order_id FROM flash_purchases WHERE sale_id = $1 AND state = 'released' AND created_at > $2",
            params![sale, since],
        )?
        .iter()
        .map(|r| r.id(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((live_purchases(tx, sale)?, released))
}
