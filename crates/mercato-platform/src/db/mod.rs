//! The storage seam. Domain adapters write their SQL once, against [`Tx`], with
//! `$1`-style placeholders and a portable subset of SQL (`ON CONFLICT`,
//! `RETURNING`, conditional `UPDATE ... WHERE`), and the same code runs on the
//! embedded SQLite backend and on PostgreSQL.
//!
//! Architecture invariant: correctness never relies on SQLite having a single
//! writer. Stock, limits and idempotency are enforced by conditional updates and
//! unique constraints, which hold under PostgreSQL's row-level concurrency too.
//!
//! Transaction bodies are synchronous closures. That keeps domain code free of
//! async lifetimes and lets the SQLite backend run many bodies inside one commit
//! (group commit), each in its own savepoint.

mod consistency;
mod migrate;
mod pg;
mod replica;
mod sqlite;
#[doc(hidden)]
pub mod testing;

pub use consistency::{ReadAfter, fill, session};
pub use migrate::{Migration, POSTGRES_ONLY};
pub use pg::{PgOptions, SynchronousCommit};
pub use replica::ReplicaOptions;

use mercato_core::{Error, ErrorCode};
use std::sync::Arc;

/// A borrowed SQL parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<i32> for Param<'_> {
    fn from(v: i32) -> Self {
        Param::Int(v as i64)
    }
}
impl From<u32> for Param<'_> {
    fn from(v: u32) -> Self {
        Param::Int(v as i64)
    }
}
impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(v as i64)
    }
}
impl From<mercato_core::Id> for Param<'_> {
    fn from(v: mercato_core::Id) -> Self {
        Param::Int(v.0)
    }
}
impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}
impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v)
    }
}
impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(v)
    }
}
impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Param::Blob(v)
    }
}
impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Param::Null)
    }
}

/// Builds a `&[Param]` from heterogeneous values: `params![id, &name, None::<i64>]`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::db::Param<'_>] };
    ($($v:expr),+ $(,)?) => { &[$($crate::db::Param::from($v)),+] as &[$crate::db::Param<'_>] };
}

/// An owned column value read back from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// One result row. Getters fail with an internal error on a type mismatch: that
/// is a bug in the adapter's SQL, not something a client can cause.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, Error> {
        self.0.get(i).ok_or_else(|| Error::internal(format!("row has no column {i}")))
    }
    pub fn int(&self, i: usize) -> Result<i64, Error> {
        match self.cell(i)? {
            Cell::Int(v) => Ok(*v),
            other => Err(Error::internal(format!("column {i}: expected integer, got {other:?}"))),
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, Error> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }
    pub fn id(&self, i: usize) -> Result<mercato_core::Id, Error> {
        self.int(i).map(mercato_core::Id)
    }
    pub fn bool(&self, i: usize) -> Result<bool, Error> {
        self.int(i).map(|v| v != 0)
    }
    pub fn text(&self, i: usize) -> Result<String, Error> {
        match self.cell(i)? {
            Cell::Text(v) => Ok(v.clone()),
            other => Err(Error::internal(format!("column {i}: expected text, got {other:?}"))),
        }
    }
    pub fn str(&self, i: usize) -> Result<&str, Error> {
        match self.cell(i)? {
            Cell::Text(v) => Ok(v),
            other => Err(Error::internal(format!("column {i}: expected text, got {other:?}"))),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, Error> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    pub fn blob(&self, i: usize) -> Result<Vec<u8>, Error> {
        match self.cell(i)? {
            Cell::Blob(v) => Ok(v.clone()),
            Cell::Text(v) => Ok(v.as_bytes().to_vec()),
            other => Err(Error::internal(format!("column {i}: expected blob, got {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A storage failure, classified so callers can tell a retryable conflict from
/// a violated constraint from an outage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("unique constraint violated: {0}")]
    Unique(String),
    #[error("transient conflict: {0}")]
    Transient(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unique(c) => Error::conflict(format!("already exists ({c})")),
            DbError::Transient(m) => Error::new(ErrorCode::Transient, m),
            DbError::Unavailable(m) => Error::unavailable(m),
            DbError::Other(m) => Error::internal(m),
        }
    }
}

/// What a transaction body (or a read) sees.
pub trait Tx {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError>;
    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError>;
    fn dialect(&self) -> Dialect;

    fn query_opt(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    fn query_one(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Row, DbError> {
        self.query_opt(sql, params)?.ok_or_else(|| DbError::Other(format!("expected one row from: {sql}")))
    }
}

/// SQLite durability setting. `Normal` (the default) survives a process crash;
/// `Full` also survives power loss, at the price of an fsync per commit group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub readers: usize,
    pub synchronous: Synchronous,
    /// Largest number of transaction bodies run inside one commit.
    pub max_batch: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { readers: 4, synchronous: Synchronous::Normal, max_batch: 64 }
    }
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(pg::Pg),
}

/// A handle to one database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    backend: Arc<Backend>,
    name: Arc<str>,
    /// PostgreSQL streaming replicas serving [`Db::read_replica`].
    replicas: Option<Arc<replica::Replicas>>,
}

impl Db {
    /// Opens (creating if needed) an embedded database file.
    pub fn open_sqlite(path: &std::path::Path, name: &str, opts: DbOptions) -> Result<Db, Error> {
        let backend = sqlite::Sqlite::open(path, name, opts).map_err(Error::from)?;
        Ok(Db { backend: Arc::new(Backend::Sqlite(backend)), name: name.into(), replicas: None })
    }

    /// Connects a pool to a PostgreSQL server (`postgres://user@host/db`). Does
    /// not fail when the server is down: connections are made on demand, and
    /// `ping` (readiness) tells.
    pub fn open_postgres(url: &str, name: &str, opts: &PgOptions) -> Result<Db, Error> {
        let backend = pg::Pg::open(url, opts).map_err(Error::from)?;
        Ok(Db { backend: Arc::new(Backend::Postgres(backend)), name: name.into(), replicas: None })
    }

    /// Adds streaming replicas (PostgreSQL URLs) that serve this database's
    /// [`read_replica`](Db::read_replica) reads. Like the primary, they
    /// may be down at start: each joins the rotation once it answers with
    /// a lag within `opts.max_lag`.
    pub fn with_replicas(mut self, urls: &[String], opts: ReplicaOptions) -> Result<Db, Error> {
        if urls.is_empty() {
            return Ok(self);
        }
        if self.dialect() != Dialect::Postgres {
            return Err(Error::validation("replicas need a PostgreSQL database (the embedded one has none)"));
        }
        let replicas = Arc::new(replica::Replicas::open(&self.name, urls, opts).map_err(Error::from)?);
        replica::watch(&replicas, Arc::downgrade(&self.backend));
        self.replicas = Some(replicas);
        Ok(self)
    }

    /// True when reads may be served by replicas.
    pub fn has_replicas(&self) -> bool {
        self.replicas.is_some()
    }

    /// The commit position of the latest write this process made here (0:
    /// none, or no replicas to route by it). A cache records it with an
    /// invalidation, so that no replica older than the write refills the key.
    pub fn last_commit_lsn(&self) -> u64 {
        self.replicas.as_ref().map_or(0, |r| r.last_commit())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when both handles reach the same database (one was cloned from
    /// the other).
    pub fn same(&self, other: &Db) -> bool {
        Arc::ptr_eq(&self.backend, &other.backend)
    }

    pub fn dialect(&self) -> Dialect {
        match *self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs `body` inside a write transaction and returns once it is committed.
    /// If `body` returns an error, everything it wrote is rolled back and
    /// nothing else in the same commit group is affected. Transient conflicts
    /// are retried here, so `body` may run more than once: it must only touch
    /// the database.
    pub async fn write<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite(b) => b.write(body).await,
            Backend::Postgres(b) => {
                let (value, lsn) = b.write(self.replicas.is_some(), body).await?;
                if let (Some(r), true) = (&self.replicas, lsn > 0) {
                    r.committed(lsn);
                    consistency::committed(&self.name, lsn);
                }
                Ok(value)
            }
        }
    }

    /// Runs `body` on a read connection. Sees every write whose `write` call
    /// has returned (read-your-writes within one database).
    pub async fn read<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite(b) => b.read(body).await,
            Backend::Postgres(b) => b.read(body).await,
        }
    }

    /// Like [`Db::read`], for bounded reads only (rows found by key, a handful
    /// of them): on SQLite the body runs on the calling task's thread when a
    /// reader is idle, so it must never scan or page through a table. On
    /// PostgreSQL, where every read is a network round trip, it is `read`.
    pub async fn lookup<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite(b) => b.lookup(body).await,
            Backend::Postgres(b) => b.read(body).await,
        }
    }

    /// Like [`Db::read`], for reads that tolerate a replica's staleness
    /// (browsing, histories, listings, reports): served by a replica in
    /// rotation when there is one that has caught up with this client's own
    /// writes and with the cache's last invalidation of the key being
    /// filled; otherwise, and whenever the replica fails, by the primary.
    /// Never for a read that a write will be based on.
    pub async fn read_replica<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&mut dyn Tx) -> Result<T, Error> + Send + Sync + 'static,
    {
        let Some(replicas) = &self.replicas else { return self.read(body).await };
        let (session, fill) = consistency::floors(&self.name);
        let counted = |route: &'static str, why: &'static str| {
            // The name is shared, not copied: this runs on every read.
            metrics::counter!("db_reads_total", "db" => self.name.clone(), "route" => route, "why" => why).increment(1);
        };
        let k = match replicas.pick(session.max(fill)) {
            replica::Route::Replica(k) => k,
            replica::Route::Primary(why) => {
                // A floor that held the read back: the client's own write
                // (read-your-writes) or the invalidation a cache fill must
                // reflect; else the replicas' own state (none in rotation,
                // or behind this instance's start-up writes).
                counted(
                    "primary",
                    match why {
                        "behind" if session > 0 && session >= fill => "read_your_writes",
                        "behind" if fill > 0 => "cache_fill",
                        other => other,
                    },
                );
                return self.read(body).await;
            }
        };
        // Shared, so that the primary can run it again if the replica fails.
        let body = Arc::new(body);
        let b = body.clone();
        match replicas.members[k].pg.read(move |tx| b(tx)).await {
            // Errors a primary would not give (a domain's own, like "not
            // found", are answers, not failures).
            Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::Transient | ErrorCode::Internal) => {
                replicas.failed(k, &e);
                counted("primary", "failed");
                self.read(move |tx| body(tx)).await
            }
            done => {
                counted("replica", "");
                done
            }
        }
    }

    /// A replica read that sees every write committed before it began, by
    /// anyone: for views fed in bulk (the search index) that must not miss
    /// a change committed before they started following. Asks the primary
    /// for its position (one small query), gives the replicas up to two
    /// sampling intervals to show they have replayed it, then reads where
    /// [`Db::read_replica`] would under that floor.
    pub async fn read_replica_current<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&mut dyn Tx) -> Result<T, Error> + Send + Sync + 'static,
    {
        let Some(replicas) = &self.replicas else { return self.read(body).await };
        let position = self.read(|tx| pg::lsn_of(tx, pg::PRIMARY_LSN).map_err(Error::from)).await?.unwrap_or(0);
        for _ in 0..2 {
            if replicas.caught_up(position) {
                break;
            }
            tokio::time::sleep(replicas.check_interval()).await;
        }
        consistency::fill(self.name.clone(), position, self.read_replica(body)).await
    }

    /// [`Db::lookup`] where replicas may serve it (see [`Db::read_replica`]).
    pub async fn lookup_replica<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&mut dyn Tx) -> Result<T, Error> + Send + Sync + 'static,
    {
        if self.replicas.is_some() { self.read_replica(body).await } else { self.lookup(body).await }
    }

    /// Applies `migrations` of `component` not yet applied, in order.
    pub async fn migrate(&self, component: &'static str, migrations: &'static [Migration]) -> Result<usize, Error> {
        let dialect = self.dialect();
        let applied = self.write(move |tx| migrate::apply(tx, dialect, component, migrations)).await?;
        // The schema as this code knows it.
        self.fence_replicas();
        Ok(applied)
    }

    /// Replicas serve no read until they have replayed every write this
    /// process has made so far (its migrations, the demo catalog it seeded).
    pub fn fence_replicas(&self) {
        if let Some(r) = &self.replicas {
            r.fence();
        }
    }

    /// A cheap round trip, for readiness.
    /// The database takes writes: on PostgreSQL, the server reached is a
    /// primary (during a failover there is none until a standby is
    /// promoted, and a demoted one answers reads only).
    pub async fn ping(&self) -> bool {
        match &*self.backend {
            Backend::Sqlite(_) => self.read(|tx| tx.query_one("SELECT 1", &[]).map_err(Error::from)).await.is_ok(),
            Backend::Postgres(b) => b.is_primary().await,
        }
    }

    /// Returns once every write already visible here would survive a
    /// failover: on PostgreSQL, a transaction of its own commits (and so
    /// waits, as every commit does, for the synchronous standbys the server
    /// is configured with, to a point past all earlier commits). For an
    /// answer read back rather than written now (a replayed Idempotency-Key):
    /// another session may see a commit whose wait for the standby was cut
    /// short (a primary cut off from its standby), and acknowledging it
    /// then could acknowledge what a failover discards. Embedded: nothing
    /// to wait for.
    pub async fn confirm_durable(&self) -> Result<(), Error> {
        match &*self.backend {
            Backend::Sqlite(_) => Ok(()),
            // An xid makes the commit write a record, and wait.
            Backend::Postgres(b) => {
                b.write(false, |tx| Ok(tx.query_one("SELECT txid_current()", &[])?)).await.map(|_| ())
            }
        }
    }

    pub fn stats(&self) -> PoolStats {
        match &*self.backend {
            Backend::Sqlite(b) => b.stats(),
            Backend::Postgres(b) => b.stats(),
        }
    }
}

/// Connection-pool figures for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub readers_total: usize,
    pub readers_idle: usize,
    pub write_queue: usize,
}

/// Returns true when `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &DbError) -> bool {
    matches!(e, DbError::Unique(_))
}
