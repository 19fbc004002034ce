//! The cart's SQL: every statement on its tables (carts, cart lines), each
//! running in the caller's transaction.

use mercato_contracts::cart::{CartConverted, CartOwner};
use mercato_core::{Error, Id};
use mercato_platform::events::publish;
use mercato_platform::{Tx, now_ms, params, sha256_hex};

pub(crate) struct CartRow {
    pub id: Id,
}

/// What pricing needs of a cart, read in one transaction.
pub(crate) struct CartState {
    pub shipping_method: String,
    pub customer: Option<Id>,
    pub coupon: Option<String>,
    /// (sku, quantity), oldest line first.
    pub lines: Vec<(String, i64)>,
}

/// Cart `cart` as pricing needs it. Writes that change a cart read this in
/// their own transaction: the writer's pages are current and cached, while a
/// reader after any commit starts from an empty page cache (SQLite's WAL
/// readers drop it whenever the database changed), so a second read
/// transaction cost more than the write itself.
pub(crate) fn cart_state(tx: &mut dyn Tx, cart: Id) -> Result<CartState, Error> {
    let row = tx
        .query_opt("SELECT shipping_method, customer_id, coupon_code FROM carts WHERE id = $1", params![cart])?
        .ok_or_else(|| Error::not_found("no cart"))?;
    let lines = tx
        .query("SELECT sku, quantity FROM cart_lines WHERE cart_id = $1 ORDER BY added_at, sku", params![cart])?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(CartState { shipping_method: row.text(0)?, customer: row.opt_int(1)?.map(Id), coupon: row.opt_text(2)?, lines })
}

/// What creating an owner's cart needs, prepared outside the transaction so
/// the body can run more than once.
pub(crate) struct FreshCart {
    pub owner: CartOwner,
    pub id: Id,
    pub default_method: String,
    pub token: Option<String>,
}

impl FreshCart {
    /// The owner's active cart, created if there is none; the token is returned
    /// only when this call created a guest cart.
    pub(crate) fn ensure(&self, tx: &mut dyn Tx) -> Result<(Id, Option<String>), Error> {
        if let Some(found) = find_active(tx, &self.owner)? {
            return Ok((found.id, None));
        }
        let now = now_ms();
        let (customer, token_hash) = match &self.owner {
            CartOwner::Customer(c) => (Some(*c), None),
            CartOwner::Guest(_) => (None, self.token.as_ref().map(|t| sha256_hex(t.as_bytes()))),
        };
        // ON CONFLICT: a concurrent request created this customer's cart first.
        tx.execute(
            "INSERT INTO carts (id, token_hash, customer_id, status, shipping_method, created_at, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, $5, $5) ON CONFLICT DO NOTHING",
            params![self.id, token_hash.as_deref(), customer, &self.default_method, now],
        )?;
        let lookup = match &self.owner {
            CartOwner::Guest(_) => CartOwner::Guest(self.token.clone()),
            customer => customer.clone(),
        };
        let found = find_active(tx, &lookup)?.ok_or_else(|| Error::internal("cart not found after insert"))?;
        Ok((found.id, if found.id == self.id { self.token.clone() } else { None }))
    }
}

pub(crate) fn find_active(tx: &mut dyn Tx, owner: &CartOwner) -> Result<Option<CartRow>, Error> {
    let row = match owner {
        CartOwner::Customer(c) => {
            tx.query_opt("SELECT id FROM carts WHERE customer_id = $1 AND status = 'active'", params![*c])?
        }
        CartOwner::Guest(Some(token)) => tx.query_opt(
            "SELECT id FROM carts WHERE token_hash = $1 AND status = 'active' AND customer_id IS NULL",
            params![&sha256_hex(token.as_bytes())],
        )?,
        CartOwner::Guest(None) => None,
    };
    row.map(|r| Ok(CartRow { id: r.id(0)? })).transpose()
}

/// Retires `cart` because `order` was placed from it. Returns whether this
/// call retired it (false: already retired).
pub(crate) fn convert(tx: &mut dyn Tx, cart: Id, order: Id) -> Result<bool, Error> {
    let n = tx.execute(
        "UPDATE carts SET status = 'converted', order_id = $1, updated_at = $2 WHERE id = $3 AND status = 'active'",
        params![order, now_ms(), cart],
    )?;
    if n == 1 {
        publish(tx, &CartConverted { cart_id: cart, order_id: order })?;
    }
    Ok(n == 1)
}

/// The units of `sku` the cart's line holds, if it has one.
pub(crate) fn line_quantity(tx: &mut dyn Tx, cart: Id, sku: &str) -> Result<Option<i64>, Error> {
    tx.query_opt("SELECT quantity FROM cart_lines WHERE cart_id = $1 AND sku = $2", params![cart, sku])?
        .map(|r| r.int(0))
        .transpose()
}

/// Adds `quantity` units to the line of `sku` (created if missing) unless
/// the line would then hold more than `max`; whether it did. Added to what
/// the line holds when the row is written, not to what was read: concurrent
/// adds to one line both count.
pub(crate) fn add_to_line(tx: &mut dyn Tx, cart: Id, sku: &str, quantity: i64, max: i64) -> Result<bool, Error> {
    let now = now_ms();
    let changed = tx.execute(
        "INSERT INTO cart_lines (cart_id, sku, quantity, added_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = cart_lines.quantity + excluded.quantity \
         WHERE cart_lines.quantity + excluded.quantity <= $5",
        params![cart, sku, quantity, now, max],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    tx.execute("UPDATE carts SET updated_at = $1 WHERE id = $2", params![now, cart])?;
    Ok(true)
}

/// Whether the cart had a line of `sku` to set.
pub(crate) fn set_line_quantity(tx: &mut dyn Tx, cart: Id, sku: &str, quantity: i64) -> Result<bool, Error> {
    Ok(tx
        .execute("UPDATE cart_lines SET quantity = $1 WHERE cart_id = $2 AND sku = $3", params![quantity, cart, sku])?
        == 1)
}

/// Whether the cart had a line of `sku` to remove.
pub(crate) fn remove_line(tx: &mut dyn Tx, cart: Id, sku: &str) -> Result<bool, Error> {
    Ok(tx.execute("DELETE FROM cart_lines WHERE cart_id = $1 AND sku = $2", params![cart, sku])? == 1)
}

pub(crate) fn set_shipping_method(tx: &mut dyn Tx, cart: Id, code: &str) -> Result<(), Error> {
    tx.execute("UPDATE carts SET shipping_method = $1 WHERE id = $2", params![code, cart])?;
    Ok(())
}

pub(crate) fn set_coupon(tx: &mut dyn Tx, cart: Id, code: Option<&str>) -> Result<(), Error> {
    tx.execute("UPDATE carts SET coupon_code = $1 WHERE id = $2", params![code, cart])?;
    Ok(())
}

/// Retires active cart `guest` and adds its lines to `target`'s, each capped
/// at `max` units; nothing when `guest` was merged already.
pub(crate) fn merge(tx: &mut dyn Tx, guest: Id, target: Id, max: i64) -> Result<(), Error> {
    let now = now_ms();
    let retired = tx.execute(
        "UPDATE carts SET status = 'merged', updated_at = $1 WHERE id = $2 AND status = 'active'",
        params![now, guest],
    )?;
    if retired == 0 {
        return Ok(());
    }
    let lines = tx.query("SELECT sku, quantity, added_at FROM cart_lines WHERE cart_id = $1", params![guest])?;
    for r in lines {
        tx.execute(
            "INSERT INTO cart_lines (cart_id, sku, quantity, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = CASE WHEN cart_lines.quantity + excluded.quantity > $5 \
             THEN $5 ELSE cart_lines.quantity + excluded.quantity END",
            params![target, &r.text(0)?, r.int(1)?.min(max), r.int(2)?, max],
        )?;
    }
    Ok(())
}

pub(crate) fn is_active(tx: &mut dyn Tx, cart: Id) -> Result<bool, Error> {
    Ok(tx.query_opt("SELECT 1 FROM carts WHERE id = $1 AND status = 'active'", params![cart])?.is_some())
}
