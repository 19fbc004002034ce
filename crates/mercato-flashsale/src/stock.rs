//! The hot-path counter port and its in-process implementation.

use mercato_core::{Error, Id, Millis};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    Granted,
    SoldOut,
    LimitReached,
    NotStarted,
    Ended,
    /// The counter does not know this sale (not loaded yet, or a shared
    /// counter lost its data): load it from the database and ask again.
    Unknown,
}

/// What a counter needs to know about a sale.
#[derive(Debug, Clone)]
pub struct SaleWindow {
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub per_customer_limit: i64,
}

/// A unit the database says is taken: a purchase record in state `pending`
/// or `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub order: Id,
    pub customer: Id,
}

/// A shared counter's state as seen just before the database is read for a
/// reconciliation: the units it counts as taken, a checksum over the orders
/// holding them (see [`checksum`]), and a fence that changes whenever a unit
/// is given back or the counter is reloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub taken: i64,
    pub checksum: i64,
    pub fence: String,
}

/// What a reconciliation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Grants added or dropped to match the database.
    Repaired(i64),
    /// The counter changed under the snapshot (a release, a reload) or is not
    /// loaded: nothing written; the next sweep looks again.
    Skipped,
}

/// A shared counter's grant that has no purchase record yet is presumed in
/// flight (the record is being written) for this long; after that its request
/// died, and a reconciliation drops it. Longer than any grant-to-insert gap
/// in practice; if one is slower anyway, the next reconciliation re-adds the
/// grant from its record, and meanwhile the database refuses the extra unit
/// the counter may grant. Clocks of instances must agree to well within it.
pub const IN_FLIGHT_GRACE_MS: i64 = 10_000;

/// Modulus of the order checksum: a prime below 2^30, so that sums of up to
/// a million residues stay exact in a database integer and in the doubles
/// Redis scripts compute with.
pub const CHECKSUM_MODULUS: i64 = 1_000_000_007;

/// Sum of the order ids modulo [`CHECKSUM_MODULUS`]: equal counts with equal
/// checksums mean the counter and the database agree on which orders hold
/// units, without shipping the lists to compare them.
pub fn checksum(orders: impl IntoIterator<Item = Id>) -> i64 {
    orders.into_iter().fold(0, |acc, o| (acc + o.0.rem_euclid(CHECKSUM_MODULUS)) % CHECKSUM_MODULUS)
}

/// One atomic decision per purchase attempt: window, remaining units and the
/// customer's count, checked and updated together.
///
/// The counter decides who may go on to the database; it never makes a sale
/// on its own. The inventory allocation (a conditional decrement) and the
/// per-customer hold row in `flash_holds` refuse what the counter wrongly
/// grants, so a counter that drifts, restarts or is unreachable can cost
/// throughput or a retry, never an oversold unit.
#[async_trait::async_trait]
pub trait FlashStock: Send + Sync {
    /// Loads a sale from a database snapshot, unless it is already loaded: a
    /// loaded counter has seen grants the snapshot may not yet show, so
    /// racing loaders must not overwrite each other.
    async fn load(&self, sale: Id, window: SaleWindow, quantity: i64, live: &[Holding]) -> Result<(), Error>;

    /// Takes a unit for `order` if the window, the remaining units and the
    /// customer's count allow it. An `Unavailable` error means the counter
    /// could not answer (the grant may or may not have been recorded).
    async fn try_acquire(&self, sale: Id, order: Id, customer: Id, now: Millis) -> Result<Acquire, Error>;

    /// Gives `order`'s unit back (an order was not paid, or its creation
    /// failed). Giving back a unit the counter does not hold does nothing.
    async fn release(&self, sale: Id, order: Id, customer: Id) -> Result<(), Error>;

    /// Units not taken, or `None` if the sale is not loaded.
    async fn remaining(&self, sale: Id) -> Result<Option<i64>, Error>;

    /// A counter shared between processes can miss a release (sent while it
    /// was unreachable) or a purchase (decided by the database meanwhile).
    /// `None`: nothing to reconcile (not loaded, or an in-process counter,
    /// which sees every grant and release of its only process).
    async fn probe(&self, _sale: Id) -> Result<Option<Probe>, Error> {
        Ok(None)
    }

    /// Brings the counter in line with the database, read after `probe`
    /// returned `seen`: `live` purchases hold units; `released` lists orders
    /// whose records were released recently (their grants must go, whatever
    /// their age).
    async fn reconcile(
        &self,
        _sale: Id,
        _seen: &Probe,
        _live: &[Holding],
        _released: &[Id],
        _now: Millis,
    ) -> Result<Reconciled, Error> {
        Ok(Reconciled::Skipped)
    }
}

struct Counter {
    window: SaleWindow,
    remaining: i64,
    held: HashMap<Id, i64>,
}

/// In-process counters, one small lock per sale (held for a few instructions,
/// never across I/O). Right for one instance; several instances share a
/// [`RedisStock`](crate::RedisStock).
#[derive(Default, Clone)]
pub struct LocalStock {
    sales: Arc<Mutex<HashMap<Id, Arc<Mutex<Counter>>>>>,
}

impl LocalStock {
    pub fn new() -> Self {
        Self::default()
    }

    fn counter(&self, sale: Id) -> Option<Arc<Mutex<Counter>>> {
        self.sales.lock().get(&sale).cloned()
    }
}

#[async_trait::async_trait]
impl FlashStock for LocalStock {
    async fn load(&self, sale: Id, window: SaleWindow, quantity: i64, live: &[Holding]) -> Result<(), Error> {
        let mut held: HashMap<Id, i64> = HashMap::new();
        for h in live {
            *held.entry(h.customer).or_insert(0) += 1;
        }
        let remaining = quantity - live.len() as i64;
        self.sales.lock().entry(sale).or_insert_with(|| Arc::new(Mutex::new(Counter { window, remaining, held })));
        Ok(())
    }

    async fn try_acquire(&self, sale: Id, _order: Id, customer: Id, now: Millis) -> Result<Acquire, Error> {
        let Some(counter) = self.counter(sale) else { return Ok(Acquire::Unknown) };
        let mut c = counter.lock();
        if now < c.window.starts_at {
            return Ok(Acquire::NotStarted);
        }
        if now >= c.window.ends_at {
            return Ok(Acquire::Ended);
        }
        if c.remaining <= 0 {
            return Ok(Acquire::SoldOut);
        }
        let limit = c.window.per_customer_limit;
        let held = c.held.entry(customer).or_insert(0);
        if *held >= limit {
            return Ok(Acquire::LimitReached);
        }
        *held += 1;
        c.remaining -= 1;
        Ok(Acquire::Granted)
    }

    async fn release(&self, sale: Id, _order: Id, customer: Id) -> Result<(), Error> {
        if let Some(counter) = self.counter(sale) {
            let mut c = counter.lock();
            if let Some(h) = c.held.get_mut(&customer)
                && *h > 0
            {
                *h -= 1;
                c.remaining += 1;
            }
        }
        Ok(())
    }

    async fn remaining(&self, sale: Id) -> Result<Option<i64>, Error> {
        Ok(self.counter(sale).map(|c| c.lock().remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(limit: i64) -> SaleWindow {
        SaleWindow { starts_at: 100, ends_at: 200, per_customer_limit: limit }
    }

    async fn acquire(s: &LocalStock, sale: i64, customer: i64, now: Millis) -> Acquire {
        s.try_acquire(Id(sale), Id(1000 + customer), Id(customer), now).await.unwrap()
    }

    #[tokio::test]
    async fn grants_within_window_stock_and_limit_only() {
        let s = LocalStock::new();
        s.load(Id(1), window(2), 3, &[]).await.unwrap();
        assert_eq!(acquire(&s, 1, 7, 99).await, Acquire::NotStarted);
        assert_eq!(acquire(&s, 1, 7, 150).await, Acquire::Granted);
        assert_eq!(acquire(&s, 1, 7, 150).await, Acquire::Granted);
        assert_eq!(acquire(&s, 1, 7, 150).await, Acquire::LimitReached);
        assert_eq!(acquire(&s, 1, 8, 150).await, Acquire::Granted);
        assert_eq!(acquire(&s, 1, 9, 150).await, Acquire::SoldOut);
        s.release(Id(1), Id(1008), Id(8)).await.unwrap();
        assert_eq!(s.remaining(Id(1)).await.unwrap(), Some(1));
        assert_eq!(acquire(&s, 1, 9, 200).await, Acquire::Ended);
        assert_eq!(acquire(&s, 2, 9, 150).await, Acquire::Unknown);
        // Releasing for a customer who holds nothing gives nothing back.
        s.release(Id(1), Id(1042), Id(42)).await.unwrap();
        assert_eq!(s.remaining(Id(1)).await.unwrap(), Some(1));
        // A second load (another request that also found it missing) keeps
        // the grants made since the first.
        s.load(Id(1), window(2), 3, &[]).await.unwrap();
        assert_eq!(s.remaining(Id(1)).await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_load_counts_live_purchases_per_customer() {
        let s = LocalStock::new();
        let live = [Holding { order: Id(11), customer: Id(7) }, Holding { order: Id(12), customer: Id(7) }];
        s.load(Id(1), window(2), 5, &live).await.unwrap();
        assert_eq!(s.remaining(Id(1)).await.unwrap(), Some(3));
        assert_eq!(acquire(&s, 1, 7, 150).await, Acquire::LimitReached);
        assert_eq!(acquire(&s, 1, 8, 150).await, Acquire::Granted);
    }

    #[test]
    fn concurrent_buyers_never_exceed_stock_or_limits() {
        let s = LocalStock::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(s.load(Id(1), window(1), 100, &[])).unwrap();
        let granted = std::sync::atomic::AtomicI64::new(0);
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (s, granted) = (&s, &granted);
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    for c in 0..500 {
                        // 4000 attempts by 500 distinct customers, each trying 8 times.
                        if rt.block_on(acquire(s, 1, c, 150 + t)) == Acquire::Granted {
                            granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 100);
        assert_eq!(rt.block_on(s.remaining(Id(1))).unwrap(), Some(0));
    }

    #[test]
    fn checksum_is_order_independent_and_sensitive_to_membership() {
        let a = checksum([Id(i64::MAX), Id(5), Id(CHECKSUM_MODULUS + 3)]);
        let b = checksum([Id(CHECKSUM_MODULUS + 3), Id(i64::MAX), Id(5)]);
        assert_eq!(a, b);
        assert_ne!(a, checksum([Id(i64::MAX), Id(6), Id(CHECKSUM_MODULUS + 3)]));
        assert_eq!(checksum([]), 0);
    }
}
