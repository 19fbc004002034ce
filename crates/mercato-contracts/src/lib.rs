//! What the domains promise each other and the outside world: the events
//! each publishes, one Rust type per event with a schema version
//! ([`DomainEvent`]), and the vocabulary those events carry (order and
//! product statuses).
//!
//! A domain publishes its own events and subscribes to other domains' events
//! through this crate alone, so domains stand side by side: none depends on
//! another to hear from it. The JSON form of each type is public (outgoing
//! webhooks carry it as `data`, and the API docs list each schema): change a
//! type only by adding optional fields, or publish a new version.

pub mod cart;
pub mod catalog;
pub mod checkout;
pub mod customers;
pub mod flashsale;
pub mod inventory;
pub mod lines;
pub mod orders;
pub mod payments;
pub mod promotions;
pub mod webhooks;

pub use mercato_platform::events::{DomainEvent, Received};
use utoipa::openapi::{RefOr, schema::Schema};

/// Implements [`DomainEvent`] for a type published under one name.
macro_rules! event {
    ($ty:ident, aggregate $aggregate:literal, $name:literal, version $version:literal, |$e:ident| $id:expr) => {
        impl $crate::DomainEvent for $ty {
            const AGGREGATE: &'static str = $aggregate;
            const VERSION: u32 = $version;
            const TYPES: &'static [&'static str] = &[$name];
            fn event_type(&self) -> &'static str {
                $name
            }
            fn aggregate_id(&self) -> String {
                let $e = self;
                $id.to_string()
            }
        }
    };
}
pub(crate) use event;

/// One event type as the API docs show it.
pub struct EventDoc {
    /// The schema's name (the Rust type's).
    pub name: String,
    /// The names it is published under.
    pub types: &'static [&'static str],
    pub version: u32,
    pub schema: RefOr<Schema>,
    /// The schemas it refers to (statuses, money).
    pub refers_to: Vec<(String, RefOr<Schema>)>,
}

/// Every event type there is, for the API docs.
pub fn documented() -> Vec<EventDoc> {
    fn doc<T: utoipa::ToSchema + DomainEvent>() -> EventDoc {
        let mut refers_to = Vec::new();
        T::schemas(&mut refers_to);
        EventDoc { name: T::name().into_owned(), types: T::TYPES, version: T::VERSION, schema: T::schema(), refers_to }
    }
    vec![
        doc::<catalog::CategoryCreated>(),
        doc::<catalog::ProductCreated>(),
        doc::<catalog::ProductChanged>(),
        doc::<catalog::VariantPriceChanged>(),
        doc::<inventory::StockChanged>(),
        doc::<customers::CustomerRegistered>(),
        doc::<cart::CartConverted>(),
        doc::<orders::OrderPlaced>(),
        doc::<orders::OrderStatusChanged>(),
        doc::<orders::OrderRefundRecorded>(),
        doc::<payments::PaymentSucceeded>(),
        doc::<payments::PaymentRefunded>(),
        doc::<promotions::PromotionCreated>(),
        doc::<flashsale::FlashSaleCreated>(),
    ]
}

/// An amount of money as the JSON carries it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used
pub struct MoneySchema {
    /// In minor units (cents for USD, yen for JPY).
    amount: i64,
    /// ISO 4217, e.g. `USD`.
    currency: String,
}
