//! Paying an order: a lease claims the order while the payments domain
//! charges, so neither a cancel nor expiry slips in between "unpaid" and
//! "charged"; then the order is marked paid and its held units sold, however
//! the success is reported (the synchronous answer, a webhook, the
//! `payment.succeeded` event, reconciliation), and a payment that landed on a
//! cancelled order is refunded.

use crate::CheckoutService;
use mercato_contracts::orders::{Marked, OrderStatus, PaidOutcome, PaymentResult};
use mercato_contracts::payments::{PayOutcome, PaymentStatus};
use mercato_core::{Error, Id};
use mercato_platform::steps::{self, Step};
use mercato_platform::{KeepAlive, now_ms};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

impl CheckoutService {
    /// Pays `customer`'s order with a test card.
    pub(crate) async fn pay_order(
        &self,
        customer: Id,
        id: Id,
        card_number: &str,
        key: Option<&str>,
    ) -> Result<PaymentResult, Error> {
        let orders = &self.inner.orders;
        let order = orders
            .payable(id)
            .await?
            .filter(|o| o.customer_id == customer)
            .ok_or_else(|| Error::not_found("order not found"))?;
        if order.status != OrderStatus::PendingPayment {
            // The HTTP layer replays a keyed request's stored answer; this
            // covers a retry whose first attempt charged the card but whose
            // instance died before that answer was stored.
            if let Some(key) = key
                && let Some(payment) = self.inner.payments.by_request(id, key).await?
                && payment.status == PaymentStatus::Succeeded
            {
                return Ok(PaymentResult::Paid(payment));
            }
            return Err(Error::illegal_transition(order.status.as_str(), "pay"));
        }
        if order.payment_due_at.is_some_and(|due| due <= now_ms()) {
            self.expire(id).await?;
            return Err(Error::illegal_transition("cancelled", "pay")
                .with_details(serde_json::json!({ "reason": "payment window closed" })));
        }
        // The order is claimed (a lease, so one payment runs at a time and
        // neither a cancel nor the expiry sweeper slips in) as the payments
        // domain starts the attempt: with it, where they share a database.
        let leased = Arc::new(AtomicBool::new(false));
        let claim = orders.lease_payment_step(id, leased.clone());
        let (then, marked) = self.settle_steps(id)?;
        // The claim is brief and renewed while the charge runs: should this
        // process die, the customer may pay again within one lease.
        let renewal = {
            let (orders, leased) = (orders.clone(), leased.clone());
            KeepAlive::start(orders.claim_lease() / 3, "payment claim", move || {
                let (orders, leased) = (orders.clone(), leased.clone());
                async move {
                    if leased.load(Ordering::Acquire) {
                        orders.renew_payment_lease(id).await?;
                    }
                    Ok(())
                }
            })
        };
        let paid = self.inner.payments.pay(id, order.total, card_number, key, vec![claim], then).await;
        renewal.stop().await;
        match paid {
            Ok(PayOutcome::Succeeded(payment)) => {
                // Marked paid with the payment's record where orders and
                // payments share a database; otherwise, or if that part
                // failed, here. Idempotent: an order a webhook already marked
                // paid stays as it is, and a crash before this is mended by
                // the `payment.succeeded` subscriber.
                let settled = marked.settled.lock().take();
                let refunded = match settled {
                    Some(outcome) => self.after_paid(id, outcome).await?,
                    None => self.settle_paid(id).await?,
                };
                if refunded {
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
                // claimed any more. A claim refused (another payment holds
                // it) is not ours to release.
                if leased.load(Ordering::Acquire) {
                    let _ = orders.release_payment_lease(id).await;
                }
                Err(e)
            }
        }
    }

    /// Marks the order paid once its payment succeeded (from the synchronous
    /// answer, a webhook or reconciliation). Idempotent. A payment that lands
    /// on an order already cancelled is refunded.
    pub(crate) async fn settle(&self, id: Id) -> Result<(), Error> {
        // The synchronous answer, the webhook and the `payment.succeeded`
        // event all report one payment: after the first, a read shows the
        // order paid and no write is queued.
        let status = self.inner.orders.status(id).await?;
        if !matches!(status, Some(OrderStatus::PendingPayment | OrderStatus::Cancelled)) {
            return Ok(());
        }
        self.settle_paid(id).await.map(drop)
    }

    /// Marks the order paid and sells its held units: one transaction when
    /// orders and inventory share a database (otherwise the `order.paid`
    /// subscriber sells them should this process stop in between). A payment
    /// that landed on a cancelled order is refunded instead (then `true`).
    async fn settle_paid(&self, id: Id) -> Result<bool, Error> {
        let (steps, marked) = self.settle_steps(id)?;
        steps::run(steps).await.map_err(|h| h.error)?;
        let outcome = marked.settled.lock().take().unwrap_or(PaidOutcome::Nothing);
        self.after_paid(id, outcome).await
    }

    /// The steps that follow a succeeded payment of order `id`: mark it paid,
    /// then sell its held units if this marked it.
    fn settle_steps(&self, id: Id) -> Result<(Vec<Step>, Arc<Marked>), Error> {
        let marked = Arc::new(Marked::default());
        let mark = self.inner.orders.mark_paid_step(id, marked.clone())?;
        // Only units of an order this payment paid: a cancelled order's
        // units go back to stock.
        let seen = marked.clone();
        let sell = self.inner.inventory.commit_step(id).only_if(move || *seen.seen.lock() == PaidOutcome::Paid);
        Ok((vec![mark, sell], marked))
    }

    /// A payment that landed on a cancelled order is refunded (then `true`).
    async fn after_paid(&self, id: Id, outcome: PaidOutcome) -> Result<bool, Error> {
        if outcome != PaidOutcome::Refund {
            return Ok(false);
        }
        tracing::warn!(order_id = %id, "payment succeeded for a cancelled order; refunding");
        let refund = self.inner.payments.refund(id, None, "payment settled after the order was cancelled").await?;
        self.inner.orders.record_refund(id, refund.amount.amount).await?;
        Ok(true)
    }
}
