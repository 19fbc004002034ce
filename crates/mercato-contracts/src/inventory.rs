//! The inventory's surface: its use cases ([`Inventory`]), their types and
//! its events.

use crate::event;
use mercato_core::{Error, Id, Millis};
use mercato_platform::steps::Step;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adjustment {
    pub id: Id,
    pub delta: i64,
    pub available_after: i64,
    pub reason: String,
    pub actor: String,
    pub created_at: Millis,
}

/// One SKU and a quantity, for reservations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

/// What the inventory does for the HTTP edge and the other domains.
/// Reservations are keyed by the id of what they hold stock for (an order, a
/// flash sale's allocation), which makes every move idempotent.
#[async_trait::async_trait]
pub trait Inventory: Send + Sync {
    /// How long a displayed availability (and a page rendered from it) may be
    /// reused when no local write invalidated it.
    fn shown_ttl(&self) -> Duration;
    /// Moves whenever this instance invalidates `sku`'s displayed
    /// availability: views derived from it are current while it is unchanged
    /// and they are younger than [`shown_ttl`](Self::shown_ttl).
    fn shown_generation(&self, sku: &str) -> u64;
    /// Available units of each SKU, as customers are shown them (may lag a
    /// write by [`shown_ttl`](Self::shown_ttl)); an unknown SKU has 0.
    async fn available(&self, skus: &[String]) -> Result<HashMap<String, i64>, Error>;
    async fn stock(&self, sku: &str) -> Result<Stock, Error>;
    /// The newest adjustments of `sku`, newest first: the audit trail.
    async fn adjustments(&self, sku: &str, limit: i64) -> Result<Vec<Adjustment>, Error>;
    async fn set_available(&self, sku: &str, available: i64, reason: &str, actor: &str) -> Result<Stock, Error>;
    async fn adjust(&self, sku: &str, delta: i64, reason: &str, actor: &str) -> Result<Stock, Error>;
    /// Bulk import (seeding) of SKUs new to the inventory, each with its
    /// initial available units, recorded as an adjustment.
    async fn seed(&self, lines: Vec<(String, i64)>) -> Result<(), Error>;
    /// Holds stock for every line, or for none. Idempotent on `reservation`.
    async fn reserve(&self, reservation: Id, lines: &[Line]) -> Result<(), Error>;
    /// [`reserve`](Self::reserve) as a step of a process.
    fn reserve_step(&self, reservation: Id, lines: &[Line]) -> Step;
    /// Held units become sold, as a step of a process that holds them.
    fn commit_step(&self, reservation: Id) -> Step;
    /// Held units go back to available (cancelled or expired).
    async fn release(&self, reservation: Id) -> Result<bool, Error>;
    /// Gives up a reservation whether or not it was made yet: one made later
    /// holds nothing.
    async fn abandon(&self, reservation: Id) -> Result<bool, Error>;
    /// Sold units go back to available (a paid order cancelled before it shipped).
    async fn restock(&self, reservation: Id) -> Result<bool, Error>;
    /// Moves `quantity` units of `sku` from held reservation `from` into a new
    /// held reservation `to`. Idempotent on `to`.
    async fn split(&self, from: Id, to: Id, sku: &str, quantity: i64) -> Result<(), Error>;
    /// Gives held reservation `from` back to `into` (or to available if `into`
    /// has closed). Idempotent.
    async fn merge_back(&self, from: Id, into: Id) -> Result<bool, Error>;
}

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
