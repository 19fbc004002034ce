use crate::stock::{Acquire, CHECKSUM_MODULUS, FlashStock, IN_FLIGHT_GRACE_MS, Reconciled, SaleWindow};
use crate::store;
use mercato_contracts::cart::Cart;
use mercato_contracts::catalog::{Catalog, ProductStatus};
use mercato_contracts::flashsale::{FlashSale, FlashSales, NewFlashSale, SaleState};
use mercato_contracts::inventory::{Inventory, Line};
use mercato_contracts::orders::{Address, Draft, Order, OrderItem, Orders};
use mercato_contracts::orders::{OrderStatus, OrderStatusChanged};
use mercato_core::{Currency, Error, ErrorCode, Id, Millis};
use mercato_platform::events::{EventBus, Received};
use mercato_platform::ids::IdGen;
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
    ids: IdGen,
    bus: EventBus,
    catalog: Arc<dyn Catalog>,
    inventory: Arc<dyn Inventory>,
    orders: Arc<dyn Orders>,
    /// Prices a purchase's order as a cart of its one line would be.
    cart: Arc<dyn Cart>,
    stock: Arc<dyn FlashStock>,
    currency: Currency,
    /// Sale definitions never change once created: cached for the hot path.
    sales: parking_lot::RwLock<HashMap<Id, Arc<FlashSale>>>,
    database_decisions: tokio::sync::Semaphore,
    /// When each sale was last fully reconciled by this instance.
    reconciled_at: parking_lot::Mutex<HashMap<Id, Millis>>,
}

fn window(sale: &FlashSale) -> SaleWindow {
    SaleWindow { starts_at: sale.starts_at, ends_at: sale.ends_at, per_customer_limit: sale.per_customer_limit }
}

fn sold_out() -> Error {
    Error::new(ErrorCode::SoldOut, "the flash sale has sold out")
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

impl FlashSalesService {
    pub fn new(
        db: Db,
        ids: IdGen,
        bus: EventBus,
        catalog: Arc<dyn Catalog>,
        inventory: Arc<dyn Inventory>,
        orders: Arc<dyn Orders>,
        cart: Arc<dyn Cart>,
        stock: Arc<dyn FlashStock>,
        currency: Currency,
    ) -> Self {
        FlashSalesService {
            inner: Arc::new(Inner {
                db,
                ids,
                bus,
                catalog,
                inventory,
                orders,
                cart,
                stock,
                currency,
                sales: parking_lot::RwLock::new(HashMap::new()),
                database_decisions: tokio::sync::Semaphore::new(DATABASE_DECISIONS),
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
    /// go on to write at once. The write path (`complete`) re-checks stock
    /// and limit authoritatively.
    async fn database_decides(
        &self,
        sale: &FlashSale,
        customer: Id,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, Error> {
        let now = now_ms();
        if now < sale.starts_at {
            return Err(refusal(sale, Acquire::NotStarted, now));
        }
        if now >= sale.ends_at {
            return Err(refusal(sale, Acquire::Ended, now));
        }
        let permit = tokio::time::timeout(DATABASE_DECISION_WAIT, self.inner.database_decisions.acquire())
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

    /// Gives a unit back to the counter. A failure is only logged: the
    /// database already tells the truth (no record, or a released one), and
    /// the sweep's reconciliation drops the grant.
    async fn give_back(&self, sale: Id, order: Id, customer: Id) {
        if let Err(e) = self.inner.stock.release(sale, order, customer).await {
            tracing::debug!(sale = %sale, order = %order, error = %e, "flash-sale release left for reconciliation");
        }
    }

    async fn complete(
        &self,
        sale: &FlashSale,
        order_id: Id,
        customer: Id,
        key: &str,
        address: Option<Address>,
    ) -> Result<Order, Error> {
        let (sale_id, k, limit) = (sale.id, key.to_string(), sale.per_customer_limit);
        let recorded =
            self.inner.db.write(move |tx| store::record_purchase(tx, order_id, sale_id, customer, &k, limit)).await?;
        if !recorded {
            return Err(Error::new(ErrorCode::IdempotencyInProgress, "this purchase is already being processed")
                .with_retry_after(1));
        }
        let undo = |this: &Self| {
            let this = this.clone();
            async move {
                this.inner.inventory.merge_back(order_id, sale_id).await?;
                this.release_record(order_id, "pending").await.map(drop)
            }
        };
        if let Err(e) = self.inner.inventory.split(sale_id, order_id, &sale.sku, 1).await {
            undo(self).await?;
            return Err(if e.code == ErrorCode::OutOfStock { sold_out() } else { e });
        }
        let info = self.inner.catalog.skus(vec![sale.sku.clone()]).await?;
        let Some(info) = info.get(&sale.sku) else {
            undo(self).await?;
            return Err(Error::not_found(format!("SKU {} not found", sale.sku)));
        };
        let item = OrderItem {
            sku: sale.sku.clone(),
            product_id: info.product_id,
            name: info.product_name.clone(),
            options: info.options.clone(),
            quantity: 1,
            unit_price: sale.price,
            line_total: sale.price,
        };
        let order = match self.place_order(order_id, customer, sale_id, item, address).await {
            Ok(o) => o,
            Err(e) => {
                undo(self).await?;
                return Err(e);
            }
        };
        self.mark(order_id, "pending", "active").await?;
        Ok(order)
    }

    /// Writes the purchase's order: its one unit at the sale price, with the
    /// shop's default shipping. Idempotent on `order_id`.
    async fn place_order(
        &self,
        order_id: Id,
        customer: Id,
        sale_id: Id,
        item: OrderItem,
        address: Option<Address>,
    ) -> Result<Order, Error> {
        let address = address.map(Address::validate).transpose()?;
        let cart = &self.inner.cart;
        let totals = cart.totals_for(std::slice::from_ref(&item))?;
        let shipping_method = cart.shipping_methods()[0].code.clone();
        let order = self.inner.orders.draft(
            order_id,
            Draft {
                customer_id: customer,
                items: vec![item],
                totals,
                discounts: vec![],
                shipping_address: address,
                shipping_method,
                flash_sale_id: Some(sale_id),
            },
        );
        // The id was minted for this purchase alone: an order already
        // there is this one, written by an earlier try of the same call.
        self.inner.orders.place_flash_step(order.clone())?.run().await?;
        Ok(order)
    }

    async fn mark(&self, order: Id, from: &'static str, to: &'static str) -> Result<(), Error> {
        self.inner.db.write(move |tx| store::mark(tx, order, from, to)).await.map(drop)
    }

    /// Moves a purchase record from `from` to `released` and gives the
    /// customer's hold back, in one transaction. Returns the sale and customer
    /// if this call moved it.
    async fn release_record(&self, order: Id, from: &'static str) -> Result<Option<(Id, Id)>, Error> {
        self.inner.db.write(move |tx| store::release_record(tx, order, from)).await
    }

    /// The flash sale's reactions to other domains' events. Call once at
    /// start-up.
    pub fn subscribe(&self) {
        self.inner.bus.on_with(
            &self.inner,
            "flashsale.on-order-cancelled",
            &["order.cancelled"],
            |inner, e: Received<OrderStatusChanged>| async move {
                match e.data {
                    OrderStatusChanged {
                        order_id, flash_sale_id: Some(_), from: OrderStatus::PendingPayment, ..
                    } => FlashSalesService { inner }.on_order_cancelled(order_id).await,
                    _ => Ok(()),
                }
            },
        );
    }

    /// An unpaid flash order was cancelled or expired: its unit goes back to
    /// the sale (or to general stock if the sale is over). Idempotent.
    pub async fn on_order_cancelled(&self, order: Id) -> Result<(), Error> {
        if let Some((sale, customer)) = self.release_record(order, "active").await? {
            self.inner.inventory.merge_back(order, sale).await?;
            self.give_back(sale, order, customer).await;
        }
        Ok(())
    }

    /// Upkeep: finishes or undoes purchases a crash left pending, closes
    /// ended sales (returning their unsold allocation to general stock), and
    /// repairs shared counters that drifted from the purchase records.
    pub async fn sweep(&self) -> Result<(), Error> {
        let now = now_ms();
        let stale = self.inner.db.read(move |tx| store::stale_pending(tx, now - PENDING_GRACE_MS)).await?;
        for (order, sale, customer) in stale {
            if self.inner.orders.get(order).await.is_ok() {
                self.mark(order, "pending", "active").await?;
            } else {
                self.inner.inventory.merge_back(order, sale).await?;
                if self.release_record(order, "pending").await?.is_some() {
                    self.give_back(sale, order, customer).await;
                }
            }
        }
        let ended = self.inner.db.write(move |tx| store::close_ended(tx, now)).await?;
        for sale in ended {
            self.inner.inventory.release(sale).await?;
            self.inner.reconciled_at.lock().remove(&sale);
        }
        if let Err(e) = self.reconcile_open().await {
            // Typically the counter is unreachable; the next sweep looks again.
            tracing::debug!(error = %e, "flash-sale reconciliation postponed");
        }
        Ok(())
    }

    /// Re-derives each open sale's shared counter from the purchase records
    /// when the two disagree on the count or on the checksum of the orders
    /// holding units. Disagreement is normal for a moment (a grant whose
    /// record is being written); the counter's reconcile script tells that
    /// from drift, and explains why running it beside live purchases is safe.
    async fn reconcile_open(&self) -> Result<(), Error> {
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
    /// Creates a sale and allocates its units from inventory at once, so the
    /// sale can never sell stock that is not there.
    async fn create(&self, new: NewFlashSale) -> Result<FlashSale, Error> {
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
        match self.inner.catalog.skus(vec![new.sku.clone()]).await?.get(&new.sku) {
            Some(i) if i.status == ProductStatus::Published => {}
            _ => return Err(Error::not_found(format!("SKU {} not found", new.sku))),
        }
        let id = self.inner.ids.next()?;
        self.inner.inventory.reserve(id, &[Line { sku: new.sku.clone(), quantity: new.quantity }]).await?;
        let n = new.clone();
        let inserted = self.inner.db.write(move |tx| store::insert_sale(tx, id, &n)).await;
        let sale = match inserted {
            Ok(s) => s,
            Err(e) => {
                self.inner.inventory.release(id).await?;
                return Err(e);
            }
        };
        self.inner.bus.wake();
        let id = sale.id;
        // Loaded now so other instances find it in a shared counter; if the
        // counter is down, the first purchase that finds it missing loads it.
        if let Err(e) = self.inner.stock.load(id, window(&sale), sale.quantity, &[]).await {
            tracing::warn!(sale = %id, error = %e, "flash-sale counter not loaded at creation");
        }
        self.remember(sale);
        self.describe(id).await
    }
    /// The sale with its remaining units and state now.
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
    /// One purchase attempt: at most one unit, at the sale price, as a
    /// pending_payment order. Returns the order and whether this was a replay
    /// of an earlier attempt with the same key.
    async fn purchase(
        &self,
        sale_id: Id,
        customer: Id,
        key: &str,
        address: Option<Address>,
    ) -> Result<(Order, bool), Error> {
        if key.is_empty() || key.len() > 255 {
            return Err(Error::validation("Idempotency-Key (1 to 255 characters) is required"));
        }
        let k = key.to_string();
        let earlier = self.inner.db.lookup(move |tx| store::earlier_purchase(tx, sale_id, customer, &k)).await?;
        if let Some((order_id, state)) = earlier {
            return match state.as_str() {
                "pending" => {
                    Err(Error::new(ErrorCode::IdempotencyInProgress, "this purchase is still being processed")
                        .with_retry_after(1))
                }
                _ => Ok((self.inner.orders.get(order_id).await?, true)),
            };
        }
        let sale = self.sale(sale_id).await?;
        // Minted before asking the counter: grants are keyed by order, so a
        // release (or a reconciliation) gives back exactly this unit.
        let order_id = self.inner.ids.next()?;
        let granted = match self.acquire(&sale, order_id, customer).await {
            Ok(Acquire::Granted) => true,
            Ok(refused) => return Err(refusal(&sale, refused, now_ms())),
            Err(e) if e.code == ErrorCode::Unavailable => false,
            Err(e) => return Err(e),
        };
        // Without a counter's grant the database decides alone: correct (the
        // allocation and the hold row refuse what is not there), only slower.
        let _permit = match granted {
            true => None,
            false => Some(self.database_decides(&sale, customer).await?),
        };
        match self.complete(&sale, order_id, customer, key, address).await {
            Ok(order) => Ok((order, false)),
            Err(e) => {
                if granted {
                    self.give_back(sale_id, order_id, customer).await;
                }
                Err(e)
            }
        }
    }
}
