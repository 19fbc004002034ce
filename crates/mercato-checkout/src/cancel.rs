//! Cancelling, expiring and refunding an order: the orders domain moves it,
//! then what it held comes back (stock and coupon uses of an unpaid order;
//! the money and the units of a paid one). The `order.cancelled`
//! subscribers of inventory and promotions repeat the give-back after a
//! crash, so a move that committed is never left holding anything.

use crate::CheckoutService;
use mercato_contracts::orders::{CancelledBy, Order, OrderStatus};
use mercato_core::{Error, Id};

impl CheckoutService {
    pub(crate) async fn cancel_for_customer(&self, customer: Id, id: Id) -> Result<Order, Error> {
        let orders = &self.inner.orders;
        let order = orders.get_for(customer, id).await?;
        if order.status != OrderStatus::PendingPayment {
            return Err(Error::illegal_transition(order.status.as_str(), "cancel"));
        }
        orders.cancel(id, CancelledBy::Customer).await?;
        self.release_holds(id).await?;
        orders.get(id).await
    }

    /// An unpaid order releases its stock; a paid one is refunded in full
    /// and its units go back on the shelf.
    pub(crate) async fn cancel_for_admin(&self, id: Id, reason: Option<String>) -> Result<Order, Error> {
        let orders = &self.inner.orders;
        let from = orders.cancel(id, CancelledBy::Admin { reason: reason.clone() }).await?;
        if from == OrderStatus::Paid {
            let order = orders.get(id).await?;
            let remaining = order.total.amount - order.refunded.amount;
            if remaining > 0 {
                self.inner.payments.refund(id, Some(remaining), reason.as_deref().unwrap_or("order cancelled")).await?;
                orders.record_refund(id, remaining).await?;
            }
            self.inner.inventory.restock(id).await?;
        } else {
            self.release_holds(id).await?;
        }
        orders.get(id).await
    }

    /// Refunds `amount` (None: everything not yet refunded) through the
    /// payments domain, then records it on the order.
    pub(crate) async fn refund_order(
        &self,
        id: Id,
        amount: Option<i64>,
        reason: Option<String>,
    ) -> Result<Order, Error> {
        let orders = &self.inner.orders;
        let amount = orders.refundable(id, amount).await?;
        self.inner.payments.refund(id, Some(amount), reason.as_deref().unwrap_or("refund")).await?;
        orders.record_refund(id, amount).await?;
        orders.get(id).await
    }

    /// Cancels unpaid order `id` whose payment window closed, and gives back
    /// what it held; false if it had moved on.
    pub(crate) async fn expire(&self, id: Id) -> Result<bool, Error> {
        if !self.inner.orders.expire(id).await? {
            return Ok(false);
        }
        self.release_holds(id).await?;
        Ok(true)
    }

    /// What an unpaid order held comes back: its stock and its coupon uses.
    async fn release_holds(&self, id: Id) -> Result<(), Error> {
        if self.inner.orders.flash_sale_of(id).await?.is_some() {
            // The unit goes back to its sale: the flash-sale domain does that
            // when it hears `order.cancelled`.
            return Ok(());
        }
        self.inner.inventory.release(id).await?;
        self.inner.promotions.release(id).await
    }
}
