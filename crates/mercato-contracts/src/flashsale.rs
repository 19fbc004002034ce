//! The flash-sale domain's surface: its use cases ([`FlashSales`]), their
//! types and its events.

use crate::event;
use crate::orders::{Address, Order};
use mercato_core::{Error, Id, Millis, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone)]
pub struct NewFlashSale {
    pub sku: String,
    pub price: Money,
    pub quantity: i64,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub per_customer_limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    Scheduled,
    Active,
    SoldOut,
    Ended,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// What the flash-sale domain does for the HTTP edge: sales of a fixed
/// number of units of one SKU at a price, sold at most once each.
#[async_trait::async_trait]
pub trait FlashSales: Send + Sync {
    /// Creates a sale and allocates its units from inventory at once.
    async fn create(&self, new: NewFlashSale) -> Result<FlashSale, Error>;
    /// A sale with its remaining units.
    async fn describe(&self, id: Id) -> Result<FlashSale, Error>;
    /// One purchase attempt: at most one unit, at the sale price, as a
    /// pending_payment order, once per Idempotency-Key. The order, and
    /// whether this was a replay of an earlier attempt with the key.
    async fn purchase(
        &self,
        sale_id: Id,
        customer: Id,
        key: &str,
        address: Option<Address>,
    ) -> Result<(Order, bool), Error>;
}

/// `flash_sale.created`: `quantity` units of `sku` set aside for the sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlashSaleCreated {
    #[schema(value_type = String)]
    pub id: Id,
    pub sku: String,
    pub quantity: i64,
}
event!(FlashSaleCreated, aggregate "flash_sale", "flash_sale.created", version 1, |e| e.id);
