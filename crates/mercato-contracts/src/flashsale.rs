//! The flash-sale domain's events.

use crate::event;
use mercato_core::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `flash_sale.created`: `quantity` units of `sku` set aside for the sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlashSaleCreated {
    #[schema(value_type = String)]
    pub id: Id,
    pub sku: String,
    pub quantity: i64,
}
event!(FlashSaleCreated, aggregate "flash_sale", "flash_sale.created", version 1, |e| e.id);
