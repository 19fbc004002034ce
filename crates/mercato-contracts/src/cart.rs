//! The cart's events.

use crate::event;
use mercato_core::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `cart.converted`: the cart became the order `order_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CartConverted {
    #[schema(value_type = String)]
    pub cart_id: Id,
    #[schema(value_type = String)]
    pub order_id: Id,
}
event!(CartConverted, aggregate "cart", "cart.converted", version 1, |e| e.cart_id);
