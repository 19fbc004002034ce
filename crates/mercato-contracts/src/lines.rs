//! A line of a cart or an order, priced: the cart prices it, checkout copies
//! it into the order as it was, so both domains speak of one type.

use mercato_core::{Id, Money, Options};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku: String,
    pub product_id: Id,
    /// The product's name when the line was priced.
    pub name: String,
    pub options: Options,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}
