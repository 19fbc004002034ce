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

use crate::db::{Dialect, Tx};
use crate::ids::{SHARD_BITS, shard_of};
use crate::steps::Step;
use crate::{Db, params};
use futures_util::future::try_join_all;
use mercato_core::{Error, ErrorCode, Id};
use parking_lot::RwLock;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A logical shard a database serves.
pub const SERVING: &str = "serving";
/// A shard being copied in by a move: its rows are not complete yet.
pub const INCOMING: &str = "incoming";
/// A shard that moved away: its rows, until deleted, are a stale copy.
pub const MOVED: &str = "moved";

/// How long a statement refused by a moving shard waits before asking the
/// map again; a move's freeze is a few of these.
const REROUTE_PAUSE: Duration = Duration::from_millis(20);
/// How many times it asks before the refusal reaches the client (about 2 s).
const MAX_REROUTES: u32 = 100;

// The map's table, `order_shards (shard, logical, state)`, is made by the
// orders' migrations: orders own the sharded rows, and the domains whose
// rows live with an order's (payments) share its shards and this map.

/// Refuses, with nothing written, when this database does not serve logical
/// shard `shard`: it moved away, or is still being copied in. Run first in
/// every transaction on a shard that can move. In a write, `FOR KEY SHARE`
/// holds the shard for the transaction: a move's freeze takes the record
/// `FOR UPDATE`, so it waits for the writes under way, and the writes after
/// it find the shard gone.
pub fn fence(tx: &mut dyn Tx, shard: u16, write: bool) -> Result<(), Error> {
    let sql = if write {
        "SELECT state FROM order_shards WHERE shard = $1 FOR KEY SHARE"
    } else {
        "SELECT state FROM order_shards WHERE shard = $1"
    };
    match tx.query_opt(sql, params![i64::from(shard)])? {
        Some(r) if r.str(0)? == SERVING => Ok(()),
        _ => Err(Error::new(ErrorCode::ShardMoved, format!("logical shard {shard} is not served by this database"))
            .with_retry_after(1)),
    }
}

/// Every shard record of a database: (shard, logical shards, state).
pub fn shard_records(tx: &mut dyn Tx) -> Result<Vec<(i64, i64, String)>, Error> {
    let rows = tx.query("SELECT shard, logical, state FROM order_shards ORDER BY shard", &[])?;
    rows.iter().map(|r| Ok((r.int(0)?, r.int(1)?, r.text(2)?))).collect()
}

/// Which rows a statement across a database's sharded rows may see. A
/// logical shard moved away leaves its rows behind until the move has
/// deleted them, and a shard on its way in is not yet complete: where
/// shards can move, sweeps and listings see only the shards served here.
#[derive(Clone, Copy, Debug)]
pub enum Serving {
    /// Every row (one database, or shards that cannot move).
    All,
    /// Only rows of the shards served here, of this many logical shards.
    Only(u16),
}

impl Serving {
    /// The SQL condition (starting with ` AND`) on `id_column`, an id minted
    /// in its shard, or nothing.
    pub fn only(self, id_column: &str) -> String {
        match self {
            Serving::All => String::new(),
            Serving::Only(logical) => format!(
                " AND {} IN (SELECT shard FROM order_shards WHERE state = 'serving')",
                shard_sql(id_column, logical)
            ),
        }
    }
}

/// SQL for the logical shard (of `logical`) of the id in `id_column`: what
/// [`ShardRing::shard_of_id`] computes.
pub fn shard_sql(id_column: &str, logical: u16) -> String {
    format!("({id_column} & {}) % {logical}", (1u32 << SHARD_BITS) - 1)
}

/// Every database's shard records, as read at one time.
pub struct Records {
    /// Per database (in ring order): (shard, logical, state).
    pub records: Vec<Vec<(i64, i64, String)>>,
}

impl Records {
    pub async fn read(ring: &ShardRing) -> Result<Records, Error> {
        let records = try_join_all(ring.databases().iter().map(|db| db.read(shard_records))).await?;
        Ok(Records { records })
    }

    /// The databases that record `shard` in `state`.
    pub fn in_state(&self, shard: i64, state: &str) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| self.records[i].iter().any(|(s, _, st)| *s == shard && st == state))
            .collect()
    }

    /// Each shard's home: the database serving it, or (while a move has it
    /// nowhere) `keep`'s, so statements keep finding out it is not there.
    pub fn homes_or(&self, logical: u16, keep: &[u16]) -> Vec<u16> {
        (0..logical)
            .map(|s| match self.in_state(i64::from(s), SERVING)[..] {
                [one] => one as u16,
                _ => keep[usize::from(s)],
            })
            .collect()
    }
}

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
    /// See [`Self::can_move`]: fixed with the databases, asked per statement.
    movable: bool,
    /// When the map was last read again (one reader at a time: a move sends
    /// every writer of the shard here at once).
    remapped: Arc<tokio::sync::Mutex<Instant>>,
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
        let movable = dbs.len() > 1 && dbs.iter().all(|d| d.dialect() == Dialect::Postgres);
        ShardRing {
            logical,
            movable,
            dbs,
            homes: Arc::new(RwLock::new(homes)),
            remapped: Arc::new(tokio::sync::Mutex::new(Instant::now())),
        }
    }

    /// Reads the map from the databases again and routes by it. Called at
    /// start and whenever a database answers that a shard is not there;
    /// concurrent callers share one reading.
    pub async fn remap(&self) -> Result<(), Error> {
        let asked = Instant::now();
        let mut last = self.remapped.lock().await;
        if *last > asked {
            return Ok(());
        }
        let records = Records::read(self).await?;
        self.place(records.homes_or(self.logical, &self.homes()));
        *last = Instant::now();
        Ok(())
    }

    /// What sweeps and listings across a database may see.
    pub fn serving(&self) -> Serving {
        if self.can_move() { Serving::Only(self.logical) } else { Serving::All }
    }

    /// `body` for a write transaction on logical shard `shard`, refusing
    /// first where shards can move and this database does not serve it.
    pub fn fenced<T, F>(
        &self,
        shard: u16,
        mut body: F,
    ) -> impl FnMut(&mut dyn Tx) -> Result<T, Error> + Clone + use<T, F>
    where
        F: FnMut(&mut dyn Tx) -> Result<T, Error> + Clone,
    {
        let fenced = self.can_move();
        move |tx| {
            if fenced {
                fence(tx, shard, true)?;
            }
            body(tx)
        }
    }

    /// `body` for a read on logical shard `shard`, fenced likewise.
    pub fn fenced_read<T, F>(&self, shard: u16, body: F) -> impl Fn(&mut dyn Tx) -> Result<T, Error> + Clone + use<T, F>
    where
        F: Fn(&mut dyn Tx) -> Result<T, Error> + Clone,
    {
        let fenced = self.can_move();
        move |tx| {
            if fenced {
                fence(tx, shard, false)?;
            }
            body(tx)
        }
    }

    /// A pause, then the map read again: for a statement its shard's
    /// database refused.
    async fn reroute(&self) -> Result<(), Error> {
        tokio::time::sleep(REROUTE_PAUSE).await;
        self.remap().await
    }

    /// Runs `op` on the database of logical shard `shard`, again where the
    /// shard is now when that database answers it moved.
    pub async fn on_shard<T, Fut>(&self, shard: u16, mut op: impl FnMut(Db) -> Fut) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut tries = 0;
        loop {
            match op(self.home(shard).clone()).await {
                Err(e) if e.code == ErrorCode::ShardMoved && tries < MAX_REROUTES => {
                    tries += 1;
                    self.reroute().await?;
                }
                other => return other,
            }
        }
    }

    /// A write transaction on shard `shard`.
    pub async fn write_on<T, F>(&self, shard: u16, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T, Error> + Clone + Send + 'static,
    {
        self.on_shard(shard, |db| {
            let body = self.fenced(shard, body.clone());
            async move { db.write(body).await }
        })
        .await
    }

    /// A bounded read of rows on shard `shard` (see [`Db::lookup`]).
    pub async fn lookup_on<T, F>(&self, shard: u16, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&mut dyn Tx) -> Result<T, Error> + Clone + Send + Sync + 'static,
    {
        self.on_shard(shard, |db| {
            let body = self.fenced_read(shard, body.clone());
            async move { db.lookup(body).await }
        })
        .await
    }

    /// A bounded read on shard `shard` that a replica may serve.
    pub async fn lookup_replica_on<T, F>(&self, shard: u16, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&mut dyn Tx) -> Result<T, Error> + Clone + Send + Sync + 'static,
    {
        self.on_shard(shard, |db| {
            let body = self.fenced_read(shard, body.clone());
            async move { db.lookup_replica(body).await }
        })
        .await
    }

    /// A step of a process on shard `shard`: fenced, and sent where the shard
    /// is now if it moves under the process.
    pub fn step_on<T, B, A>(&self, shard: u16, body: B, after: A) -> Step
    where
        T: Send + 'static,
        B: FnMut(&mut dyn Tx) -> Result<T, Error> + Clone + Send + 'static,
        A: FnOnce(T) + Send + 'static,
    {
        let step = Step::local(self.home(shard), self.fenced(shard, body), after);
        if !self.can_move() {
            return step;
        }
        let ring = self.clone();
        step.rerouted_by(Arc::new(move || {
            let ring = ring.clone();
            Box::pin(async move {
                ring.reroute().await?;
                Ok(ring.home(shard).clone())
            })
        }))
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
    pub fn can_move(&self) -> bool {
        self.movable
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
