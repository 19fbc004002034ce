//! The promotions' SQL: every statement on their tables (promotions,
//! redemptions, redemption claims), each running in the caller's
//! transaction.

use mercato_contracts::promotions::{Applied, Kind, Promotion, PromotionCreated, Rejection, Scope};
use mercato_core::{Currency, Error, ErrorCode, Id, Millis};
use mercato_platform::events::publish;
use mercato_platform::{Row, Tx, now_ms, params};
use std::collections::HashMap;

pub(crate) const COLUMNS: &str = "id, code, name, kind, value, min_subtotal, scope, scope_values, starts_at, ends_at, usage_limit, \
     per_customer_limit, used, active, created_at";

pub(crate) fn from_row(r: &Row) -> Result<Promotion, Error> {
    let value = r.int(4)?;
    let kind = match r.str(3)? {
        "percentage" => Kind::Percentage(value),
        _ => Kind::Fixed(value),
    };
    let values: serde_json::Value = serde_json::from_str(r.str(7)?).unwrap_or_default();
    let scope = match r.str(6)? {
        "categories" => Scope::Categories(
            values.as_array().map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect()).unwrap_or_default(),
        ),
        "skus" => Scope::Skus(
            values
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        ),
        _ => Scope::All,
    };
    Ok(Promotion {
        id: r.id(0)?,
        code: r.opt_text(1)?,
        name: r.text(2)?,
        kind,
        min_subtotal: r.int(5)?,
        scope,
        starts_at: r.opt_int(8)?,
        ends_at: r.opt_int(9)?,
        usage_limit: r.opt_int(10)?,
        per_customer_limit: r.opt_int(11)?,
        used: r.int(12)?,
        active: r.bool(13)?,
        created_at: r.int(14)?,
    })
}

/// Gives back the uses `order` counted, inside the caller's transaction.
/// Idempotent.
pub(crate) fn release(tx: &mut dyn Tx, order: Id) -> Result<(), Error> {
    let ids: Vec<Id> = tx
        .query("SELECT promotion_id FROM redemptions WHERE order_id = $1", params![order])?
        .iter()
        .map(|r| r.id(0))
        .collect::<Result<_, _>>()?;
    for id in ids {
        if tx.execute("DELETE FROM redemptions WHERE promotion_id = $1 AND order_id = $2", params![id, order])? == 1 {
            tx.execute("UPDATE promotions SET used = used - 1 WHERE id = $1 AND used > 0", params![id])?;
        }
    }
    Ok(())
}

pub(crate) fn customer_uses(tx: &mut dyn Tx, ids: &[Id], customer: Option<Id>) -> Result<HashMap<Id, i64>, Error> {
    let mut out = HashMap::new();
    let Some(customer) = customer else { return Ok(out) };
    for id in ids {
        let n = tx
            .query_one(
                "SELECT COUNT(*) FROM redemptions WHERE promotion_id = $1 AND customer_id = $2",
                params![*id, customer],
            )?
            .int(0)?;
        out.insert(*id, n);
    }
    Ok(out)
}

/// Inserts a promotion and its `promotion.created`; the promotion as stored.
pub(crate) fn insert(
    tx: &mut dyn Tx,
    id: Id,
    code: Option<&str>,
    name: &str,
    (kind, value): (&str, i64),
    min_subtotal: i64,
    (scope, values): (&str, &str),
    (starts_at, ends_at): (Option<Millis>, Option<Millis>),
    (usage_limit, per_customer_limit): (Option<i64>, Option<i64>),
    active: bool,
) -> Result<Promotion, Error> {
    tx.execute(
        &format!(
            "INSERT INTO promotions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $14)"
        ),
        params![
            id,
            code,
            name,
            kind,
            value,
            min_subtotal,
            scope,
            values,
            starts_at,
            ends_at,
            usage_limit,
            per_customer_limit,
            active,
            now_ms()
        ],
    )
    .map_err(|e| match Error::from(e) {
        e if e.code == ErrorCode::Conflict => Error::conflict("a promotion with this code exists"),
        e => e,
    })?;
    publish(tx, &PromotionCreated { id })?;
    by_id(tx, id)?.ok_or_else(|| Error::internal("promotion vanished after insert"))
}

pub(crate) fn by_id(tx: &mut dyn Tx, id: Id) -> Result<Option<Promotion>, Error> {
    tx.query_opt(&format!("SELECT {COLUMNS} FROM promotions WHERE id = $1"), params![id])?
        .map(|r| from_row(&r))
        .transpose()
}

/// The newest 500 promotions, newest first.
pub(crate) fn list(tx: &mut dyn Tx) -> Result<Vec<Promotion>, Error> {
    tx.query(&format!("SELECT {COLUMNS} FROM promotions ORDER BY id DESC LIMIT 500"), params![])?
        .iter()
        .map(from_row)
        .collect()
}

/// Active promotions without a code: those every cart gets when they apply.
pub(crate) fn automatic(tx: &mut dyn Tx) -> Result<Vec<Promotion>, Error> {
    tx.query(&format!("SELECT {COLUMNS} FROM promotions WHERE code IS NULL AND active = 1"), params![])?
        .iter()
        .map(from_row)
        .collect()
}

/// The promotion of a (normalised) coupon code.
pub(crate) fn by_code(tx: &mut dyn Tx, code: &str) -> Result<Option<Promotion>, Error> {
    tx.query_opt(&format!("SELECT {COLUMNS} FROM promotions WHERE code = $1"), params![code])?
        .map(|r| from_row(&r))
        .transpose()
}

/// Whether promotion `id` exists; its activity set to `active`.
pub(crate) fn set_active(tx: &mut dyn Tx, id: Id, active: bool) -> Result<bool, Error> {
    Ok(tx.execute("UPDATE promotions SET active = $1 WHERE id = $2", params![active, id])? == 1)
}

/// Counts `order`'s uses of the promotions in `applied` inside the caller's
/// transaction, refusing (and so rolling back the whole transaction) when a
/// limit, window or activity rule no longer admits one. Idempotent per
/// order. The service drops its cached promotions after the commit.
pub(crate) fn redeem(
    tx: &mut dyn Tx,
    order: Id,
    customer: Id,
    applied: &[Applied],
    currency: Currency,
) -> Result<(), Error> {
    let now = now_ms();
    // The order's claim row orders this against an abandon of
    // the same order: whichever writes it first, the other waits for it
    // (a unique key) and then sees its state.
    tx.execute(
        "INSERT INTO redemption_orders (order_id, state, at) VALUES ($1, 'redeemed', $2) ON CONFLICT (order_id) DO NOTHING",
        params![order, now],
    )?;
    let claim = tx.query_one("SELECT state FROM redemption_orders WHERE order_id = $1", params![order])?;
    if claim.str(0)? == "abandoned" {
        return Err(Error::conflict(format!("checkout {order} was abandoned; its discounts can no longer be counted")));
    }
    for a in applied {
        if tx
            .query_opt(
                "SELECT 1 FROM redemptions WHERE promotion_id = $1 AND order_id = $2",
                params![a.promotion_id, order],
            )?
            .is_some()
        {
            continue;
        }
        // The conditional increment takes the promotion's row lock, so
        // concurrent redeemers of one promotion queue here.
        let counted = tx.execute(
            "UPDATE promotions SET used = used + 1 WHERE id = $1 AND active = 1 \
             AND (usage_limit IS NULL OR used < usage_limit) \
             AND (starts_at IS NULL OR starts_at <= $2) AND (ends_at IS NULL OR ends_at > $2)",
            params![a.promotion_id, now],
        )?;
        let p = by_id(tx, a.promotion_id)?.ok_or_else(|| Error::internal("promotion vanished while redeeming"))?;
        let code = p.code.clone().unwrap_or_else(|| p.name.clone());
        if counted == 0 {
            let reason = if !p.active {
                Rejection::Inactive
            } else if p.ends_at.is_some_and(|e| now >= e) {
                Rejection::Expired
            } else if p.starts_at.is_some_and(|s| now < s) {
                Rejection::NotStarted
            } else {
                Rejection::UsageLimitReached
            };
            return Err(reason.into_error(&code, currency));
        }
        if let Some(limit) = p.per_customer_limit {
            let uses = customer_uses(tx, &[p.id], Some(customer))?.get(&p.id).copied().unwrap_or(0);
            if uses >= limit {
                return Err(Rejection::CustomerLimitReached.into_error(&code, currency));
            }
        }
        tx.execute(
            "INSERT INTO redemptions (promotion_id, order_id, customer_id, amount, created_at) VALUES ($1, $2, $3, $4, $5)",
            params![a.promotion_id, order, customer, a.amount, now],
        )?;
    }
    Ok(())
}

/// Whether `order` counted any use.
pub(crate) fn counted_any(tx: &mut dyn Tx, order: Id) -> Result<bool, Error> {
    Ok(tx.query_opt("SELECT 1 FROM redemptions WHERE order_id = $1", params![order])?.is_some())
}

/// Gives back `order`'s uses and marks it abandoned, so that a later redeem
/// for it counts nothing.
pub(crate) fn abandon(tx: &mut dyn Tx, order: Id) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO redemption_orders (order_id, state, at) VALUES ($1, 'abandoned', $2) \
         ON CONFLICT (order_id) DO UPDATE SET state = 'abandoned', at = excluded.at",
        params![order, now_ms()],
    )?;
    release(tx, order)
}

pub(crate) fn redemptions(tx: &mut dyn Tx, promotion: Id) -> Result<i64, Error> {
    tx.query_one("SELECT COUNT(*) FROM redemptions WHERE promotion_id = $1", params![promotion])?.int(0)
}
