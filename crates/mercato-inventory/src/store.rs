//! The inventory's SQL: every statement on its tables (stock,
//! reservations, reservation lines, adjustments), each function running in
//! the caller's transaction. The service decides when to run them and what
//! to invalidate after.

use mercato_contracts::inventory::{Adjustment, Line, Stock, StockChanged};
use mercato_core::{Error, ErrorCode, Id};
use mercato_platform::db::Param;
use mercato_platform::events::publish;
use mercato_platform::{Tx, now_ms, params};
use std::collections::HashMap;

pub(crate) fn stock_changed(tx: &mut dyn Tx, skus: &[&str], cause: &str, reference: &str) -> Result<(), Error> {
    publish(
        tx,
        &StockChanged {
            skus: skus.iter().map(|s| s.to_string()).collect(),
            cause: cause.to_string(),
            reference: reference.to_string(),
        },
    )
}

/// `skus`' available units as the stock table holds them, in the caller's
/// transaction (0 for a SKU without a stock row).
pub(crate) fn available_in(tx: &mut dyn Tx, skus: &[String]) -> Result<HashMap<String, i64>, Error> {
    let mut found: HashMap<String, i64> = skus.iter().map(|s| (s.clone(), 0)).collect();
    if skus.is_empty() {
        return Ok(found);
    }
    let ph: Vec<String> = (1..=skus.len()).map(|i| format!("${i}")).collect();
    let args: Vec<Param<'_>> = skus.iter().map(|s| Param::Text(s)).collect();
    for r in tx.query(&format!("SELECT sku, available FROM stock WHERE sku IN ({})", ph.join(", ")), &args)? {
        found.insert(r.text(0)?, r.int(1)?);
    }
    Ok(found)
}

pub(crate) fn read_stock(tx: &mut dyn Tx, sku: &str) -> Result<Option<Stock>, Error> {
    tx.query_opt("SELECT available, reserved, sold FROM stock WHERE sku = $1", params![sku])?
        .map(|r| Ok::<_, Error>(Stock { available: r.int(0)?, reserved: r.int(1)?, sold: r.int(2)? }))
        .transpose()
}

/// Creates reservation `id` in state held; false if it already exists (an
/// earlier attempt made it: reservations are keyed by order id).
pub(crate) fn open_reservation(tx: &mut dyn Tx, id: Id, now: i64) -> Result<bool, Error> {
    Ok(tx.execute(
        "INSERT INTO reservations (id, state, created_at, updated_at) VALUES ($1, 'held', $2, $2) ON CONFLICT (id) DO NOTHING",
        params![id, now],
    )? == 1)
}

/// Holds `lines` for `reservation`: all or nothing, each line a conditional
/// decrement. Returns the SKUs whose stock moved (none when the reservation
/// is already held: an earlier attempt made it). A reservation released
/// before (a compensated checkout) is refused, so a step arriving late holds
/// nothing.
pub(crate) fn reserve_in(tx: &mut dyn Tx, reservation: Id, lines: &[Line]) -> Result<Vec<String>, Error> {
    let mut lines = lines.to_vec();
    // A fixed lock order across transactions avoids deadlocks on row-locking backends.
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    if lines.is_empty() || lines.iter().any(|l| l.quantity <= 0) {
        return Err(Error::validation("a reservation needs lines with positive quantities"));
    }
    let now = now_ms();
    if !open_reservation(tx, reservation, now)? {
        let state = tx.query_one("SELECT state FROM reservations WHERE id = $1", params![reservation])?.text(0)?;
        if state == "held" {
            return Ok(vec![]); // already reserved by an earlier attempt
        }
        return Err(Error::conflict(format!("reservation {reservation} was {state}; it cannot be held again")));
    }
    for l in &lines {
        let ok = tx.execute(
            "UPDATE stock SET available = available - $1, reserved = reserved + $1, updated_at = $2 \
             WHERE sku = $3 AND available >= $1",
            params![l.quantity, now, &l.sku],
        )?;
        if ok == 0 {
            let available = read_stock(tx, &l.sku)?.map(|s| s.available).unwrap_or(0);
            return Err(Error::new(
                ErrorCode::OutOfStock,
                format!("only {available} of {} available, {} requested", l.sku, l.quantity),
            )
            .with_details(serde_json::json!({ "sku": l.sku, "available": available, "requested": l.quantity })));
        }
        tx.execute(
            "INSERT INTO reservation_lines (reservation_id, sku, quantity) VALUES ($1, $2, $3)",
            params![reservation, &l.sku, l.quantity],
        )?;
    }
    let sku_refs: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    stock_changed(tx, &sku_refs, "reserved", &reservation.to_string())?;
    Ok(lines.into_iter().map(|l| l.sku).collect())
}

/// Moves reservation `reservation` from state `from` to `to` ("held" to
/// "committed" or "released", "committed" to "restocked"). Returns the SKUs
/// whose stock moved, or None when the reservation was not in state `from`
/// (moved already, or never made).
pub(crate) fn transition_in(
    tx: &mut dyn Tx,
    reservation: Id,
    from: &'static str,
    to: &'static str,
) -> Result<Option<Vec<String>>, Error> {
    let sql = match (from, to) {
        ("held", "committed") => {
            "UPDATE stock SET reserved = reserved - $1, sold = sold + $1, updated_at = $2 WHERE sku = $3 AND reserved >= $1"
        }
        ("held", "released") => {
            "UPDATE stock SET reserved = reserved - $1, available = available + $1, updated_at = $2 WHERE sku = $3 AND reserved >= $1"
        }
        ("committed", "restocked") => {
            "UPDATE stock SET sold = sold - $1, available = available + $1, updated_at = $2 WHERE sku = $3 AND sold >= $1"
        }
        _ => return Err(Error::internal("unknown reservation transition")),
    };
    let now = now_ms();
    let moved = tx.execute(
        "UPDATE reservations SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
        params![to, now, reservation, from],
    )?;
    if moved == 0 {
        return Ok(None);
    }
    let lines = tx.query(
        "SELECT sku, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY sku",
        params![reservation],
    )?;
    let mut skus = Vec::with_capacity(lines.len());
    for r in &lines {
        let (sku, qty) = (r.text(0)?, r.int(1)?);
        if tx.execute(sql, params![qty, now, &sku])? == 0 {
            return Err(Error::internal(format!("stock of {sku} is inconsistent with reservation {reservation}")));
        }
        skus.push(sku);
    }
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    stock_changed(tx, &refs, to, &reservation.to_string())?;
    Ok(Some(skus))
}

/// The newest `limit` adjustments of `sku`, newest first.
pub(crate) fn adjustments(tx: &mut dyn Tx, sku: &str, limit: i64) -> Result<Vec<Adjustment>, Error> {
    tx.query(
        "SELECT id, delta, available_after, reason, actor, created_at FROM adjustments WHERE sku = $1 ORDER BY id DESC LIMIT $2",
        params![sku, limit],
    )?
    .iter()
    .map(|r| {
        Ok(Adjustment {
            id: r.id(0)?,
            delta: r.int(1)?,
            available_after: r.int(2)?,
            reason: r.text(3)?,
            actor: r.text(4)?,
            created_at: r.int(5)?,
        })
    })
    .collect()
}

/// Moves `sku`'s available units to `target`, recorded as adjustment `id`.
/// Removing more than is available is refused and changes nothing.
pub(crate) fn apply(
    tx: &mut dyn Tx,
    id: Id,
    sku: &str,
    target: Target,
    reason: &str,
    actor: &str,
) -> Result<Stock, Error> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO stock (sku, available, reserved, sold, updated_at) VALUES ($1, 0, 0, 0, $2) ON CONFLICT (sku) DO NOTHING",
        params![sku, now],
    )?;
    let before = read_stock(tx, sku)?.ok_or_else(|| Error::internal("stock row vanished"))?;
    let delta = match target {
        Target::Set(v) => v - before.available,
        Target::Delta(d) => d,
    };
    let changed = tx.execute(
        "UPDATE stock SET available = available + $1, updated_at = $2 WHERE sku = $3 AND available + $1 >= 0",
        params![delta, now, sku],
    )?;
    if changed == 0 {
        return Err(Error::conflict(format!(
            "cannot remove {} units of {sku}: only {} available",
            -delta, before.available
        )));
    }
    let after = read_stock(tx, sku)?.ok_or_else(|| Error::internal("stock row vanished"))?;
    if delta != 0 {
        tx.execute(
            "INSERT INTO adjustments (id, sku, delta, available_after, reason, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![id, sku, delta, after.available, reason, actor, now],
        )?;
        stock_changed(tx, &[sku], "adjustment", &id.to_string())?;
    }
    Ok(after)
}

/// Stock rows for SKUs new to the inventory, each audited as initial stock.
pub(crate) fn seed(tx: &mut dyn Tx, lines: &[(String, i64)], ids: &[Id]) -> Result<(), Error> {
    let now = now_ms();
    for ((sku, qty), id) in lines.iter().zip(ids) {
        tx.execute(
            "INSERT INTO stock (sku, available, reserved, sold, updated_at) VALUES ($1, $2, 0, 0, $3)",
            params![sku, *qty, now],
        )?;
        tx.execute(
            "INSERT INTO adjustments (id, sku, delta, available_after, reason, actor, created_at) VALUES ($1, $2, $3, $3, 'initial stock', 'seed', $4)",
            params![*id, sku, *qty, now],
        )?;
    }
    Ok(())
}

/// Records `reservation` as released before it was made, so that a late
/// reserve holds nothing.
pub(crate) fn tombstone(tx: &mut dyn Tx, reservation: Id) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO reservations (id, state, created_at, updated_at) VALUES ($1, 'released', $2, $2) \
         ON CONFLICT (id) DO NOTHING",
        params![reservation, now_ms()],
    )?;
    Ok(())
}

/// Moves `quantity` units of `sku` from held reservation `from` into a new
/// held reservation `to`; nothing when `to` exists already.
pub(crate) fn split(tx: &mut dyn Tx, from: Id, to: Id, sku: &str, quantity: i64) -> Result<(), Error> {
    let now = now_ms();
    if !open_reservation(tx, to, now)? {
        return Ok(());
    }
    let held =
        tx.query_opt("SELECT state FROM reservations WHERE id = $1", params![from])?.map(|r| r.text(0)).transpose()?;
    if held.as_deref() != Some("held") {
        return Err(Error::new(ErrorCode::OutOfStock, "the allocation is closed"));
    }
    // Take from the line; the last units remove it (quantity stays positive).
    let mut taken = tx.execute(
        "UPDATE reservation_lines SET quantity = quantity - $1 WHERE reservation_id = $2 AND sku = $3 AND quantity > $1",
        params![quantity, from, sku],
    )?;
    if taken == 0 {
        taken = tx.execute(
            "DELETE FROM reservation_lines WHERE reservation_id = $1 AND sku = $2 AND quantity = $3",
            params![from, sku, quantity],
        )?;
    }
    if taken == 0 {
        return Err(Error::new(ErrorCode::OutOfStock, format!("the allocation has no {quantity} of {sku} left")));
    }
    tx.execute(
        "INSERT INTO reservation_lines (reservation_id, sku, quantity) VALUES ($1, $2, $3)",
        params![to, sku, quantity],
    )?;
    Ok(())
}

/// Returns held reservation `from` to `into` (or to available when `into`
/// has closed). The SKUs whose stock moved, or None when `from` was not held.
pub(crate) fn merge_back(tx: &mut dyn Tx, from: Id, into: Id) -> Result<Option<Vec<String>>, Error> {
    let now = now_ms();
    let returned = tx.execute(
        "UPDATE reservations SET state = 'returned', updated_at = $1 WHERE id = $2 AND state = 'held'",
        params![now, from],
    )?;
    if returned == 0 {
        return Ok(None);
    }
    let open = tx
        .query_opt("SELECT state FROM reservations WHERE id = $1", params![into])?
        .map(|r| r.text(0))
        .transpose()?
        .is_some_and(|s| s == "held");
    let lines = tx.query("SELECT sku, quantity FROM reservation_lines WHERE reservation_id = $1", params![from])?;
    let mut skus = Vec::new();
    for r in &lines {
        let (sku, qty) = (r.text(0)?, r.int(1)?);
        if open {
            tx.execute(
                "INSERT INTO reservation_lines (reservation_id, sku, quantity) VALUES ($1, $2, $3) \
                 ON CONFLICT (reservation_id, sku) DO UPDATE SET quantity = reservation_lines.quantity + excluded.quantity",
                params![into, &sku, qty],
            )?;
        } else {
            tx.execute(
                "UPDATE stock SET reserved = reserved - $1, available = available + $1, updated_at = $2 WHERE sku = $3 AND reserved >= $1",
                params![qty, now, &sku],
            )?;
        }
        skus.push(sku);
    }
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    stock_changed(tx, &refs, if open { "returned-to-allocation" } else { "released" }, &from.to_string())?;
    Ok(Some(skus))
}

pub(crate) fn reservation_state(tx: &mut dyn Tx, reservation: Id) -> Result<Option<String>, Error> {
    tx.query_opt("SELECT state FROM reservations WHERE id = $1", params![reservation])?.map(|r| r.text(0)).transpose()
}

#[derive(Clone, Copy)]
pub(crate) enum Target {
    Set(i64),
    Delta(i64),
}
