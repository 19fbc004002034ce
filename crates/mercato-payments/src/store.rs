//! The payments' SQL: every statement on their tables (intents, attempts,
//! refunds, webhook receipts), each running in the caller's transaction.
//! The built-in test provider keeps its own ledger (`test_provider.rs`).

use crate::provider::ChargeOutcome;
use mercato_contracts::payments::{Payment, PaymentRefunded, PaymentStatus, PaymentSucceeded};
use mercato_core::{Currency, Error, Id, Money};
use mercato_platform::events::publish;
use mercato_platform::shards::Serving;
use mercato_platform::{Row, Tx, now_ms, params};

pub(crate) const INTENT_COLUMNS: &str =
    "id, order_id, status, amount, currency, refunded, last_error, created_at, updated_at, attempt_id";

pub(crate) fn intent_from(r: &Row) -> Result<(Payment, Option<Id>), Error> {
    let currency: Currency = r.str(4)?.parse()?;
    Ok((
        Payment {
            id: r.id(0)?,
            order_id: r.id(1)?,
            status: PaymentStatus::from_db(r.str(2)?),
            amount: Money::new(r.int(3)?, currency),
            refunded: Money::new(r.int(5)?, currency),
            last_error: r.opt_text(6)?,
            created_at: r.int(7)?,
            updated_at: r.int(8)?,
        },
        r.opt_int(9)?.map(Id),
    ))
}

pub(crate) fn intent_by_order(tx: &mut dyn Tx, order: Id) -> Result<Option<(Payment, Option<Id>)>, Error> {
    tx.query_opt(&format!("SELECT {INTENT_COLUMNS} FROM payment_intents WHERE order_id = $1"), params![order])?
        .map(|r| intent_from(&r))
        .transpose()
}

/// Applies a provider outcome to the intent whose current attempt is `attempt`.
/// Only a `processing` intent moves, so a late, duplicate or out-of-order
/// report changes nothing. Returns the payment if it newly succeeded.
pub(crate) fn settle(tx: &mut dyn Tx, attempt: Id, outcome: &ChargeOutcome) -> Result<Option<Payment>, Error> {
    let now = now_ms();
    let (intent_status, attempt_status, error, decline) = match outcome {
        ChargeOutcome::Succeeded { .. } => ("succeeded", "succeeded", None, None),
        ChargeOutcome::Pending { .. } => return Ok(None),
        ChargeOutcome::Declined { code, message } => {
            ("requires_payment", "declined", Some(message.clone()), Some(code.clone()))
        }
    };
    let provider_ref = match outcome {
        ChargeOutcome::Succeeded { provider_ref } => Some(provider_ref.as_str()),
        _ => None,
    };
    let moved = tx.execute(
        "UPDATE payment_intents SET status = $1, last_error = $2, provider_ref = COALESCE($3, provider_ref), updated_at = $4 \
         WHERE attempt_id = $5 AND status = 'processing'",
        params![intent_status, error.as_deref(), provider_ref, now, attempt],
    )?;
    tx.execute(
        "UPDATE payment_attempts SET status = $1, decline_code = $2 WHERE id = $3",
        params![attempt_status, decline.as_deref(), attempt],
    )?;
    if moved == 0 || intent_status != "succeeded" {
        return Ok(None);
    }
    let row =
        tx.query_one(&format!("SELECT {INTENT_COLUMNS} FROM payment_intents WHERE attempt_id = $1"), params![attempt])?;
    let (payment, _) = intent_from(&row)?;
    publish(tx, &PaymentSucceeded { payment_id: payment.id, order_id: payment.order_id, amount: payment.amount })?;
    Ok(Some(payment))
}

/// Opens `order`'s intent if it has none and claims it for `attempt`;
/// refused while another attempt is processing or once it succeeded.
pub(crate) fn start_attempt(
    tx: &mut dyn Tx,
    intent_id: Id,
    order: Id,
    amount: Money,
    attempt: Id,
    last4: &str,
    request_key: Option<&str>,
) -> Result<Payment, Error> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO payment_intents (id, order_id, amount, currency, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'requires_payment', $5, $5) ON CONFLICT (order_id) DO NOTHING",
        params![intent_id, order, amount.amount, amount.currency.as_str(), now],
    )?;
    let claimed = tx.query_opt(
        &format!(
            "UPDATE payment_intents SET status = 'processing', attempt_id = $1, last_error = NULL, updated_at = $2 \
             WHERE order_id = $3 AND status = 'requires_payment' RETURNING {INTENT_COLUMNS}"
        ),
        params![attempt, now, order],
    )?;
    let Some(row) = claimed else {
        let (current, _) = intent_by_order(tx, order)?.ok_or_else(|| Error::internal("intent vanished"))?;
        return Err(match current.status {
            PaymentStatus::Succeeded => Error::illegal_transition("paid", "pay"),
            _ => Error::conflict("a payment for this order is already being processed").with_retry_after(2),
        });
    };
    let (intent, _) = intent_from(&row)?;
    tx.execute(
        "INSERT INTO payment_attempts (id, intent_id, card_last4, status, created_at, request_key, order_id) \
         VALUES ($1, $2, $3, 'processing', $4, $5, $6)",
        params![attempt, intent.id, last4, now, request_key, order],
    )?;
    Ok(intent)
}

/// `order`'s payment if one of its attempts was asked for under `key`.
pub(crate) fn by_request(tx: &mut dyn Tx, order: Id, key: &str) -> Result<Option<Payment>, Error> {
    tx.query_opt(
        &format!(
            "SELECT {INTENT_COLUMNS} FROM payment_intents WHERE order_id = $1 AND EXISTS \
             (SELECT 1 FROM payment_attempts a WHERE a.intent_id = payment_intents.id AND a.request_key = $2)"
        ),
        params![order, key],
    )?
    .map(|r| intent_from(&r).map(|(p, _)| p))
    .transpose()
}

/// Applies a provider notification once per event id: the payment it made
/// succeed, if it did.
pub(crate) fn apply_webhook(
    tx: &mut dyn Tx,
    event_id: &str,
    attempt: Id,
    outcome: &ChargeOutcome,
) -> Result<Option<Payment>, Error> {
    let first = tx.execute(
        "INSERT INTO webhook_receipts (event_id, received_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
        params![event_id, now_ms()],
    )?;
    if first == 0 {
        return Ok(None);
    }
    settle(tx, attempt, outcome)
}

/// Attempts still processing since before `cutoff`, at most 100.
pub(crate) fn stuck_attempts(tx: &mut dyn Tx, cutoff: i64, serving: Serving) -> Result<Vec<Id>, Error> {
    let sql = format!(
        "SELECT attempt_id FROM payment_intents WHERE status = 'processing' AND updated_at < $1{} LIMIT 100",
        serving.only("order_id")
    );
    tx.query(&sql, params![cutoff])?.iter().map(|r| r.id(0)).collect::<Result<Vec<_>, _>>()
}

/// Records refund `refund_id` of `amount` (None: all that remains) as
/// pending and counts it as refunded; the attempt to refund and the amount.
pub(crate) fn begin_refund(
    tx: &mut dyn Tx,
    refund_id: Id,
    order: Id,
    amount: Option<i64>,
    reason: &str,
) -> Result<(Id, Money), Error> {
    let (intent, attempt) =
        intent_by_order(tx, order)?.ok_or_else(|| Error::conflict("the order has no payment to refund"))?;
    if intent.status != PaymentStatus::Succeeded {
        return Err(Error::conflict("the order's payment has not succeeded"));
    }
    let remaining = intent.amount.amount - intent.refunded.amount;
    let amount = amount.unwrap_or(remaining);
    if amount <= 0 || amount > remaining {
        return Err(Error::field("amount", format!("must be between 1 and {remaining} (the amount not yet refunded)")));
    }
    let n = tx.execute(
        "UPDATE payment_intents SET refunded = refunded + $1, updated_at = $2 WHERE id = $3 AND refunded + $1 <= amount",
        params![amount, now_ms(), intent.id],
    )?;
    if n == 0 {
        return Err(Error::conflict("a concurrent refund changed the refundable amount; retry"));
    }
    tx.execute(
        "INSERT INTO refunds (id, intent_id, amount, reason, status, created_at, order_id) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
        params![refund_id, intent.id, amount, reason, now_ms(), order],
    )?;
    Ok((
        attempt.ok_or_else(|| Error::internal("succeeded intent without attempt"))?,
        Money::new(amount, intent.amount.currency),
    ))
}

/// The provider's answer to refund `refund_id`: announced when it succeeded,
/// given back (to be tried again) when it failed.
pub(crate) fn finish_refund(tx: &mut dyn Tx, refund_id: Id, order: Id, money: Money, ok: bool) -> Result<(), Error> {
    if ok {
        tx.execute("UPDATE refunds SET status = 'succeeded' WHERE id = $1", params![refund_id])?;
        publish(tx, &PaymentRefunded { order_id: order, refund_id, amount: money })?;
    } else {
        // Give the amount back so the refund can be tried again.
        tx.execute("UPDATE refunds SET status = 'failed' WHERE id = $1", params![refund_id])?;
        tx.execute(
            "UPDATE payment_intents SET refunded = refunded - $1 WHERE order_id = $2",
            params![money.amount, order],
        )?;
    }
    Ok(())
}

/// The tables a payment's rows live in, each with the column holding the
/// order's id (which names the order's logical shard); children first. A
/// shard's move carries them with the order's (webhook receipts, keyed by
/// the provider's event id, stay: a replayed event settles nothing twice).
pub const SHARD_TABLES: &[(&str, &str)] =
    &[("refunds", "order_id"), ("payment_attempts", "order_id"), ("payment_intents", "order_id")];
