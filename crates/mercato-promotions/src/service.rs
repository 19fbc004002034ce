use crate::store;
use mercato_contracts::promotions::{
    Applied, EligibleLine, Kind, NewPromotion, Promotion, Promotions, Quote, Scope, apply, normalize_code,
};
use mercato_core::{Currency, Error, ErrorCode, Id};

use mercato_contracts::orders::{OrderStatus, OrderStatusChanged};
use mercato_platform::events::{EventBus, Received};
use mercato_platform::ids::IdGen;
use mercato_platform::steps::Step;
use mercato_platform::{Db, now_ms};
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

    async fn automatic(&self) -> Result<Arc<Vec<Promotion>>, Error> {
        if let Some(list) = self.inner.automatic.get(&()) {
            return Ok(list);
        }
        let list = self.inner.db.read(store::automatic).await?;
        let list = Arc::new(list);
        self.inner.automatic.insert((), list.clone());
        Ok(list)
    }

    async fn by_code(&self, code: &str) -> Result<Option<Promotion>, Error> {
        let code = code.trim().to_ascii_uppercase();
        self.inner.db.lookup(move |tx| store::by_code(tx, &code)).await
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
            self.inner.db.lookup(move |tx| store::customer_uses(tx, &ids, customer)).await?
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
        self.redeem_step(order, customer, applied).run().await
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
}

#[async_trait::async_trait]
impl Promotions for PromotionsService {
    fn currency(&self) -> Currency {
        self.inner.currency
    }
    async fn create(&self, p: NewPromotion) -> Result<Promotion, Error> {
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
                store::insert(
                    tx,
                    id,
                    code.as_deref(),
                    &name,
                    (kind, value),
                    p.min_subtotal,
                    (scope, &values),
                    (p.starts_at, p.ends_at),
                    (p.usage_limit, p.per_customer_limit),
                    p.active,
                )
            })
            .await?;
        self.inner.automatic.invalidate_all();
        self.inner.bus.wake();
        Ok(promotion)
    }
    async fn list(&self) -> Result<Vec<Promotion>, Error> {
        self.inner.db.read_replica(store::list).await
    }
    async fn get(&self, id: Id) -> Result<Promotion, Error> {
        self.inner
            .db
            .lookup(move |tx| store::by_id(tx, id)?.ok_or_else(|| Error::not_found("promotion not found")))
            .await
    }
    async fn set_active(&self, id: Id, active: bool) -> Result<Promotion, Error> {
        let found = self.inner.db.write(move |tx| store::set_active(tx, id, active)).await?;
        if !found {
            return Err(Error::not_found("promotion not found"));
        }
        self.inner.automatic.invalidate_all();
        self.get(id).await
    }
    /// The discounts for a cart: every automatic promotion that applies, and
    /// the coupon if it does (otherwise the reason it does not).
    async fn quote(&self, coupon: Option<&str>, lines: &[EligibleLine], customer: Option<Id>) -> Result<Quote, Error> {
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
    /// [`redeem`](Self::redeem) as a step of a process.
    fn redeem_step(&self, order: Id, customer: Id, applied: &[Applied]) -> Step {
        if applied.is_empty() {
            return Step::nothing();
        }
        let (currency, applied, this) = (self.inner.currency, applied.to_vec(), self.clone());
        Step::local(
            &self.inner.db,
            move |tx| store::redeem(tx, order, customer, &applied, currency),
            move |_| this.redeemed(),
        )
    }
    /// Gives back the uses an order counted (it was cancelled unpaid, or its
    /// checkout failed). Idempotent.
    async fn release(&self, order: Id) -> Result<(), Error> {
        // Most orders (every one without a discount) counted no use: a read
        // says so without queueing a write. The write checks again.
        let counted = self.inner.db.lookup(move |tx| store::counted_any(tx, order)).await?;
        if !counted {
            return Ok(());
        }
        self.inner.db.write(move |tx| store::release(tx, order)).await?;
        self.redeemed();
        Ok(())
    }
    /// Gives back `order`'s uses and refuses any it would count later: its
    /// checkout was abandoned (the sweeper found its lease run out) and may
    /// still be running, and a late redeem must not count a use for an order
    /// that will never exist. Idempotent.
    async fn abandon(&self, order: Id) -> Result<(), Error> {
        self.inner.db.write(move |tx| store::abandon(tx, order)).await?;
        self.redeemed();
        Ok(())
    }
    /// Redemption counts per promotion id, for reporting.
    async fn redemptions(&self, promotion: Id) -> Result<i64, Error> {
        self.inner.db.read_replica(move |tx| store::redemptions(tx, promotion)).await
    }
}
