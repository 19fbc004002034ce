//! The webhooks' SQL: every statement on their tables (endpoints,
//! deliveries, attempts), each running in the caller's transaction.

use crate::dispatch::Job;
use crate::model;
use mercato_contracts::webhooks::{Attempt, Delivery, DeliveryStatus, Endpoint};
use mercato_core::{Error, Id};
use mercato_platform::db::Param;
use mercato_platform::events::Event;
use mercato_platform::{Row, Tx, now_ms, params};

pub(crate) const ENDPOINT_COLUMNS: &str = "id, url, description, events, active, created_at, updated_at";
pub(crate) const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, event_id, event_type, status, next_attempt_at, delivered_at, last_error, created_at, updated_at";

pub(crate) fn endpoint_from(r: &Row) -> Result<Endpoint, Error> {
    Ok(Endpoint {
        id: r.id(0)?,
        url: r.text(1)?,
        description: r.opt_text(2)?,
        events: parse_events(r.str(3)?)?,
        active: r.bool(4)?,
        secret: None,
        created_at: r.int(5)?,
        updated_at: r.int(6)?,
    })
}

pub(crate) fn parse_events(s: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(s).map_err(|e| Error::internal(format!("stored webhook event patterns unreadable: {e}")))
}

pub(crate) fn delivery_from(r: &Row) -> Result<Delivery, Error> {
    let status = DeliveryStatus::from_db(r.str(4)?);
    Ok(Delivery {
        id: r.id(0)?,
        endpoint_id: r.id(1)?,
        event_id: r.int(2)?,
        event_type: r.text(3)?,
        status,
        next_attempt_at: if status == DeliveryStatus::Pending { Some(r.int(5)?) } else { None },
        delivered_at: r.opt_int(6)?,
        last_error: r.opt_text(7)?,
        created_at: r.int(8)?,
        updated_at: r.int(9)?,
        attempts: Vec::new(),
    })
}

/// Live (not deleted) endpoint by id.
pub(crate) fn endpoint_by_id(tx: &mut dyn Tx, id: Id) -> Result<Endpoint, Error> {
    tx.query_opt(
        &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL"),
        params![id],
    )?
    .map(|r| endpoint_from(&r))
    .transpose()?
    .ok_or_else(|| Error::not_found("webhook endpoint not found"))
}

/// Fills in the attempts of `deliveries`, oldest first.
pub(crate) fn load_attempts(tx: &mut dyn Tx, deliveries: &mut [Delivery]) -> Result<(), Error> {
    for chunk in deliveries.chunks_mut(100) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT delivery_id, number, started_at, status_code, error, duration_ms FROM webhook_attempts \
             WHERE delivery_id IN ({}) ORDER BY delivery_id, number",
            placeholders.join(", ")
        );
        let args: Vec<Param<'_>> = chunk.iter().map(|d| Param::Int(d.id.0)).collect();
        for r in tx.query(&sql, &args)? {
            let delivery = r.id(0)?;
            let attempt = Attempt {
                number: r.int(1)? as u32,
                started_at: r.int(2)?,
                status_code: r.opt_int(3)?.map(|s| s as u16),
                error: r.opt_text(4)?,
                duration_ms: r.int(5)?,
            };
            if let Some(d) = chunk.iter_mut().find(|d| d.id == delivery) {
                d.attempts.push(attempt);
            }
        }
    }
    Ok(())
}

pub(crate) fn delivery_by_id(tx: &mut dyn Tx, id: Id) -> Result<Delivery, Error> {
    let row = tx
        .query_opt(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"), params![id])?
        .ok_or_else(|| Error::not_found("webhook delivery not found"))?;
    let mut d = [delivery_from(&row)?];
    load_attempts(tx, &mut d)?;
    let [d] = d;
    Ok(d)
}

/// Each active endpoint with its event patterns.
pub(crate) fn active_endpoints(tx: &mut dyn Tx) -> Result<Vec<(Id, Vec<String>)>, Error> {
    let mut out = Vec::new();
    for r in tx.query("SELECT id, events FROM webhook_endpoints WHERE active = 1", params![])? {
        out.push((r.id(0)?, parse_events(r.str(1)?)?));
    }
    Ok(out)
}

/// Registers an active endpoint.
pub(crate) fn insert_endpoint(
    tx: &mut dyn Tx,
    id: Id,
    url: &str,
    description: Option<&str>,
    events_json: &str,
    secret: &str,
) -> Result<Endpoint, Error> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO webhook_endpoints (id, url, description, events, secret, active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
        params![id, url, description, events_json, secret, now],
    )?;
    endpoint_by_id(tx, id)
}

/// Every endpoint not deleted, oldest first.
pub(crate) fn list_endpoints(tx: &mut dyn Tx) -> Result<Vec<Endpoint>, Error> {
    tx.query(
        &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY id"),
        params![],
    )?
    .iter()
    .map(endpoint_from)
    .collect()
}

/// Changes the given fields of endpoint `id` (`description: Some(None)` clears it).
pub(crate) fn update_endpoint(
    tx: &mut dyn Tx,
    id: Id,
    url: Option<&str>,
    events_json: Option<&str>,
    description: Option<&Option<String>>,
    active: Option<bool>,
) -> Result<Endpoint, Error> {
    let current = endpoint_by_id(tx, id)?;
    let url = url.map(str::to_string).unwrap_or(current.url);
    let events = match events_json {
        Some(e) => e.to_string(),
        None => serde_json::to_string(&current.events).map_err(|e| Error::internal(e.to_string()))?,
    };
    let description = description.cloned().unwrap_or(current.description);
    tx.execute(
        "UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, active = $4, updated_at = $5 \
         WHERE id = $6 AND deleted_at IS NULL",
        params![&url, &events, description.as_deref(), active.unwrap_or(current.active), now_ms(), id],
    )?;
    endpoint_by_id(tx, id)
}

/// Soft-deletes endpoint `id` and cancels its pending deliveries.
pub(crate) fn delete_endpoint(tx: &mut dyn Tx, id: Id) -> Result<(), Error> {
    let now = now_ms();
    let n = tx.execute(
        "UPDATE webhook_endpoints SET active = 0, deleted_at = $1, updated_at = $1 \
         WHERE id = $2 AND deleted_at IS NULL",
        params![now, id],
    )?;
    if n == 0 {
        return Err(Error::not_found("webhook endpoint not found"));
    }
    tx.execute(
        "UPDATE webhook_deliveries SET status = 'cancelled', last_error = 'endpoint deleted', updated_at = $1 \
         WHERE endpoint_id = $2 AND status = 'pending'",
        params![now, id],
    )?;
    Ok(())
}

/// A page of the endpoint's deliveries below id `before`, newest first,
/// with their attempts, and the cursor of the next page.
pub(crate) fn list_deliveries(
    tx: &mut dyn Tx,
    endpoint_id: Id,
    before: Option<i64>,
    limit: usize,
) -> Result<(Vec<Delivery>, Option<String>), Error> {
    endpoint_by_id(tx, endpoint_id)?;
    let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1");
    let mut args = vec![Param::Int(endpoint_id.0)];
    if let Some(b) = before {
        args.push(Param::Int(b));
        sql.push_str(" AND id < $2");
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let mut deliveries = tx.query(&sql, &args)?.iter().map(delivery_from).collect::<Result<Vec<_>, _>>()?;
    let more = deliveries.len() > limit;
    deliveries.truncate(limit);
    load_attempts(tx, &mut deliveries)?;
    let next = if more { deliveries.last().map(|d| d.id.to_string()) } else { None };
    Ok((deliveries, next))
}

/// Makes delivery `delivery_id` due now, with a fresh set of retries.
pub(crate) fn redeliver(tx: &mut dyn Tx, delivery_id: Id) -> Result<Delivery, Error> {
    let current = delivery_by_id(tx, delivery_id)?;
    let endpoint =
        endpoint_by_id(tx, current.endpoint_id).map_err(|_| Error::not_found("webhook delivery not found"))?;
    if !endpoint.active {
        return Err(Error::conflict("the endpoint is paused; activate it before redelivering"));
    }
    let now = now_ms();
    match current.status {
        DeliveryStatus::Pending => {
            tx.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = $1, updated_at = $1 \
                 WHERE id = $2 AND status = 'pending' AND next_attempt_at > $1",
                params![now, delivery_id],
            )?;
        }
        DeliveryStatus::Delivered | DeliveryStatus::Failed => {
            tx.execute(
                "UPDATE webhook_deliveries SET status = 'pending', failures = 0, next_attempt_at = $1, \
                 updated_at = $1 WHERE id = $2 AND status IN ('delivered', 'failed')",
                params![now, delivery_id],
            )?;
        }
        DeliveryStatus::Cancelled => return Err(Error::conflict("the delivery was cancelled")),
    }
    delivery_by_id(tx, delivery_id)
}

/// A pending delivery of `e` for each (delivery id, endpoint) whose endpoint
/// is still active and still wants it; how many were new.
pub(crate) fn record_deliveries(tx: &mut dyn Tx, rows: &[(Id, Id)], e: &Event, payload: &str) -> Result<u64, Error> {
    let now = now_ms();
    let mut created = 0;
    for (id, endpoint) in rows {
        // Checked again inside the transaction: the endpoint may
        // have been paused, deleted or re-targeted since the read. An
        // event older than the endpoint is not for it: it reaches the
        // relay again only when redelivered (a restored cursor, a redrive).
        // Both times are instances' clocks: an event published on another
        // instance within its clock skew of the endpoint's creation may be
        // taken for older.
        let Some(r) = tx.query_opt(
            "SELECT events FROM webhook_endpoints WHERE id = $1 AND active = 1 AND created_at <= $2",
            params![*endpoint, e.created_at],
        )?
        else {
            continue;
        };
        if !model::matches(&parse_events(r.str(0)?)?, &e.kind) {
            continue;
        }
        created += tx.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_version, payload, \
             event_created_at, status, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $8, $5, $6, 'pending', $7, $7, $7) \
             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            params![*id, *endpoint, e.id, e.kind.as_str(), payload, e.created_at, now, e.version],
        )?;
    }
    Ok(created)
}

// ---- the dispatcher ----

/// Deliveries that are the oldest pending one of their (active) endpoint.
pub(crate) const HEADS: &str = "FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
     WHERE d.status = 'pending' AND e.active = 1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p \
     WHERE p.endpoint_id = d.endpoint_id AND p.status = 'pending' AND p.event_id < d.event_id)";

/// Up to 256 endpoint heads with the time each is due, soonest first.
pub(crate) fn heads(tx: &mut dyn Tx) -> Result<Vec<(Id, i64)>, Error> {
    tx.query(
        &format!(
            "SELECT d.id, CASE WHEN d.lease_until > d.next_attempt_at THEN d.lease_until \
             ELSE d.next_attempt_at END AS due {HEADS} ORDER BY due, d.id LIMIT 256"
        ),
        params![],
    )?
    .iter()
    .map(|r| Ok((r.id(0)?, r.int(1)?)))
    .collect()
}

/// Leases each of `ids` that is still due and still its endpoint's head,
/// under `token`; the jobs to send.
pub(crate) fn claim(tx: &mut dyn Tx, ids: &[Id], token: &str, lease_ms: i64) -> Result<Vec<Job>, Error> {
    let now = now_ms();
    let mut jobs = Vec::new();
    for id in ids {
        let won = tx.execute(
            "UPDATE webhook_deliveries SET lease_until = $1, lease_token = $2 \
             WHERE id = $3 AND status = 'pending' AND lease_until <= $4 AND next_attempt_at <= $4 \
             AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = webhook_deliveries.endpoint_id AND e.active = 1) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = webhook_deliveries.endpoint_id \
             AND p.status = 'pending' AND p.event_id < webhook_deliveries.event_id)",
            params![now + lease_ms, token, *id, now],
        )?;
        if won == 0 {
            continue;
        }
        let r = tx.query_one(
            "SELECT d.endpoint_id, d.event_id, d.event_type, d.payload, d.event_created_at, e.url, e.secret, \
             d.event_version \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
            params![*id],
        )?;
        jobs.push(Job {
            delivery_id: *id,
            endpoint_id: r.id(0)?,
            token: token.to_string(),
            event_id: r.int(1)?,
            event_type: r.text(2)?,
            payload: r.text(3)?,
            event_created_at: r.int(4)?,
            url: r.text(5)?,
            secret: r.text(6)?,
            event_version: r.int(7)?,
        });
    }
    Ok(jobs)
}

/// The (status, attempts, failures) of delivery `id` while `token` holds
/// its lease.
pub(crate) fn leased(tx: &mut dyn Tx, id: Id, token: &str) -> Result<Option<(String, i64, i64)>, Error> {
    tx.query_opt(
        "SELECT status, attempts, failures FROM webhook_deliveries WHERE id = $1 AND lease_token = $2",
        params![id, token],
    )?
    .map(|r| Ok((r.text(0)?, r.int(1)?, r.int(2)?)))
    .transpose()
}

/// Records attempt number `attempts + 1` of delivery `id` and releases its
/// lease: the new (status, failures, next attempt time). False when the
/// lease was lost meanwhile.
pub(crate) fn finish_attempt(
    tx: &mut dyn Tx,
    id: Id,
    token: &str,
    attempts: i64,
    (status, failures, next_at): (&str, i64, i64),
    last_error: Option<&str>,
    now: i64,
) -> Result<bool, Error> {
    Ok(tx.execute(
        "UPDATE webhook_deliveries SET status = $1, attempts = $2, failures = $3, next_attempt_at = $4, \
         lease_until = 0, lease_token = NULL, last_error = $5, \
         delivered_at = CASE WHEN $1 = 'delivered' THEN $6 ELSE delivered_at END, updated_at = $6 \
         WHERE id = $7 AND lease_token = $8 AND attempts = $9",
        params![status, attempts + 1, failures, next_at, last_error, now, id, token, attempts],
    )? == 1)
}

/// One attempt's record: the receiver's status code or why there was none.
pub(crate) fn insert_attempt(
    tx: &mut dyn Tx,
    id: Id,
    delivery_id: Id,
    number: i64,
    started_at: i64,
    (status_code, error): (Option<u16>, Option<&str>),
    duration_ms: i64,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO webhook_attempts (id, delivery_id, number, started_at, status_code, error, duration_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![id, delivery_id, number, started_at, status_code.map(i64::from), error, duration_ms],
    )?;
    Ok(())
}
