//! The cart's surface: its use cases ([`Cart`]), their types and its events.

use crate::event;
use crate::lines::PricedLine;
use crate::promotions::Applied;
use mercato_core::{Currency, Error, Id, Money};
use mercato_platform::steps::Step;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whose cart a request is about.
#[derive(Debug, Clone)]
pub enum CartOwner {
    Customer(Id),
    /// A guest holding a cart token (None: a guest without a cart yet).
    Guest(Option<String>),
}

#[derive(Debug, Clone, Serialize)]
pub struct PricedCart {
    pub id: Option<Id>,
    pub items: Vec<PricedLine>,
    pub totals: Totals,
    pub currency: Currency,
    pub shipping_method: String,
    /// SKUs in the cart that can no longer be bought (unpublished, removed).
    pub unavailable: Vec<String>,
    /// Each discount that applies, and why.
    pub discounts: Vec<Applied>,
    pub coupon: Option<String>,
    /// Why the cart's coupon does not apply (any more).
    #[serde(skip)]
    pub coupon_problem: Option<Error>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub subtotal: Money,
    pub discount: Money,
    pub shipping: Money,
    pub tax: Money,
    pub total: Money,
}

/// A flat-rate shipping method a cart may choose.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingMethod {
    pub code: String,
    pub name: String,
    /// Price in minor units of the shop currency.
    pub price: i64,
    /// Free when the discounted subtotal reaches this amount.
    #[serde(default)]
    pub free_over: Option<i64>,
}

/// What the cart does for the HTTP edge and for checkout. Every answer is
/// priced now, from current catalog prices and promotions.
#[async_trait::async_trait]
pub trait Cart: Send + Sync {
    /// The shipping methods a cart may choose, the first the default.
    fn shipping_methods(&self) -> &[ShippingMethod];
    /// Totals for `lines` with the default shipping method, the shop's tax
    /// and no promotions (a flash-sale order).
    fn totals_for(&self, lines: &[PricedLine]) -> Result<Totals, Error>;
    async fn view(&self, owner: &CartOwner) -> Result<PricedCart, Error>;
    /// Adds `quantity` units of `sku`; the token of the guest cart this call
    /// created, if it did.
    async fn add(&self, owner: &CartOwner, sku: &str, quantity: i64) -> Result<(PricedCart, Option<String>), Error>;
    async fn set_quantity(&self, owner: &CartOwner, sku: &str, quantity: i64) -> Result<PricedCart, Error>;
    async fn remove(&self, owner: &CartOwner, sku: &str) -> Result<PricedCart, Error>;
    async fn set_shipping_method(&self, owner: &CartOwner, code: &str) -> Result<(PricedCart, Option<String>), Error>;
    async fn set_coupon(&self, owner: &CartOwner, code: &str) -> Result<PricedCart, Error>;
    async fn remove_coupon(&self, owner: &CartOwner) -> Result<PricedCart, Error>;
    /// Moves the guest cart of `token` into `customer`'s cart (at login).
    async fn merge_guest(&self, token: &str, customer: Id) -> Result<(), Error>;
    /// `customer`'s active cart priced as checkout prices it: current
    /// catalog facts read from the catalog's database, never a cache.
    async fn checkout(&self, customer: Id) -> Result<PricedCart, Error>;
    /// Retires `cart` because `order` was placed from it, as a step of a
    /// process. Idempotent.
    fn convert_step(&self, cart: Id, order: Id) -> Step;
}

/// `cart.converted`: the cart became the order `order_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CartConverted {
    #[schema(value_type = String)]
    pub cart_id: Id,
    #[schema(value_type = String)]
    pub order_id: Id,
}
event!(CartConverted, aggregate "cart", "cart.converted", version 1, |e| e.cart_id);
