//! The hot-path counter port and its in-process implementation.

use mercato_core::{Id, Millis};
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
    /// The counter does not know this sale (not loaded on this instance).
    Unknown,
}

/// What a counter needs to know about a sale.
#[derive(Debug, Clone)]
pub struct SaleWindow {
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub per_customer_limit: i64,
}

/// One atomic decision per purchase attempt: window, remaining units and the
/// customer's count, checked and updated together.
pub trait FlashStock: Send + Sync {
    /// (Re)loads a sale: `remaining` units and how many each customer holds.
    fn load(&self, sale: Id, window: SaleWindow, remaining: i64, held: HashMap<Id, i64>);
    fn try_acquire(&self, sale: Id, customer: Id, now: Millis) -> Acquire;
    /// Gives a unit back (an order was not paid, or its creation failed).
    fn release(&self, sale: Id, customer: Id);
    fn remaining(&self, sale: Id) -> Option<i64>;
}

struct Counter {
    window: SaleWindow,
    remaining: i64,
    held: HashMap<Id, i64>,
}

/// In-process counters, one small lock per sale (held for a few instructions,
/// never across I/O). Right for one instance; several instances share a
/// Redis-backed implementation of the same port.
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

impl FlashStock for LocalStock {
    fn load(&self, sale: Id, window: SaleWindow, remaining: i64, held: HashMap<Id, i64>) {
        self.sales.lock().insert(sale, Arc::new(Mutex::new(Counter { window, remaining, held })));
    }

    fn try_acquire(&self, sale: Id, customer: Id, now: Millis) -> Acquire {
        let Some(counter) = self.counter(sale) else { return Acquire::Unknown };
        let mut c = counter.lock();
        if now < c.window.starts_at {
            return Acquire::NotStarted;
        }
        if now >= c.window.ends_at {
            return Acquire::Ended;
        }
        if c.remaining <= 0 {
            return Acquire::SoldOut;
        }
        let limit = c.window.per_customer_limit;
        let held = c.held.entry(customer).or_insert(0);
        if *held >= limit {
            return Acquire::LimitReached;
        }
        *held += 1;
        c.remaining -= 1;
        Acquire::Granted
    }

    fn release(&self, sale: Id, customer: Id) {
        if let Some(counter) = self.counter(sale) {
            let mut c = counter.lock();
            if let Some(h) = c.held.get_mut(&customer)
                && *h > 0
            {
                *h -= 1;
                c.remaining += 1;
            }
        }
    }

    fn remaining(&self, sale: Id) -> Option<i64> {
        self.counter(sale).map(|c| c.lock().remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(limit: i64) -> SaleWindow {
        SaleWindow { starts_at: 100, ends_at: 200, per_customer_limit: limit }
    }

    #[test]
    fn grants_within_window_stock_and_limit_only() {
        let s = LocalStock::new();
        s.load(Id(1), window(2), 3, HashMap::new());
        assert_eq!(s.try_acquire(Id(1), Id(7), 99), Acquire::NotStarted);
        assert_eq!(s.try_acquire(Id(1), Id(7), 150), Acquire::Granted);
        assert_eq!(s.try_acquire(Id(1), Id(7), 150), Acquire::Granted);
        assert_eq!(s.try_acquire(Id(1), Id(7), 150), Acquire::LimitReached);
        assert_eq!(s.try_acquire(Id(1), Id(8), 150), Acquire::Granted);
        assert_eq!(s.try_acquire(Id(1), Id(9), 150), Acquire::SoldOut);
        s.release(Id(1), Id(8));
        assert_eq!(s.remaining(Id(1)), Some(1));
        assert_eq!(s.try_acquire(Id(1), Id(9), 200), Acquire::Ended);
        assert_eq!(s.try_acquire(Id(2), Id(9), 150), Acquire::Unknown);
        // Releasing for a customer who holds nothing gives nothing back.
        s.release(Id(1), Id(42));
        assert_eq!(s.remaining(Id(1)), Some(1));
    }

    #[test]
    fn concurrent_buyers_never_exceed_stock_or_limits() {
        let s = LocalStock::new();
        s.load(Id(1), window(1), 100, HashMap::new());
        let granted = std::sync::atomic::AtomicI64::new(0);
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (s, granted) = (&s, &granted);
                scope.spawn(move || {
                    for c in 0..500 {
                        // 4000 attempts by 500 distinct customers, each trying 8 times.
                        if s.try_acquire(Id(1), Id(c), 150 + t) == Acquire::Granted {
                            granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 100);
        assert_eq!(s.remaining(Id(1)), Some(0));
    }
}
