//! The built-in `test` provider. It keeps its own ledger (as a real provider
//! would on its side), answers synchronously for most cards, settles the
//! asynchronous card later and tells us through a signed webhook delivered over
//! HTTP, with retries, exactly as an external provider does.
//!
//! Test cards: 4242424242424242 succeeds; 4000000000000002 is declined
//! (card_declined); 4000000000009995 is declined (insufficient_funds);
//! 4000000000003220 succeeds asynchronously through a webhook. Any other
//! Luhn-valid number succeeds.

use crate::provider::{ChargeOutcome, Provider, ProviderEvent};
use crate::signature;
use mercato_core::{Error, ErrorCode, Id, Money};
use mercato_platform::{Db, now_ms, params};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const DECLINE: &str = "4000000000000002";
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
pub const ASYNC: &str = "4000000000003220";

#[derive(Clone)]
pub struct TestProvider {
    db: Db,
    secret: Arc<Vec<u8>>,
    settle_ms: i64,
    tolerance_secs: i64,
    webhook_url: Arc<OnceLock<String>>,
}

impl TestProvider {
    pub fn new(db: Db, secret: Vec<u8>, settle_ms: u64, tolerance_secs: i64) -> Self {
        TestProvider {
            db,
            secret: Arc::new(secret),
            settle_ms: settle_ms as i64,
            tolerance_secs,
            webhook_url: Arc::new(OnceLock::new()),
        }
    }

    /// Where webhooks go; set once the server knows its address.
    pub fn set_webhook_url(&self, url: String) {
        let _ = self.webhook_url.set(url);
    }

    fn outcome(status: &str, id: i64) -> ChargeOutcome {
        let provider_ref = format!("tp_{id}");
        match status {
            "succeeded" => ChargeOutcome::Succeeded { provider_ref },
            "pending" => ChargeOutcome::Pending { provider_ref },
            "insufficient_funds" => ChargeOutcome::Declined {
                code: "insufficient_funds".into(),
                message: "the card has insufficient funds".into(),
            },
            _ => ChargeOutcome::Declined { code: "card_declined".into(), message: "the card was declined".into() },
        }
    }

    /// Delivers due webhooks until the process ends. Failed deliveries are
    /// retried with exponential backoff and jitter.
    /// Sends due webhooks from whichever instance holds `job`'s lease (the
    /// provider stands for one party outside the fleet, which sends each
    /// webhook once), until `stop`.
    pub fn spawn_webhook_sender(
        &self,
        job: mercato_platform::fleet::FleetJob,
        stop: mercato_platform::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
            job.every(Duration::from_millis(200), stop, || async {
                if let Err(e) = this.send_due(&client).await {
                    tracing::warn!(error = %e, "test provider webhook pass failed");
                }
            })
            .await
        })
    }

    async fn send_due(&self, client: &reqwest::Client) -> Result<(), Error> {
        let Some(url) = self.webhook_url.get().cloned() else { return Ok(()) };
        let due = self
            .db
            .read(|tx| {
                tx.query(
                    "SELECT id, amount, currency FROM test_provider_charges \
                     WHERE webhook_delivered_at IS NULL AND webhook_next_at <= $1 ORDER BY webhook_next_at LIMIT 50",
                    params![now_ms()],
                )?
                .iter()
                .map(|r| Ok((r.int(0)?, r.int(1)?, r.text(2)?)))
                .collect::<Result<Vec<_>, Error>>()
            })
            .await?;
        for (id, amount, currency) in due {
            // Settling is the provider's own decision; it happens once.
            self.db
                .write(move |tx| {
                    Ok(tx.execute(
                        "UPDATE test_provider_charges SET status = 'succeeded' WHERE id = $1 AND status = 'pending'",
                        params![id],
                    )?)
                })
                .await?;
            let body = serde_json::json!({
                "id": format!("evt_{id}_succeeded"),
                "type": "charge.succeeded",
                "data": { "attempt_id": id.to_string(), "amount": amount, "currency": currency },
            })
            .to_string();
            let header = signature::sign(&self.secret, now_ms() / 1000, body.as_bytes());
            let delivered = client
                .post(&url)
                .header("content-type", "application/json")
                .header(signature::HEADER, header)
                .body(body)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            self.db
                .write(move |tx| {
                    let now = now_ms();
                    if delivered {
                        tx.execute("UPDATE test_provider_charges SET webhook_delivered_at = $1 WHERE id = $2", params![now, id])?;
                    } else {
                        let attempts = tx
                            .query_one("SELECT webhook_attempts FROM test_provider_charges WHERE id = $1", params![id])?
                            .int(0)?;
                        let backoff = 500i64.saturating_mul(1 << attempts.min(10));
                        let jitter = rand_jitter(backoff / 4);
                        tx.execute(
                            "UPDATE test_provider_charges SET webhook_attempts = webhook_attempts + 1, webhook_next_at = $1 WHERE id = $2",
                            params![now + backoff + jitter, id],
                        )?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }
}

fn rand_jitter(max: i64) -> i64 {
    if max <= 0 { 0 } else { (now_ms().wrapping_mul(2_654_435_761) % max).abs() }
}

#[async_trait::async_trait]
impl Provider for TestProvider {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn charge(&self, attempt_id: Id, amount: Money, card_number: &str) -> Result<ChargeOutcome, Error> {
        let status = match card_number {
            DECLINE => "card_declined",
            INSUFFICIENT_FUNDS => "insufficient_funds",
            ASYNC => "pending",
            _ => "succeeded",
        };
        let last4 = card_number[card_number.len().saturating_sub(4)..].to_string();
        let settle_ms = self.settle_ms;
        self.db
            .write(move |tx| {
                let now = now_ms();
                let next = (status == "pending").then_some(now + settle_ms);
                tx.execute(
                    "INSERT INTO test_provider_charges (id, amount, currency, card_last4, status, settle_at, webhook_next_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                    params![attempt_id, amount.amount, amount.currency.as_str(), &last4, status, now + settle_ms, next, now],
                )?;
                let s = tx.query_one("SELECT status FROM test_provider_charges WHERE id = $1", params![attempt_id])?.text(0)?;
                Ok(Self::outcome(&s, attempt_id.0))
            })
            .await
    }

    async fn retrieve(&self, attempt_id: Id) -> Result<Option<ChargeOutcome>, Error> {
        self.db
            .lookup(move |tx| {
                Ok(tx
                    .query_opt("SELECT status FROM test_provider_charges WHERE id = $1", params![attempt_id])?
                    .map(|r| r.text(0))
                    .transpose()?
                    .map(|s| Self::outcome(&s, attempt_id.0)))
            })
            .await
    }

    async fn refund(&self, attempt_id: Id, _refund_id: Id, amount: Money) -> Result<(), Error> {
        let n = self
            .db
            .write(move |tx| {
                Ok(tx.execute(
                    "UPDATE test_provider_charges SET refunded = refunded + $1 WHERE id = $2 AND status = 'succeeded' AND refunded + $1 <= amount",
                    params![amount.amount, attempt_id],
                )?)
            })
            .await?;
        if n == 0 {
            return Err(Error::new(ErrorCode::Conflict, "the provider refused the refund (nothing left to refund)"));
        }
        Ok(())
    }

    fn parse_webhook(&self, sig: &str, body: &[u8]) -> Result<ProviderEvent, Error> {
        signature::verify(&self.secret, sig, body, now_ms() / 1000, self.tolerance_secs)?;
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| Error::validation("webhook body is not JSON"))?;
        let event_id = v["id"].as_str().ok_or_else(|| Error::validation("webhook has no id"))?.to_string();
        let attempt_id: Id =
            v["data"]["attempt_id"].as_str().ok_or_else(|| Error::validation("webhook has no attempt id"))?.parse()?;
        let outcome = match v["type"].as_str() {
            Some("charge.succeeded") => ChargeOutcome::Succeeded { provider_ref: format!("tp_{attempt_id}") },
            Some("charge.failed") => {
                ChargeOutcome::Declined { code: "card_declined".into(), message: "declined".into() }
            }
            _ => return Err(Error::validation("unknown webhook type")),
        };
        Ok(ProviderEvent { event_id, attempt_id, outcome })
    }
}
