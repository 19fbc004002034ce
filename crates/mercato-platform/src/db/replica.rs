//! Streaming replicas of one PostgreSQL database (stage 5): where reads that
//! tolerate staleness go, and when they must not.
//!
//! A monitor thread samples, every `check_interval`, the primary's WAL
//! position and how far each replica has replayed. From the primary's
//! recent positions it knows when the primary was where a replica is now,
//! which is that replica's lag in time. A replica is in rotation while it
//! answers and its lag is within `max_lag`.
//!
//! A read with a floor (see `consistency`: the client's own writes, or the
//! last invalidation of the key a cache is filling) goes to a replica in
//! rotation whose last sampled replay position is at or past the floor,
//! else to the primary. Replay only moves forward while a replica runs, so
//! a sample taken before the read is a lower bound of what the read sees. A
//! replica that fails a read is taken out of rotation at once and the read
//! runs again on the primary: callers see no error from a replica dying.

use super::DbError;
use super::pg::{PRIMARY_LSN, Pg, PgOptions, REPLAYED_LSN};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// A replica further behind than this is out of rotation.
    pub max_lag: Duration,
    /// How often the monitor samples positions: the primary serves a
    /// client's reads for up to about this long after its write.
    pub check_interval: Duration,
    pub pool_size: u32,
    pub statement_timeout_ms: u64,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            max_lag: Duration::from_secs(5),
            check_interval: Duration::from_millis(50),
            pool_size: 4,
            statement_timeout_ms: 5_000,
        }
    }
}

pub(crate) struct Member {
    /// `host:port/database`, for logs and metrics (never the password).
    pub label: String,
    pub pg: Pg,
    up: AtomicBool,
    replay: AtomicU64,
}

pub(crate) enum Route {
    Replica(usize),
    /// Why not a replica: `none` in rotation, or all `behind` the floor.
    Primary(&'static str),
}

pub(crate) struct Replicas {
    db: Arc<str>,
    pub members: Vec<Member>,
    next: AtomicUsize,
    /// The highest commit position of this process's writes (0: none yet).
    last_commit: AtomicU64,
    /// No replica serves a read before it has replayed this position: this
    /// process's migrations (without them a replica lacks tables or columns
    /// this code reads) and start-up writes (the demo catalog).
    fence: AtomicU64,
    commit_checked: AtomicBool,
    /// The primary's recent (time, position) samples, oldest first.
    history: Mutex<VecDeque<(Instant, u64)>>,
    opts: ReplicaOptions,
}

/// How long a read waits for a connection to a replica before counting it
/// as down: short, because the primary can answer instead.
const CONNECT_WAIT: Duration = Duration::from_millis(500);

impl Replicas {
    pub fn open(db: &str, urls: &[String], opts: ReplicaOptions) -> Result<Replicas, DbError> {
        let mut members = Vec::with_capacity(urls.len());
        for url in urls {
            members.push(Member {
                label: label(url),
                pg: Pg::open(
                    url,
                    &PgOptions {
                        pool_size: opts.pool_size,
                        statement_timeout_ms: opts.statement_timeout_ms,
                        connect_wait: CONNECT_WAIT,
                        ..PgOptions::default()
                    },
                )?,
                // In rotation only once the monitor has seen it replaying.
                up: AtomicBool::new(false),
                replay: AtomicU64::new(0),
            });
        }
        Ok(Replicas {
            db: db.into(),
            members,
            next: AtomicUsize::new(0),
            last_commit: AtomicU64::new(0),
            fence: AtomicU64::new(0),
            commit_checked: AtomicBool::new(false),
            history: Mutex::new(VecDeque::new()),
            opts,
        })
    }

    pub fn committed(&self, lsn: u64) {
        self.last_commit.fetch_max(lsn, Ordering::Relaxed);
    }

    pub fn last_commit(&self) -> u64 {
        self.last_commit.load(Ordering::Relaxed)
    }

    /// Every write this process has made so far becomes the fence.
    pub fn fence(&self) {
        self.fence.fetch_max(self.last_commit(), Ordering::Relaxed);
    }

    /// A replica (taking turns) that is in rotation and has replayed `floor`.
    pub fn pick(&self, floor: u64) -> Route {
        let floor = floor.max(self.fence.load(Ordering::Relaxed));
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut any_up = false;
        for i in 0..n {
            let k = (start + i) % n;
            let m = &self.members[k];
            if !m.up.load(Ordering::Acquire) {
                continue;
            }
            any_up = true;
            if m.replay.load(Ordering::Acquire) >= floor {
                return Route::Replica(k);
            }
        }
        Route::Primary(if any_up { "behind" } else { "none" })
    }

    /// Whether some replica in rotation has replayed `floor` (by the last
    /// samples).
    pub fn caught_up(&self, floor: u64) -> bool {
        self.members.iter().any(|m| m.up.load(Ordering::Acquire) && m.replay.load(Ordering::Acquire) >= floor)
    }

    pub fn check_interval(&self) -> Duration {
        self.opts.check_interval
    }

    /// A read on replica `k` failed as a replica can (down, its query
    /// cancelled by replay, a table another instance's migration made not
    /// there yet): out of rotation until the monitor's next look.
    pub fn failed(&self, k: usize, error: &mercato_core::Error) {
        let m = &self.members[k];
        if m.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(db = %self.db, replica = %m.label, %error, "replica failed a read: out of rotation");
            metrics::gauge!("db_replica_in_rotation", "db" => self.db.to_string(), "replica" => m.label.clone())
                .set(0.0);
        }
    }

    /// One round of the monitor: sample the primary, then each replica.
    fn check(&self, primary: &Pg) {
        let now = Instant::now();
        let keep = self.opts.max_lag * 2 + Duration::from_secs(1);
        if let Ok(Some(lsn)) = primary.lsn_blocking(PRIMARY_LSN) {
            if !self.commit_checked.swap(true, Ordering::Relaxed) {
                self.check_commit_setting(primary);
            }
            let mut h = self.history.lock();
            h.push_back((now, lsn));
            while h.front().is_some_and(|(t, _)| now.duration_since(*t) > keep) {
                h.pop_front();
            }
        }
        for m in &self.members {
            let (up, why, lag) = match m.pg.lsn_blocking(REPLAYED_LSN) {
                Ok(Some(replay)) => {
                    m.replay.store(replay, Ordering::Release);
                    let lag = self.lag(replay, now);
                    if lag > self.opts.max_lag {
                        (false, format!("{}ms behind the primary", lag.as_millis()), Some(lag))
                    } else {
                        (true, String::new(), Some(lag))
                    }
                }
                Ok(None) => (false, "not a standby (pg_last_wal_replay_lsn is null)".into(), None),
                Err(e) => (false, e.to_string(), None),
            };
            let labels = [("db", self.db.to_string()), ("replica", m.label.clone())];
            if let Some(lag) = lag {
                metrics::gauge!("db_replica_lag_seconds", &labels).set(lag.as_secs_f64());
            }
            metrics::gauge!("db_replica_in_rotation", &labels).set(if up { 1.0 } else { 0.0 });
            let was = m.up.swap(up, Ordering::AcqRel);
            if was != up {
                if up {
                    tracing::info!(db = %self.db, replica = %m.label, "replica in rotation");
                } else {
                    tracing::warn!(db = %self.db, replica = %m.label, reason = %why, "replica out of rotation");
                }
            }
        }
    }

    /// Read-your-writes takes the WAL position after a commit as past the
    /// commit's record, which holds only if commits wait for their flush.
    fn check_commit_setting(&self, primary: &Pg) {
        if let Ok(Some(v)) = primary.text_blocking("SELECT current_setting('synchronous_commit')")
            && v == "off"
        {
            tracing::warn!(
                db = %self.db,
                "synchronous_commit is off on the primary: read-your-writes on replicas is not guaranteed \
                 (a commit may return before its record is written) and a crash of the primary loses \
                 acknowledged commits; set it to on for this database"
            );
        }
    }

    /// How long ago the primary first went past `replay`, from the samples
    /// (zero when no sample is past it; at least the oldest sample's age when
    /// every one is).
    fn lag(&self, replay: u64, now: Instant) -> Duration {
        let h = self.history.lock();
        h.iter().find(|(_, lsn)| *lsn > replay).map_or(Duration::ZERO, |(t, _)| now.duration_since(*t))
    }
}

/// Starts the monitor of `replicas`, which samples through `primary`. It
/// ends once the database handle is dropped.
pub(crate) fn watch(replicas: &Arc<Replicas>, primary: Weak<super::Backend>) {
    let weak = Arc::downgrade(replicas);
    let interval = replicas.opts.check_interval;
    let name = format!("replicas-{}", replicas.db);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        loop {
            let (Some(r), Some(p)) = (weak.upgrade(), primary.upgrade()) else { return };
            if let super::Backend::Postgres(pg) = &*p {
                r.check(pg);
            }
            drop((r, p));
            std::thread::sleep(interval);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the replica monitor: reads stay on the primary");
    }
}

/// `user:password@host:port/db?...` → `host:port/db`.
fn label(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('?').next().unwrap_or(rest).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_never_carry_credentials() {
        assert_eq!(label("postgres://shop:s3cret@10.0.0.5:5433/shop?sslmode=require"), "10.0.0.5:5433/shop");
        assert_eq!(label("postgresql://127.0.0.1/shop"), "127.0.0.1/shop");
    }

    #[test]
    fn lag_is_how_long_ago_the_primary_passed_the_replay_position() {
        let r = Replicas::open("t", &[], ReplicaOptions::default()).unwrap();
        let now = Instant::now();
        {
            let mut h = r.history.lock();
            for (ago, lsn) in [(900, 100), (600, 200), (300, 300), (0, 400)] {
                h.push_back((now - Duration::from_millis(ago), lsn));
            }
        }
        assert_eq!(r.lag(400, now), Duration::ZERO);
        assert_eq!(r.lag(350, now), Duration::ZERO);
        assert_eq!(r.lag(250, now), Duration::from_millis(300));
        assert_eq!(r.lag(100, now), Duration::from_millis(600));
        assert_eq!(r.lag(50, now), Duration::from_millis(900));
    }
}
