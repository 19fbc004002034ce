//! Stage 7: a domain's rows split by customer over a fixed number of logical
//! shards, each logical shard held by one of several databases.
//!
//! Routing is client-side, as Taobao's TDDL and ShardingSphere-JDBC do it:
//! every database is an ordinary PostgreSQL (or the embedded one), and this
//! map says which holds what. A customer's logical shard is a fixed hash of
//! their id, and ids minted for sharded rows carry their logical shard in
//! their low bits ([`crate::ids::IdGen::next_in_shard`]), so a row is found
//! from its id alone, with no lookup table. The number of logical shards is
//! fixed for the life of the data (ids carry it); the databases holding them
//! may change, a logical shard at a time: the map is data (each database
//! records the shards it serves), read at start and again whenever a
//! database answers that a shard has moved away.

use crate::Db;
use crate::db::Dialect;
use crate::ids::{SHARD_BITS, shard_of};
use mercato_core::Id;
use parking_lot::RwLock;
use std::sync::Arc;

/// The most logical shards there can be: an id has [`SHARD_BITS`] for it.
pub const MAX_LOGICAL: u16 = 1 << SHARD_BITS;

/// The logical shard (of `logical`) that `customer`'s rows live in. A
/// mixing hash, so that customers with nearby ids (ids are time-ordered)
/// spread over every shard. Frozen: changing it would move every customer.
pub fn shard_of_customer(customer: Id, logical: u16) -> u16 {
    // splitmix64's finaliser.
    let mut z = customer.0 as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % u64::from(logical.max(1))) as u16
}

/// Which database holds each logical shard. Clones share the map, so a
/// move seen through one is seen through all.
#[derive(Clone)]
pub struct ShardRing {
    logical: u16,
    dbs: Vec<Db>,
    /// Logical shard to index in `dbs`.
    homes: Arc<RwLock<Vec<u16>>>,
}

impl ShardRing {
    /// Every logical shard in `db` (the embedded default, one database).
    pub fn single(db: Db, logical: u16) -> ShardRing {
        ShardRing::spread(vec![db], logical)
    }

    /// `logical` shards spread over `dbs` in contiguous, even ranges: with
    /// two databases, the first half of the shards in the first.
    pub fn spread(dbs: Vec<Db>, logical: u16) -> ShardRing {
        assert!(!dbs.is_empty(), "a shard ring needs a database");
        assert!((1..=MAX_LOGICAL).contains(&logical), "between 1 and {MAX_LOGICAL} logical shards");
        let m = dbs.len();
        let homes = (0..logical).map(|s| (usize::from(s) * m / usize::from(logical)) as u16).collect();
        ShardRing { logical, dbs, homes: Arc::new(RwLock::new(homes)) }
    }

    /// Where each logical shard lives now (index in [`Self::databases`]),
    /// as the databases' own records say.
    pub fn place(&self, homes: Vec<u16>) {
        assert_eq!(homes.len(), usize::from(self.logical), "a home for every logical shard");
        assert!(homes.iter().all(|&h| usize::from(h) < self.dbs.len()), "homes index the ring's databases");
        *self.homes.write() = homes;
    }

    /// The index in [`Self::databases`] of each logical shard's home.
    pub fn homes(&self) -> Vec<u16> {
        self.homes.read().clone()
    }

    /// Whether a shard can move between this ring's databases, so that every
    /// statement on a shard must first check (in its transaction) that the
    /// database it reached still serves it. Moves need PostgreSQL's logical
    /// replication, and a second database to move to.
    pub fn fenced(&self) -> bool {
        self.dbs.len() > 1 && self.dbs.iter().all(|d| d.dialect() == Dialect::Postgres)
    }

    pub fn logical(&self) -> u16 {
        self.logical
    }

    /// The logical shard of `customer`'s rows.
    pub fn shard_of_customer(&self, customer: Id) -> u16 {
        shard_of_customer(customer, self.logical)
    }

    /// The database holding `customer`'s rows.
    pub fn for_customer(&self, customer: Id) -> &Db {
        self.home(self.shard_of_customer(customer))
    }

    /// The database holding the row with id `id` (minted in its shard).
    pub fn for_id(&self, id: Id) -> &Db {
        self.home(self.shard_of_id(id))
    }

    /// The logical shard of a row minted with [`crate::ids::IdGen::next_in_shard`].
    pub fn shard_of_id(&self, id: Id) -> u16 {
        shard_of(id) % self.logical
    }

    /// The database holding logical shard `shard`.
    pub fn home(&self, shard: u16) -> &Db {
        let at = self.homes.read()[usize::from(shard)];
        &self.dbs[usize::from(at)]
    }

    /// Every database, once: what a query across customers must ask.
    pub fn databases(&self) -> &[Db] {
        &self.dbs
    }

    /// The logical shards `db` holds.
    pub fn shards_in(&self, db: &Db) -> Vec<u16> {
        (0..self.logical).filter(|&s| self.home(s).same(db)).collect()
    }

    /// The index of `db` in [`Self::databases`].
    pub fn index_of(&self, db: &Db) -> Option<usize> {
        self.dbs.iter().position(|d| d.same(db))
    }
}

/// The newest `limit` items of several lists, each newest first by `key`
/// (a k-way merge), and whether any list had more. For a listing across
/// shards: each database is asked for `limit + 1` items past the cursor,
/// and since keys (ids) are unique and ordered across all databases, the
/// last key returned is a cursor that pages exactly, however the rows are
/// spread and while new ones arrive (they sort before it).
pub fn merge_newest<T, K: Ord>(lists: Vec<Vec<T>>, limit: usize, key: impl Fn(&T) -> K) -> (Vec<T>, bool) {
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<T>>> =
        lists.into_iter().map(|l| l.into_iter().peekable()).collect();
    let mut out = Vec::with_capacity(limit);
    loop {
        let newest = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, h)| h.peek().map(|t| (i, key(t))))
            .max_by(|a, b| a.1.cmp(&b.1))
            .map(|(i, _)| i);
        let Some(i) = newest else { return (out, false) };
        if out.len() == limit {
            return (out, true);
        }
        out.extend(heads[i].next());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbOptions;

    #[test]
    fn customers_spread_evenly_and_their_shard_never_changes() {
        // Pinned: these must never change (they say where existing rows are).
        let pinned: Vec<u16> =
            [1i64, 2, 3, 1_000_000, 7_340_032_000_000_000].iter().map(|&c| shard_of_customer(Id(c), 256)).collect();
        assert_eq!(pinned, vec![229, 138, 240, 86, 88]);
        // Time-ordered ids (one node, consecutive) spread over every shard.
        let mut counts = [0u32; 256];
        let g = crate::ids::IdGen::with_node(3);
        for _ in 0..256 * 200 {
            counts[usize::from(shard_of_customer(g.next().unwrap(), 256))] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 120 && *max < 290, "uneven spread: min {min}, max {max} (mean 200)");
        assert!((0..4).all(|s| (0..1000).any(|c| shard_of_customer(Id(c), 4) == s)));
    }

    #[test]
    fn a_ring_spreads_shards_in_even_ranges_and_finds_rows_by_customer_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let open = |n: &str| Db::open_sqlite(&dir.path().join(format!("{n}.db")), n, DbOptions::default()).unwrap();
        let (a, b) = (open("a"), open("b"));
        let ring = ShardRing::spread(vec![a.clone(), b.clone()], 4);
        assert_eq!(ring.shards_in(&a), vec![0, 1]);
        assert_eq!(ring.shards_in(&b), vec![2, 3]);
        let g = crate::ids::IdGen::with_node(1);
        for c in 0..200 {
            let customer = Id(c);
            let shard = ring.shard_of_customer(customer);
            let order = g.next_in_shard(shard).unwrap();
            assert!(ring.for_id(order).same(ring.for_customer(customer)));
        }
        let one = ShardRing::single(a.clone(), 256);
        assert_eq!(one.shards_in(&a).len(), 256);
        assert_eq!(one.databases().len(), 1);
    }

    #[test]
    fn merging_pages_newest_first_is_exact_and_says_when_there_is_more() {
        let lists = vec![vec![9, 7, 2], vec![8, 3], vec![], vec![10, 1]];
        assert_eq!(merge_newest(lists.clone(), 3, |x| *x), (vec![10, 9, 8], true));
        assert_eq!(merge_newest(lists.clone(), 8, |x| *x), (vec![10, 9, 8, 7, 3, 2, 1], false));
        assert_eq!(merge_newest(lists, 7, |x| *x), (vec![10, 9, 8, 7, 3, 2, 1], false));
        assert_eq!(merge_newest(Vec::<Vec<i32>>::new(), 5, |x| *x), (vec![], false));
    }
}
