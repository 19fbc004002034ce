//! How far a read must have caught up, when it may be served by a replica.
//!
//! Two things set that floor, both as PostgreSQL WAL positions (LSNs) of
//! one database:
//! - **Read-your-writes.** A request runs inside a [`session`] that starts
//!   from the positions the client sent back (the `Mercato-Read-After`
//!   header or cookie) and learns the commit position of every write the
//!   request makes; the edge hands the result back to the client. A read in
//!   the session goes to a replica only if that replica has replayed the
//!   session's position for its database.
//! - **Cache fills.** A cache filling a key wraps its load in [`fill`] with
//!   the position of the last invalidation of that key it has seen, so a
//!   replica read never stores in the cache a value older than one the cache
//!   was told is gone.

use std::future::Future;
use std::sync::Arc;

/// Entries a client's token may carry; more are ignored (one per database
/// is all a shop has).
const MAX_ENTRIES: usize = 16;

/// Commit positions per database (by the name of its [`Db`](super::Db)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadAfter(Vec<(String, u64)>);

impl ReadAfter {
    /// Parses a client's token, `name~hexlsn` entries joined by `.`.
    /// Anything malformed is dropped: a token only ever sends reads to the
    /// primary, so a bad one costs the client freshness it asked for, not
    /// correctness.
    pub fn parse(token: &str) -> ReadAfter {
        let mut out = ReadAfter::default();
        for entry in token.split('.').take(MAX_ENTRIES) {
            let Some((name, lsn)) = entry.split_once('~') else { continue };
            let name_ok = !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase());
            if let (true, Ok(lsn)) = (name_ok, u64::from_str_radix(lsn, 16)) {
                out.raise(name, lsn);
            }
        }
        out
    }

    /// Adds `other`'s positions, keeping the higher of each.
    pub fn merge(&mut self, other: &ReadAfter) {
        for (name, lsn) in &other.0 {
            self.raise(name, *lsn);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token to hand back to the client.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (name, lsn)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(&format!("{name}~{lsn:X}"));
        }
        out
    }

    pub fn get(&self, db: &str) -> u64 {
        self.0.iter().find(|(n, _)| n == db).map_or(0, |(_, l)| *l)
    }

    fn raise(&mut self, db: &str, lsn: u64) -> bool {
        match self.0.iter_mut().find(|(n, _)| n == db) {
            Some((_, l)) if *l >= lsn => false,
            Some((_, l)) => {
                *l = lsn;
                true
            }
            None => {
                self.0.push((db.to_string(), lsn));
                true
            }
        }
    }
}

struct Session {
    after: parking_lot::Mutex<ReadAfter>,
    moved: std::sync::atomic::AtomicBool,
}

tokio::task_local! {
    static SESSION: Arc<Session>;
    static FILL: (Arc<str>, u64);
}

/// Runs `fut` (one client request) as a read-your-writes session starting
/// from `start`. Returns its output and, if the request wrote to a database
/// that has replicas, the token the client should send with its next
/// requests.
pub async fn session<F: Future>(start: ReadAfter, fut: F) -> (F::Output, Option<ReadAfter>) {
    let s = Arc::new(Session { after: parking_lot::Mutex::new(start), moved: Default::default() });
    let out = SESSION.scope(s.clone(), fut).await;
    let moved = s.moved.load(std::sync::atomic::Ordering::Relaxed);
    (out, moved.then(|| s.after.lock().clone()))
}

/// Runs `fut` (a cache's load of one key from `db`) so that replica reads in
/// it see at least `lsn`.
pub async fn fill<F: Future>(db: Arc<str>, lsn: u64, fut: F) -> F::Output {
    if lsn == 0 {
        return fut.await;
    }
    FILL.scope((db, lsn), fut).await
}

/// A write to `db` committed at `lsn`: the session's next reads of `db` must
/// see it.
pub(crate) fn committed(db: &str, lsn: u64) {
    let _ = SESSION.try_with(|s| {
        if s.after.lock().raise(db, lsn) {
            s.moved.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
}

/// The positions a read of `db` made here must have caught up to: the
/// session's (read-your-writes) and the cache fill's (0: any).
pub(crate) fn floors(db: &str) -> (u64, u64) {
    let session = SESSION.try_with(|s| s.after.lock().get(db)).unwrap_or(0);
    let fill = FILL.try_with(|(name, lsn)| if &**name == db { *lsn } else { 0 }).unwrap_or(0);
    (session, fill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_entries_are_dropped() {
        let t = ReadAfter::parse("catalog~16B374D848.orders~0.BAD~12.x~zz.platform");
        assert_eq!(t.get("catalog"), 0x0016_B374_D848);
        assert_eq!(t.get("orders"), 0);
        assert_eq!(t.get("platform"), 0);
        assert_eq!(ReadAfter::parse(&t.encode()), t);
        assert!(ReadAfter::parse("").is_empty());
    }

    #[tokio::test]
    async fn a_session_learns_its_commits_and_keeps_the_highest() {
        let ((), out) = session(ReadAfter::parse("catalog~10"), async {
            committed("catalog", 0x8);
            assert_eq!(floors("catalog"), (0x10, 0));
            committed("orders", 0x20);
            assert_eq!(floors("orders"), (0x20, 0));
            fill("orders".into(), 0x30, async { assert_eq!(floors("orders"), (0x20, 0x30)) }).await;
        })
        .await;
        let out = out.expect("a write moved the session");
        assert_eq!((out.get("catalog"), out.get("orders")), (0x10, 0x20));
        let ((), untouched) = session(ReadAfter::default(), async { assert_eq!(floors("catalog"), (0, 0)) }).await;
        assert!(untouched.is_none());
    }
}
