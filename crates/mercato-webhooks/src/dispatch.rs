//! The dispatcher: claims due deliveries, sends them, records the outcome.
//!
//! Only the oldest pending delivery of each endpoint (its *head*) may be sent,
//! so an endpoint sees events in event-id order; a delivery that failed for
//! good stops blocking the ones behind it. An attempt is claimed by a
//! conditional update that sets a lease, so two instances never send the same
//! attempt at once; a crashed instance's claims are retried when the lease
//! lapses (delivery is at least once).

use crate::model::{self, ID_HEADER, SIGNATURE_HEADER};
use crate::service::WebhooksService;
use crate::store;
use mercato_core::{Error, Id};
use mercato_platform::now_ms;
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// A claimed attempt: everything needed to send it.
pub(crate) struct Job {
    pub(crate) delivery_id: Id,
    pub(crate) endpoint_id: Id,
    pub(crate) token: String,
    pub(crate) url: String,
    pub(crate) secret: String,
    pub(crate) event_id: i64,
    pub(crate) event_type: String,
    pub(crate) event_version: i64,
    pub(crate) payload: String,
    pub(crate) event_created_at: i64,
}

#[derive(Serialize)]
struct Body<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    version: i64,
    created_at: String,
    data: serde_json::Value,
}

enum Sent {
    Ok(u16),
    Status(u16),
    Error(String),
}

impl WebhooksService {
    /// Starts the background sender. One per process; several processes may
    /// run one each against the same database.
    pub fn spawn_dispatcher(&self) -> tokio::task::JoinHandle<()> {
        self.spawn_dispatcher_until(mercato_platform::CancellationToken::new())
    }

    /// As [`Self::spawn_dispatcher`], until `stop`: then it claims nothing
    /// more and ends once the attempts it started have finished (each is
    /// bounded by the send timeout).
    pub fn spawn_dispatcher_until(&self, stop: mercato_platform::CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.dispatch_loop(stop).await })
    }

    async fn dispatch_loop(self, stop: mercato_platform::CancellationToken) {
        let opts = self.opts;
        let client = match reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Mercato-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhook dispatcher could not build its http client");
                return;
            }
        };
        let max = opts.max_in_flight.max(1);
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut error_backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let wait = match self.dispatch_once(&client, &mut in_flight, max).await {
                Ok(wait) => {
                    error_backoff = Duration::from_millis(100);
                    wait
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = error_backoff.as_millis() as u64, "webhook dispatch pass failed");
                    let w = error_backoff;
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(10));
                    w
                }
            };
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "webhook attempt task failed");
                    }
                }
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => {}
            }
        }
        while let Some(done) = in_flight.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "webhook attempt task failed");
            }
        }
    }

    /// Claims and starts what is due; returns how long to sleep at most.
    async fn dispatch_once(
        &self,
        client: &reqwest::Client,
        in_flight: &mut JoinSet<()>,
        max: usize,
    ) -> Result<Duration, Error> {
        let poll = self.opts.poll;
        let heads: Vec<(Id, i64)> = self.inner.db.read(store::heads).await?;
        let now = now_ms();
        let free = max.saturating_sub(in_flight.len());
        let due: Vec<Id> = heads.iter().filter(|(_, at)| *at <= now).take(free).map(|(id, _)| *id).collect();
        let jobs = if due.is_empty() { Vec::new() } else { self.claim(due).await? };
        let claimed: Vec<Id> = jobs.iter().map(|j| j.delivery_id).collect();
        for job in jobs {
            in_flight.spawn(self.clone().attempt(client.clone(), job));
        }
        let next = heads.iter().filter(|(id, _)| !claimed.contains(id)).map(|(_, at)| *at).min();
        Ok(match next {
            // Due but not started: we are full (a finished attempt wakes us)
            // or another instance just claimed it (its lease shows next time).
            Some(at) if at <= now => {
                if in_flight.len() >= max {
                    poll
                } else {
                    Duration::from_millis(10)
                }
            }
            Some(at) => Duration::from_millis((at - now) as u64).min(poll),
            None => poll,
        })
    }

    /// Leases each of `ids` that is still due and still its endpoint's head.
    async fn claim(&self, ids: Vec<Id>) -> Result<Vec<Job>, Error> {
        let token = mercato_platform::random_token();
        let lease_ms = self.opts.lease.as_millis() as i64;
        self.inner.db.write(move |tx| store::claim(tx, &ids, &token, lease_ms)).await
    }

    /// Sends one claimed attempt and records what happened.
    async fn attempt(self, client: reqwest::Client, job: Job) {
        let event_ref = format!("evt_{}", job.event_id);
        let body = Body {
            id: event_ref.clone(),
            kind: &job.event_type,
            version: job.event_version,
            created_at: model::rfc3339(job.event_created_at),
            data: serde_json::from_str(&job.payload).unwrap_or(serde_json::Value::Null),
        };
        let body = match serde_json::to_vec(&body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(delivery_id = %job.delivery_id, error = %e, "webhook body could not be serialised");
                return;
            }
        };
        let started_at = now_ms();
        let signature = model::sign(job.secret.as_bytes(), started_at / 1000, &body);
        let clock = Instant::now();
        let sent = match client
            .post(&job.url)
            .header("Content-Type", "application/json")
            .header(ID_HEADER, &event_ref)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => Sent::Ok(resp.status().as_u16()),
            Ok(resp) => Sent::Status(resp.status().as_u16()),
            Err(e) => Sent::Error(describe(&e, self.opts.timeout)),
        };
        let duration_ms = clock.elapsed().as_millis() as i64;
        if let Err(e) = self.record(&job, started_at, duration_ms, sent).await {
            // The lease lapses and the attempt is made again: at least once.
            tracing::warn!(delivery_id = %job.delivery_id, error = %e, "webhook attempt outcome not recorded");
        }
    }

    async fn record(&self, job: &Job, started_at: i64, duration_ms: i64, sent: Sent) -> Result<(), Error> {
        let retry = self.opts.retry;
        let (delivery_id, token) = (job.delivery_id, job.token.clone());
        let (ok, status_code, error) = match &sent {
            Sent::Ok(s) => (true, Some(*s), None),
            Sent::Status(s) => (false, Some(*s), None),
            Sent::Error(e) => (false, None, Some(e.clone())),
        };
        let last_error = match (&sent, &error) {
            (Sent::Status(s), _) => Some(format!("http status {s}")),
            (_, Some(e)) => Some(e.clone()),
            _ => None,
        };
        let attempt_id = self.inner.ids.next()?;
        let outcome = self
            .inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let Some((status, attempts, failures)) = store::leased(tx, delivery_id, &token)? else {
                    return Ok(Outcome::LostLease);
                };
                let (new_status, new_failures, next_at, outcome) = if status != "pending" {
                    (status, failures, now, Outcome::Cancelled)
                } else if ok {
                    ("delivered".to_string(), failures, now, Outcome::Delivered)
                } else if retry.exhausted(failures as u32 + 1) {
                    ("failed".to_string(), failures + 1, now, Outcome::Failed)
                } else {
                    let delay = retry.delay(failures as u32 + 1).as_millis() as i64;
                    ("pending".to_string(), failures + 1, now + delay, Outcome::Retry(delay))
                };
                let error_text = if matches!(outcome, Outcome::Cancelled) {
                    Some("endpoint deleted")
                } else {
                    last_error.as_deref()
                };
                let moved = store::finish_attempt(
                    tx,
                    delivery_id,
                    &token,
                    attempts,
                    (&new_status, new_failures, next_at),
                    error_text,
                    now,
                )?;
                if !moved {
                    return Ok(Outcome::LostLease);
                }
                let sent = (status_code, error.as_deref());
                store::insert_attempt(tx, attempt_id, delivery_id, attempts + 1, started_at, sent, duration_ms)?;
                Ok(outcome)
            })
            .await?;
        let status = match &sent {
            Sent::Ok(s) | Sent::Status(s) => Some(*s),
            Sent::Error(_) => None,
        };
        let err = match &sent {
            Sent::Error(e) => e.as_str(),
            _ => "",
        };
        let (endpoint_id, event_id) = (job.endpoint_id, job.event_id);
        match outcome {
            Outcome::Delivered => {
                metrics::counter!("webhook_attempts_total", "outcome" => "delivered").increment(1);
                tracing::debug!(%endpoint_id, %delivery_id, event_id, status, duration_ms, "webhook delivered");
            }
            Outcome::Retry(delay) => {
                metrics::counter!("webhook_attempts_total", "outcome" => "retry").increment(1);
                tracing::warn!(%endpoint_id, %delivery_id, event_id, status, error = err, duration_ms, retry_in_ms = delay,
                    "webhook attempt failed");
            }
            Outcome::Failed => {
                metrics::counter!("webhook_attempts_total", "outcome" => "failed").increment(1);
                tracing::warn!(%endpoint_id, %delivery_id, event_id, status, error = err, duration_ms,
                    attempts = retry.max_attempts, "webhook delivery failed permanently");
            }
            Outcome::Cancelled => {
                tracing::debug!(%endpoint_id, %delivery_id, event_id, "webhook sent for a deleted endpoint");
            }
            Outcome::LostLease => {
                tracing::warn!(%endpoint_id, %delivery_id, event_id, "webhook attempt finished after its lease lapsed");
            }
        }
        Ok(())
    }
}

enum Outcome {
    Delivered,
    Retry(i64),
    Failed,
    Cancelled,
    LostLease,
}

/// A short, lowercase reason for a failed request, without the URL.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    let mut msg = if e.is_timeout() {
        format!("timed out after {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
        depth += 1;
        if depth > 4 {
            break;
        }
    }
    msg.chars().take(500).collect()
}
