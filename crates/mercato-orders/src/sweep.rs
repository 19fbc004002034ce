//! Background upkeep, one pass at a time: overdue unpaid orders expire,
//! checkouts a crash left pending are given up, and payments a crash left open
//! are settled. (Forgetting finished checkout records is `checkout`'s
//! `purge_checkouts`, run by the hourly upkeep.)

use crate::service::OrdersService;
use mercato_core::Error;
use mercato_platform::{now_ms, params};

impl OrdersService {
    /// One pass of background upkeep: cancels overdue unpaid orders, releases
    /// stock held by checkouts that crashed and were never retried, and settles
    /// payments a crash left open. Safe to run on every instance at once.
    pub async fn sweep(&self) -> Result<usize, Error> {
        let now = now_ms();
        let overdue = self
            .inner()
            .db
            .read(move |tx| {
                tx.query(
                    "SELECT id FROM orders WHERE status = 'pending_payment' AND payment_due_at <= $1 ORDER BY payment_due_at LIMIT 200",
                    params![now],
                )?
                .iter()
                .map(|r| r.id(0))
                .collect::<Result<Vec<_>, _>>()
            })
            .await?;
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
