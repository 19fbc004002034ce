use crate::stock::{Acquire, CHECKSUM_MODULUS, FlashStock, IN_FLIGHT_GRACE_MS, Reconciled, SaleWindow};
use crate::store;
use mercato_contracts::flashsale::{
    Admission, FlashSale, FlashSales, NewFlashSale, Purchase, PurchaseState, SaleState, sold_out,
};
use mercato_core::{Currency, Error, ErrorCode, Id, Millis};
use mercato_platform::events::EventBus;
use mercato_platform::{Db, now_ms};
use std::collections::HashMap;
use std::sync::Arc;

/// A purchase record still `pending` after this long belongs to a crashed
/// request: the sweeper finishes or undoes it.
const PENDING_GRACE_MS: i64 = 60_000;

/// Purchases decided by the database alone (the counter unreachable) at once
/// on one instance: an outage of the counter must not turn a flash-sale crowd
/// into a crowd of database writers. Others wait their turn for a while (a
/// hiccup of the counter stays invisible), then get a 503 with a retry-after.
const DATABASE_DECISIONS: usize = 16;
const DATABASE_DECISION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A full reconciliation of one sale reads every live purchase record, so it
/// runs at most this often per sale and instance; the cheap count and
/// checksum comparison that decides whether one is needed runs every sweep.
const RECONCILE_EVERY_MS: i64 = 5_000;

#[derive(Clone)]
pub struct FlashSalesService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    bus: EventBus,
    stock: Arc<dyn FlashStock>,
    currency: Currency,
    /// Sale definitions never change once created: cached for the hot path.
    sales: parking_lot::RwLock<HashMap<Id, Arc<FlashSale>>>,
    database_decisions: Arc<tokio::sync::Semaphore>,
    /// When each sale was last fully reconciled by this instance.
    reconciled_at: parking_lot::Mutex<HashMap<Id, Millis>>,
}

fn window(sale: &FlashSale) -> SaleWindow {
    SaleWindow { starts_at: sale.starts_at, ends_at: sale.ends_at, per_customer_limit: sale.per_customer_limit }
}

/// The answer to a purchase the counter (or the database) turned down.
fn refusal(sale: &FlashSale, outcome: Acquire, now: Millis) -> Error {
    match outcome {
        Acquire::SoldOut => sold_out(),
        Acquire::LimitReached => store::limit_reached(sale.per_customer_limit),
        Acquire::NotStarted => {
            let wait = ((sale.starts_at - now) / 1000).max(1) as u64;
            Error::new(ErrorCode::NotStarted, "the flash sale has not started").with_retry_after(wait)
        }
        Acquire::Ended => Error::conflict("the flash sale has ended"),
        Acquire::Granted | Acquire::Unknown => {
            Error::unavailable("the flash-sale counter has lost this sale; try again").with_retry_after(1)
        }
    }
}

fn state_name(state: PurchaseState) -> &'static str {
    match state {
        PurchaseState::Pending => "pending",
        PurchaseState::Active => "active",
        PurchaseState::Released => "released",
    }
}

impl FlashSalesService {
    pub fn new(db: Db, bus: EventBus, stock: Arc<dyn FlashStock>, currency: Currency) -> Self {
        FlashSalesService {
            inner: Arc::new(Inner {
                db,
                bus,
                stock,
                currency,
                sales: parking_lot::RwLock::new(HashMap::new()),
                database_decisions: Arc::new(tokio::sync::Semaphore::new(DATABASE_DECISIONS)),
                reconciled_at: parking_lot::Mutex::new(HashMap::new()),
            }),
        }
    }

    fn remember(&self, sale: FlashSale) -> Arc<FlashSale> {
        let sale = Arc::new(sale);
        self.inner.sales.write().insert(sale.id, sale.clone());
        sale
    }

    /// Loads one sale's counter from its purchase records; a counter that
    /// already has the sale keeps what it has.
    async fn load_stock(&self, sale: &FlashSale) -> Result<(), Error> {
        let id = sale.id;
        let live = self.inner.db.read(move |tx| store::live_purchases(tx, id)).await?;
        self.inner.stock.load(id, window(sale), sale.quantity, &live).await
    }

    /// Loads the counters of open sales from purchase records (at start). A
    /// counter that already has a sale (a shared one, kept while this
    /// instance restarted) keeps it.
    pub async fn load_open(&self) -> Result<usize, Error> {
        let rows = self.inner.db.read(store::open_sales).await?;
        let n = rows.len();
        for (sale, live) in rows {
            if let Err(e) = self.inner.stock.load(sale.id, window(&sale), sale.quantity, &live).await {
                // Startup must not wait for Redis: purchases load what is missing.
                tracing::warn!(sale = %sale.id, error = %e, "flash-sale counter not loaded at start");
            }
            self.remember(sale);
        }
        Ok(n)
    }

    async fn sale(&self, id: Id) -> Result<Arc<FlashSale>, Error> {
        if let Some(s) = self.inner.sales.read().get(&id).cloned() {
            return Ok(s);
        }
        // Created on another instance (or after this one started).
        let found = self.inner.db.lookup(move |tx| store::open_sale(tx, id)).await?;
        found.map(|s| self.remember(s)).ok_or_else(|| Error::not_found("flash sale not found"))
    }

    /// Units held by live purchase records of a sale, and by `customer`.
    async fn live_counts(&self, sale: Id, customer: Option<Id>) -> Result<(i64, i64), Error> {
        let customer = customer.map_or(0, |c| c.0);
        self.inner.db.read(move |tx| store::live_counts(tx, sale, customer)).await
    }

    /// Asks the counter. One that does not know the sale (created on another
    /// instance, or Redis lost its data) is loaded from the purchase records
    /// and asked once more.
    async fn acquire(&self, sale: &FlashSale, order: Id, customer: Id) -> Result<Acquire, Error> {
        let stock = &self.inner.stock;
        let now = now_ms();
        let first = stock.try_acquire(sale.id, order, customer, now).await?;
        if first != Acquire::Unknown {
            return Ok(first);
        }
        if now >= sale.ends_at {
            return Ok(Acquire::Ended);
        }
        self.load_stock(sale).await?;
        match stock.try_acquire(sale.id, order, customer, now_ms()).await? {
            Acquire::Unknown => Err(refusal(sale, Acquire::Unknown, now)),
            outcome => Ok(outcome),
        }
    }

    /// The counter could not answer: checks what it would have from the
    /// records, so losers still cost no write, and bounds how many attempts
    /// go on to write at once. The purchase record re-checks stock and limit
    /// authoritatively.
    async fn database_decides(
        &self,
        sale: &FlashSale,
        customer: Id,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        let now = now_ms();
        if now < sale.starts_at {
            return Err(refusal(sale, Acquire::NotStarted, now));
        }
        if now >= sale.ends_at {
            return Err(refusal(sale, Acquire::Ended, now));
        }
        let places = self.inner.database_decisions.clone();
        let permit = tokio::time::timeout(DATABASE_DECISION_WAIT, places.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                Error::unavailable("the flash sale is busy and its counter unavailable; try again").with_retry_after(1)
            })?;
        let (taken, mine) = self.live_counts(sale.id, Some(customer)).await?;
        if taken >= sale.quantity {
            return Err(sold_out());
        }
        if mine >= sale.per_customer_limit {
            return Err(store::limit_reached(sale.per_customer_limit));
        }
        Ok(permit)
    }

    /// Upkeep of the counters: re-derives each open sale's shared counter
    /// from the purchase records when the two disagree on the count or on
    /// the checksum of the orders holding units. Disagreement is normal for
    /// a moment (a grant whose record is being written); the counter's
    /// reconcile script tells that from drift, and explains why running it
    /// beside live purchases is safe.
    pub async fn sweep(&self) -> Result<(), Error> {
        let now = now_ms();
        let open = self.inner.db.read(move |tx| store::running(tx, now)).await?;
        for sale in open {
            let Some(seen) = self.inner.stock.probe(sale).await? else { continue };
            let (taken, sum) = self.inner.db.read(move |tx| store::live_checksum(tx, sale)).await?;
            if taken == seen.taken && sum % CHECKSUM_MODULUS == seen.checksum {
                continue;
            }
            {
                let mut last = self.inner.reconciled_at.lock();
                if last.get(&sale).is_some_and(|at| now - at < RECONCILE_EVERY_MS) {
                    continue;
                }
                last.insert(sale, now);
            }
            // Released records only matter for grants still within the
            // in-flight grace (older ones are dropped anyway), and a record is
            // written right after its grant; twice the grace covers clocks
            // that disagree. Released first: a record released between the
            // two queries is then merely missed, never taken for live.
            let since = now - 2 * IN_FLIGHT_GRACE_MS;
            let (live, released) = self.inner.db.read(move |tx| store::live_and_released(tx, sale, since)).await?;
            if let Reconciled::Repaired(n) = self.inner.stock.reconcile(sale, &seen, &live, &released, now_ms()).await?
                && n > 0
            {
                tracing::info!(sale = %sale, changed = n, "flash-sale counter repaired from purchase records");
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl FlashSales for FlashSalesService {
    fn check(&self, new: &NewFlashSale) -> Result<(), Error> {
        if new.price.currency != self.inner.currency || new.price.amount < 0 {
            return Err(Error::field("price", format!("must be a non-negative amount in {}", self.inner.currency)));
        }
        if !(1..=1_000_000).contains(&new.quantity) {
            return Err(Error::field("quantity", "must be between 1 and 1000000"));
        }
        if new.ends_at <= new.starts_at {
            return Err(Error::field("ends_at", "must be after starts_at"));
        }
        if new.ends_at <= now_ms() {
            return Err(Error::field("ends_at", "must be in the future"));
        }
        if new.per_customer_limit < 1 {
            return Err(Error::field("per_customer_limit", "must be at least 1"));
        }
        Ok(())
    }

    async fn open(&self, id: Id, new: NewFlashSale) -> Result<FlashSale, Error> {
        self.check(&new)?;
        let sale = self.inner.db.write(move |tx| store::insert_sale(tx, id, &new)).await?;
        self.inner.bus.wake();
        // Loaded now so other instances find it in a shared counter; if the
        // counter is down, the first purchase that finds it missing loads it.
        if let Err(e) = self.inner.stock.load(id, window(&sale), sale.quantity, &[]).await {
            tracing::warn!(sale = %id, error = %e, "flash-sale counter not loaded at creation");
        }
        self.remember(sale);
        self.describe(id).await
    }

    async fn describe(&self, id: Id) -> Result<FlashSale, Error> {
        let sale = self.sale(id).await?;
        let mut s = (*sale).clone();
        s.remaining = match self.inner.stock.remaining(id).await {
            Ok(Some(n)) => n,
            // Not loaded, or the counter is unreachable: count the records.
            _ => (s.quantity - self.live_counts(id, None).await?.0).max(0),
        };
        let now = now_ms();
        s.state = if now >= s.ends_at {
            SaleState::Ended
        } else if now < s.starts_at {
            SaleState::Scheduled
        } else if s.remaining <= 0 {
            SaleState::SoldOut
        } else {
            SaleState::Active
        };
        Ok(s)
    }

    async fn earlier(&self, sale: Id, customer: Id, key: &str) -> Result<Option<(Id, PurchaseState)>, Error> {
        let k = key.to_string();
        let found = self.inner.db.lookup(move |tx| store::earlier_purchase(tx, sale, customer, &k)).await?;
        Ok(found.map(|(order, state)| {
            let state = match state.as_str() {
                "pending" => PurchaseState::Pending,
                "active" => PurchaseState::Active,
                _ => PurchaseState::Released,
            };
            (order, state)
        }))
    }

    async fn admit(&self, sale: Id, order: Id, customer: Id) -> Result<Admission, Error> {
        let sale = self.sale(sale).await?;
        match self.acquire(&sale, order, customer).await {
            Ok(Acquire::Granted) => Ok(Admission::new((*sale).clone(), true, None)),
            Ok(refused) => Err(refusal(&sale, refused, now_ms())),
            // Without a counter's grant the database decides alone: correct
            // (the allocation and the hold row refuse what is not there),
            // only slower.
            Err(e) if e.code == ErrorCode::Unavailable => {
                let place = self.database_decides(&sale, customer).await?;
                Ok(Admission::new((*sale).clone(), false, Some(Box::new(place))))
            }
            Err(e) => Err(e),
        }
    }

    async fn record(&self, p: Purchase, limit: i64, key: &str) -> Result<(), Error> {
        let k = key.to_string();
        let recorded = self
            .inner
            .db
            .write(move |tx| store::record_purchase(tx, p.order_id, p.sale_id, p.customer_id, &k, limit))
            .await?;
        if !recorded {
            return Err(Error::new(ErrorCode::IdempotencyInProgress, "this purchase is already being processed")
                .with_retry_after(1));
        }
        Ok(())
    }

    async fn activate(&self, order: Id) -> Result<(), Error> {
        self.inner.db.write(move |tx| store::mark(tx, order, "pending", "active")).await.map(drop)
    }

    async fn release(&self, order: Id, from: PurchaseState) -> Result<Option<Purchase>, Error> {
        let from = state_name(from);
        let released = self.inner.db.write(move |tx| store::release_record(tx, order, from)).await?;
        Ok(released.map(|(sale_id, customer_id)| Purchase { order_id: order, sale_id, customer_id }))
    }

    async fn give_back(&self, p: Purchase) {
        if let Err(e) = self.inner.stock.release(p.sale_id, p.order_id, p.customer_id).await {
            tracing::debug!(sale = %p.sale_id, order = %p.order_id, error = %e, "flash-sale release left for reconciliation");
        }
    }

    async fn stale_pending(&self) -> Result<Vec<Purchase>, Error> {
        let before = now_ms() - PENDING_GRACE_MS;
        let stale = self.inner.db.read(move |tx| store::stale_pending(tx, before)).await?;
        Ok(stale
            .into_iter()
            .map(|(order_id, sale_id, customer_id)| Purchase { order_id, sale_id, customer_id })
            .collect())
    }

    async fn close_ended(&self, now: Millis) -> Result<Vec<Id>, Error> {
        let ended = self.inner.db.write(move |tx| store::close_ended(tx, now)).await?;
        let mut reconciled = self.inner.reconciled_at.lock();
        for sale in &ended {
            reconciled.remove(sale);
        }
        Ok(ended)
    }
}
