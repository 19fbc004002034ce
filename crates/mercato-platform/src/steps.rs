//! Steps of a process that spans domains (a checkout, a payment): each step
//! is one domain's writes, offered by that domain's surface. A process lists
//! its steps once and [`run`]s them in order; steps that follow each other in
//! one database share one transaction, and a step in another database (or
//! behind a remote surface) runs on its own. So the same definition runs as
//! one transaction when every domain shares the embedded file, and as a saga
//! of separate commits when domains have databases of their own, without two
//! code paths that could drift apart.
//!
//! A step's writes must be idempotent or conditional (the process may be
//! repeated after a crash), and the step must not assume it commits alone:
//! what it does once its writes are durable (dropping caches, waking the
//! event relay) goes in its `after` hook.

use crate::db::{Db, Tx};
use futures_util::future::BoxFuture;
use mercato_core::{Error, ErrorCode};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

type Body = Box<dyn FnMut(&mut dyn Tx) -> Result<(), Error> + Send>;
type After = Box<dyn FnOnce() + Send>;
type Condition = Box<dyn Fn() -> bool + Send>;
/// Finds the database a step's rows live in now, after the one it was given
/// answered [`ErrorCode::ShardMoved`] (see [`Step::rerouted_by`]).
pub type Reroute = Arc<dyn Fn() -> BoxFuture<'static, Result<Db, Error>> + Send + Sync>;

/// How many times a group refused with [`ErrorCode::ShardMoved`] is sent to
/// where its shard is now, before the refusal reaches the caller.
const MAX_REROUTES: usize = 40;

/// One domain's part of a process.
pub struct Step {
    kind: Kind,
    /// Checked when the step's turn comes: false skips it.
    when: Option<Condition>,
}

enum Kind {
    /// Writes in a database this process reaches directly.
    Local { db: Db, body: Body, after: After, reroute: Option<Reroute> },
    /// Anything else (a remote surface): runs on its own.
    Remote(BoxFuture<'static, Result<(), Error>>),
    /// Nothing to do.
    Nothing,
}

impl Step {
    /// Writes `body` in `db`; once they are committed, `after` gets what the
    /// body returned. The body may run more than once (a transient conflict
    /// reruns the transaction), and must only touch the database.
    pub fn local<T, B, A>(db: &Db, mut body: B, after: A) -> Step
    where
        T: Send + 'static,
        B: FnMut(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
        A: FnOnce(T) + Send + 'static,
    {
        let out = Arc::new(Mutex::new(None));
        let filled = out.clone();
        Step {
            kind: Kind::Local {
                db: db.clone(),
                body: Box::new(move |tx| {
                    let v = body(tx)?;
                    *filled.lock() = Some(v);
                    Ok(())
                }),
                after: Box::new(move || {
                    if let Some(v) = out.lock().take() {
                        after(v)
                    }
                }),
                reroute: None,
            },
            when: None,
        }
    }

    /// A step served elsewhere: it never shares a transaction.
    pub fn remote(work: BoxFuture<'static, Result<(), Error>>) -> Step {
        Step { kind: Kind::Remote(work), when: None }
    }

    /// A step with nothing to write (no coupon to redeem): it costs nothing.
    pub fn nothing() -> Step {
        Step { kind: Kind::Nothing, when: None }
    }

    /// Runs the step only if `when` holds once the steps before it have run
    /// (inside their transaction when it shares theirs). `when` typically
    /// reads what an earlier step's body recorded.
    /// For a step on a logical shard that may move to another database
    /// (stage 7): when the database answers that it no longer serves the
    /// shard (its body's first statement checks, so nothing was written),
    /// `reroute` says where the shard is now and the step's transaction runs
    /// again there.
    pub fn rerouted_by(mut self, reroute: Reroute) -> Step {
        if let Kind::Local { reroute: r, .. } = &mut self.kind {
            *r = Some(reroute);
        }
        self
    }

    pub fn only_if(mut self, when: impl Fn() -> bool + Send + 'static) -> Step {
        self.when = Some(Box::new(when));
        self
    }

    fn db(&self) -> Option<&Db> {
        match &self.kind {
            Kind::Local { db, .. } => Some(db),
            _ => None,
        }
    }

    fn wanted(&self) -> bool {
        self.when.as_ref().is_none_or(|w| w())
    }
}

/// Why a process stopped: the error, and how far its writes may have got.
#[derive(Debug)]
pub struct Halted {
    pub error: Error,
    /// Steps before this index committed; this one and those after did not.
    pub committed: usize,
    /// Steps from this index on did not commit (those between `committed`
    /// and here may have: a commit whose answer was lost).
    pub not_committed: usize,
}

impl Halted {
    /// Whether step `i` may have committed.
    pub fn may_have_committed(&self, i: usize) -> bool {
        i < self.not_committed
    }
}

/// Runs `steps` in order and stops at the first failure. Consecutive local
/// steps in one database run in one transaction, so a failure in any of them
/// leaves none of their writes; each `after` hook runs once its writes are
/// committed.
pub async fn run(steps: Vec<Step>) -> Result<(), Halted> {
    let mut steps = steps.into_iter().enumerate().peekable();
    while let Some((start, step)) = steps.next() {
        // The steps before this one have committed, so its condition can be
        // read now: a skipped step costs no transaction.
        if !step.wanted() {
            continue;
        }
        let Some(db) = step.db().cloned() else {
            let done = match step.kind {
                Kind::Remote(work) => work.await,
                _ => Ok(()),
            };
            done.map_err(|error| Halted { error, committed: start, not_committed: start + 1 })?;
            continue;
        };
        let (mut group, mut end) = (vec![step], start + 1);
        // A step with nothing to do does not split the transaction.
        while let Some((i, next)) =
            steps.next_if(|(_, s)| matches!(s.kind, Kind::Nothing) || s.db().is_some_and(|d| d.same(&db)))
        {
            if !matches!(next.kind, Kind::Nothing) {
                group.push(next);
            }
            end = i + 1;
        }
        let mut bodies = Vec::with_capacity(group.len());
        let mut afters = Vec::with_capacity(group.len());
        let mut reroutes = Vec::with_capacity(group.len());
        for step in group {
            if let Kind::Local { body, after, reroute, .. } = step.kind {
                bodies.push((body, step.when));
                afters.push(after);
                reroutes.push(reroute);
            }
        }
        // Only a group whose every step can be rerouted moves as a whole.
        let reroute = reroutes.iter().all(Option::is_some).then(|| reroutes.swap_remove(0)).flatten();
        let bodies = Arc::new(Mutex::new(bodies));
        // Tells a refusal by a body (everything rolled back) from a failed
        // commit (the writes may be durable).
        let refused = Arc::new(AtomicBool::new(false));
        let (mut db, mut reroutes) = (db, 0);
        let ran = loop {
            let (flag, bodies) = (refused.clone(), bodies.clone());
            let ran = db
                .write(move |tx| {
                    flag.store(false, Ordering::Relaxed);
                    let mut bodies = bodies.lock();
                    let mut ran = Vec::with_capacity(bodies.len());
                    for (body, when) in bodies.iter_mut() {
                        let go = when.as_ref().is_none_or(|w| w());
                        if go && let Err(e) = body(tx) {
                            flag.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        ran.push(go);
                    }
                    Ok(ran)
                })
                .await;
            match (&ran, &reroute) {
                (Err(e), Some(to))
                    if e.code == ErrorCode::ShardMoved
                        && refused.load(Ordering::Relaxed)
                        && reroutes < MAX_REROUTES =>
                {
                    reroutes += 1;
                    db = match to().await {
                        Ok(db) => db,
                        Err(error) => return Err(Halted { error, committed: start, not_committed: start }),
                    };
                }
                _ => break ran,
            }
        };
        match ran {
            Ok(ran) => {
                for (after, ran) in afters.into_iter().zip(ran) {
                    if ran {
                        after();
                    }
                }
            }
            Err(error) => {
                let not_committed = if refused.load(Ordering::Relaxed) { start } else { end };
                return Err(Halted { error, committed: start, not_committed });
            }
        }
    }
    Ok(())
}

impl Step {
    /// Runs this step on its own.
    pub async fn run(self) -> Result<(), Error> {
        run(vec![self]).await.map_err(|h| h.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbOptions;
    use crate::params;

    async fn db(dir: &tempfile::TempDir, name: &str) -> Db {
        let db = Db::open_sqlite(&dir.path().join(format!("{name}.db")), name, DbOptions::default()).unwrap();
        db.write(|tx| {
            tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)", &[])?;
            Ok(())
        })
        .await
        .unwrap();
        db
    }

    fn insert(db: &Db, k: &'static str, log: &Arc<Mutex<Vec<&'static str>>>) -> Step {
        let log = log.clone();
        Step::local(
            db,
            move |tx| Ok(tx.execute("INSERT INTO t (k, v) VALUES ($1, 1)", params![k])?),
            move |_| log.lock().push(k),
        )
    }

    fn refuse(db: &Db) -> Step {
        Step::local(db, |_| Err::<(), _>(Error::conflict("no")), |_| {})
    }

    async fn keys(db: &Db) -> Vec<String> {
        db.read(|tx| tx.query("SELECT k FROM t ORDER BY k", &[])?.iter().map(|r| r.text(0)).collect()).await.unwrap()
    }

    #[tokio::test]
    async fn steps_in_one_database_share_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let a = db(&dir, "a").await;
        let log = Arc::new(Mutex::new(vec![]));
        let halted = run(vec![insert(&a, "x", &log), insert(&a, "y", &log), refuse(&a)]).await.unwrap_err();
        assert_eq!(keys(&a).await, Vec::<String>::new(), "a refusal leaves none of the group's writes");
        assert!(log.lock().is_empty(), "no after hook runs for writes rolled back");
        assert!(!halted.may_have_committed(0));

        let halted =
            run(vec![insert(&a, "x", &log), Step::nothing(), insert(&a, "y", &log), refuse(&a)]).await.unwrap_err();
        assert_eq!(keys(&a).await, Vec::<String>::new(), "a step with nothing to do does not split the transaction");
        assert_eq!((halted.committed, halted.not_committed), (0, 0));

        run(vec![insert(&a, "x", &log), Step::nothing(), insert(&a, "y", &log)]).await.unwrap();
        assert_eq!(keys(&a).await, ["x", "y"]);
        assert_eq!(*log.lock(), ["x", "y"]);
    }

    #[tokio::test]
    async fn steps_in_separate_databases_commit_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (db(&dir, "a").await, db(&dir, "b").await);
        let log = Arc::new(Mutex::new(vec![]));
        let halted = run(vec![insert(&a, "x", &log), insert(&a, "y", &log), refuse(&b), insert(&a, "z", &log)])
            .await
            .unwrap_err();
        assert_eq!(keys(&a).await, ["x", "y"], "the steps before the other database's refusal are committed");
        assert_eq!(*log.lock(), ["x", "y"]);
        // A refusal is a rollback: the refusing step certainly did not commit.
        assert_eq!((halted.committed, halted.may_have_committed(2), halted.may_have_committed(3)), (2, false, false));
    }

    #[tokio::test]
    async fn a_condition_sees_what_the_steps_before_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (db(&dir, "a").await, db(&dir, "b").await);
        for other in [&a, &b] {
            let seen = Arc::new(Mutex::new(None));
            let (s, log) = (seen.clone(), Arc::new(Mutex::new(vec![])));
            let first = Step::local(
                &a,
                move |tx| {
                    let n = tx.execute("INSERT INTO t (k, v) VALUES ('c', 1) ON CONFLICT (k) DO NOTHING", &[])?;
                    *s.lock() = Some(n);
                    Ok(())
                },
                |_| {},
            );
            let then = insert(other, "d", &log).only_if(move || *seen.lock() == Some(1));
            run(vec![first, then]).await.unwrap();
        }
        // The second round's insert of `c` did nothing, so `d` was skipped.
        assert_eq!(keys(&a).await, ["c", "d"]);
        assert_eq!(keys(&b).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_remote_step_runs_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let a = db(&dir, "a").await;
        let log = Arc::new(Mutex::new(vec![]));
        let remote = Step::remote(Box::pin(async { Err(Error::unavailable("down")) }));
        let halted = run(vec![insert(&a, "x", &log), remote, insert(&a, "y", &log)]).await.unwrap_err();
        assert_eq!(keys(&a).await, ["x"]);
        assert_eq!((halted.committed, halted.not_committed), (1, 2));
    }
}
