//! The catalog's events, and the product statuses they carry.

use crate::event;
use mercato_core::{Error, Id};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
