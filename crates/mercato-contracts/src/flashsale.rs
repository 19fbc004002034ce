//! The flash-sale domain's surface: its use cases ([`FlashSales`]), their
//! types and its events.

use crate::event;
use mercato_core::{Error, ErrorCode, Id, Millis, Money};
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

/// Where a purchase record stands: `Pending` from the buyer's grant until
/// its order exists, then `Active`; `Released` once its unit went back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseState {
    Pending,
    Active,
    Released,
}

/// A purchase: its order, the sale and the buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purchase {
    pub order_id: Id,
    pub sale_id: Id,
    pub customer_id: Id,
}

/// A buyer let through to write a purchase: by the counter (`counted`: its
/// grant goes back should the purchase fail), or by the database alone while
/// the counter is unreachable, holding one of a bounded number of places
/// until dropped.
pub struct Admission {
    pub sale: FlashSale,
    pub counted: bool,
    _place: Option<Box<dyn Send + Sync>>,
}

impl Admission {
    pub fn new(sale: FlashSale, counted: bool, place: Option<Box<dyn Send + Sync>>) -> Self {
        Admission { sale, counted, _place: place }
    }
}

/// The answer to a buyer who came too late.
pub fn sold_out() -> Error {
    Error::new(ErrorCode::SoldOut, "the flash sale has sold out")
}

/// What the flash-sale domain does: its sales, the counter that decides
/// who may buy, and the purchase records that are the truth behind it. The
/// purchase itself (a unit moved from the sale's allocation into the
/// order's reservation, then the order) spans domains: it is
/// `mercato_contracts::checkout::Checkout::purchase_flash`, which calls this
/// surface for the flash sale's part.
#[async_trait::async_trait]
pub trait FlashSales: Send + Sync {
    /// Checks a new sale's own fields (price, quantity, window, limit).
    fn check(&self, new: &NewFlashSale) -> Result<(), Error>;
    /// Records sale `id`, whose units the caller has already reserved from
    /// inventory under `id`, and loads its counter.
    async fn open(&self, id: Id, new: NewFlashSale) -> Result<FlashSale, Error>;
    /// A sale with its remaining units.
    async fn describe(&self, id: Id) -> Result<FlashSale, Error>;
    /// The order and state of `customer`'s purchase in `sale` made with `key`.
    async fn earlier(&self, sale: Id, customer: Id, key: &str) -> Result<Option<(Id, PurchaseState)>, Error>;
    /// Lets the buyer of order `order` try for one unit of `sale`, or says
    /// why not (sold out, limit reached, not started, ended, busy). Losers
    /// cost no database write.
    async fn admit(&self, sale: Id, order: Id, customer: Id) -> Result<Admission, Error>;
    /// Records a pending purchase within the customer's limit (enforced here
    /// whatever the counter said); refused while the key has one.
    async fn record(&self, purchase: Purchase, limit: i64, key: &str) -> Result<(), Error>;
    /// Marks a pending purchase active: its order exists.
    async fn activate(&self, order: Id) -> Result<(), Error>;
    /// Releases the purchase record of `order` from state `from`, with the
    /// customer's hold; the purchase if this call released it.
    async fn release(&self, order: Id, from: PurchaseState) -> Result<Option<Purchase>, Error>;
    /// Gives a released purchase's unit back to the counter. Best effort: the
    /// records already tell the truth, and the sweep repairs a counter that
    /// missed it.
    async fn give_back(&self, purchase: Purchase);
    /// Purchases left pending longer than a request takes (a crash).
    async fn stale_pending(&self) -> Result<Vec<Purchase>, Error>;
    /// Closes the sales that ended by `now`; their ids (their unsold
    /// allocations are the caller's to give back).
    async fn close_ended(&self, now: Millis) -> Result<Vec<Id>, Error>;
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
