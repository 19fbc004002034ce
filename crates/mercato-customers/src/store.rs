//! The customers' SQL: every statement on their tables (customers,
//! sessions), each running in the caller's transaction.

use crate::model::{Customer, Role};
use mercato_contracts::customers::CustomerRegistered;
use mercato_core::{Error, Id};
use mercato_platform::events::publish;
use mercato_platform::{Row, Tx, now_ms, params};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Session {
    pub customer_id: i64,
    pub role: String,
    pub expires_at: i64,
    pub revoked: bool,
}

/// Creates a customer account unless the email has one; whether it did.
pub(crate) fn register(tx: &mut dyn Tx, id: Id, email: &str, name: &str, hash: &str) -> Result<bool, Error> {
    let inserted = tx.execute(
        "INSERT INTO customers (id, email, name, password_hash, role, created_at) \
         VALUES ($1, $2, $3, $4, 'customer', $5) ON CONFLICT (email) DO NOTHING",
        params![id, email, name, hash, now_ms()],
    )?;
    if inserted == 1 {
        publish(tx, &CustomerRegistered { id })?;
    }
    Ok(inserted == 1)
}

fn customer_from(r: &Row) -> Result<Customer, Error> {
    Ok(Customer {
        id: r.id(0)?,
        email: r.text(1)?,
        name: r.text(2)?,
        role: Role::parse(r.str(3)?),
        created_at: r.int(4)?,
    })
}

/// The account of `email` with its password hash.
pub(crate) fn by_email_with_hash(tx: &mut dyn Tx, email: &str) -> Result<Option<(Customer, String)>, Error> {
    tx.query_opt(
        "SELECT id, email, name, role, created_at, password_hash FROM customers WHERE email = $1",
        params![email],
    )?
    .map(|r| Ok((customer_from(&r)?, r.text(5)?)))
    .transpose()
}

pub(crate) fn by_id(tx: &mut dyn Tx, id: Id) -> Result<Option<Customer>, Error> {
    tx.query_opt("SELECT id, email, name, role, created_at FROM customers WHERE id = $1", params![id])?
        .map(|r| customer_from(&r))
        .transpose()
}

pub(crate) fn email_taken(tx: &mut dyn Tx, email: &str) -> Result<bool, Error> {
    Ok(tx.query_opt("SELECT id FROM customers WHERE email = $1", params![email])?.is_some())
}

/// Creates the admin account, or makes the account of `email` the admin
/// with this password hash.
pub(crate) fn upsert_admin(tx: &mut dyn Tx, id: Id, email: &str, hash: &str) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO customers (id, email, name, password_hash, role, created_at) VALUES ($1, $2, 'Administrator', $3, 'admin', $4) \
         ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash, role = 'admin'",
        params![id, email, hash, now_ms()],
    )?;
    Ok(())
}

/// A session for the holder of the token hashed as `token_hash`, lasting
/// `ttl_secs`.
pub(crate) fn open_session(
    tx: &mut dyn Tx,
    token_hash: &str,
    customer: Id,
    role: &str,
    ttl_secs: u64,
) -> Result<(), Error> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO sessions (token_hash, customer_id, role, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        params![token_hash, customer, role, now + (ttl_secs as i64) * 1000, now],
    )?;
    Ok(())
}

pub(crate) fn session(tx: &mut dyn Tx, token_hash: &str) -> Result<Option<Session>, Error> {
    tx.query_opt(
        "SELECT customer_id, role, expires_at, revoked_at FROM sessions WHERE token_hash = $1",
        params![token_hash],
    )?
    .map(|r| {
        Ok(Session {
            customer_id: r.int(0)?,
            role: r.text(1)?,
            expires_at: r.int(2)?,
            revoked: r.opt_int(3)?.is_some(),
        })
    })
    .transpose()
}

pub(crate) fn revoke_session(tx: &mut dyn Tx, token_hash: &str) -> Result<(), Error> {
    tx.execute(
        "UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        params![now_ms(), token_hash],
    )?;
    Ok(())
}

/// Deletes sessions that expired before `before`; how many.
pub(crate) fn purge_sessions(tx: &mut dyn Tx, before: i64) -> Result<u64, Error> {
    Ok(tx.execute("DELETE FROM sessions WHERE expires_at < $1", params![before])?)
}
