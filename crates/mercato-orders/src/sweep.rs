//! Background upkeep, one pass at a time: overdue unpaid orders expire,
//! checkouts a crash left pending are given up, and payments a crash left open
//! are settled. (Forgetting finished checkout records is `checkout`'s
//! `purge_checkouts`, run by the hourly upkeep.)

use crate::service::OrdersService;
use crate::store;
use mercato_core::Error;
use mercato_platform::now_ms;

impl OrdersService {
    /// One pass of background upkeep: cancels overdue unpaid orders, releases
    /// stock held by checkouts that crashed and were never retried, and settles
    /// payments a crash left open. Safe to run on every instance at once.
    pub async fn sweep(&self) -> Result<usize, Error> {
        let now = now_ms();
        let overdue = self.inner().db.read(move |tx| store::overdue(tx, now)).await?;
        let mut n = 0;
        for id in overdue {
            if self.expire(id).await? {
                n += 1;
            }
        }
        n += self.sweep_checkouts(now).await?;
        for payment in self.inner().payments.reconcile(10_000).await? {
            self.on_payment_succeeded(payment.order_id).await?;
            n += 1;
        }
        Ok(n)
    }
}
