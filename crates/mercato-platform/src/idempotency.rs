//! Stored first responses for requests carrying an `Idempotency-Key`.
//!
//! A key is claimed with a lease before the request runs; its response is
//! stored when it finishes, and a retry with the same key gets that response
//! back instead of running again. A different request under the same key is
//! refused; a retry while the first is still running is told to wait; a claim
//! whose lease ran out (the process died: a running request renews it) may
//! be taken over. Endpoints whose
//! effect must be exactly-once across a crash (placing an order) add their own
//! domain-level guard; this store makes the common case of a client retrying
//! after a lost response safe everywhere.

use crate::{Db, now_ms, params};
use mercato_core::{Error, ErrorCode};

pub enum Begin {
    /// Run the request, then call [`finish`] (or [`abandon`] on a server error).
    Proceed,
    /// The first response: status, headers (JSON object of name to value), body.
    Replay { status: u16, headers: String, body: Vec<u8> },
}

/// How long stored responses are kept.
pub const RETENTION_MS: i64 = 24 * 3_600_000;

pub async fn begin(db: &Db, scope: &str, key: &str, fingerprint: &str, lease_ms: i64) -> Result<Begin, Error> {
    let (scope, key, fingerprint) = (scope.to_string(), key.to_string(), fingerprint.to_string());
    let begun = db.write(move |tx| {
        let now = now_ms();
        let inserted = tx.execute(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, state, lease_until, created_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5) ON CONFLICT (scope, key) DO NOTHING",
            params![&scope, &key, &fingerprint, now + lease_ms, now],
        )?;
        if inserted == 1 {
            return Ok(Begin::Proceed);
        }
        let row = tx.query_one(
            "SELECT fingerprint, state, status, headers, body, lease_until, created_at FROM idempotency_keys WHERE scope = $1 AND key = $2",
            params![&scope, &key],
        )?;
        let expired = row.int(6)? < now - RETENTION_MS;
        if !expired && row.str(0)? != fingerprint {
            return Err(Error::new(ErrorCode::IdempotencyMismatch, "this Idempotency-Key was used with a different request"));
        }
        match (row.str(1)?, expired) {
            ("done", false) => Ok(Begin::Replay {
                status: row.int(2)? as u16,
                headers: row.opt_text(3)?.unwrap_or_else(|| "{}".into()),
                body: row.blob(4)?,
            }),
            ("pending", false) if row.int(5)? > now => Err(Error::new(
                ErrorCode::IdempotencyInProgress,
                "a request with this Idempotency-Key is in progress",
            )
            .with_retry_after(1)),
            _ => {
                tx.execute(
                    "UPDATE idempotency_keys SET fingerprint = $1, state = 'pending', lease_until = $2, created_at = $3 \
                     WHERE scope = $4 AND key = $5",
                    params![&fingerprint, now + lease_ms, now, &scope, &key],
                )?;
                Ok(Begin::Proceed)
            }
        }
    })
    .await?;
    if let Begin::Replay { .. } = begun {
        // A stored answer is read back, not committed now: it may be one
        // whose commit's wait for the standby was cut short, which a
        // failover would discard. Replay only what would survive one.
        db.confirm_durable().await?;
    }
    Ok(begun)
}

pub async fn finish(db: &Db, scope: &str, key: &str, status: u16, headers: String, body: Vec<u8>) -> Result<(), Error> {
    let (scope, key) = (scope.to_string(), key.to_string());
    db.write(move |tx| {
        tx.execute(
            "UPDATE idempotency_keys SET state = 'done', status = $1, headers = $2, body = $3 WHERE scope = $4 AND key = $5",
            params![status as i64, &headers, &body, &scope, &key],
        )?;
        Ok(())
    })
    .await
}

/// Extends a claim's lease while its request runs (see `KeepAlive`).
pub async fn renew(db: &Db, scope: &str, key: &str, lease_ms: i64) -> Result<(), Error> {
    let (scope, key) = (scope.to_string(), key.to_string());
    db.write(move |tx| {
        tx.execute(
            "UPDATE idempotency_keys SET lease_until = $1 WHERE scope = $2 AND key = $3 AND state = 'pending'",
            params![now_ms() + lease_ms, &scope, &key],
        )?;
        Ok(())
    })
    .await
}

/// Forgets a claim whose request failed on our side, so a retry runs again.
pub async fn abandon(db: &Db, scope: &str, key: &str) -> Result<(), Error> {
    let (scope, key) = (scope.to_string(), key.to_string());
    db.write(move |tx| {
        tx.execute(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'pending'",
            params![&scope, &key],
        )?;
        Ok(())
    })
    .await
}

pub async fn purge(db: &Db) -> Result<u64, Error> {
    db.write(|tx| {
        Ok(tx.execute("DELETE FROM idempotency_keys WHERE created_at < $1", params![now_ms() - RETENTION_MS])?)
    })
    .await
}
