//! The webhooks domain's surface: its use cases ([`Webhooks`]), endpoints
//! and deliveries. What it sends is the other domains' events, as
//! [`crate::documented`] lists them.

use mercato_core::{Error, Id, Millis};
use serde::{Deserialize, Serialize};

/// A registered receiver of events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: Id,
    pub url: String,
    pub description: Option<String>,
    /// Event patterns: `*`, exact types (`order.paid`) or prefixes (`order.`).
    pub events: Vec<String>,
    pub active: bool,
    /// The signing secret (`whsec_...`). Present only in the answer to
    /// [`Webhooks::create_endpoint`]; never readable afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What to change on an endpoint; `None` leaves a field as it is. An empty
/// description clears it.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub active: Option<bool>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or a retry.
    Pending,
    Delivered,
    /// Gave up after the last retry; `redeliver` tries again.
    Failed,
    /// The endpoint was deleted before it went out.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }
    /// The status stored as `s`.
    pub fn from_db(s: &str) -> DeliveryStatus {
        match s {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            "cancelled" => DeliveryStatus::Cancelled,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One event for one endpoint, with every attempt made to send it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: Id,
    pub endpoint_id: Id,
    pub event_id: i64,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Oldest first.
    pub attempts: Vec<Attempt>,
}

/// One HTTP request made for a delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based, counting every attempt of the delivery (manual redeliveries too).
    pub number: u32,
    pub started_at: Millis,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why there is no answer (timeout, connection refused), if it did not.
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What the webhooks domain does for the HTTP edge: endpoints that receive
/// the shop's events, and the deliveries made to them.
#[async_trait::async_trait]
pub trait Webhooks: Send + Sync {
    /// Registers an endpoint; the answer carries its signing secret, once.
    async fn create_endpoint(
        &self,
        url: &str,
        events: Vec<String>,
        description: Option<String>,
    ) -> Result<Endpoint, Error>;
    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, Error>;
    async fn get_endpoint(&self, id: Id) -> Result<Endpoint, Error>;
    async fn update_endpoint(&self, id: Id, patch: EndpointPatch) -> Result<Endpoint, Error>;
    /// Deletes an endpoint; its pending deliveries are cancelled.
    async fn delete_endpoint(&self, id: Id) -> Result<(), Error>;
    /// An endpoint's deliveries, newest first; the cursor of the next page.
    async fn list_deliveries(
        &self,
        endpoint_id: Id,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Delivery>, Option<String>), Error>;
    async fn get_delivery(&self, id: Id) -> Result<Delivery, Error>;
    /// Sends a delivery again, whatever its status.
    async fn redeliver(&self, delivery_id: Id) -> Result<Delivery, Error>;
}
