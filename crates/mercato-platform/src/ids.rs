//! Time-ordered 63-bit ids: 41 bits of milliseconds since 2025-01-01, 10 bits of
//! node, 12 bits of sequence. The node number is leased from the database so
//! that two instances never mint the same id, without any coordinator.
//!
//! A lease protects only while its holder honours it, so a generator mints
//! only while its lease is valid by its own reckoning and refuses otherwise
//! (the HTTP edge answers 503): an instance that cannot renew its lease stops
//! minting before another instance may take the node over.

use crate::{Db, now_ms, params};
use mercato_core::{Error, Id};
use parking_lot::Mutex;
use std::sync::{Arc, Weak};
use std::time::Duration;

const EPOCH_MS: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const MAX_NODE: i64 = (1 << NODE_BITS) - 1;
const MAX_SEQ: i64 = (1 << SEQ_BITS) - 1;

/// When `id` was minted, in Unix milliseconds (read back from its top bits).
pub fn minted_at_ms(id: Id) -> i64 {
    (id.0 >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
}

/// The node that minted `id` (read back from its middle bits).
pub fn node_of(id: Id) -> i64 {
    (id.0 >> SEQ_BITS) & MAX_NODE
}

/// How many low bits of a sharded id (see [`IdGen::next_in_shard`]) name its
/// logical shard: at most 256 logical shards.
pub const SHARD_BITS: u32 = 8;
const SHARD_MASK: i64 = (1 << SHARD_BITS) - 1;

/// The logical shard a sharded id was minted in (its low bits).
pub fn shard_of(id: Id) -> u16 {
    (id.0 & SHARD_MASK) as u16
}

/// The smallest id minted at or after `unix_ms`.
pub fn first_id_at(unix_ms: i64) -> Id {
    Id((unix_ms - EPOCH_MS).max(0) << (NODE_BITS + SEQ_BITS))
}

/// When id `id` was minted (milliseconds since 1970), to the millisecond.
pub fn time_of(id: i64) -> i64 {
    (id >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
}

/// How long a node lease lasts, and how early its holder gives it up.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTerms {
    /// How far ahead of the holder's clock each lease or renewal sets
    /// `expires_at`. Renewed every third of it.
    pub duration: Duration,
    /// How long before the `expires_at` it last wrote a generator stops
    /// minting. Another instance judges the lease expired by its own clock
    /// against the `expires_at` we wrote, so this must exceed the clock skew
    /// between instances, or it could take the node over while we still
    /// mint on it.
    pub margin: Duration,
}

impl Default for LeaseTerms {
    fn default() -> Self {
        LeaseTerms { duration: Duration::from_secs(60), margin: Duration::from_secs(5) }
    }
}

impl LeaseTerms {
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }
    /// After a failed renewal or lease: often enough to win the lease back
    /// well before it lapses, rarely enough not to hammer a database that is
    /// down.
    fn retry_every(&self) -> Duration {
        self.duration / 12
    }
    fn duration_ms(&self) -> i64 {
        self.duration.as_millis() as i64
    }
    fn margin_ms(&self) -> i64 {
        self.margin.as_millis() as i64
    }
}

/// Mints ids. Cheap to clone; clones share one node and one sequence.
#[derive(Clone)]
pub struct IdGen {
    state: Arc<Mutex<State>>,
}

struct State {
    /// None from the moment a renewal finds the node taken over until a new
    /// node is leased.
    node: Option<i64>,
    /// Unix ms from which no id may be stamped on `node`.
    valid_until: i64,
    /// The (milliseconds since the epoch, sequence) of the last id minted on
    /// any node. Kept across a switch of node, so the generator's ids keep
    /// increasing and it can never repeat one of its own, even on a node it
    /// held before.
    last_ms: i64,
    seq: i64,
}

impl IdGen {
    /// A generator for a fixed node, for tests and single-use tools. It holds
    /// no lease and never refuses.
    pub fn with_node(node: i64) -> IdGen {
        IdGen::on(node & MAX_NODE, i64::MAX)
    }

    fn on(node: i64, valid_until: i64) -> IdGen {
        IdGen { state: Arc::new(Mutex::new(State { node: Some(node), valid_until, last_ms: 0, seq: 0 })) }
    }

    /// Leases a free node number in `db` and keeps the lease alive in the
    /// background while any clone of the generator lives.
    pub async fn lease(db: &Db) -> Result<IdGen, Error> {
        IdGen::lease_with(db, LeaseTerms::default()).await
    }

    /// [`IdGen::lease`] on other terms (tests use leases of a second or so).
    pub async fn lease_with(db: &Db, terms: LeaseTerms) -> Result<IdGen, Error> {
        assert!(
            terms.margin + terms.renew_every() < terms.duration,
            "an id node lease of {:?} with a margin of {:?} would lapse between renewals",
            terms.duration,
            terms.margin
        );
        let (node, holder, expires_at) = acquire(db, terms).await?;
        let generator = IdGen::on(node, expires_at - terms.margin_ms());
        // A weak handle, so the task ends with the last clone of the
        // generator instead of renewing a lease nobody mints on.
        tokio::spawn(keep_leased(Arc::downgrade(&generator.state), db.clone(), terms, node, holder));
        Ok(generator)
    }

    /// The node minted on now; None while the generator has none.
    pub fn node(&self) -> Option<i64> {
        self.state.lock().node
    }

    /// The next id, or `Unavailable` while the generator holds no valid lease
    /// on a node.
    pub fn next(&self) -> Result<Id, Error> {
        self.mint_at(now_ms(), None)
    }

    /// The next id whose low [`SHARD_BITS`] are `shard` ([`shard_of`] reads
    /// it back), so that the id alone says where its row lives. Taken from
    /// the same sequence as every other id (the sequence skips ahead to the
    /// next value ending in `shard`), so ids stay unique and increasing
    /// across kinds; a millisecond holds at least 16 of them per node.
    pub fn next_in_shard(&self, shard: u16) -> Result<Id, Error> {
        assert!(i64::from(shard) <= SHARD_MASK, "logical shard {shard} does not fit in {SHARD_BITS} bits");
        self.mint_at(now_ms(), Some(i64::from(shard)))
    }

    fn mint_at(&self, wall_ms: i64, low: Option<i64>) -> Result<Id, Error> {
        let mut s = self.state.lock();
        let Some(node) = s.node else {
            return Err(Error::unavailable(
                "cannot mint ids: this instance's id node was taken over and no new node is leased yet",
            ));
        };
        let mut ms = (wall_ms - EPOCH_MS).max(s.last_ms); // never step back with the clock
        let mut seq = if ms > s.last_ms { 0 } else { s.seq + 1 };
        if let Some(low) = low {
            // Up to the next sequence number ending in `low`.
            seq += (low - seq) & SHARD_MASK;
        }
        if seq > MAX_SEQ {
            // Sequence exhausted in this millisecond: borrow the next one.
            ms += 1;
            seq = low.unwrap_or(0);
        }
        // The id's own timestamp is checked, not only the clock: the node's
        // next holder mints from its clock at takeover, past `expires_at`, so
        // an id stamped later than that (after borrowed milliseconds or a
        // clock that stepped back) could collide with one of its ids.
        if ms + EPOCH_MS >= s.valid_until {
            return Err(Error::unavailable(if wall_ms >= s.valid_until {
                format!("cannot mint ids: the lease on id node {node} has lapsed (it could not be renewed)")
            } else {
                format!("cannot mint ids: ids on node {node} would be stamped past its lease (the clock stepped back)")
            }));
        }
        s.last_ms = ms;
        s.seq = seq;
        Ok(Id((ms << (NODE_BITS + SEQ_BITS)) | (node << SEQ_BITS) | seq))
    }

    /// The lease on the current node is valid until `valid_until`.
    fn renewed(&self, node: i64, valid_until: i64) {
        let mut s = self.state.lock();
        if s.node == Some(node) {
            s.valid_until = valid_until;
        }
    }

    fn lost(&self) {
        self.state.lock().node = None;
    }

    /// Mints on `node` from now on, in one step, so no id is ever stamped
    /// with one node under the other's lease.
    fn switch_to(&self, node: i64, valid_until: i64) {
        let mut s = self.state.lock();
        s.node = Some(node);
        s.valid_until = valid_until;
        // The next id takes a later millisecond than any minted before, so
        // ids stay increasing even when the new node's number is lower.
        s.seq = MAX_SEQ;
    }
}

/// Wins a node: the lowest whose lease has expired, or a number never used.
/// Returns the node, the holder token and the `expires_at` written.
async fn acquire(db: &Db, terms: LeaseTerms) -> Result<(i64, String, i64), Error> {
    let holder = crate::random_token();
    let h = holder.clone();
    let lease_ms = terms.duration_ms();
    let (node, expires_at) = db
        .write(move |tx| {
            // The upsert only takes a node still expired when it runs: on
            // PostgreSQL two instances leasing at once can pick the same
            // node, and the one that commits second must not take it from
            // the first. The loser looks again and sees the winner's row.
            for _ in 0..8 {
                let now = now_ms();
                let free = tx
                    .query_opt("SELECT node FROM id_nodes WHERE expires_at < $1 ORDER BY node LIMIT 1", params![now])?;
                let node = match free {
                    Some(row) => row.int(0)?,
                    None => {
                        let next =
                            tx.query_one("SELECT COALESCE(MAX(node) + 1, 0) FROM id_nodes", params![])?.int(0)?;
                        if next > MAX_NODE {
                            return Err(Error::unavailable("all 1024 id nodes are leased"));
                        }
                        next
                    }
                };
                let won = tx.execute(
                    "INSERT INTO id_nodes (node, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (node) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE id_nodes.expires_at < $4",
                    params![node, &h, now + lease_ms, now],
                )?;
                if won == 1 {
                    return Ok((node, now + lease_ms));
                }
            }
            Err(Error::unavailable("could not lease an id node: other instances took every candidate first"))
        })
        .await?;
    Ok((node, holder, expires_at))
}

/// Extends the lease; None when the node is no longer ours.
async fn renew(db: &Db, node: i64, holder: &str, terms: LeaseTerms) -> Result<Option<i64>, Error> {
    let h = holder.to_string();
    let lease_ms = terms.duration_ms();
    db.write(move |tx| {
        let expires_at = now_ms() + lease_ms;
        let n = tx.execute(
            "UPDATE id_nodes SET expires_at = $1 WHERE node = $2 AND holder = $3",
            params![expires_at, node, &h],
        )?;
        Ok((n == 1).then_some(expires_at))
    })
    .await
}

async fn keep_leased(state: Weak<Mutex<State>>, db: Db, terms: LeaseTerms, mut node: i64, mut holder: String) {
    let generator = || state.upgrade().map(|state| IdGen { state });
    let mut wait = terms.renew_every();
    loop {
        tokio::time::sleep(wait).await;
        if generator().is_none() {
            return;
        }
        wait = terms.renew_every();
        match renew(&db, node, &holder, terms).await {
            Ok(Some(expires_at)) => {
                if let Some(g) = generator() {
                    g.renewed(node, expires_at - terms.margin_ms());
                }
            }
            Ok(None) => {
                // Someone else holds the node: whatever we think of our
                // lease, not one more id on it.
                match generator() {
                    Some(g) => g.lost(),
                    None => return,
                }
                tracing::error!(node, "id node lease was taken over; no ids until a new node is leased");
                loop {
                    match acquire(&db, terms).await {
                        Ok((n, h, expires_at)) => {
                            let Some(g) = generator() else { return };
                            g.switch_to(n, expires_at - terms.margin_ms());
                            tracing::warn!(old = node, node = n, "leased a new id node");
                            (node, holder) = (n, h);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not lease a new id node; ids are refused meanwhile");
                            tokio::time::sleep(terms.retry_every()).await;
                            if generator().is_none() {
                                return;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                // Perhaps the database is down: try again soon. The lease we
                // hold stays ours until it expires; minting stops on its own
                // a margin before that.
                tracing::warn!(node, error = %e, "could not renew id node lease; retrying");
                wait = terms.retry_every();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_increasing_and_carry_the_node() {
        let g = IdGen::with_node(7);
        let mut last = 0;
        for _ in 0..20_000 {
            let id = g.next().unwrap().0;
            assert!(id > last);
            assert_eq!(node_of(Id(id)), 7);
            last = id;
        }
        let other = IdGen::with_node(8);
        assert_ne!(g.next().unwrap(), other.next().unwrap());
    }

    #[test]
    fn a_fixed_node_never_refuses_whatever_the_clock() {
        let g = IdGen::with_node(3);
        let now = now_ms();
        for wall in [now, now + 86_400_000, now + 30 * 365 * 86_400_000] {
            let id = g.mint_at(wall, None).expect("a fixed node never refuses");
            assert_eq!((node_of(id), minted_at_ms(id)), (3, wall));
        }
    }

    #[test]
    fn a_leased_node_refuses_from_the_end_of_its_validity() {
        let now = now_ms();
        let g = IdGen::on(5, now + 1_000);
        assert!(g.mint_at(now + 999, None).is_ok());
        let e = g.mint_at(now + 1_000, None).unwrap_err();
        assert_eq!(e.code, mercato_core::ErrorCode::Unavailable);
        assert!(e.message.contains("lapsed"), "{}", e.message);
        // Renewed: minting resumes on the same node.
        g.renewed(5, now + 5_000);
        assert_eq!(node_of(g.mint_at(now + 1_000, None).unwrap()), 5);
    }

    #[test]
    fn no_id_is_stamped_past_the_lease_even_with_the_clock_behind() {
        let now = now_ms();
        let g = IdGen::on(5, now + 10);
        // Exhaust ten milliseconds' worth of sequence at one clock reading:
        // the borrowed milliseconds reach the end of the lease.
        let minted = (0..20 * (MAX_SEQ + 1)).map_while(|_| g.mint_at(now, None).ok()).count() as i64;
        assert_eq!(minted, 10 * (MAX_SEQ + 1));
        let e = g.mint_at(now, None).unwrap_err();
        assert!(e.message.contains("stamped past"), "{}", e.message);
    }

    #[test]
    fn a_switch_never_mints_on_the_lost_node_and_ids_keep_increasing() {
        let now = now_ms();
        let g = IdGen::on(9, now + 60_000);
        let before: Vec<Id> = (0..100).map(|_| g.mint_at(now, None).unwrap()).collect();
        g.lost();
        assert!(g.mint_at(now, None).is_err());
        // A renewal of the lost node that was already under way changes nothing.
        g.renewed(9, now + 120_000);
        assert!(g.mint_at(now, None).is_err());
        g.switch_to(2, now + 60_000);
        let after: Vec<Id> = (0..100).map(|_| g.mint_at(now, None).unwrap()).collect();
        assert!(after.iter().all(|id| node_of(*id) == 2));
        let all: Vec<Id> = before.iter().chain(&after).copied().collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "ids went back at the switch");
    }

    #[test]
    fn sharded_ids_carry_their_shard_and_stay_unique_and_increasing_among_all_ids() {
        let g = IdGen::with_node(9);
        let now = EPOCH_MS + 50_000;
        let mut all = Vec::new();
        // Interleaved with plain ids, in one millisecond and past it.
        for i in 0..3_000u16 {
            let shard = ((u32::from(i) * 37) % 256) as u16;
            let id = g.mint_at(now, Some(i64::from(shard))).unwrap();
            assert_eq!(shard_of(id), shard);
            assert_eq!(node_of(id), 9);
            all.push(id);
            all.push(g.mint_at(now, None).unwrap());
        }
        assert!(all.windows(2).all(|w| w[0] < w[1]), "ids must keep increasing");
        let mut sorted = all.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
        // A millisecond holds at least 16 ids of one shard.
        let g = IdGen::with_node(1);
        let ids: Vec<Id> = (0..16).map(|_| g.mint_at(now, Some(200)).unwrap()).collect();
        assert!(ids.iter().all(|id| minted_at_ms(*id) == now && shard_of(*id) == 200));
    }
}
