use crate::store;
use mercato_contracts::inventory::{Adjustment, Inventory, Line, Stock, StockChanged};
use mercato_contracts::orders::{OrderStatus, OrderStatusChanged};
use mercato_core::{Error, Id};
use mercato_platform::Db;
use mercato_platform::db::Dialect;
use mercato_platform::events::{EventBus, Received};
use mercato_platform::ids::IdGen;
use mercato_platform::steps::Step;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct InventoryService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    /// Displayed availability. Local writes invalidate it at once; the short
    /// TTL bounds staleness from other instances. Decisions (reserve) never read it.
    shown: Cache<String, i64>,
    shown_ttl: Duration,
    shown_gen: mercato_platform::KeyedGeneration,
    /// Concurrent misses for the same SKUs (a hot product's page after its
    /// entry expired) share one read.
    shown_loads: mercato_platform::cache::SingleFlight<Vec<String>, Arc<HashMap<String, i64>>>,
}

/// How long displayed availability may lag a write made on another instance
/// (PostgreSQL: other instances write the same stock rows).
pub const SHOWN_TTL: Duration = Duration::from_secs(2);

/// On SQLite this process is the only writer (the data directory is its own),
/// and every stock write invalidates what it changed, so the TTL only bounds
/// the damage of a write made behind the service's back (by hand, in SQL).
/// With 2 s, a catalog larger than what is requested per 2 s was read from
/// the database on nearly every product page (100k products: a third of the
/// throughput of 10k).
pub const SOLE_WRITER_SHOWN_TTL: Duration = Duration::from_secs(60);

/// SKUs whose displayed availability is kept: about two per product of the
/// other caches. Each costs about 300 bytes; 200,000 of them were 60 MB of a
/// 1M-product catalog's memory under load.
const SHOWN_MAX_ENTRIES: u64 = 100_000;

impl InventoryService {
    pub fn new(db: Db, ids: IdGen, bus: EventBus) -> Self {
        let shown_ttl = match db.dialect() {
            Dialect::Sqlite => SOLE_WRITER_SHOWN_TTL,
            Dialect::Postgres => SHOWN_TTL,
        };
        InventoryService {
            inner: Arc::new(Inner {
                db,
                ids,
                bus,
                shown: Cache::builder().max_capacity(SHOWN_MAX_ENTRIES).time_to_live(shown_ttl).build(),
                shown_ttl,
                shown_gen: Default::default(),
                shown_loads: Default::default(),
            }),
        }
    }

    /// The inventory's reactions to other domains' events. Call once at
    /// start-up.
    pub fn subscribe(&self) {
        // Stock follows its order: sold when paid, back on the shelf when a
        // paid order is cancelled, released when an unpaid one is; an unpaid
        // flash-sale order's unit goes back to its sale instead (the flash
        // sale's own subscriber).
        self.inner.bus.on_with(
            &self.inner,
            "inventory.on-order",
            &["order.paid", "order.cancelled"],
            |inner, e: Received<OrderStatusChanged>| async move {
                let (this, o) = (InventoryService { inner }, e.data);
                match (o.to, o.from) {
                    (OrderStatus::Paid, _) => this.commit(o.order_id).await.map(drop),
                    (OrderStatus::Cancelled, OrderStatus::Paid) => this.restock(o.order_id).await.map(drop),
                    _ if o.flash_sale_id.is_some() => Ok(()),
                    _ => this.release(o.order_id).await.map(drop),
                }
            },
        );
        // Every instance drops its displayed stock for SKUs moved anywhere.
        self.inner.bus.project_on_with(
            &self.inner,
            "inventory.cache",
            &["stock.changed"],
            |inner, e: Received<StockChanged>| {
                InventoryService { inner }.invalidate(&e.data.skus);
                std::future::ready(Ok(()))
            },
        );
    }

    pub fn invalidate(&self, skus: &[String]) {
        for s in skus {
            self.inner.shown_gen.bump(s.as_str());
            self.inner.shown.invalidate(s);
        }
    }

    async fn apply(&self, sku: &str, target: store::Target, reason: &str, actor: &str) -> Result<Stock, Error> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 {
            return Err(Error::field("reason", "must be 1 to 500 characters"));
        }
        if matches!(target, store::Target::Set(v) | store::Target::Delta(v) if v.abs() > 1_000_000_000) {
            return Err(Error::validation("quantity out of range"));
        }
        let (sku_s, reason, actor) = (sku.to_string(), reason.to_string(), actor.to_string());
        let id = self.inner.ids.next()?;
        let stock = self.inner.db.write(move |tx| store::apply(tx, id, &sku_s, target, &reason, &actor)).await?;
        self.invalidate(&[sku.to_string()]);
        self.inner.bus.wake();
        Ok(stock)
    }

    /// After a commit that moved stock of `skus`: drops their displayed
    /// availability and wakes the event relay.
    fn stock_written(&self, skus: &[String]) {
        if !skus.is_empty() {
            self.invalidate(skus);
            self.inner.bus.wake();
        }
    }

    /// Held units become sold (the order was paid).
    pub async fn commit(&self, reservation: Id) -> Result<bool, Error> {
        self.transition(reservation, "held", "committed").await
    }

    /// Moves a reservation's units between buckets, once: the state change is
    /// conditional, so concurrent or repeated calls find nothing to do.
    async fn transition(&self, reservation: Id, from: &'static str, to: &'static str) -> Result<bool, Error> {
        // Events are delivered at least once and several paths move the same
        // reservation (the payment, its event, the sweeper): a cheap read skips
        // a write job when there is nothing left to move. The write still checks.
        let state = self.reservation_state(reservation).await?;
        if state.as_deref() != Some(from) {
            return Ok(false);
        }
        let moved = self.inner.db.write(move |tx| store::transition_in(tx, reservation, from, to)).await?;
        match moved {
            Some(skus) => {
                self.stock_written(&skus);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The state of a reservation, if it exists.
    pub async fn reservation_state(&self, reservation: Id) -> Result<Option<String>, Error> {
        self.inner.db.lookup(move |tx| store::reservation_state(tx, reservation)).await
    }
}

#[async_trait::async_trait]
impl Inventory for InventoryService {
    /// How long a displayed availability (and a page rendered from it) may be
    /// reused when no local write invalidated it.
    fn shown_ttl(&self) -> Duration {
        self.inner.shown_ttl
    }
    /// Moves whenever this instance invalidates `sku`'s displayed availability:
    /// views derived from it (a rendered product page) are current while this
    /// is unchanged and they are younger than [`Self::shown_ttl`].
    fn shown_generation(&self, sku: &str) -> u64 {
        self.inner.shown_gen.current(sku)
    }
    /// Available units for display (product pages, carts). May lag other
    /// instances by the cache TTL; never used to decide a sale.
    async fn available(&self, skus: &[String]) -> Result<HashMap<String, i64>, Error> {
        let mut out = HashMap::with_capacity(skus.len());
        let mut missing = Vec::new();
        for s in skus {
            match self.inner.shown.get(s) {
                Some(v) => {
                    out.insert(s.clone(), v);
                }
                None => missing.push(s.clone()),
            }
        }
        if !missing.is_empty() {
            let key = missing.clone();
            let found = self
                .inner
                .shown_loads
                .run(&key, || async move {
                    // Late joiners of a flight that just finished find its result here.
                    let cached: Option<HashMap<String, i64>> =
                        missing.iter().map(|s| self.inner.shown.get(s).map(|v| (s.clone(), v))).collect();
                    if let Some(found) = cached {
                        return Ok(Arc::new(found));
                    }
                    let seen: Vec<u64> = missing.iter().map(|s| self.inner.shown_gen.current(s.as_str())).collect();
                    metrics::counter!("mercato_cache_loads_total", "cache" => "stock").increment(1);
                    let skus = missing.clone();
                    let found = self.inner.db.lookup(move |tx| store::available_in(tx, &skus)).await?;
                    // Stored inside the flight, so nobody can miss both the
                    // flight and its result.
                    for (sku, g) in missing.iter().zip(seen) {
                        if let Some(v) = found.get(sku)
                            && self.inner.shown_gen.unchanged(sku.as_str(), g)
                        {
                            self.inner.shown.insert(sku.clone(), *v);
                        }
                    }
                    Ok(Arc::new(found))
                })
                .await?;
            out.extend(found.iter().map(|(k, v)| (k.clone(), *v)));
        }
        Ok(out)
    }
    async fn stock(&self, sku: &str) -> Result<Stock, Error> {
        let s = sku.to_string();
        Ok(self.inner.db.lookup(move |tx| store::read_stock(tx, &s)).await?.unwrap_or(Stock {
            available: 0,
            reserved: 0,
            sold: 0,
        }))
    }
    async fn adjustments(&self, sku: &str, limit: i64) -> Result<Vec<Adjustment>, Error> {
        let s = sku.to_string();
        self.inner.db.read(move |tx| store::adjustments(tx, &s, limit)).await
    }
    /// Sets the available quantity, recording the difference as an adjustment.
    async fn set_available(&self, sku: &str, available: i64, reason: &str, actor: &str) -> Result<Stock, Error> {
        if available < 0 {
            return Err(Error::field("available", "must not be negative"));
        }
        self.apply(sku, store::Target::Set(available), reason, actor).await
    }
    /// Adds `delta` (negative to remove) to the available quantity. Removing more
    /// than is available is refused and changes nothing.
    async fn adjust(&self, sku: &str, delta: i64, reason: &str, actor: &str) -> Result<Stock, Error> {
        if delta == 0 {
            return Err(Error::field("delta", "must not be zero"));
        }
        self.apply(sku, store::Target::Delta(delta), reason, actor).await
    }
    /// Bulk initial stock for seeding: one transaction, audited as "seed".
    async fn seed(&self, lines: Vec<(String, i64)>) -> Result<(), Error> {
        let ids: Vec<Id> = lines.iter().map(|_| self.inner.ids.next()).collect::<Result<_, _>>()?;
        self.inner.db.write(move |tx| store::seed(tx, &lines, &ids)).await
    }
    /// Holds stock for every line of `reservation`, or for none: either all
    /// conditional decrements succeed or the whole transaction rolls back.
    /// Calling it again with the same id returns without reserving twice.
    async fn reserve(&self, reservation: Id, lines: &[Line]) -> Result<(), Error> {
        self.reserve_step(reservation, lines).run().await
    }
    /// [`reserve`](Self::reserve) as a step of a process.
    fn reserve_step(&self, reservation: Id, lines: &[Line]) -> Step {
        let (lines, this) = (lines.to_vec(), self.clone());
        Step::local(
            &self.inner.db,
            move |tx| store::reserve_in(tx, reservation, &lines),
            move |skus| this.stock_written(&skus),
        )
    }
    /// Held units of `reservation` become sold, as a step of a process that
    /// knows they are held: no read first, the write's condition decides.
    fn commit_step(&self, reservation: Id) -> Step {
        let this = self.clone();
        Step::local(
            &self.inner.db,
            move |tx| store::transition_in(tx, reservation, "held", "committed"),
            move |moved| {
                if let Some(skus) = moved {
                    this.stock_written(&skus)
                }
            },
        )
    }
    /// Held units go back to available (the order was cancelled or expired).
    async fn release(&self, reservation: Id) -> Result<bool, Error> {
        self.transition(reservation, "held", "released").await
    }
    /// Gives up `reservation` for good, on behalf of a process that will not
    /// use it (a checkout given up by the sweeper or by a retry): held units
    /// go back to available, and a reservation never made is recorded as
    /// released, so the process's own reserve, should it arrive late, holds
    /// nothing. Idempotent.
    async fn abandon(&self, reservation: Id) -> Result<bool, Error> {
        if self.reservation_state(reservation).await?.is_none() {
            self.inner.db.write(move |tx| store::tombstone(tx, reservation)).await?;
        }
        // A reserve that committed first kept its row: release it.
        self.transition(reservation, "held", "released").await
    }
    /// Sold units go back to available (a paid order was cancelled before it shipped).
    async fn restock(&self, reservation: Id) -> Result<bool, Error> {
        self.transition(reservation, "committed", "restocked").await
    }
    /// Moves `quantity` units of `sku` from held reservation `from` (a flash
    /// sale's allocation) into a new held reservation `to` (one order). The
    /// units stay reserved throughout. Idempotent on `to`.
    async fn split(&self, from: Id, to: Id, sku: &str, quantity: i64) -> Result<(), Error> {
        let sku = sku.to_string();
        self.inner.db.write(move |tx| store::split(tx, from, to, &sku, quantity)).await
    }
    /// Gives held reservation `from` back to allocation `into` (an unpaid flash
    /// order returns its unit to the sale). If the allocation has closed, the
    /// units go back to available instead. Idempotent: `from` changes state once.
    async fn merge_back(&self, from: Id, into: Id) -> Result<bool, Error> {
        let moved = self.inner.db.write(move |tx| store::merge_back(tx, from, into)).await?;
        match moved {
            Some(skus) => {
                self.invalidate(&skus);
                self.inner.bus.wake();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
