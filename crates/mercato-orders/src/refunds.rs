//! Refunds: an admin's refund through the payments domain, and the record of
//! any refund on the order (a full one moves a paid order to `refunded`).

use crate::model::{Action, Order, next};
use crate::service::OrdersService;
use crate::store;
use mercato_core::{Error, Id};

impl OrdersService {
    /// Refunds `amount` (None: everything not yet refunded) through the provider.
    pub async fn refund(&self, id: Id, amount: Option<i64>, reason: Option<String>) -> Result<Order, Error> {
        let order = self.get(id).await?;
        let remaining = order.total.amount - order.refunded.amount;
        let amount = amount.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            return Err(Error::field(
                "amount",
                format!("must be between 1 and {remaining} (the amount not yet refunded)"),
            ));
        }
        next(order.status, Action::Refund { full: amount == remaining })?;
        self.inner().payments.refund(id, Some(amount), reason.as_deref().unwrap_or("refund")).await?;
        self.add_refunded(id, amount).await?;
        self.get(id).await
    }

    pub(crate) async fn add_refunded(&self, id: Id, amount: i64) -> Result<(), Error> {
        let hid = self.inner().ids.next()?;
        self.inner().db.write(move |tx| store::add_refunded(tx, hid, id, amount)).await?;
        self.inner().bus.wake();
        Ok(())
    }
}
