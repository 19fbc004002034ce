//! The customers domain's events.

use crate::event;
use mercato_core::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `customer.registered`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerRegistered {
    #[schema(value_type = String)]
    pub id: Id,
}
event!(CustomerRegistered, aggregate "customer", "customer.registered", version 1, |e| e.id);
