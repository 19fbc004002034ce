//! A Bloom filter of every product id, so that requests for ids that do not
//! exist (a scraper walking numbers, a broken link farm) are answered without
//! a database read, and without filling the cache with "not found" entries.
//!
//! Products are never deleted (archived at most), so the set only grows. Ids
//! minted in the last couple of minutes skip the filter: another instance may
//! have created them after our last refresh, and the negative cache still
//! keeps repeats away from the database.

use fastbloom::AtomicBloomFilter;
use mercato_core::{Error, Id};
use mercato_platform::ids::{first_id_at, minted_at_ms};
use mercato_platform::{Db, now_ms};
use parking_lot::RwLock;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How often ids created by other instances are added.
pub const REFRESH: Duration = Duration::from_secs(30);
/// Ids younger than this are let through unchecked (a few refreshes' worth).
const RECENT_MS: i64 = 120_000;
const FALSE_POSITIVE_RATE: f64 = 0.001;

pub struct Membership {
    filter: RwLock<Arc<AtomicBloomFilter>>,
    capacity: AtomicUsize,
    len: AtomicUsize,
}

fn build(ids: &[i64], capacity: usize) -> AtomicBloomFilter {
    let f = AtomicBloomFilter::with_false_pos(FALSE_POSITIVE_RATE).expected_items(capacity);
    for id in ids {
        f.insert(id);
    }
    f
}

async fn ids_since(db: &Db, from: Id) -> Result<Vec<i64>, Error> {
    db.read(move |tx| crate::store::product_ids_from(tx, from)).await
}

impl Membership {
    pub async fn load(db: &Db) -> Result<Membership, Error> {
        let ids = ids_since(db, Id(0)).await?;
        let capacity = (ids.len() * 2).max(100_000);
        Ok(Membership {
            filter: RwLock::new(Arc::new(build(&ids, capacity))),
            capacity: AtomicUsize::new(capacity),
            len: AtomicUsize::new(ids.len()),
        })
    }

    pub fn may_exist(&self, id: Id) -> bool {
        let age = now_ms() - minted_at_ms(id);
        // Clocks of instances differ a little; a far-future id is forged.
        if (-5_000..RECENT_MS).contains(&age) {
            return true;
        }
        self.filter.read().contains(&id.0)
    }

    pub fn insert(&self, id: Id) {
        self.filter.read().insert(&id.0);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds ids minted since a little before the recent window opened (so an
    /// id never leaves the window before it is in the filter); rebuilds the
    /// filter at twice the size when it is getting full, keeping its error rate.
    pub async fn refresh(&self, db: &Db) -> Result<(), Error> {
        if self.len.load(Ordering::Relaxed) * 10 > self.capacity.load(Ordering::Relaxed) * 9 {
            let ids = ids_since(db, Id(0)).await?;
            let capacity = ids.len() * 2;
            *self.filter.write() = Arc::new(build(&ids, capacity));
            self.capacity.store(capacity, Ordering::Relaxed);
            self.len.store(ids.len(), Ordering::Relaxed);
            return Ok(());
        }
        let since = first_id_at(now_ms() - RECENT_MS - 2 * REFRESH.as_millis() as i64);
        let filter = self.filter.read().clone();
        for id in ids_since(db, since).await? {
            filter.insert(&id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_platform::ids::IdGen;

    #[test]
    fn ids_never_minted_are_refused_and_fresh_ids_pass() {
        let ids: Vec<i64> = (1..=10_000).map(|i| i * 7919).collect();
        let m = Membership {
            filter: RwLock::new(Arc::new(build(&ids, 100_000))),
            capacity: AtomicUsize::new(100_000),
            len: AtomicUsize::new(ids.len()),
        };
        assert!(ids.iter().all(|i| m.may_exist(Id(*i))), "a Bloom filter has no false negatives");
        let refused = (1..=10_000i64).map(|i| i * 7919 + 1).filter(|i| !m.may_exist(Id(*i))).count();
        assert!(refused >= 9_900, "only {refused} of 10000 unknown ids refused");
        assert!(
            m.may_exist(IdGen::with_node(3).next().unwrap()),
            "an id minted just now may come from another instance"
        );
    }
}
