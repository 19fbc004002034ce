//! Domain events through a transactional outbox.
//!
//! A domain writes its change and the event describing it in one transaction
//! ([`emit`]). The relay reads undelivered events in id order and hands them to
//! the [`EventBus`]; an event is marked delivered only after every subscriber
//! accepted it, so delivery is at-least-once and a crash between commit and
//! delivery loses nothing. Subscribers make themselves idempotent with
//! [`first_time`] (an inbox keyed by consumer and event id).
//!
//! The relay publishes through the [`EventSink`] port. The in-process
//! [`EventBus`] is one implementation; a broker adapter (NATS JetStream)
//! publishes to the broker instead, and a consumer on each instance feeds that
//! instance's bus, so subscribers do not change.

use crate::{Db, Tx, now_ms, params};
use mercato_core::Error;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unique across every database's outbox: the row's sequence in its
    /// outbox times [`crate::databases::SOURCES`], plus the outbox's source
    /// number. Within one outbox, ids grow in commit order.
    pub id: i64,
    pub aggregate: String,
    pub aggregate_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// Records `kind` for `aggregate/aggregate_id` inside the caller's transaction.
pub fn emit(
    tx: &mut dyn Tx,
    aggregate: &str,
    aggregate_id: &str,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<(), Error> {
    let payload = payload.to_string();
    tx.execute(
        "INSERT INTO outbox (aggregate, aggregate_id, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
        params![aggregate, aggregate_id, kind, &payload, now_ms()],
    )?;
    Ok(())
}

/// Marks `event_id` processed by `consumer` in the caller's transaction;
/// returns false if it already was, in which case the caller does nothing.
pub fn first_time(tx: &mut dyn Tx, consumer: &str, event_id: i64) -> Result<bool, Error> {
    let inserted = tx.execute(
        "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        params![consumer, event_id, now_ms()],
    )?;
    Ok(inserted == 1)
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;
pub type Handler = Arc<dyn Fn(Event) -> HandlerFuture + Send + Sync>;

struct Subscriber {
    name: String,
    prefixes: Vec<String>,
    handler: Handler,
}

/// Where the relay hands committed events, in id order. `publish` returns
/// only once the event is safely handed on (delivered to every local
/// subscriber, or acknowledged by the broker); the relay marks it delivered
/// then, and retries it otherwise.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    async fn publish(&self, event: &Event) -> Result<(), Error>;
}

#[async_trait::async_trait]
impl EventSink for EventBus {
    async fn publish(&self, event: &Event) -> Result<(), Error> {
        self.deliver(event).await
    }
}

/// A relay's wake-up, and the database whose outbox it reads.
type RelayWaker = (Db, Arc<Notify>);

/// In-process publish/subscribe keyed by event-kind prefixes (`"order."`).
#[derive(Clone, Default)]
pub struct EventBus {
    subscribers: Arc<parking_lot::RwLock<Vec<Arc<Subscriber>>>>,
    /// One per relay (one relay per database), with the database it reads.
    relays: Arc<parking_lot::RwLock<Vec<RelayWaker>>>,
    /// The database whose commits this handle announces ([`Self::scoped`]);
    /// None: every relay's.
    scope: Option<Db>,
}

impl EventBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe<F, Fut>(&self, name: &str, prefixes: &[&str], handler: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |e| Box::pin(handler(e)));
        self.subscribers.write().push(Arc::new(Subscriber {
            name: name.to_string(),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            handler,
        }));
    }

    /// Tells the relay that new events were committed, so it need not wait for
    /// its next poll.
    pub fn wake(&self) {
        for (db, relay) in self.relays.read().iter() {
            if self.scope.as_ref().is_none_or(|scope| scope.same(db)) {
                relay.notify_one();
            }
        }
    }

    /// The same bus, whose `wake` reaches only the relay of `db`: a domain's
    /// commits write its own outbox, and with every domain in a database of
    /// its own, waking every relay made each commit cost one outbox read per
    /// database.
    pub fn scoped(&self, db: &Db) -> EventBus {
        EventBus { subscribers: self.subscribers.clone(), relays: self.relays.clone(), scope: Some(db.clone()) }
    }

    fn relay_waker(&self, db: &Db) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.relays.write().push((db.clone(), notify.clone()));
        notify
    }

    async fn deliver(&self, event: &Event) -> Result<(), Error> {
        let subs: Vec<Arc<Subscriber>> = self
            .subscribers
            .read()
            .iter()
            .filter(|s| s.prefixes.iter().any(|p| event.kind.starts_with(p.as_str())))
            .cloned()
            .collect();
        for sub in subs {
            (sub.handler)(event.clone()).await.map_err(|e| {
                Error::new(
                    e.code,
                    format!("subscriber {} failed on event {} ({}): {}", sub.name, event.id, event.kind, e.message),
                )
            })?;
        }
        Ok(())
    }
}

/// Publishes the outbox of `db` (whose events carry `source`, see
/// [`Event::id`]) to `sink` until the process ends; `bus.wake()` (called
/// after commits that emitted events) cuts the polling delay. One relay runs
/// per database.
pub fn spawn_relay(db: Db, source: i64, bus: EventBus, sink: Arc<dyn EventSink>) -> tokio::task::JoinHandle<()> {
    let wake = bus.relay_waker(&db);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut last_cleanup = 0i64;
        loop {
            match relay_once(&db, source, sink.as_ref()).await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue; // more may be waiting
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox delivery failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
            if now_ms() - last_cleanup > 3_600_000 {
                last_cleanup = now_ms();
                let cutoff = last_cleanup - 7 * 86_400_000;
                let _ = db
                    .write(move |tx| {
                        Ok(tx.execute(
                            "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1",
                            params![cutoff],
                        )?)
                    })
                    .await;
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), wake.notified()).await;
        }
    })
}

/// One pass: delivers up to a batch in id order, stopping at the first event a
/// subscriber refuses (so per-aggregate order holds), and marks what went out.
pub async fn relay_once(db: &Db, source: i64, sink: &dyn EventSink) -> Result<usize, Error> {
    debug_assert!((0..crate::databases::SOURCES).contains(&source));
    let events = db
        .read(move |tx| {
            let rows = tx.query(
                "SELECT id, aggregate, aggregate_id, kind, payload, created_at FROM outbox \
                 WHERE delivered_at IS NULL ORDER BY id LIMIT 256",
                params![],
            )?;
            rows.into_iter()
                .map(|r| {
                    Ok(Event {
                        id: r.int(0)? * crate::databases::SOURCES + source,
                        aggregate: r.text(1)?,
                        aggregate_id: r.text(2)?,
                        kind: r.text(3)?,
                        payload: serde_json::from_str(r.str(4)?).unwrap_or(serde_json::Value::Null),
                        created_at: r.int(5)?,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()
        })
        .await?;
    metrics::gauge!("outbox_pending_batch").set(events.len() as f64);
    let mut delivered = Vec::with_capacity(events.len());
    let mut failure = None;
    for event in &events {
        match sink.publish(event).await {
            Ok(()) => delivered.push(event.id / crate::databases::SOURCES),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if !delivered.is_empty() {
        let n = delivered.len();
        let ids = delivered.clone();
        db.write(move |tx| {
            let at = now_ms();
            for chunk in ids.chunks(100) {
                let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                let sql = format!("UPDATE outbox SET delivered_at = $1 WHERE id IN ({})", placeholders.join(", "));
                let mut p = vec![crate::db::Param::Int(at)];
                p.extend(chunk.iter().map(|id| crate::db::Param::Int(*id)));
                tx.execute(&sql, &p)?;
            }
            Ok(())
        })
        .await?;
        metrics::counter!("outbox_delivered_total").increment(n as u64);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(delivered.len()),
    }
}
