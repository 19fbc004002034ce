use crate::stock::{Acquire, FlashStock, SaleWindow};
use mercato_catalog::{CatalogService, ProductStatus};
use mercato_core::{Currency, Error, ErrorCode, Id, Millis, Money};
use mercato_inventory::{InventoryService, Line};
use mercato_orders::{Address, Order, OrderItem, OrdersService};
use mercato_platform::events::{EventBus, emit};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, Row, now_ms, params};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// A purchase record still `pending` after this long belongs to a crashed
/// request: the sweeper finishes or undoes it.
const PENDING_GRACE_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct NewFlashSale {
    pub sku: String,
    pub price: Money,
    pub quantity: i64,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub per_customer_limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    Scheduled,
    Active,
    SoldOut,
    Ended,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlashSale {
    pub id: Id,
    pub sku: String,
    pub price: Money,
    pub quantity: i64,
    pub remaining: i64,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub per_customer_limit: i64,
    pub state: SaleState,
    pub created_at: Millis,
}

#[derive(Clone)]
pub struct FlashSalesService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    catalog: CatalogService,
    inventory: InventoryService,
    orders: OrdersService,
    stock: Arc<dyn FlashStock>,
    currency: Currency,
    /// Sale definitions never change once created: cached for the hot path.
    sales: parking_lot::RwLock<HashMap<Id, Arc<FlashSale>>>,
}

const COLUMNS: &str = "id, sku, price, currency, quantity, starts_at, ends_at, per_customer_limit, created_at";

fn sale_from(r: &Row) -> Result<FlashSale, Error> {
    Ok(FlashSale {
        id: r.id(0)?,
        sku: r.text(1)?,
        price: Money::new(r.int(2)?, r.str(3)?.parse()?),
        quantity: r.int(4)?,
        remaining: r.int(4)?,
        starts_at: r.int(5)?,
        ends_at: r.int(6)?,
        per_customer_limit: r.int(7)?,
        state: SaleState::Scheduled,
        created_at: r.int(8)?,
    })
}

impl FlashSalesService {
    pub fn new(
        db: Db,
        ids: IdGen,
        bus: EventBus,
        catalog: CatalogService,
        inventory: InventoryService,
        orders: OrdersService,
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
                stock,
                currency,
                sales: parking_lot::RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Creates a sale and allocates its units from inventory at once, so the
    /// sale can never sell stock that is not there.
    pub async fn create(&self, new: NewFlashSale) -> Result<FlashSale, Error> {
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
        let id = self.inner.ids.next();
        self.inner.inventory.reserve(id, &[Line { sku: new.sku.clone(), quantity: new.quantity }]).await?;
        let n = new.clone();
        let inserted = self
            .inner
            .db
            .write(move |tx| {
                tx.execute(
                    &format!("INSERT INTO flash_sales ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                    params![
                        id,
                        &n.sku,
                        n.price.amount,
                        n.price.currency.as_str(),
                        n.quantity,
                        n.starts_at,
                        n.ends_at,
                        n.per_customer_limit,
                        now_ms()
                    ],
                )?;
                emit(
                    tx,
                    "flash_sale",
                    &id.to_string(),
                    "flash_sale.created",
                    &serde_json::json!({ "id": id, "sku": n.sku, "quantity": n.quantity }),
                )?;
                let row = tx.query_one(&format!("SELECT {COLUMNS} FROM flash_sales WHERE id = $1"), params![id])?;
                sale_from(&row)
            })
            .await;
        let sale = match inserted {
            Ok(s) => s,
            Err(e) => {
                self.inner.inventory.release(id).await?;
                return Err(e);
            }
        };
        self.inner.bus.wake();
        self.load(sale.clone(), HashMap::new());
        self.describe(sale.id).await
    }

    fn load(&self, sale: FlashSale, held: HashMap<Id, i64>) {
        let taken: i64 = held.values().sum();
        let window = SaleWindow {
            starts_at: sale.starts_at,
            ends_at: sale.ends_at,
            per_customer_limit: sale.per_customer_limit,
        };
        self.inner.stock.load(sale.id, window, sale.quantity - taken, held);
        self.inner.sales.write().insert(sale.id, Arc::new(sale));
    }

    /// Rebuilds the counters of open sales from purchase records (at start).
    pub async fn load_open(&self) -> Result<usize, Error> {
        let rows = self
            .inner
            .db
            .read(|tx| {
                let sales = tx
                    .query(&format!("SELECT {COLUMNS} FROM flash_sales WHERE closed_at IS NULL"), params![])?
                    .iter()
                    .map(sale_from)
                    .collect::<Result<Vec<_>, _>>()?;
                let mut out = Vec::with_capacity(sales.len());
                for s in sales {
                    let held = tx
                        .query(
                            "SELECT customer_id, COUNT(*) FROM flash_purchases WHERE sale_id = $1 AND state IN ('pending', 'active') GROUP BY customer_id",
                            params![s.id],
                        )?
                        .iter()
                        .map(|r| Ok((r.id(0)?, r.int(1)?)))
                        .collect::<Result<HashMap<_, _>, Error>>()?;
                    out.push((s, held));
                }
                Ok(out)
            })
            .await?;
        let n = rows.len();
        for (sale, held) in rows {
            self.load(sale, held);
        }
        Ok(n)
    }

    async fn sale(&self, id: Id) -> Result<Arc<FlashSale>, Error> {
        if let Some(s) = self.inner.sales.read().get(&id).cloned() {
            return Ok(s);
        }
        // Not loaded here yet (created on another instance): load it.
        self.load_open().await?;
        self.inner.sales.read().get(&id).cloned().ok_or_else(|| Error::not_found("flash sale not found"))
    }

    /// The sale with its remaining units and state now.
    pub async fn describe(&self, id: Id) -> Result<FlashSale, Error> {
        let sale = self.sale(id).await?;
        let mut s = (*sale).clone();
        s.remaining = self.inner.stock.remaining(id).unwrap_or(0);
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
    pub async fn purchase(
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
        let earlier = self
            .inner
            .db
            .read(move |tx| {
                tx.query_opt(
                    "SELECT order_id, state FROM flash_purchases WHERE sale_id = $1 AND customer_id = $2 AND idempotency_key = $3",
                    params![sale_id, customer, &k],
                )?
                .map(|r| Ok::<_, Error>((r.id(0)?, r.text(1)?)))
                .transpose()
            })
            .await?;
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
        match self.inner.stock.try_acquire(sale_id, customer, now_ms()) {
            Acquire::Granted => {}
            Acquire::SoldOut => return Err(Error::new(ErrorCode::SoldOut, "the flash sale has sold out")),
            Acquire::LimitReached => {
                return Err(Error::new(
                    ErrorCode::LimitReached,
                    format!("at most {} per customer in this sale", sale.per_customer_limit),
                ));
            }
            Acquire::NotStarted => {
                let wait = ((sale.starts_at - now_ms()) / 1000).max(1) as u64;
                return Err(Error::new(ErrorCode::NotStarted, "the flash sale has not started").with_retry_after(wait));
            }
            Acquire::Ended => return Err(Error::conflict("the flash sale has ended")),
            Acquire::Unknown => return Err(Error::not_found("flash sale not found")),
        }
        let order_id = self.inner.ids.next();
        match self.complete(&sale, order_id, customer, key, address).await {
            Ok(order) => Ok((order, false)),
            Err(e) => {
                self.inner.stock.release(sale_id, customer);
                Err(e)
            }
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
        let (sale_id, k) = (sale.id, key.to_string());
        let recorded = self
            .inner
            .db
            .write(move |tx| {
                Ok(tx.execute(
                    "INSERT INTO flash_purchases (order_id, sale_id, customer_id, idempotency_key, state, created_at) \
                     VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT DO NOTHING",
                    params![order_id, sale_id, customer, &k, now_ms()],
                )?)
            })
            .await?;
        if recorded == 0 {
            return Err(Error::new(ErrorCode::IdempotencyInProgress, "this purchase is already being processed")
                .with_retry_after(1));
        }
        let undo = |this: &Self| {
            let this = this.clone();
            async move {
                this.inner.inventory.merge_back(order_id, sale_id).await?;
                this.mark(order_id, "pending", "released").await
            }
        };
        if let Err(e) = self.inner.inventory.split(sale_id, order_id, &sale.sku, 1).await {
            undo(self).await?;
            return Err(if e.code == ErrorCode::OutOfStock {
                Error::new(ErrorCode::SoldOut, "the flash sale has sold out")
            } else {
                e
            });
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
        let order = match self.inner.orders.place_flash(order_id, customer, sale_id, item, address).await {
            Ok(o) => o,
            Err(e) => {
                undo(self).await?;
                return Err(e);
            }
        };
        self.mark(order_id, "pending", "active").await?;
        Ok(order)
    }

    async fn mark(&self, order: Id, from: &'static str, to: &'static str) -> Result<(), Error> {
        self.inner
            .db
            .write(move |tx| {
                Ok(tx.execute(
                    "UPDATE flash_purchases SET state = $1 WHERE order_id = $2 AND state = $3",
                    params![to, order, from],
                )?)
            })
            .await
            .map(drop)
    }

    /// An unpaid flash order was cancelled or expired: its unit goes back to
    /// the sale (or to general stock if the sale is over). Idempotent.
    pub async fn on_order_cancelled(&self, order: Id) -> Result<(), Error> {
        let purchase = self
            .inner
            .db
            .write(move |tx| {
                let row = tx.query_opt(
                    "SELECT sale_id, customer_id FROM flash_purchases WHERE order_id = $1",
                    params![order],
                )?;
                let Some(row) = row else { return Ok(None) };
                let moved = tx.execute(
                    "UPDATE flash_purchases SET state = 'released' WHERE order_id = $1 AND state = 'active'",
                    params![order],
                )?;
                Ok((moved == 1).then(|| (row.id(0), row.id(1))))
            })
            .await?;
        if let Some((Ok(sale), Ok(customer))) = purchase {
            self.inner.inventory.merge_back(order, sale).await?;
            self.inner.stock.release(sale, customer);
        }
        Ok(())
    }

    /// Upkeep: finishes or undoes purchases a crash left pending, and closes
    /// ended sales, returning their unsold allocation to general stock.
    pub async fn sweep(&self) -> Result<(), Error> {
        let now = now_ms();
        let stale = self
            .inner
            .db
            .read(move |tx| {
                tx.query(
                    "SELECT order_id, sale_id, customer_id FROM flash_purchases WHERE state = 'pending' AND created_at < $1 LIMIT 100",
                    params![now - PENDING_GRACE_MS],
                )?
                .iter()
                .map(|r| Ok((r.id(0)?, r.id(1)?, r.id(2)?)))
                .collect::<Result<Vec<_>, Error>>()
            })
            .await?;
        for (order, sale, customer) in stale {
            if self.inner.orders.get(order).await.is_ok() {
                self.mark(order, "pending", "active").await?;
            } else {
                self.inner.inventory.merge_back(order, sale).await?;
                self.mark(order, "pending", "released").await?;
                self.inner.stock.release(sale, customer);
            }
        }
        let ended = self
            .inner
            .db
            .write(move |tx| {
                let ids = tx
                    .query("SELECT id FROM flash_sales WHERE closed_at IS NULL AND ends_at <= $1", params![now])?
                    .iter()
                    .map(|r| r.id(0))
                    .collect::<Result<Vec<_>, _>>()?;
                for id in &ids {
                    tx.execute("UPDATE flash_sales SET closed_at = $1 WHERE id = $2", params![now, *id])?;
                }
                Ok(ids)
            })
            .await?;
        for sale in ended {
            self.inner.inventory.release(sale).await?;
        }
        Ok(())
    }
}
