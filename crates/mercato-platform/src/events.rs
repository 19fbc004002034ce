//! Domain events through a transactional outbox.
//!
//! A domain writes its change and the event describing it in one transaction
//! ([`emit`]), into the outbox of its own database. A relay per database and
//! per instance publishes them to the subscribers of the [`EventBus`]:
//!
//! - The instance holding the database's relay lease *sequences* committed
//!   rows: it gives them their place in a publication order (`seq`), in the
//!   order it finds them committed. Sequence numbers are final once written,
//!   so a cursor over them never skips a row whose transaction committed
//!   late, as a cursor over the insertion id would.
//! - An **effect** ([`EventBus::subscribe`]: a saga step, a restock, a
//!   webhook delivery) happens once for the whole fleet. Only the lease
//!   holder runs effects, each subscriber on a cursor of its own stored in
//!   the database, so a subscriber that keeps failing holds back only itself.
//!   After [`RelayOptions::max_attempts`] failures on one event the event is
//!   dead-lettered for that subscriber (visible through [`Outboxes`], which
//!   can redrive it) and the cursor moves on.
//! - A **projection** ([`EventBus::project`]: this instance's search index,
//!   its in-process caches) is kept by every instance for itself, on a
//!   cursor in memory that starts at the head when the instance starts.
//!
//! Delivery is at least once: a lease can lapse mid-batch, a process can die
//! between an effect and its cursor write. Effects deduplicate with
//! [`first_time`] (an inbox keyed by consumer and event id, written in the
//! effect's own transaction) or act through conditional state changes.

use crate::databases::SOURCES;
use crate::{Databases, Db, Tx, now_ms, params};
use mercato_core::{Error, ErrorCode};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unique across every database's outbox: the row's id in its outbox
    /// times [`SOURCES`], plus the outbox's source number.
    pub id: i64,
    pub aggregate: String,
    pub aggregate_id: String,
    pub kind: String,
    /// The version of the payload's form ([`DomainEvent::VERSION`]).
    pub version: i64,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// Records `kind` for `aggregate/aggregate_id` inside the caller's
/// transaction, version 1: the untyped form, for tests and tools. Domains
/// [`publish`] their typed events.
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
/// Inbox rows are kept a week ([`Relay`] purges older ones), longer than any
/// redelivery can come.
pub fn first_time(tx: &mut dyn Tx, consumer: &str, event_id: i64) -> Result<bool, Error> {
    let inserted = tx.execute(
        "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        params![consumer, event_id, now_ms()],
    )?;
    Ok(inserted == 1)
}

/// One Rust type per published event, with the version of its JSON form.
/// Implemented by the types in `mercato-contracts`.
pub trait DomainEvent: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// What the event is about (`order`); [`Self::aggregate_id`] says which.
    const AGGREGATE: &'static str;
    /// The version of the JSON form: raised for any change a consumer could
    /// notice other than a new optional field.
    const VERSION: u32;
    /// Every name the type is published under (`order.paid`, ...).
    const TYPES: &'static [&'static str];
    /// The name this value is published under, one of [`Self::TYPES`].
    fn event_type(&self) -> &'static str;
    fn aggregate_id(&self) -> String;
}

/// Records `event` in the outbox of the caller's transaction's database.
pub fn publish<E: DomainEvent>(tx: &mut dyn Tx, event: &E) -> Result<(), Error> {
    let kind = event.event_type();
    debug_assert!(E::TYPES.contains(&kind), "{kind} is not among the types of {}", std::any::type_name::<E>());
    let payload = serde_json::to_string(event).map_err(|e| Error::internal(format!("event {kind}: {e}")))?;
    tx.execute(
        "INSERT INTO outbox (aggregate, aggregate_id, kind, version, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        params![E::AGGREGATE, &event.aggregate_id(), kind, E::VERSION as i64, &payload, now_ms()],
    )?;
    Ok(())
}

/// An event as a typed subscriber ([`EventBus::on`]) receives it.
#[derive(Debug, Clone)]
pub struct Received<E> {
    /// The id for an inbox ([`first_time`]).
    pub id: i64,
    pub event_type: String,
    pub created_at: i64,
    pub data: E,
}

impl Event {
    /// This event as an `E`. Fails for an event of another type, and for a
    /// version newer than this build reads (during a rolling upgrade): the
    /// subscriber is then retried, and if the upgrade takes longer, the event
    /// is dead-lettered for a redrive once it is done.
    pub fn decode<E: DomainEvent>(&self) -> Result<Received<E>, Error> {
        let name = std::any::type_name::<E>();
        if !E::TYPES.contains(&self.kind.as_str()) {
            return Err(Error::internal(format!("event {} ({}) is not a {name}", self.id, self.kind)));
        }
        if self.version > E::VERSION as i64 {
            return Err(Error::unavailable(format!(
                "event {} ({}) is version {}; this build reads up to version {}",
                self.id,
                self.kind,
                self.version,
                E::VERSION
            )));
        }
        let data = E::deserialize(&self.payload)
            .map_err(|e| Error::internal(format!("event {} ({}) does not read as {name}: {e}", self.id, self.kind)))?;
        Ok(Received { id: self.id, event_type: self.kind.clone(), created_at: self.created_at, data })
    }
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;
pub type Handler = Arc<dyn Fn(Event) -> HandlerFuture + Send + Sync>;

/// Who a subscriber acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Once for the whole fleet, by the relay lease holder.
    Fleet,
    /// Every instance for itself.
    Instance,
}

struct Subscriber {
    name: String,
    prefixes: Vec<String>,
    handler: Handler,
    reach: Reach,
}

impl Subscriber {
    /// `""` takes every event, `"order."` every kind with that prefix, any
    /// other pattern that kind alone.
    fn wants(&self, kind: &str) -> bool {
        self.prefixes
            .iter()
            .any(|p| if p.is_empty() || p.ends_with('.') { kind.starts_with(p.as_str()) } else { kind == p })
    }
}

/// `handler` with `owner` upgraded from a weak handle; a no-op once the
/// owner is gone.
fn weakly<O, E, F, Fut>(owner: &Arc<O>, handler: F) -> impl Fn(Received<E>) -> HandlerFuture + Send + Sync + 'static
where
    O: Send + Sync + 'static,
    E: DomainEvent,
    F: Fn(Arc<O>, Received<E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let owner = Arc::downgrade(owner);
    move |e| match owner.upgrade() {
        Some(o) => Box::pin(handler(o, e)),
        None => Box::pin(std::future::ready(Ok(()))),
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

    /// Subscribes an effect: `handler` runs once for the whole fleet per
    /// event whose kind starts with one of `prefixes`, at least once, on
    /// whichever instance holds the relay lease of the event's database.
    /// `name` keys its cursor and its dead letters: keep it stable.
    pub fn subscribe<F, Fut>(&self, name: &str, prefixes: &[&str], handler: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.add(name, prefixes, Reach::Fleet, handler);
    }

    /// Subscribes a projection: `handler` runs on every instance, for the
    /// events committed since the instance started.
    pub fn project<F, Fut>(&self, name: &str, prefixes: &[&str], handler: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.add(name, prefixes, Reach::Instance, handler);
    }

    /// Subscribes an effect (see [`Self::subscribe`]) to events of type `E`
    /// published under one of `types`, decoded.
    pub fn on<E, F, Fut>(&self, name: &str, types: &[&str], handler: F)
    where
        E: DomainEvent,
        F: Fn(Received<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.typed(Reach::Fleet, name, types, handler);
    }

    /// [`Self::on`] for a domain service's handler: `owner` (the service's
    /// state) is held weakly, so the bus does not keep a service and its
    /// database alive on its own; once it is gone its events are ignored.
    pub fn on_with<O, E, F, Fut>(&self, owner: &Arc<O>, name: &str, types: &[&str], handler: F)
    where
        O: Send + Sync + 'static,
        E: DomainEvent,
        F: Fn(Arc<O>, Received<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.typed(Reach::Fleet, name, types, weakly(owner, handler));
    }

    /// Like [`Self::on_with`], for a projection (see [`Self::project`]).
    pub fn project_on_with<O, E, F, Fut>(&self, owner: &Arc<O>, name: &str, types: &[&str], handler: F)
    where
        O: Send + Sync + 'static,
        E: DomainEvent,
        F: Fn(Arc<O>, Received<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.typed(Reach::Instance, name, types, weakly(owner, handler));
    }

    fn typed<E, F, Fut>(&self, reach: Reach, name: &str, types: &[&str], handler: F)
    where
        E: DomainEvent,
        F: Fn(Received<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        assert!(
            types.iter().all(|t| E::TYPES.contains(t)),
            "{name}: {types:?} are not all types of {}",
            std::any::type_name::<E>()
        );
        let handler = Arc::new(handler);
        self.add(name, types, reach, move |e: Event| {
            let handler = handler.clone();
            async move { handler(e.decode::<E>()?).await }
        });
    }

    fn add<F, Fut>(&self, name: &str, prefixes: &[&str], reach: Reach, handler: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |e| Box::pin(handler(e)));
        let mut subs = self.subscribers.write();
        assert!(subs.iter().all(|s| s.name != name), "two subscribers named {name}");
        subs.push(Arc::new(Subscriber {
            name: name.to_string(),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            handler,
            reach,
        }));
    }

    fn of_reach(&self, reach: Reach) -> Vec<Arc<Subscriber>> {
        self.subscribers.read().iter().filter(|s| s.reach == reach).cloned().collect()
    }

    fn named(&self, name: &str) -> Option<Arc<Subscriber>> {
        self.subscribers.read().iter().find(|s| s.name == name).cloned()
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
}

/// How a relay runs.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// This instance's name as a lease holder. An instance restarted under
    /// the same name takes its lease back at once instead of waiting it out.
    pub holder: String,
    /// How long the relay lease lasts unrenewed: how long effects wait after
    /// the instance running them dies.
    pub lease: Duration,
    /// Failures on one event before it is dead-lettered for a subscriber.
    pub max_attempts: u32,
    /// The wait after a subscriber's first failure on an event; it doubles
    /// with each further failure, up to a minute.
    pub retry_base: Duration,
    /// The longest wait between two looks at the outbox when no commit of
    /// this instance wakes the relay (commits of other instances do not).
    pub poll: Duration,
    /// Rows read or sequenced per step.
    pub batch: usize,
    /// Cancelled when the instance shuts down: the relay finishes its step,
    /// hands its lease on and ends.
    pub stop: crate::CancellationToken,
}

impl RelayOptions {
    pub fn new(holder: impl Into<String>) -> RelayOptions {
        RelayOptions {
            holder: holder.into(),
            lease: Duration::from_secs(10),
            max_attempts: 8,
            retry_base: Duration::from_millis(500),
            poll: Duration::from_millis(250),
            batch: 256,
            stop: crate::CancellationToken::new(),
        }
    }
}

/// The lease, in each database, of the instance that sequences its outbox
/// and runs its effects.
const RELAY_LEASE: &str = "outbox.relay";
/// Rows given their places per statement when sequencing.
const SEQUENCE_CHUNK: usize = 32;
/// `UPDATE outbox SET seq = CASE id WHEN $1 THEN $2 WHEN $3 THEN $4 ... END
/// WHERE seq IS NULL AND id IN ($1, $3, ...)` for [`SEQUENCE_CHUNK`] rows.
static SEQUENCE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let whens: String =
        (0..SEQUENCE_CHUNK).map(|j| format!(" WHEN ${} THEN CAST(${} AS BIGINT)", 2 * j + 1, 2 * j + 2)).collect();
    let ids: Vec<String> = (0..SEQUENCE_CHUNK).map(|j| format!("${}", 2 * j + 1)).collect();
    format!("UPDATE outbox SET seq = CASE id{whens} END WHERE seq IS NULL AND id IN ({})", ids.join(", "))
});
/// How long handled outbox rows and inbox marks are kept.
const KEEP_MS: i64 = 7 * 86_400_000;
const MAX_RETRY_WAIT_MS: i64 = 60_000;

#[derive(Debug, Clone)]
struct Cursor {
    /// The last `seq` this subscriber is done with.
    position: i64,
    /// `position` as the database has it (effects), for a conditional write.
    stored: i64,
    failures: u32,
    last_error: Option<String>,
    retry_at: i64,
    changed: bool,
}

impl Cursor {
    fn at(position: i64) -> Cursor {
        Cursor { position, stored: position, failures: 0, last_error: None, retry_at: 0, changed: false }
    }
}

struct Dead {
    subscriber: String,
    row: i64,
    attempts: u32,
    error: String,
}

/// What one subscriber did with one batch.
struct Outcome {
    sub: Arc<Subscriber>,
    cursor: Cursor,
    dead: Vec<Dead>,
    moved: bool,
}

/// The outbox relay of one database on one instance; [`spawn_relay`] runs
/// it. Public so tests can step it.
pub struct Relay {
    db: Db,
    source: i64,
    bus: EventBus,
    opts: RelayOptions,
    /// Until when, by this instance's clock, it acts as the lease holder: a
    /// third of the lease short of what it wrote, so it stops before another
    /// instance may start.
    leading_until: i64,
    renew_at: i64,
    effects: HashMap<String, Cursor>,
    projections: HashMap<String, Cursor>,
    /// Where projections start: the head when this relay started.
    start: i64,
    /// The highest `seq` seen.
    head: i64,
    last_cleanup: i64,
}

impl Relay {
    pub async fn new(db: Db, source: i64, bus: EventBus, opts: RelayOptions) -> Result<Relay, Error> {
        debug_assert!((0..SOURCES).contains(&source));
        let start = db.read(|tx| tx.query_one("SELECT COALESCE(MAX(seq), 0) FROM outbox", params![])?.int(0)).await?;
        Ok(Relay {
            db,
            source,
            bus,
            opts,
            leading_until: 0,
            renew_at: 0,
            effects: HashMap::new(),
            projections: HashMap::new(),
            start,
            head: start,
            last_cleanup: now_ms(),
        })
    }

    /// True while this relay holds its database's lease.
    pub fn leading(&self) -> bool {
        now_ms() < self.leading_until
    }

    /// One step: renew the lease when due; as the holder, sequence what was
    /// committed and run effects; run projections. Returns how many rows were
    /// sequenced plus how many cursors moved: zero means there is nothing to
    /// do until new commits (or a retry comes due).
    pub async fn pass(&mut self) -> Result<usize, Error> {
        let now = now_ms();
        if now >= self.renew_at {
            self.renew(now).await?;
        }
        let leading = self.leading();
        let progress = self.dispatch(leading).await?;
        if leading && now - self.last_cleanup > 3_600_000 {
            self.last_cleanup = now;
            self.cleanup(now - KEEP_MS).await?;
        }
        Ok(progress)
    }

    async fn renew(&mut self, now: i64) -> Result<(), Error> {
        let ttl = self.opts.lease.as_millis() as i64;
        self.renew_at = now + ttl / 3;
        if crate::try_lease(&self.db, RELAY_LEASE, &self.opts.holder, ttl).await? {
            if !self.leading() {
                self.effects = self.load_effects().await.inspect_err(|_| self.renew_at = 0)?;
                tracing::info!(db = self.db.name(), "this instance now relays the outbox's effects");
            }
            self.leading_until = now + ttl * 2 / 3;
        } else {
            self.step_down();
        }
        Ok(())
    }

    /// Hands the lease on if this relay holds it, so another instance
    /// relays the effects at once (used when the instance drains).
    pub async fn resign(&mut self) -> Result<(), Error> {
        if self.leading_until > 0 {
            self.step_down();
            crate::release_lease(&self.db, RELAY_LEASE, &self.opts.holder).await?;
        }
        Ok(())
    }

    fn step_down(&mut self) {
        if self.leading_until > 0 {
            tracing::info!(db = self.db.name(), "another instance relays the outbox's effects");
        }
        self.leading_until = 0;
        self.effects.clear();
    }

    /// Reads the effects' cursors, creating missing ones at the sequenced
    /// head: a subscriber new to a database starts with the events not yet
    /// sequenced (on a new database, all of them).
    async fn load_effects(&self) -> Result<HashMap<String, Cursor>, Error> {
        let names: Vec<String> = self.bus.of_reach(Reach::Fleet).iter().map(|s| s.name.clone()).collect();
        self.db
            .write(move |tx| {
                for name in &names {
                    // `WHERE true`: SQLite otherwise reads ON CONFLICT as a join's ON.
                    tx.execute(
                        "INSERT INTO outbox_cursors (subscriber, position, failures, retry_at) \
                         SELECT $1, COALESCE(MAX(seq), 0), 0, 0 FROM outbox WHERE true \
                         ON CONFLICT (subscriber) DO NOTHING",
                        params![name],
                    )?;
                }
                let rows = tx.query(
                    "SELECT subscriber, position, failures, last_error, retry_at FROM outbox_cursors",
                    params![],
                )?;
                rows.iter()
                    .filter(|r| r.str(0).is_ok_and(|n| names.iter().any(|name| name == n)))
                    .map(|r| {
                        let mut c = Cursor::at(r.int(1)?);
                        c.failures = r.int(2)? as u32;
                        c.last_error = r.opt_text(3)?;
                        c.retry_at = r.int(4)?;
                        Ok((r.text(0)?, c))
                    })
                    .collect()
            })
            .await
    }

    /// The committed rows not yet sequenced, in id order (at most a batch),
    /// and the highest `seq` given so far.
    async fn unsequenced(&self) -> Result<(Vec<Event>, i64), Error> {
        let (source, batch) = (self.source, self.opts.batch as i64);
        self.db
            .read(move |tx| {
                let base = tx.query_one("SELECT COALESCE(MAX(seq), 0) FROM outbox", params![])?.int(0)?;
                let rows = tx
                    .query(
                        "SELECT id, aggregate, aggregate_id, kind, version, payload, created_at FROM outbox \
                         WHERE seq IS NULL ORDER BY id LIMIT $1",
                        params![batch],
                    )?
                    .iter()
                    .map(|r| event_from(r, 0, source))
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok((rows, base))
            })
            .await
    }

    /// One step of every ready subscriber. The lease holder also sequences
    /// what was committed since its last step: it hands the new rows out
    /// under the places it will give them, and writes those places with the
    /// effects' cursors in one transaction, so a busy outbox costs one write
    /// per step. Returns how many rows were sequenced plus how many cursors
    /// moved.
    async fn dispatch(&mut self, leading: bool) -> Result<usize, Error> {
        let now = now_ms();
        let mut runs: Vec<(Arc<Subscriber>, Cursor)> = Vec::new();
        for sub in self.bus.of_reach(Reach::Instance) {
            let start = self.start;
            let cursor = self.projections.entry(sub.name.clone()).or_insert_with(|| Cursor::at(start));
            if cursor.retry_at <= now {
                runs.push((sub, cursor.clone()));
            }
        }
        if leading {
            for sub in self.bus.of_reach(Reach::Fleet) {
                if let Some(cursor) = self.effects.get(&sub.name).filter(|c| c.retry_at <= now) {
                    runs.push((sub, cursor.clone()));
                }
            }
        }
        let (fresh, base) = if leading { self.unsequenced().await? } else { (Vec::new(), i64::MAX) };
        let from = runs.iter().map(|(_, c)| c.position).min().unwrap_or(i64::MAX);
        let (source, batch) = (self.source, self.opts.batch as i64);
        let mut events = if from < base {
            self.db
                .read(move |tx| {
                    tx.query(
                        "SELECT seq, id, aggregate, aggregate_id, kind, version, payload, created_at FROM outbox \
                         WHERE seq > $1 ORDER BY seq LIMIT $2",
                        params![from, batch],
                    )?
                    .iter()
                    .map(|r| Ok((r.int(0)?, event_from(r, 1, source)?)))
                    .collect::<Result<Vec<_>, Error>>()
                })
                .await?
        } else {
            Vec::new()
        };
        // New rows follow the sequenced ones only once those are all read:
        // a cursor must never pass a place it has not seen.
        let sequencing = leading && !fresh.is_empty() && (events.len() as i64) < batch;
        let fresh_count = if sequencing { fresh.len() } else { 0 };
        if sequencing {
            events.extend(fresh.into_iter().enumerate().map(|(i, e)| (base + 1 + i as i64, e)));
        }
        if events.is_empty() {
            return Ok(0);
        }
        let head = events.last().map(|(seq, _)| *seq).unwrap_or(0);
        let before = self.projections.clone();
        let opts = &self.opts;
        let outcomes = futures_util::future::join_all(
            runs.into_iter().map(|(sub, cursor)| deliver(sub, cursor, &events, opts, now)),
        )
        .await;
        let mut moved = 0;
        let mut changed = Vec::new();
        let mut dead = Vec::new();
        for Outcome { sub, cursor, dead: d, moved: m } in outcomes {
            moved += m as usize;
            match sub.reach {
                Reach::Instance => {
                    self.projections.insert(sub.name.clone(), cursor);
                }
                Reach::Fleet => {
                    if cursor.changed {
                        changed.push((sub.name.clone(), cursor.clone()));
                    }
                    dead.extend(d);
                    self.effects.insert(sub.name.clone(), cursor);
                }
            }
        }
        let sequenced = (fresh_count > 0).then(|| {
            (base, events[events.len() - fresh_count..].iter().map(|(_, e)| e.id.div_euclid(SOURCES)).collect())
        });
        if (sequenced.is_some() || !changed.is_empty() || !dead.is_empty())
            && !self.persist(sequenced, changed, dead).await?
        {
            // The places this step handed out were not written: what the
            // projections saw is seen again under the places given next.
            self.projections = before;
            return Ok(0);
        }
        self.head = self.head.max(head);
        Ok(moved + fresh_count)
    }

    /// Writes, in one transaction, the places of the rows this step
    /// sequenced (`(base, ids)`: the rows `ids` take the places after `base`,
    /// in that order; a row that committed late among them waits for the
    /// next step), the effects' cursors (each only if it is where this relay
    /// read it) and their dead letters. Returns false when another instance
    /// got there first: nothing is written, and this relay steps down.
    async fn persist(
        &mut self,
        sequenced: Option<(i64, Vec<i64>)>,
        changed: Vec<(String, Cursor)>,
        dead: Vec<Dead>,
    ) -> Result<bool, Error> {
        let written = changed.clone();
        let new_head = sequenced.as_ref().map(|(base, rows)| base + rows.len() as i64);
        let result = self
            .db
            .write(move |tx| {
                let now = now_ms();
                if let Some((base, rows)) = &sequenced {
                    let head = tx.query_one("SELECT COALESCE(MAX(seq), 0) FROM outbox", params![])?.int(0)?;
                    let mut given = 0;
                    for (i, chunk) in rows.chunks(SEQUENCE_CHUNK).enumerate() {
                        // One statement text for every chunk (unused slots
                        // name id -1, which no row has), so it is prepared once.
                        let mut p = Vec::with_capacity(2 * SEQUENCE_CHUNK);
                        for j in 0..SEQUENCE_CHUNK {
                            let place = base + 1 + (i * SEQUENCE_CHUNK + j) as i64;
                            p.push(crate::db::Param::Int(chunk.get(j).copied().unwrap_or(-1)));
                            p.push(crate::db::Param::Int(place));
                        }
                        given += tx.execute(&SEQUENCE_SQL, &p)?;
                    }
                    if head != *base || given != rows.len() as u64 {
                        return Err(Error::conflict("the outbox was sequenced under this relay"));
                    }
                }
                for (name, c) in &changed {
                    let n = tx.execute(
                        "UPDATE outbox_cursors SET position = $1, failures = $2, last_error = $3, retry_at = $4 \
                         WHERE subscriber = $5 AND position = $6",
                        params![c.position, c.failures as i64, c.last_error.as_deref(), c.retry_at, name, c.stored],
                    )?;
                    if n != 1 {
                        return Err(Error::conflict(format!("the cursor of {name} moved under this relay")));
                    }
                }
                for d in &dead {
                    tx.execute(
                        "INSERT INTO outbox_dead (subscriber, event_id, attempts, error, dead_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subscriber, event_id) DO UPDATE \
                         SET attempts = excluded.attempts, error = excluded.error, dead_at = excluded.dead_at",
                        params![&d.subscriber, d.row, d.attempts as i64, &d.error, now],
                    )?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                let head = new_head.unwrap_or(self.head);
                for (name, c) in written {
                    if let Some(cursor) = self.effects.get_mut(&name) {
                        cursor.stored = c.position;
                        cursor.changed = false;
                    }
                    let label = [("db", self.db.name().to_string()), ("subscriber", name)];
                    metrics::gauge!("outbox_lag", &label).set((head.max(self.head) - c.position) as f64);
                }
                Ok(true)
            }
            Err(e) => {
                // Effects may have run past what is stored: the next holder
                // (this instance again, perhaps) replays them from the
                // stored cursors, and the effects' inbox absorbs the repeat.
                tracing::warn!(db = self.db.name(), error = %e, "outbox step not written; stepping down");
                self.step_down();
                self.renew_at = 0;
                if e.code == ErrorCode::Conflict { Ok(false) } else { Err(e) }
            }
        }
    }

    /// Drops rows every current effect is past and older than a week, and
    /// inbox marks older than a week. Dead-lettered rows stay until redriven.
    async fn cleanup(&self, cutoff: i64) -> Result<(), Error> {
        let done = self.effects.values().map(|c| c.stored).min().unwrap_or(0);
        self.db
            .write(move |tx| {
                tx.execute(
                    "DELETE FROM outbox WHERE seq <= $1 AND created_at < $2 \
                     AND id NOT IN (SELECT event_id FROM outbox_dead)",
                    params![done, cutoff],
                )?;
                tx.execute("DELETE FROM inbox WHERE processed_at < $1", params![cutoff])?;
                Ok(())
            })
            .await
    }
}

fn event_from(r: &crate::Row, at: usize, source: i64) -> Result<Event, Error> {
    Ok(Event {
        id: r.int(at)? * SOURCES + source,
        aggregate: r.text(at + 1)?,
        aggregate_id: r.text(at + 2)?,
        kind: r.text(at + 3)?,
        version: r.int(at + 4)?,
        payload: serde_json::from_str(r.str(at + 5)?).unwrap_or(serde_json::Value::Null),
        created_at: r.int(at + 6)?,
    })
}

/// Hands `sub` the events past its cursor, in order, stopping at a failure
/// that has attempts left.
async fn deliver(
    sub: Arc<Subscriber>,
    mut cursor: Cursor,
    events: &[(i64, Event)],
    opts: &RelayOptions,
    now: i64,
) -> Outcome {
    let mut dead = Vec::new();
    let mut moved = false;
    let from = cursor.position;
    for (seq, event) in events.iter().filter(|(seq, _)| *seq > from) {
        if sub.wants(&event.kind) {
            match (sub.handler)(event.clone()).await {
                Ok(()) => {
                    metrics::counter!("outbox_handled_total", "subscriber" => sub.name.clone()).increment(1);
                }
                Err(e) => {
                    cursor.failures += 1;
                    metrics::counter!("outbox_failures_total", "subscriber" => sub.name.clone()).increment(1);
                    let error = format!("{}: {}", e.code.as_str(), e.message);
                    if cursor.failures < opts.max_attempts {
                        let wait = (opts.retry_base.as_millis() as i64)
                            .saturating_mul(1 << (cursor.failures - 1).min(20))
                            .min(MAX_RETRY_WAIT_MS);
                        tracing::warn!(subscriber = %sub.name, event = event.id, kind = %event.kind,
                            attempt = cursor.failures, retry_in_ms = wait, %error, "subscriber failed");
                        cursor.retry_at = now + wait;
                        cursor.last_error = Some(error);
                        cursor.changed = true;
                        break;
                    }
                    if sub.reach == Reach::Fleet {
                        tracing::error!(subscriber = %sub.name, event = event.id, kind = %event.kind,
                            attempts = cursor.failures, %error, "event dead-lettered");
                        metrics::counter!("outbox_dead_lettered_total", "subscriber" => sub.name.clone()).increment(1);
                        dead.push(Dead {
                            subscriber: sub.name.clone(),
                            row: event.id.div_euclid(SOURCES),
                            attempts: cursor.failures,
                            error,
                        });
                    } else {
                        tracing::error!(subscriber = %sub.name, event = event.id, kind = %event.kind,
                            attempts = cursor.failures, %error, "projection skipped an event");
                        metrics::counter!("outbox_skipped_total", "subscriber" => sub.name.clone()).increment(1);
                    }
                }
            }
        }
        cursor.position = *seq;
        cursor.failures = 0;
        cursor.last_error = None;
        cursor.retry_at = 0;
        cursor.changed = true;
        moved = true;
    }
    Outcome { sub, cursor, dead, moved }
}

/// Runs the relay of `db` (whose event ids carry `source`, see [`Event::id`])
/// until `opts.stop` is cancelled; `bus.wake()`, called after commits that
/// emitted events, cuts the polling delay. One relay runs per database per
/// instance. A step is never cut in the middle: stopping waits for it, then
/// hands the lease on.
pub fn spawn_relay(db: Db, source: i64, bus: EventBus, opts: RelayOptions) -> tokio::task::JoinHandle<()> {
    let wake = bus.relay_waker(&db);
    let stop = opts.stop.clone();
    tokio::spawn(async move {
        let poll = opts.poll;
        let mut relay = loop {
            match Relay::new(db.clone(), source, bus.clone(), opts.clone()).await {
                Ok(relay) => break relay,
                Err(e) => {
                    tracing::warn!(db = db.name(), error = %e, "outbox relay cannot start yet");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            // After a failure only time ends the wait: commits waking a
            // failing relay would turn its backoff into a retry storm.
            let (wait, wakeable) = match relay.pass().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue; // more may be waiting
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    (poll, true)
                }
                Err(e) => {
                    tracing::warn!(db = db.name(), error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox relay step failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    (wait, false)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = wake.notified(), if wakeable => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if let Err(e) = relay.resign().await {
            tracing::warn!(db = db.name(), error = %e, "could not hand the relay lease on; it lapses instead");
        }
    })
}

/// An event an effect gave up on, waiting for an operator.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub subscriber: String,
    pub event: Event,
    pub attempts: i64,
    /// The last failure, as `code: message`.
    pub error: String,
    pub dead_at: i64,
}

/// Every database's outbox, for operators: dead letters and their redrive.
#[derive(Clone)]
pub struct Outboxes {
    dbs: Databases,
    bus: EventBus,
}

impl Outboxes {
    pub fn new(dbs: Databases, bus: EventBus) -> Outboxes {
        Outboxes { dbs, bus }
    }

    /// Dead letters of every database, newest first, at most `limit`.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let mut all = Vec::new();
        for (source, db) in self.dbs.sources() {
            let rows = db
                .read(move |tx| {
                    tx.query(
                        "SELECT d.subscriber, d.attempts, d.error, d.dead_at, \
                         o.id, o.aggregate, o.aggregate_id, o.kind, o.version, o.payload, o.created_at \
                         FROM outbox_dead d JOIN outbox o ON o.id = d.event_id ORDER BY d.dead_at DESC LIMIT $1",
                        params![limit as i64],
                    )?
                    .iter()
                    .map(|r| dead_letter_from(r, source))
                    .collect::<Result<Vec<_>, Error>>()
                })
                .await?;
            all.extend(rows);
        }
        all.sort_by_key(|d| std::cmp::Reverse((d.dead_at, d.event.id)));
        all.truncate(limit);
        Ok(all)
    }

    /// Hands dead letter (`event_id`, `subscriber`) to its subscriber again,
    /// now, on this instance. Gone once the subscriber accepts it; otherwise
    /// it stays, with one more attempt and the new error, and the answer is
    /// a conflict that says why.
    pub async fn redrive(&self, event_id: i64, subscriber: &str) -> Result<(), Error> {
        let not_found = || Error::not_found(format!("no dead letter for evt_{event_id} and {subscriber}"));
        let source = event_id.rem_euclid(SOURCES);
        let (_, db) = self.dbs.sources().into_iter().find(|(s, _)| *s == source).ok_or_else(not_found)?;
        let sub = self.bus.named(subscriber).filter(|s| s.reach == Reach::Fleet).ok_or_else(not_found)?;
        let (row, name) = (event_id.div_euclid(SOURCES), subscriber.to_string());
        let n = name.clone();
        let letter = db
            .read(move |tx| {
                tx.query_opt(
                    "SELECT d.subscriber, d.attempts, d.error, d.dead_at, \
                     o.id, o.aggregate, o.aggregate_id, o.kind, o.version, o.payload, o.created_at \
                     FROM outbox_dead d JOIN outbox o ON o.id = d.event_id WHERE d.subscriber = $1 AND d.event_id = $2",
                    params![&n, row],
                )?
                .map(|r| dead_letter_from(&r, source))
                .transpose()
            })
            .await?
            .ok_or_else(not_found)?;
        let outcome = (sub.handler)(letter.event).await;
        let error = outcome.as_ref().err().map(|e| format!("{}: {}", e.code.as_str(), e.message));
        let e = error.clone();
        db.write(move |tx| {
            match &e {
                None => {
                    tx.execute("DELETE FROM outbox_dead WHERE subscriber = $1 AND event_id = $2", params![&name, row])?
                }
                Some(error) => tx.execute(
                    "UPDATE outbox_dead SET attempts = attempts + 1, error = $3, dead_at = $4 \
                     WHERE subscriber = $1 AND event_id = $2",
                    params![&name, row, error, now_ms()],
                )?,
            };
            Ok(())
        })
        .await?;
        match error {
            None => Ok(()),
            Some(error) => Err(Error::conflict(format!(
                "{subscriber} failed again on evt_{event_id} ({error}); it stays dead-lettered"
            ))),
        }
    }
}

fn dead_letter_from(r: &crate::Row, source: i64) -> Result<DeadLetter, Error> {
    Ok(DeadLetter {
        subscriber: r.text(0)?,
        attempts: r.int(1)?,
        error: r.text(2)?,
        dead_at: r.int(3)?,
        event: event_from(r, 4, source)?,
    })
}
