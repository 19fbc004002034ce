//! The surface of the processes that span domains: placing an order from
//! the cart, paying it, cancelling and refunding it, and the flash-sale
//! purchase. Each runs as steps
//! offered by the domains' own surfaces (orders, inventory, promotions,
//! cart, payments), so it works the same whether those domains share a
//! database or each has its own.

use crate::flashsale::{FlashSale, NewFlashSale};
use crate::orders::{Address, Order, PaymentResult, Placed};
use mercato_core::{Error, Id};

/// What the HTTP edge asks of an order's life where more than one domain
/// takes part.
#[async_trait::async_trait]
pub trait Checkout: Send + Sync {
    /// Turns the customer's cart into an order, at most once per
    /// Idempotency-Key (`fingerprint` identifies the request's body).
    async fn place(
        &self,
        customer: Id,
        address: Address,
        shipping_method: Option<String>,
        key: Option<String>,
        fingerprint: String,
    ) -> Result<Placed, Error>;
    /// Pays `customer`'s order `id` with the card. With the request's
    /// `Idempotency-Key`, a retry after its first answer was lost (the
    /// instance died after the charge) gets the payment back, even once the
    /// order is paid, rather than a refusal to pay a paid order.
    async fn pay(&self, customer: Id, id: Id, card_number: &str, key: Option<&str>) -> Result<PaymentResult, Error>;
    /// The order's payment succeeded (a provider's late confirmation):
    /// marks it paid, or refunds a payment that landed on a cancelled order.
    async fn on_payment_succeeded(&self, id: Id) -> Result<(), Error>;
    /// A customer cancels their own unpaid order; its stock comes back.
    async fn cancel_by_customer(&self, customer: Id, id: Id) -> Result<Order, Error>;
    /// An admin cancels an order: an unpaid one gives its stock back, a paid
    /// one is refunded in full and its units restocked.
    async fn cancel_by_admin(&self, id: Id, reason: Option<String>) -> Result<Order, Error>;
    /// Refunds `amount` (all that is left when None) of a paid order.
    async fn refund(&self, id: Id, amount: Option<i64>, reason: Option<String>) -> Result<Order, Error>;
    /// Creates a flash sale, its units taken from inventory at once so the
    /// sale can never sell stock that is not there.
    async fn create_flash_sale(&self, new: NewFlashSale) -> Result<FlashSale, Error>;
    /// One flash-sale purchase attempt: at most one unit, at the sale price,
    /// as a pending_payment order, once per Idempotency-Key. The order, and
    /// whether this was a replay of an earlier attempt with the key.
    async fn purchase_flash(
        &self,
        sale: Id,
        customer: Id,
        key: &str,
        address: Option<Address>,
    ) -> Result<(Order, bool), Error>;
}
