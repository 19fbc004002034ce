use crate::model::{self, MAX_DESCRIPTION_LEN, RetryPolicy};
use mercato_contracts::webhooks::{Attempt, Delivery, DeliveryStatus, Endpoint, EndpointPatch, Webhooks};
use mercato_core::{Error, Id};
use mercato_platform::cache::{CacheHub, Tiered};
use mercato_platform::db::Param;
use mercato_platform::events::{Event, EventBus};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, Row, Tx, now_ms, params};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How the dispatcher behaves. The defaults are the production values.
#[derive(Debug, Clone, Copy)]
pub struct DispatchOptions {
    pub retry: RetryPolicy,
    /// Timeout of one HTTP attempt (connecting included).
    pub timeout: Duration,
    /// Attempts in flight at once, across endpoints (one endpoint never has
    /// more than one: its deliveries go out in order).
    pub max_in_flight: usize,
    /// How long a claimed attempt is reserved for the instance that claimed
    /// it. Must exceed `timeout` comfortably; a crashed instance's claims are
    /// retried once it lapses.
    pub lease: Duration,
    /// Longest sleep between looks at the table when nothing is due (picks up
    /// deliveries other instances wrote and leases that lapsed).
    pub poll: Duration,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        DispatchOptions {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(5),
            max_in_flight: 8,
            // Twice the attempt timeout: enough for a slow attempt to record
            // its outcome, short enough that a crashed instance's in-flight
            // attempt (which holds up its endpoint's queue) is retried soon.
            lease: Duration::from_secs(10),
            poll: Duration::from_secs(1),
        }
    }
}

/// Endpoints, deliveries and the dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct WebhooksService {
    pub(crate) inner: Arc<Inner>,
    pub(crate) opts: DispatchOptions,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) ids: IdGen,
    bus: EventBus,
    /// Wakes the dispatcher when a delivery became due.
    pub(crate) wake: Notify,
    /// The active endpoints and their patterns, which every event is matched
    /// against (see [`WebhooksService::with_cache`]).
    active: Option<Tiered<u8, ActiveEndpoints>>,
}

/// Each active endpoint with its event patterns.
type ActiveEndpoints = Vec<(Id, Vec<String>)>;

/// The one key of the active-endpoints cache.
const ACTIVE: u8 = 0;

const ENDPOINT_COLUMNS: &str = "id, url, description, events, active, created_at, updated_at";
const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, event_id, event_type, status, next_attempt_at, delivered_at, last_error, created_at, updated_at";

fn endpoint_from(r: &Row) -> Result<Endpoint, Error> {
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

fn parse_events(s: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(s).map_err(|e| Error::internal(format!("stored webhook event patterns unreadable: {e}")))
}

fn delivery_from(r: &Row) -> Result<Delivery, Error> {
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
fn endpoint_by_id(tx: &mut dyn Tx, id: Id) -> Result<Endpoint, Error> {
    tx.query_opt(
        &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL"),
        params![id],
    )?
    .map(|r| endpoint_from(&r))
    .transpose()?
    .ok_or_else(|| Error::not_found("webhook endpoint not found"))
}

/// Fills in the attempts of `deliveries`, oldest first.
fn load_attempts(tx: &mut dyn Tx, deliveries: &mut [Delivery]) -> Result<(), Error> {
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

fn delivery_by_id(tx: &mut dyn Tx, id: Id) -> Result<Delivery, Error> {
    let row = tx
        .query_opt(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"), params![id])?
        .ok_or_else(|| Error::not_found("webhook delivery not found"))?;
    let mut d = [delivery_from(&row)?];
    load_attempts(tx, &mut d)?;
    let [d] = d;
    Ok(d)
}

fn clean_description(d: Option<String>) -> Result<Option<String>, Error> {
    let Some(d) = d.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()) else { return Ok(None) };
    if d.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(Error::field("description", format!("must be at most {MAX_DESCRIPTION_LEN} characters")));
    }
    Ok(Some(d))
}

impl WebhooksService {
    pub fn new(db: Db, ids: IdGen, bus: EventBus) -> Self {
        WebhooksService {
            inner: Arc::new(Inner { db, ids, bus, wake: Notify::new(), active: None }),
            opts: DispatchOptions::default(),
        }
    }

    /// Keeps the active endpoints in `hub`'s cache. Every event is matched
    /// against them, and under checkout load that was several reads of this
    /// table per order. Endpoint changes invalidate the entry on every
    /// instance. The delivery insert still re-reads the endpoint inside its
    /// transaction, so a paused or deleted endpoint never gets a new delivery.
    /// Call before [`Self::subscribe`].
    pub fn with_cache(mut self, hub: &CacheHub) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_cache is called before the service is shared");
        inner.active = Some(hub.tiered_sized("webhook-endpoints", 1));
        self
    }

    /// Active endpoints with their event patterns.
    async fn active_endpoints(&self) -> Result<Arc<ActiveEndpoints>, Error> {
        let db = self.inner.db.clone();
        let load = move || async move {
            db.lookup(|tx| {
                let mut out = Vec::new();
                for r in tx.query("SELECT id, events FROM webhook_endpoints WHERE active = 1", params![])? {
                    out.push((r.id(0)?, parse_events(r.str(1)?)?));
                }
                Ok(out)
            })
            .await
        };
        match &self.inner.active {
            Some(cache) => {
                Ok(cache.get_or_load(&ACTIVE, || async { load().await.map(Some) }).await?.unwrap_or_default())
            }
            None => Ok(Arc::new(load().await?)),
        }
    }

    /// After an endpoint was created, changed or deleted.
    async fn endpoints_changed(&self) {
        if let Some(cache) = &self.inner.active {
            cache.invalidate(&ACTIVE).await;
        }
    }

    /// The first retry waits up to `base` (default 1 s); later ones double.
    pub fn with_retry_base(mut self, base: Duration) -> Self {
        self.opts.retry.base = base;
        self
    }

    pub fn with_options(mut self, opts: DispatchOptions) -> Self {
        self.opts = opts;
        self
    }

    pub fn options(&self) -> DispatchOptions {
        self.opts
    }

    /// Subscribes [`Self::on_event`] to every event kind on the bus given to
    /// [`Self::new`]. Call once at start-up.
    pub fn subscribe(&self) {
        // A weak handle: the bus must not keep the service (and its database)
        // alive on its own.
        let weak = Arc::downgrade(&self.inner);
        let opts = self.opts;
        self.inner.bus.subscribe("webhooks.outgoing", &[""], move |e| {
            let this = weak.upgrade().map(|inner| WebhooksService { inner, opts });
            async move {
                match this {
                    Some(this) => this.record_event(e).await,
                    None => Ok(()),
                }
            }
        });
    }

    /// Registers an endpoint. The answer carries its signing secret, the only
    /// time it is shown.
    pub async fn create_endpoint(
        &self,
        url: &str,
        events: Vec<String>,
        description: Option<String>,
    ) -> Result<Endpoint, Error> {
        let url = model::validate_url(url)?;
        let events = model::validate_patterns(events)?;
        let description = clean_description(description)?;
        let secret = format!("whsec_{}", mercato_platform::random_token());
        let id = self.inner.ids.next()?;
        let events_json = serde_json::to_string(&events).map_err(|e| Error::internal(e.to_string()))?;
        let s = secret.clone();
        let mut endpoint = self
            .inner
            .db
            .write(move |tx| {
                let now = now_ms();
                tx.execute(
                    "INSERT INTO webhook_endpoints (id, url, description, events, secret, active, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
                    params![id, &url, description.as_deref(), &events_json, &s, now],
                )?;
                endpoint_by_id(tx, id)
            })
            .await?;
        self.endpoints_changed().await;
        endpoint.secret = Some(secret);
        Ok(endpoint)
    }

    /// Every endpoint not deleted, oldest first.
    pub async fn list_endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        self.inner
            .db
            .read(|tx| {
                tx.query(
                    &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY id"),
                    params![],
                )?
                .iter()
                .map(endpoint_from)
                .collect()
            })
            .await
    }

    pub async fn get_endpoint(&self, id: Id) -> Result<Endpoint, Error> {
        self.inner.db.read(move |tx| endpoint_by_id(tx, id)).await
    }

    /// Changes an endpoint. A paused endpoint (`active: false`) gets no
    /// deliveries for new events; those already pending wait until it is
    /// active again. A new URL applies to pending deliveries too.
    pub async fn update_endpoint(&self, id: Id, patch: EndpointPatch) -> Result<Endpoint, Error> {
        let url = patch.url.as_deref().map(model::validate_url).transpose()?;
        let events = patch.events.map(model::validate_patterns).transpose()?;
        let events_json =
            events.map(|e| serde_json::to_string(&e)).transpose().map_err(|e| Error::internal(e.to_string()))?;
        let description = patch.description.map(|d| clean_description(Some(d))).transpose()?;
        let active = patch.active;
        let endpoint = self
            .inner
            .db
            .write(move |tx| {
                let current = endpoint_by_id(tx, id)?;
                let url = url.clone().unwrap_or(current.url);
                let events = match &events_json {
                    Some(e) => e.clone(),
                    None => serde_json::to_string(&current.events).map_err(|e| Error::internal(e.to_string()))?,
                };
                let description = description.clone().unwrap_or(current.description);
                tx.execute(
                    "UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, active = $4, updated_at = $5 \
                     WHERE id = $6 AND deleted_at IS NULL",
                    params![&url, &events, description.as_deref(), active.unwrap_or(current.active), now_ms(), id],
                )?;
                endpoint_by_id(tx, id)
            })
            .await?;
        self.endpoints_changed().await;
        self.inner.wake.notify_one(); // reactivated: its pending deliveries may be due
        Ok(endpoint)
    }

    /// Deletes an endpoint: it stops receiving anything, its pending
    /// deliveries are cancelled, and it disappears from the API. The rows stay
    /// (soft delete) for audit.
    pub async fn delete_endpoint(&self, id: Id) -> Result<(), Error> {
        self.inner
            .db
            .write(move |tx| {
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
            })
            .await?;
        self.endpoints_changed().await;
        Ok(())
    }

    /// An endpoint's deliveries, newest first, each with its attempts. Pass
    /// the returned cursor back for the next page.
    pub async fn list_deliveries(
        &self,
        endpoint_id: Id,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Delivery>, Option<String>), Error> {
        if limit == 0 || limit > 100 {
            return Err(Error::field("limit", "must be between 1 and 100"));
        }
        let before = cursor
            .map(|c| c.parse::<i64>().map_err(|_| Error::field("cursor", "is not a cursor this listing returned")))
            .transpose()?;
        self.inner
            .db
            .read(move |tx| {
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
            })
            .await
    }

    pub async fn get_delivery(&self, id: Id) -> Result<Delivery, Error> {
        self.inner.db.read(move |tx| delivery_by_id(tx, id)).await
    }

    /// Sends a delivery again, now, with a fresh set of retries; the receiver
    /// sees the same event id. A pending delivery is just made due now. It
    /// still goes out in event order for its endpoint.
    pub async fn redeliver(&self, delivery_id: Id) -> Result<Delivery, Error> {
        let delivery = self
            .inner
            .db
            .write(move |tx| {
                let current = delivery_by_id(tx, delivery_id)?;
                let endpoint = endpoint_by_id(tx, current.endpoint_id)
                    .map_err(|_| Error::not_found("webhook delivery not found"))?;
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
            })
            .await?;
        self.inner.wake.notify_one();
        Ok(delivery)
    }

    /// The event subscriber: records a delivery, due now, for every active
    /// endpoint whose patterns match. Idempotent (one delivery per endpoint
    /// and event, however often the event is delivered) and never touches the
    /// network, so it costs the relay one read, plus one write when some
    /// endpoint wants the event.
    pub fn on_event(&self, e: Event) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let this = self.clone();
        async move { this.record_event(e).await }
    }

    async fn record_event(&self, e: Event) -> Result<(), Error> {
        let wanted: Vec<Id> = self
            .active_endpoints()
            .await?
            .iter()
            .filter(|(_, patterns)| model::matches(patterns, &e.kind))
            .map(|(id, _)| *id)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rows: Vec<(Id, Id)> =
            wanted.into_iter().map(|endpoint| Ok((self.inner.ids.next()?, endpoint))).collect::<Result<_, Error>>()?;
        let payload = e.payload.to_string();
        let created = self
            .inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let mut created = 0;
                for (id, endpoint) in &rows {
                    // Checked again inside the transaction: the endpoint may
                    // have been paused, deleted or re-targeted since the read.
                    let Some(r) =
                        tx.query_opt("SELECT events FROM webhook_endpoints WHERE id = $1 AND active = 1", params![*endpoint])?
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
                        params![*id, *endpoint, e.id, e.kind.as_str(), &payload, e.created_at, now, e.version],
                    )?;
                }
                Ok(created)
            })
            .await?;
        if created > 0 {
            metrics::counter!("webhook_deliveries_created_total").increment(created);
            self.inner.wake.notify_one();
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Webhooks for WebhooksService {
    async fn create_endpoint(
        &self,
        url: &str,
        events: Vec<String>,
        description: Option<String>,
    ) -> Result<Endpoint, Error> {
        WebhooksService::create_endpoint(self, url, events, description).await
    }
    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        WebhooksService::list_endpoints(self).await
    }
    async fn get_endpoint(&self, id: Id) -> Result<Endpoint, Error> {
        WebhooksService::get_endpoint(self, id).await
    }
    async fn update_endpoint(&self, id: Id, patch: EndpointPatch) -> Result<Endpoint, Error> {
        WebhooksService::update_endpoint(self, id, patch).await
    }
    async fn delete_endpoint(&self, id: Id) -> Result<(), Error> {
        WebhooksService::delete_endpoint(self, id).await
    }
    async fn list_deliveries(
        &self,
        endpoint_id: Id,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Delivery>, Option<String>), Error> {
        WebhooksService::list_deliveries(self, endpoint_id, limit, cursor).await
    }
    async fn get_delivery(&self, id: Id) -> Result<Delivery, Error> {
        WebhooksService::get_delivery(self, id).await
    }
    async fn redeliver(&self, delivery_id: Id) -> Result<Delivery, Error> {
        WebhooksService::redeliver(self, delivery_id).await
    }
}
