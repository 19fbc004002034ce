//! The inventory's events.

use crate::event;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `stock.changed`: the available units of `skus` moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StockChanged {
    pub skus: Vec<String>,
    /// What moved them: `adjust`, `reserve`, `release`, `commit`, `restock`...
    pub cause: String,
    /// What they moved for: an order or flash sale id, or the SKU adjusted.
    pub reference: String,
}
event!(StockChanged, aggregate "stock", "stock.changed", version 1, |e| e.reference);
