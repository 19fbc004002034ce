//! The promotions domain's surface: its use cases ([`Promotions`]), the
//! promotion model and the rules that price a cart with it, and its events.

use crate::event;
use mercato_core::{Currency, Error, Id, Millis};
use mercato_platform::steps::Step;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod model;
pub use model::*;

#[derive(Debug, Clone)]
pub struct NewPromotion {
    pub code: Option<String>,
    pub name: String,
    pub kind: Kind,
    pub min_subtotal: i64,
    pub scope: Scope,
    pub starts_at: Option<Millis>,
    pub ends_at: Option<Millis>,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    pub active: bool,
}

/// The discounts a cart gets now, and why its coupon (if any) does not apply.
#[derive(Debug, Clone, Default)]
pub struct Quote {
    pub applied: Vec<Applied>,
    pub coupon_rejection: Option<Error>,
}

/// Codes are case-insensitive for customers; stored uppercase.
pub fn normalize_code(code: &str) -> Result<String, Error> {
    let c = code.trim().to_ascii_uppercase();
    if c.len() < 3 || c.len() > 32 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::field("code", "must be 3-32 letters, digits, '-' or '_'"));
    }
    Ok(c)
}

/// What the promotions domain does for the HTTP edge and the other domains.
/// Redemptions are keyed by the order, which makes redeem, release and
/// abandon idempotent steps of a checkout.
#[async_trait::async_trait]
pub trait Promotions: Send + Sync {
    fn currency(&self) -> Currency;
    async fn create(&self, p: NewPromotion) -> Result<Promotion, Error>;
    async fn list(&self) -> Result<Vec<Promotion>, Error>;
    async fn get(&self, id: Id) -> Result<Promotion, Error>;
    async fn set_active(&self, id: Id, active: bool) -> Result<Promotion, Error>;
    /// The discounts for a cart: every automatic promotion that applies, and
    /// the coupon if it does (otherwise the reason it does not).
    async fn quote(&self, coupon: Option<&str>, lines: &[EligibleLine], customer: Option<Id>) -> Result<Quote, Error>;
    /// Counts one use of each applied promotion for `order`, or none if any
    /// limit is reached, as a step of a process. Idempotent on `order`.
    fn redeem_step(&self, order: Id, customer: Id, applied: &[Applied]) -> Step;
    /// Gives back the uses `order` counted. Idempotent.
    async fn release(&self, order: Id) -> Result<(), Error>;
    /// Gives back `order`'s uses and refuses any it would count later (its
    /// checkout was given up and may still be running). Idempotent.
    async fn abandon(&self, order: Id) -> Result<(), Error>;
    /// How many orders redeemed `promotion`.
    async fn redemptions(&self, promotion: Id) -> Result<i64, Error>;
}

/// `promotion.created`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromotionCreated {
    #[schema(value_type = String)]
    pub id: Id,
}
event!(PromotionCreated, aggregate "promotion", "promotion.created", version 1, |e| e.id);
