use mercato_contracts::promotions::{
    Applied, EligibleLine, Kind, NewPromotion, Promotion, Promotions, Quote, Rejection, Scope, apply, normalize_code,
};
use mercato_core::{Currency, Error, ErrorCode, Id};

use mercato_contracts::orders::{OrderStatus, OrderStatusChanged};
use mercato_contracts::promotions::PromotionCreated;
use mercato_platform::events::{EventBus, Received, publish};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, Row, Tx, now_ms, params};
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct PromotionsService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    ids: IdGen,
    bus: EventBus,
    currency: Currency,
    /// Automatic promotions, re-read at most every couple of seconds: they
    /// change rarely and are needed on every cart view. Redemption re-checks
    /// limits against the database, so staleness here never over-grants.
    automatic: Cache<(), Arc<Vec<Promotion>>>,
}

const COLUMNS: &str = "id, code, name, kind, value, min_subtotal, scope, scope_values, starts_at, ends_at, usage_limit, \
     per_customer_limit, used, active, created_at";

fn from_row(r: &Row) -> Result<Promotion, Error> {
    let value = r.int(4)?;
    let kind = match r.str(3)? {
        "percentage" => Kind::Percentage(value),
        _ => Kind::Fixed(value),
    };
    let values: serde_json::Value = serde_json::from_str(r.str(7)?).unwrap_or_default();
    let scope = match r.str(6)? {
        "categories" => Scope::Categories(
            values.as_array().map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect()).unwrap_or_default(),
        ),
        "skus" => Scope::Skus(
            values
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        ),
        _ => Scope::All,
    };
    Ok(Promotion {
        id: r.id(0)?,
        code: r.opt_text(1)?,
        name: r.text(2)?,
        kind,
        min_subtotal: r.int(5)?,
        scope,
        starts_at: r.opt_int(8)?,
        ends_at: r.opt_int(9)?,
        usage_limit: r.opt_int(10)?,
        per_customer_limit: r.opt_int(11)?,
        used: r.int(12)?,
        active: r.bool(13)?,
        created_at: r.int(14)?,
    })
}

/// Gives back the uses `order` counted, inside the caller's transaction.
/// Idempotent.
pub fn release_in(tx: &mut dyn Tx, order: Id) -> Result<(), Error> {
    let ids: Vec<Id> = tx
        .query("SELECT promotion_id FROM redemptions WHERE order_id = $1", params![order])?
        .iter()
        .map(|r| r.id(0))
        .collect::<Result<_, _>>()?;
    for id in ids {
        if tx.execute("DELETE FROM redemptions WHERE promotion_id = $1 AND order_id = $2", params![id, order])? == 1 {
            tx.execute("UPDATE promotions SET used = used - 1 WHERE id = $1 AND used > 0", params![id])?;
        }
    }
    Ok(())
}

fn customer_uses(tx: &mut dyn Tx, ids: &[Id], customer: Option<Id>) -> Result<HashMap<Id, i64>, Error> {
    let mut out = HashMap::new();
    let Some(customer) = customer else { return Ok(out) };
    for id in ids {
        let n = tx
            .query_one(
                "SELECT COUNT(*) FROM redemptions WHERE promotion_id = $1 AND customer_id = $2",
                params![*id, customer],
            )?
            .int(0)?;
        out.insert(*id, n);
    }
    Ok(out)
}

impl PromotionsService {
    pub fn new(db: Db, ids: IdGen, bus: EventBus, currency: Currency) -> Self {
        PromotionsService {
            inner: Arc::new(Inner {
                db,
                ids,
                bus,
                currency,
                automatic: Cache::builder().max_capacity(1).time_to_live(Duration::from_secs(2)).build(),
            }),
        }
    }

    pub async fn create(&self, p: NewPromotion) -> Result<Promotion, Error> {
        let code = p.code.as_deref().map(normalize_code).transpose()?;
        let name = p.name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::field("name", "must be 1 to 200 characters"));
        }
        match p.kind {
            Kind::Percentage(bp) if !(1..=10_000).contains(&bp) => {
                return Err(Error::field("value", "a percentage is 1 to 10000 basis points"));
            }
            Kind::Fixed(v) if v <= 0 => return Err(Error::field("value", "a fixed amount must be positive")),
            _ => {}
        }
        if p.min_subtotal < 0 {
            return Err(Error::field("min_subtotal", "must not be negative"));
        }
        if let (Some(s), Some(e)) = (p.starts_at, p.ends_at)
            && e <= s
        {
            return Err(Error::field("ends_at", "must be after starts_at"));
        }
        if p.usage_limit.is_some_and(|l| l < 1) || p.per_customer_limit.is_some_and(|l| l < 1) {
            return Err(Error::field("usage_limit", "limits must be at least 1"));
        }
        let (kind, value) = match p.kind {
            Kind::Percentage(v) => ("percentage", v),
            Kind::Fixed(v) => ("fixed", v),
        };
        let (scope, values) = match &p.scope {
            Scope::All => ("all", serde_json::json!([])),
            Scope::Categories(ids) if !ids.is_empty() => ("categories", serde_json::json!(ids)),
            Scope::Skus(skus) if !skus.is_empty() => ("skus", serde_json::json!(skus)),
            _ => return Err(Error::field("scope", "a category or SKU scope needs at least one value")),
        };
        let values = values.to_string();
        let id = self.inner.ids.next()?;
        let promotion = self
            .inner
            .db
            .write(move |tx| {
                tx.execute(
                    &format!("INSERT INTO promotions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $14)"),
                    params![
                        id, code.as_deref(), &name, kind, value, p.min_subtotal, scope, &values, p.starts_at, p.ends_at,
                        p.usage_limit, p.per_customer_limit, p.active, now_ms()
                    ],
                )
                .map_err(|e| match Error::from(e) {
                    e if e.code == ErrorCode::Conflict => Error::conflict("a promotion with this code exists"),
                    e => e,
                })?;
                publish(tx, &PromotionCreated { id })?;
                let row = tx.query_one(&format!("SELECT {COLUMNS} FROM promotions WHERE id = $1"), params![id])?;
                from_row(&row)
            })
            .await?;
        self.inner.automatic.invalidate_all();
        self.inner.bus.wake();
        Ok(promotion)
    }

    pub async fn list(&self) -> Result<Vec<Promotion>, Error> {
        self.inner
            .db
            .read(|tx| {
                tx.query(&format!("SELECT {COLUMNS} FROM promotions ORDER BY id DESC LIMIT 500"), params![])?
                    .iter()
                    .map(from_row)
                    .collect()
            })
            .await
    }

    pub async fn get(&self, id: Id) -> Result<Promotion, Error> {
        self.inner
            .db
            .lookup(move |tx| {
                let row = tx
                    .query_opt(&format!("SELECT {COLUMNS} FROM promotions WHERE id = $1"), params![id])?
                    .ok_or_else(|| Error::not_found("promotion not found"))?;
                from_row(&row)
            })
            .await
    }

    pub async fn set_active(&self, id: Id, active: bool) -> Result<Promotion, Error> {
        let n = self
            .inner
            .db
            .write(move |tx| Ok(tx.execute("UPDATE promotions SET active = $1 WHERE id = $2", params![active, id])?))
            .await?;
        if n == 0 {
            return Err(Error::not_found("promotion not found"));
        }
        self.inner.automatic.invalidate_all();
        self.get(id).await
    }

    async fn automatic(&self) -> Result<Arc<Vec<Promotion>>, Error> {
        if let Some(list) = self.inner.automatic.get(&()) {
            return Ok(list);
        }
        let list = self
            .inner
            .db
            .read(|tx| {
                tx.query(&format!("SELECT {COLUMNS} FROM promotions WHERE code IS NULL AND active = 1"), params![])?
                    .iter()
                    .map(from_row)
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let list = Arc::new(list);
        self.inner.automatic.insert((), list.clone());
        Ok(list)
    }

    async fn by_code(&self, code: &str) -> Result<Option<Promotion>, Error> {
        let code = code.trim().to_ascii_uppercase();
        self.inner
            .db
            .lookup(move |tx| {
                tx.query_opt(&format!("SELECT {COLUMNS} FROM promotions WHERE code = $1"), params![&code])?
                    .map(|r| from_row(&r))
                    .transpose()
            })
            .await
    }

    /// The discounts for a cart: every automatic promotion that applies, and
    /// the coupon if it does (otherwise the reason it does not).
    pub async fn quote(
        &self,
        coupon: Option<&str>,
        lines: &[EligibleLine],
        customer: Option<Id>,
    ) -> Result<Quote, Error> {
        let automatic = self.automatic().await?;
        let coupon_promo = match coupon {
            Some(c) => match self.by_code(c).await? {
                Some(p) => Some(p),
                None => {
                    let quote = self.quote_with(None, &automatic, lines, customer).await?;
                    return Ok(Quote {
                        coupon_rejection: Some(
                            Error::new(ErrorCode::CouponInvalid, format!("coupon {c} does not exist"))
                                .with_details(serde_json::json!({ "coupon": c, "reason": "not_found" })),
                        ),
                        ..quote
                    });
                }
            },
            None => None,
        };
        self.quote_with(coupon_promo, &automatic, lines, customer).await
    }

    async fn quote_with(
        &self,
        coupon: Option<Promotion>,
        automatic: &[Promotion],
        lines: &[EligibleLine],
        customer: Option<Id>,
    ) -> Result<Quote, Error> {
        let mut ids: Vec<Id> = automatic.iter().filter(|p| p.per_customer_limit.is_some()).map(|p| p.id).collect();
        if let Some(c) = coupon.as_ref().filter(|c| c.per_customer_limit.is_some()) {
            ids.push(c.id);
        }
        let uses = if ids.is_empty() || customer.is_none() {
            HashMap::new()
        } else {
            self.inner.db.lookup(move |tx| customer_uses(tx, &ids, customer)).await?
        };
        let used = |p: &Promotion| uses.get(&p.id).copied().unwrap_or(0);
        let auto: Vec<(&Promotion, i64)> = automatic.iter().map(|p| (p, used(p))).collect();
        let (applied, rejection) =
            apply(coupon.as_ref().map(|c| (c, used(c))), &auto, lines, now_ms(), self.inner.currency);
        let coupon_rejection = match (rejection, &coupon) {
            (Some(r), Some(c)) => Some(r.into_error(c.code.as_deref().unwrap_or(""), self.inner.currency)),
            _ => None,
        };
        Ok(Quote { applied, coupon_rejection })
    }

    /// Counts the uses of `applied` against `order`, in one transaction: every
    /// promotion is redeemed or none is. Repeating it for the same order
    /// changes nothing.
    pub async fn redeem(&self, order: Id, customer: Id, applied: &[Applied]) -> Result<(), Error> {
        if applied.is_empty() {
            return Ok(());
        }
        let (this, applied) = (self.clone(), applied.to_vec());
        self.inner.db.write(move |tx| this.redeem_in(tx, order, customer, &applied)).await?;
        self.redeemed();
        Ok(())
    }

    /// Counts `order`'s uses of the promotions in `applied` inside the caller's
    /// transaction, refusing (and so rolling back the whole transaction) when a
    /// limit, window or activity rule no longer admits one. Idempotent per
    /// order. Call [`Self::redeemed`] after the commit.
    pub fn redeem_in(&self, tx: &mut dyn Tx, order: Id, customer: Id, applied: &[Applied]) -> Result<(), Error> {
        let currency = self.inner.currency;
        let now = now_ms();
        // The order's claim row orders this against an [`Self::abandon`] of
        // the same order: whichever writes it first, the other waits for it
        // (a unique key) and then sees its state.
        tx.execute(
            "INSERT INTO redemption_orders (order_id, state, at) VALUES ($1, 'redeemed', $2) ON CONFLICT (order_id) DO NOTHING",
            params![order, now],
        )?;
        let claim = tx.query_one("SELECT state FROM redemption_orders WHERE order_id = $1", params![order])?;
        if claim.str(0)? == "abandoned" {
            return Err(Error::conflict(format!(
                "checkout {order} was abandoned; its discounts can no longer be counted"
            )));
        }
        for a in applied {
            if tx
                .query_opt(
                    "SELECT 1 FROM redemptions WHERE promotion_id = $1 AND order_id = $2",
                    params![a.promotion_id, order],
                )?
                .is_some()
            {
                continue;
            }
            // The conditional increment takes the promotion's row lock, so
            // concurrent redeemers of one promotion queue here.
            let counted = tx.execute(
                "UPDATE promotions SET used = used + 1 WHERE id = $1 AND active = 1 \
                 AND (usage_limit IS NULL OR used < usage_limit) \
                 AND (starts_at IS NULL OR starts_at <= $2) AND (ends_at IS NULL OR ends_at > $2)",
                params![a.promotion_id, now],
            )?;
            let p = from_row(
                &tx.query_one(&format!("SELECT {COLUMNS} FROM promotions WHERE id = $1"), params![a.promotion_id])?,
            )?;
            let code = p.code.clone().unwrap_or_else(|| p.name.clone());
            if counted == 0 {
                let reason = if !p.active {
                    Rejection::Inactive
                } else if p.ends_at.is_some_and(|e| now >= e) {
                    Rejection::Expired
                } else if p.starts_at.is_some_and(|s| now < s) {
                    Rejection::NotStarted
                } else {
                    Rejection::UsageLimitReached
                };
                return Err(reason.into_error(&code, currency));
            }
            if let Some(limit) = p.per_customer_limit {
                let uses = customer_uses(tx, &[p.id], Some(customer))?.get(&p.id).copied().unwrap_or(0);
                if uses >= limit {
                    return Err(Rejection::CustomerLimitReached.into_error(&code, currency));
                }
            }
            tx.execute(
                "INSERT INTO redemptions (promotion_id, order_id, customer_id, amount, created_at) VALUES ($1, $2, $3, $4, $5)",
                params![a.promotion_id, order, customer, a.amount, now],
            )?;
        }
        Ok(())
    }

    /// After a commit that counted uses: cached automatic promotions carry
    /// their counts, so they are read again.
    pub fn redeemed(&self) {
        self.inner.automatic.invalidate_all();
    }

    /// The promotions' reactions to other domains' events. Call once at
    /// start-up.
    pub fn subscribe(&self) {
        // Uses come back only for orders cancelled before payment.
        self.inner.bus.on_with(
            &self.inner,
            "promotions.on-order-cancelled",
            &["order.cancelled"],
            |inner, e: Received<OrderStatusChanged>| async move {
                match e.data.from {
                    OrderStatus::PendingPayment => PromotionsService { inner }.release(e.data.order_id).await,
                    _ => Ok(()),
                }
            },
        );
    }

    /// Gives back the uses an order counted (it was cancelled unpaid, or its
    /// checkout failed). Idempotent.
    pub async fn release(&self, order: Id) -> Result<(), Error> {
        // Most orders (every one without a discount) counted no use: a read
        // says so without queueing a write. The write checks again.
        let counted = self
            .inner
            .db
            .lookup(move |tx| Ok(tx.query_opt("SELECT 1 FROM redemptions WHERE order_id = $1", params![order])?))
            .await?;
        if counted.is_none() {
            return Ok(());
        }
        self.inner.db.write(move |tx| release_in(tx, order)).await?;
        self.redeemed();
        Ok(())
    }

    /// Gives back `order`'s uses and refuses any it would count later: its
    /// checkout was abandoned (the sweeper found its lease run out) and may
    /// still be running, and a late redeem must not count a use for an order
    /// that will never exist. Idempotent.
    pub async fn abandon(&self, order: Id) -> Result<(), Error> {
        self.inner
            .db
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO redemption_orders (order_id, state, at) VALUES ($1, 'abandoned', $2) \
                     ON CONFLICT (order_id) DO UPDATE SET state = 'abandoned', at = excluded.at",
                    params![order, now_ms()],
                )?;
                release_in(tx, order)
            })
            .await?;
        self.redeemed();
        Ok(())
    }

    /// Redemption counts per promotion id, for reporting.
    pub async fn redemptions(&self, promotion: Id) -> Result<i64, Error> {
        self.inner
            .db
            .read(move |tx| {
                tx.query_one("SELECT COUNT(*) FROM redemptions WHERE promotion_id = $1", params![promotion])?.int(0)
            })
            .await
    }

    pub fn currency(&self) -> Currency {
        self.inner.currency
    }
}

#[async_trait::async_trait]
impl Promotions for PromotionsService {
    fn currency(&self) -> Currency {
        PromotionsService::currency(self)
    }
    async fn create(&self, p: NewPromotion) -> Result<Promotion, Error> {
        PromotionsService::create(self, p).await
    }
    async fn list(&self) -> Result<Vec<Promotion>, Error> {
        PromotionsService::list(self).await
    }
    async fn get(&self, id: Id) -> Result<Promotion, Error> {
        PromotionsService::get(self, id).await
    }
    async fn set_active(&self, id: Id, active: bool) -> Result<Promotion, Error> {
        PromotionsService::set_active(self, id, active).await
    }
    async fn quote(&self, coupon: Option<&str>, lines: &[EligibleLine], customer: Option<Id>) -> Result<Quote, Error> {
        PromotionsService::quote(self, coupon, lines, customer).await
    }
    async fn redeem(&self, order: Id, customer: Id, applied: &[Applied]) -> Result<(), Error> {
        PromotionsService::redeem(self, order, customer, applied).await
    }
    async fn release(&self, order: Id) -> Result<(), Error> {
        PromotionsService::release(self, order).await
    }
    async fn abandon(&self, order: Id) -> Result<(), Error> {
        PromotionsService::abandon(self, order).await
    }
    async fn redemptions(&self, promotion: Id) -> Result<i64, Error> {
        PromotionsService::redemptions(self, promotion).await
    }
}
