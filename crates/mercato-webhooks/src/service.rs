use crate::model::{self, MAX_DESCRIPTION_LEN, RetryPolicy};
use crate::store;
use mercato_contracts::webhooks::{Delivery, Endpoint, EndpointPatch, Webhooks};
use mercato_core::{Error, Id};
use mercato_platform::Db;
use mercato_platform::cache::{CacheHub, Tiered};
use mercato_platform::events::{Event, EventBus};
use mercato_platform::ids::IdGen;
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
        let load = move || async move { db.lookup(store::active_endpoints).await };
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
        let created = self.inner.db.write(move |tx| store::record_deliveries(tx, &rows, &e, &payload)).await?;
        if created > 0 {
            metrics::counter!("webhook_deliveries_created_total").increment(created);
            self.inner.wake.notify_one();
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Webhooks for WebhooksService {
    /// Registers an endpoint. The answer carries its signing secret, the only
    /// time it is shown.
    async fn create_endpoint(
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
            .write(move |tx| store::insert_endpoint(tx, id, &url, description.as_deref(), &events_json, &s))
            .await?;
        self.endpoints_changed().await;
        endpoint.secret = Some(secret);
        Ok(endpoint)
    }
    /// Every endpoint not deleted, oldest first.
    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        self.inner.db.read_replica(store::list_endpoints).await
    }
    async fn get_endpoint(&self, id: Id) -> Result<Endpoint, Error> {
        self.inner.db.read(move |tx| store::endpoint_by_id(tx, id)).await
    }
    /// Changes an endpoint. A paused endpoint (`active: false`) gets no
    /// deliveries for new events; those already pending wait until it is
    /// active again. A new URL applies to pending deliveries too.
    async fn update_endpoint(&self, id: Id, patch: EndpointPatch) -> Result<Endpoint, Error> {
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
                store::update_endpoint(tx, id, url.as_deref(), events_json.as_deref(), description.as_ref(), active)
            })
            .await?;
        self.endpoints_changed().await;
        self.inner.wake.notify_one(); // reactivated: its pending deliveries may be due
        Ok(endpoint)
    }
    /// Deletes an endpoint: it stops receiving anything, its pending
    /// deliveries are cancelled, and it disappears from the API. The rows stay
    /// (soft delete) for audit.
    async fn delete_endpoint(&self, id: Id) -> Result<(), Error> {
        self.inner.db.write(move |tx| store::delete_endpoint(tx, id)).await?;
        self.endpoints_changed().await;
        Ok(())
    }
    /// An endpoint's deliveries, newest first, each with its attempts. Pass
    /// the returned cursor back for the next page.
    async fn list_deliveries(
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
        self.inner.db.read_replica(move |tx| store::list_deliveries(tx, endpoint_id, before, limit)).await
    }
    async fn get_delivery(&self, id: Id) -> Result<Delivery, Error> {
        self.inner.db.read_replica(move |tx| store::delivery_by_id(tx, id)).await
    }
    /// Sends a delivery again, now, with a fresh set of retries; the receiver
    /// sees the same event id. A pending delivery is just made due now. It
    /// still goes out in event order for its endpoint.
    async fn redeliver(&self, delivery_id: Id) -> Result<Delivery, Error> {
        let delivery = self.inner.db.write(move |tx| store::redeliver(tx, delivery_id)).await?;
        self.inner.wake.notify_one();
        Ok(delivery)
    }
}
