use crate::card;
use crate::provider::{ChargeOutcome, Provider};
use mercato_contracts::payments::{
    PayOutcome, Payment, PaymentRefunded, PaymentStatus, PaymentSucceeded, Payments, Refund,
};
use mercato_core::{Currency, Error, ErrorCode, Id, Money};
use mercato_platform::events::{EventBus, publish};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, Row, Tx, now_ms, params};
use std::sync::Arc;

#[derive(Clone)]
pub struct PaymentsService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    provider: Arc<dyn Provider>,
}

const INTENT_COLUMNS: &str =
    "id, order_id, status, amount, currency, refunded, last_error, created_at, updated_at, attempt_id";

fn intent_from(r: &Row) -> Result<(Payment, Option<Id>), Error> {
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

fn intent_by_order(tx: &mut dyn Tx, order: Id) -> Result<Option<(Payment, Option<Id>)>, Error> {
    tx.query_opt(&format!("SELECT {INTENT_COLUMNS} FROM payment_intents WHERE order_id = $1"), params![order])?
        .map(|r| intent_from(&r))
        .transpose()
}

/// Applies a provider outcome to the intent whose current attempt is `attempt`.
/// Only a `processing` intent moves, so a late, duplicate or out-of-order
/// report changes nothing. Returns the payment if it newly succeeded.
fn settle(tx: &mut dyn Tx, attempt: Id, outcome: &ChargeOutcome) -> Result<Option<Payment>, Error> {
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

impl PaymentsService {
    pub fn new(db: Db, ids: IdGen, bus: EventBus, provider: Arc<dyn Provider>) -> Self {
        PaymentsService { inner: Arc::new(Inner { db, ids, bus, provider }) }
    }

    pub async fn for_order(&self, order: Id) -> Result<Option<Payment>, Error> {
        Ok(self.inner.db.lookup(move |tx| intent_by_order(tx, order)).await?.map(|(p, _)| p))
    }

    /// Charges the card for `amount` against `order`'s intent. The caller (the
    /// orders domain) has checked that the order is awaiting payment and
    /// claimed it. Starting the attempt and applying the provider's final
    /// answer are one transaction each; a `Pending` answer is settled later
    /// by the provider's webhook or by reconciliation, and every success is
    /// announced as `payment.succeeded`.
    pub async fn pay(&self, order: Id, amount: Money, card_number: &str) -> Result<PayOutcome, Error> {
        let card = card::validate(card_number)?;
        let intent_id = self.inner.ids.next()?;
        let attempt = self.inner.ids.next()?;
        let last4 = card[card.len() - 4..].to_string();
        let started = self
            .inner
            .db
            .write(move |tx| {
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
                    "INSERT INTO payment_attempts (id, intent_id, card_last4, status, created_at) VALUES ($1, $2, $3, 'processing', $4)",
                    params![attempt, intent.id, &last4, now],
                )?;
                Ok(intent)
            })
            .await?;

        let outcome = match self.inner.provider.charge(attempt, amount, &card).await {
            Ok(o) => o,
            // The intent stays `processing`; reconciliation asks the provider later.
            Err(e) => return Err(Error::unavailable(format!("payment provider unavailable: {}", e.message))),
        };
        let declined = match &outcome {
            ChargeOutcome::Pending { .. } => return Ok(PayOutcome::Processing(started)),
            ChargeOutcome::Succeeded { .. } => None,
            ChargeOutcome::Declined { code, message } => Some((code.clone(), message.clone())),
        };
        let newly = self.inner.db.write(move |tx| settle(tx, attempt, &outcome)).await?;
        self.inner.bus.wake();
        let payment = match newly {
            Some(p) => p,
            None => self.for_order(order).await?.ok_or_else(|| Error::internal("intent vanished"))?,
        };
        match declined {
            None => Ok(PayOutcome::Succeeded(payment)),
            Some((code, message)) => Err(Error::new(ErrorCode::PaymentDeclined, message)
                .with_details(serde_json::json!({ "decline_code": code, "payment_id": payment.id }))),
        }
    }

    /// Verifies and applies a provider webhook. Returns the payment when this
    /// delivery is the one that made it succeed; duplicates return None.
    pub async fn handle_webhook(&self, signature: &str, body: &[u8]) -> Result<Option<Payment>, Error> {
        let event = self.inner.provider.parse_webhook(signature, body)?;
        let result = self
            .inner
            .db
            .write(move |tx| {
                let first = tx.execute(
                    "INSERT INTO webhook_receipts (event_id, received_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
                    params![&event.event_id, now_ms()],
                )?;
                if first == 0 {
                    return Ok(None);
                }
                settle(tx, event.attempt_id, &event.outcome)
            })
            .await?;
        self.inner.bus.wake();
        Ok(result)
    }

    /// Settles intents left `processing` by a crash or a provider outage by
    /// asking the provider what happened. Returns payments that succeeded.
    pub async fn reconcile(&self, older_than_ms: i64) -> Result<Vec<Payment>, Error> {
        let cutoff = now_ms() - older_than_ms;
        let stuck = self
            .inner
            .db
            .read(move |tx| {
                tx.query(
                    "SELECT attempt_id FROM payment_intents WHERE status = 'processing' AND updated_at < $1 LIMIT 100",
                    params![cutoff],
                )?
                .iter()
                .map(|r| r.id(0))
                .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut succeeded = Vec::new();
        for attempt in stuck {
            let outcome = match self.inner.provider.retrieve(attempt).await? {
                Some(ChargeOutcome::Pending { .. }) => continue,
                Some(o) => o,
                // The provider never saw the attempt: the customer may try again.
                None => ChargeOutcome::Declined {
                    code: "not_attempted".into(),
                    message: "the payment attempt did not reach the provider".into(),
                },
            };
            if let Some(p) = self.inner.db.write(move |tx| settle(tx, attempt, &outcome)).await? {
                succeeded.push(p);
            }
        }
        if !succeeded.is_empty() {
            self.inner.bus.wake();
        }
        Ok(succeeded)
    }

    /// Refunds `amount` (None: all that remains) of `order`'s payment.
    pub async fn refund(&self, order: Id, amount: Option<i64>, reason: &str) -> Result<Refund, Error> {
        let refund_id = self.inner.ids.next()?;
        let reason = reason.to_string();
        let r = reason.clone();
        let (attempt, money) = self
            .inner
            .db
            .write(move |tx| {
                let (intent, attempt) = intent_by_order(tx, order)?.ok_or_else(|| Error::conflict("the order has no payment to refund"))?;
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
                    "INSERT INTO refunds (id, intent_id, amount, reason, status, created_at) VALUES ($1, $2, $3, $4, 'pending', $5)",
                    params![refund_id, intent.id, amount, &r, now_ms()],
                )?;
                Ok((attempt.ok_or_else(|| Error::internal("succeeded intent without attempt"))?, Money::new(amount, intent.amount.currency)))
            })
            .await?;
        let provider_result = self.inner.provider.refund(attempt, refund_id, money).await;
        let ok = provider_result.is_ok();
        self.inner
            .db
            .write(move |tx| {
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
            })
            .await?;
        provider_result?;
        self.inner.bus.wake();
        Ok(Refund { id: refund_id, order_id: order, amount: money, reason, created_at: now_ms() })
    }
}

#[async_trait::async_trait]
impl Payments for PaymentsService {
    async fn for_order(&self, order: Id) -> Result<Option<Payment>, Error> {
        PaymentsService::for_order(self, order).await
    }
    async fn pay(&self, order: Id, amount: Money, card_number: &str) -> Result<PayOutcome, Error> {
        PaymentsService::pay(self, order, amount, card_number).await
    }
    async fn handle_webhook(&self, signature: &str, body: &[u8]) -> Result<Option<Payment>, Error> {
        PaymentsService::handle_webhook(self, signature, body).await
    }
    async fn reconcile(&self, older_than_ms: i64) -> Result<Vec<Payment>, Error> {
        PaymentsService::reconcile(self, older_than_ms).await
    }
    async fn refund(&self, order: Id, amount: Option<i64>, reason: &str) -> Result<Refund, Error> {
        PaymentsService::refund(self, order, amount, reason).await
    }
}
