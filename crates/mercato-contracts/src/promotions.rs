//! The promotions domain's events.

use crate::event;
use mercato_core::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `promotion.created`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromotionCreated {
    #[schema(value_type = String)]
    pub id: Id,
}
event!(PromotionCreated, aggregate "promotion", "promotion.created", version 1, |e| e.id);
