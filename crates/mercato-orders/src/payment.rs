//! Paying an order: a lease claims the order while the payments domain
//! charges, so neither a cancel nor expiry slips in between "unpaid" and
//! "charged"; then the order is marked paid, however the success is reported
//! (the synchronous answer, a webhook, the `payment.succeeded` event,
//! reconciliation), and a payment that landed on a cancelled order is refunded.

use crate::model::{Action, OrderStatus};
use crate::service::OrdersService;
use crate::store::transition;
use mercato_contracts::orders::PaymentResult;
use mercato_contracts::payments::PayOutcome;
use mercato_core::{Error, ErrorCode, Id, Money};
use mercato_platform::{Tx, now_ms, params};

enum PaidOutcome {
    /// The order is now paid; its held units are to be sold.
    Paid,
    /// The payment landed on a cancelled order.
    Refund,
    Nothing,
}

/// The order is paid (its payment just succeeded). Already paid (a
/// duplicate report): nothing. Cancelled meanwhile: the payment must be
/// refunded. Its held units are sold by the inventory domain afterwards
/// (directly, and by the `order.paid` subscriber after a crash).
fn paid_in(tx: &mut dyn Tx, hid: Id, id: Id) -> Result<PaidOutcome, Error> {
    match transition(tx, hid, id, Action::Pay, None, "payment", None) {
        Ok(_) => Ok(PaidOutcome::Paid),
        Err(e) if e.code == ErrorCode::IllegalTransition => {
            let status = tx.query_one("SELECT status FROM orders WHERE id = $1", params![id])?.text(0)?;
            if status != "cancelled" {
                return Ok(PaidOutcome::Nothing);
            }
            // Cancelled after it was paid (an admin cancel, which refunds it
            // itself): this is a late report of the payment already applied,
            // not a payment that landed on a cancelled order.
            let was_paid = tx
                .query_opt("SELECT 1 FROM order_history WHERE order_id = $1 AND to_status = 'paid'", params![id])?
                .is_some();
            Ok(if was_paid { PaidOutcome::Nothing } else { PaidOutcome::Refund })
        }
        Err(e) => Err(e),
    }
}

/// Lets another payment of unpaid order `id` start at once.
fn release_payment_lease_in(tx: &mut dyn Tx, id: Id) -> Result<(), Error> {
    tx.execute(
        "UPDATE orders SET payment_lock_until = NULL WHERE id = $1 AND status = 'pending_payment'",
        params![id],
    )?;
    Ok(())
}

/// What paying an order needs to know of it.
struct Payable {
    customer_id: Id,
    status: OrderStatus,
    total: Money,
    payment_due_at: Option<i64>,
}

impl OrdersService {
    /// Pays `customer`'s order with a test card. The order is leased for the
    /// duration of the charge, so a cancel or the expiry sweeper cannot slip in
    /// between "the order is unpaid" and "the card was charged".
    pub async fn pay(&self, customer: Id, id: Id, card_number: &str) -> Result<PaymentResult, Error> {
        // Only what paying needs: the items and history of a full load are
        // two more queries on every payment.
        let order = self
            .inner()
            .db
            .lookup(move |tx| {
                let Some(r) = tx.query_opt(
                    "SELECT customer_id, status, total, currency, payment_due_at FROM orders WHERE id = $1",
                    params![id],
                )?
                else {
                    return Ok(None);
                };
                Ok(Some(Payable {
                    customer_id: r.id(0)?,
                    status: OrderStatus::parse(r.str(1)?)?,
                    total: Money::new(r.int(2)?, r.str(3)?.parse()?),
                    payment_due_at: r.opt_int(4)?,
                }))
            })
            .await?
            .filter(|o| o.customer_id == customer)
            .ok_or_else(|| Error::not_found("order not found"))?;
        if order.status != OrderStatus::PendingPayment {
            return Err(Error::illegal_transition(order.status.as_str(), "pay"));
        }
        if order.payment_due_at.is_some_and(|due| due <= now_ms()) {
            self.expire(id).await?;
            return Err(Error::illegal_transition("cancelled", "pay")
                .with_details(serde_json::json!({ "reason": "payment window closed" })));
        }
        let lease = self.inner().cfg.checkout_lease_ms as i64;
        // The order is claimed (a lease, so one payment runs at a time and
        // neither a cancel nor the expiry sweeper slips in) before the
        // payments domain starts the attempt.
        self.inner()
            .db
            .write(move |tx| {
                let now = now_ms();
                let locked = tx.execute(
                    "UPDATE orders SET payment_lock_until = $1 WHERE id = $2 AND status = 'pending_payment' \
                     AND (payment_lock_until IS NULL OR payment_lock_until < $3)",
                    params![now + lease, id, now],
                )?;
                if locked == 0 {
                    let status = tx.query_one("SELECT status FROM orders WHERE id = $1", params![id])?.text(0)?;
                    return Err(match status.as_str() {
                        "pending_payment" => {
                            Error::conflict("a payment for this order is already in progress").with_retry_after(2)
                        }
                        other => Error::illegal_transition(other, "pay"),
                    });
                }
                Ok(())
            })
            .await?;
        match self.inner().payments.pay(id, order.total, card_number).await {
            Ok(PayOutcome::Succeeded(payment)) => {
                // Idempotent: an order a webhook already marked paid stays
                // as it is. A crash before this commit is mended by the
                // `payment.succeeded` subscriber.
                let hid = self.inner().ids.next()?;
                let outcome = self.inner().db.write(move |tx| paid_in(tx, hid, id)).await?;
                self.inner().bus.wake();
                if self.after_paid(id, outcome).await? {
                    return Err(Error::illegal_transition("cancelled", "pay").with_details(
                        serde_json::json!({ "reason": "the order was cancelled; the payment was refunded" }),
                    ));
                }
                Ok(PaymentResult::Paid(payment))
            }
            // The lease stays until the webhook settles it or it runs out.
            Ok(PayOutcome::Processing(payment)) => Ok(PaymentResult::Processing(payment)),
            Err(e) => {
                // Declined (the customer may try again, or cancel, at once),
                // refused, or the provider unreachable: the order is not
                // claimed any more.
                let _ = self.inner().db.write(move |tx| release_payment_lease_in(tx, id)).await;
                Err(e)
            }
        }
    }

    /// Marks the order paid once its payment succeeded (from the synchronous
    /// answer, a webhook or reconciliation). Idempotent. A payment that lands
    /// on an order already cancelled is refunded.
    pub async fn on_payment_succeeded(&self, id: Id) -> Result<(), Error> {
        // The synchronous answer, the webhook and the `payment.succeeded`
        // event all report one payment: after the first, a read shows the
        // order paid and no write is queued.
        let status = self
            .inner()
            .db
            .lookup(move |tx| {
                tx.query_opt("SELECT status FROM orders WHERE id = $1", params![id])?.map(|r| r.text(0)).transpose()
            })
            .await?;
        if !matches!(status.as_deref(), Some("pending_payment") | Some("cancelled")) {
            return Ok(());
        }
        let hid = self.inner().ids.next()?;
        let outcome = self.inner().db.write(move |tx| paid_in(tx, hid, id)).await?;
        self.inner().bus.wake();
        self.after_paid(id, outcome).await?;
        Ok(())
    }

    /// What follows a committed [`paid_in`]: displayed stock, or the refund
    /// of a payment that landed on a cancelled order (then `true`).
    async fn after_paid(&self, id: Id, outcome: PaidOutcome) -> Result<bool, Error> {
        match outcome {
            PaidOutcome::Paid => {
                self.inner().inventory.commit(id).await?;
            }
            PaidOutcome::Refund => {
                tracing::warn!(order_id = %id, "payment succeeded for a cancelled order; refunding");
                let refund =
                    self.inner().payments.refund(id, None, "payment settled after the order was cancelled").await?;
                self.add_refunded(id, refund.amount.amount).await?;
                return Ok(true);
            }
            PaidOutcome::Nothing => {}
        }
        Ok(false)
    }
}
