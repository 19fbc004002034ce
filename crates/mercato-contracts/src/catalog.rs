//! The catalog's surface: its use cases ([`Catalog`]), their request and
//! response types, its events and the product statuses they carry.

use crate::event;
use mercato_core::{Currency, Error, Id, Millis};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::ToSchema;

mod model;
pub use model::*;

/// What the catalog does for the HTTP edge and the other domains. The
/// catalog service implements it in process; a remote client can implement
/// it later, and callers hold an `Arc<dyn Catalog>` either way.
#[async_trait::async_trait]
pub trait Catalog: Send + Sync {
    /// The shop's currency: every price is in it.
    fn currency(&self) -> Currency;
    /// Every category, in tree order.
    async fn categories(&self) -> Result<Arc<Vec<Category>>, Error>;
    /// A category by id or slug.
    async fn category(&self, reference: &str) -> Result<Category, Error>;
    /// A category and every category above it, nearest first.
    async fn ancestors(&self, id: Id) -> Result<Vec<Id>, Error>;
    async fn create_category(&self, name: &str, slug: Option<&str>, parent_id: Option<Id>) -> Result<Category, Error>;
    /// One page of products, keyset-paginated.
    async fn list(&self, q: ListQuery) -> Result<Arc<Page<ProductSummary>>, Error>;
    /// A product by id or slug; with `published_only`, drafts and archived
    /// products are not found.
    async fn get(&self, reference: &str, published_only: bool) -> Result<Arc<Product>, Error>;
    /// [`get`](Self::get) for a product page: one read of the database on a
    /// miss, shared by concurrent misses for one reference.
    async fn page_product(&self, reference: &str, published_only: bool) -> Result<Arc<Product>, Error>;
    async fn create(&self, new: NewProduct) -> Result<Arc<Product>, Error>;
    async fn update(&self, id: Id, patch: ProductPatch) -> Result<Arc<Product>, Error>;
    async fn update_variant(&self, sku: &str, patch: VariantPatch) -> Result<Arc<Product>, Error>;
    /// What carts and orders need to know of each SKU that exists, as
    /// customers currently see it (may be served from cache).
    async fn skus_shown(&self, skus: Vec<String>) -> Result<HashMap<String, SkuInfo>, Error>;
    /// [`skus_shown`](Self::skus_shown), read from the database: what a
    /// checkout prices from.
    async fn skus(&self, skus: Vec<String>) -> Result<HashMap<String, SkuInfo>, Error>;
    /// Published products in id order after `after`, for rebuilding derived
    /// views (the search index) in pages.
    async fn published_after(&self, after: Option<Id>, limit: i64) -> Result<Vec<Product>, Error>;
    /// Ids of products (any status) changed at or after `since`, in id
    /// order after `after`: what a derived view that was down must look at again.
    async fn changed_since(&self, since: Millis, after: Option<Id>, limit: i64) -> Result<Vec<Id>, Error>;
    async fn published_count(&self) -> Result<i64, Error>;
    async fn product_count(&self) -> Result<i64, Error>;
    /// A product read from the database, never a cache: for derived views
    /// that must not index a copy older than the event they react to.
    async fn get_uncached(&self, id: Id) -> Result<Arc<Product>, Error>;
    /// Bulk import (seeding): one transaction per call, no events; each
    /// product with its slug. The new products' ids, in order.
    async fn insert_batch(&self, products: Vec<(NewProduct, String)>) -> Result<Vec<Id>, Error>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProductStatus {
    Draft,
    Published,
    Archived,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Draft => "draft",
            ProductStatus::Published => "published",
            ProductStatus::Archived => "archived",
        }
    }
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "draft" => Ok(ProductStatus::Draft),
            "published" => Ok(ProductStatus::Published),
            "archived" => Ok(ProductStatus::Archived),
            other => Err(Error::field("status", format!("'{other}' is not one of draft, published, archived"))),
        }
    }
}

/// `category.created`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CategoryCreated {
    #[schema(value_type = String)]
    pub id: Id,
}
event!(CategoryCreated, aggregate "category", "category.created", version 1, |e| e.id);

/// `product.created`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductCreated {
    #[schema(value_type = String)]
    pub id: Id,
    pub status: ProductStatus,
}
event!(ProductCreated, aggregate "product", "product.created", version 1, |e| e.id);

/// `product.published` (it became published), `product.archived` (it became
/// archived) or `product.updated` (any other change to the product or its
/// variants).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductChanged {
    #[schema(value_type = String)]
    pub id: Id,
    pub status: ProductStatus,
    pub previous_status: ProductStatus,
    /// The product's version after the change (optimistic concurrency).
    pub version: i64,
}

impl crate::DomainEvent for ProductChanged {
    const AGGREGATE: &'static str = "product";
    const VERSION: u32 = 1;
    const TYPES: &'static [&'static str] = &["product.updated", "product.published", "product.archived"];
    fn event_type(&self) -> &'static str {
        match (self.previous_status, self.status) {
            (a, b) if a == b => "product.updated",
            (_, ProductStatus::Published) => "product.published",
            (_, ProductStatus::Archived) => "product.archived",
            _ => "product.updated",
        }
    }
    fn aggregate_id(&self) -> String {
        self.id.to_string()
    }
}

/// `variant.price_changed`: amounts in minor units of the shop's currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VariantPriceChanged {
    #[schema(value_type = String)]
    pub product_id: Id,
    pub sku: String,
    pub old: i64,
    pub new: i64,
}
event!(VariantPriceChanged, aggregate "product", "variant.price_changed", version 1, |e| e.product_id);
