//! Moves of a placed order other than paying and refunding: the customer's
//! cancel, the admin's fulfil, complete and cancel, and the expiry of an
//! unpaid order, with the return of what an unpaid order held.

use crate::model::{Action, Order, OrderStatus};
use crate::service::OrdersService;
use crate::store::transition;
use mercato_core::{Error, ErrorCode, Id};
use mercato_platform::params;

impl OrdersService {
    async fn move_order(
        &self,
        id: Id,
        action: Action,
        required_from: Option<OrderStatus>,
        actor: &str,
        note: Option<String>,
    ) -> Result<(OrderStatus, OrderStatus), Error> {
        let hid = self.inner().ids.next()?;
        let actor = actor.to_string();
        let r = self
            .inner()
            .db
            .write(move |tx| transition(tx, hid, id, action, required_from, &actor, note.as_deref()))
            .await?;
        self.inner().bus.wake();
        Ok(r)
    }

    /// A customer cancels their own unpaid order; its stock comes back.
    pub async fn cancel_by_customer(&self, customer: Id, id: Id) -> Result<Order, Error> {
        let order = self.get_for(customer, id).await?;
        if order.status != OrderStatus::PendingPayment {
            return Err(Error::illegal_transition(order.status.as_str(), "cancel"));
        }
        self.move_order(id, Action::Cancel, Some(OrderStatus::PendingPayment), "customer", None).await?;
        self.release_holds(id).await?;
        self.get(id).await
    }

    pub(crate) async fn expire(&self, id: Id) -> Result<bool, Error> {
        match self.move_order(id, Action::Expire, None, "system", Some("payment window closed".into())).await {
            Ok(_) => {
                self.release_holds(id).await?;
                Ok(true)
            }
            Err(e) if e.code == ErrorCode::IllegalTransition => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// What an unpaid order held comes back: its stock and its coupon uses.
    /// (The `order.cancelled` subscriber does the same, for crash safety.)
    async fn release_holds(&self, id: Id) -> Result<(), Error> {
        let flash = self
            .inner()
            .db
            .lookup(move |tx| {
                Ok(tx
                    .query_opt("SELECT flash_sale_id FROM orders WHERE id = $1", params![id])?
                    .map(|r| r.opt_int(0))
                    .transpose()?
                    .flatten())
            })
            .await?;
        if flash.is_some() {
            // The unit goes back to its sale: the flash-sale domain does that
            // when it hears `order.cancelled`.
            return Ok(());
        }
        self.inner().inventory.release(id).await?;
        self.inner().promotions.release(id).await
    }

    pub async fn fulfil(&self, id: Id) -> Result<Order, Error> {
        self.move_order(id, Action::Fulfil, None, "admin", None).await?;
        self.get(id).await
    }

    pub async fn complete(&self, id: Id) -> Result<Order, Error> {
        self.move_order(id, Action::Complete, None, "admin", None).await?;
        self.get(id).await
    }

    /// Admin cancel: an unpaid order releases its stock; a paid one is refunded
    /// in full and its units go back on the shelf.
    pub async fn cancel_by_admin(&self, id: Id, reason: Option<String>) -> Result<Order, Error> {
        let (from, _) = self.move_order(id, Action::Cancel, None, "admin", reason.clone()).await?;
        if from == OrderStatus::Paid {
            let order = self.get(id).await?;
            let remaining = order.total.amount - order.refunded.amount;
            if remaining > 0 {
                self.inner()
                    .payments
                    .refund(id, Some(remaining), reason.as_deref().unwrap_or("order cancelled"))
                    .await?;
                self.add_refunded(id, remaining).await?;
            }
            self.inner().inventory.restock(id).await?;
        } else {
            self.release_holds(id).await?;
        }
        self.get(id).await
    }
}
