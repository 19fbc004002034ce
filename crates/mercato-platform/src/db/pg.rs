//! The PostgreSQL backend: a pool of blocking connections driven from tokio's
//! blocking pool. Transactions run at READ COMMITTED with the same conditional
//! updates as on SQLite; a serialization failure or deadlock reruns the body
//! (bodies only touch the database, so rerunning is safe), and every statement
//! runs under a statement timeout.
//!
//! Each connection keeps its statements prepared: a statement given as text
//! costs two round trips (prepare, then execute) and a parse and plan on the
//! server every time, a prepared one a single round trip.
//!
//! A primary can die or be replaced (a failover engine promotes a standby;
//! the URL lists every node with `target_session_attrs=read-write`). A
//! transaction whose connection is lost before COMMIT did not happen, and
//! runs again on a fresh connection. One whose COMMIT got no answer, or
//! whose wait for a synchronous standby had to be cut short, may or may not
//! have happened: it is reported as unavailable with its outcome unknown
//! (never rerun), and the client's retry under its Idempotency-Key finds
//! out which. PostgreSQL does not bound a COMMIT's wait for a standby by
//! `statement_timeout`, so `commit_wait` does, from this side.

use super::{Cell, DbError, Dialect, Param, PoolStats, Row, Tx};
use mercato_core::{Error, ErrorCode};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};
use r2d2_postgres::PostgresConnectionManager;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Pool = r2d2::Pool<Manager>;

/// Statements one connection keeps prepared. Most SQL is fixed text; the few
/// statements built per call (IN lists, filters) have a handful of shapes
/// each, and the bound only guards against a shape per value.
const PREPARED_MAX: usize = 512;

/// A pooled connection and the statements prepared on it.
struct Conn {
    client: Client,
    prepared: HashMap<String, Statement>,
    /// Not to be used again: it reached a server that is no longer a
    /// primary, or a cancel request may still be on its way to it.
    broken: bool,
    /// Made once: a commit watched for its whole life would otherwise make
    /// one each time.
    cancel: Arc<postgres::CancelToken>,
}

/// Makes [`Conn`]s: r2d2_postgres's manager, plus the statement cache.
#[derive(Debug)]
struct Manager(PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        let client = self.0.connect()?;
        let cancel = Arc::new(client.cancel_token());
        Ok(Conn { client, prepared: HashMap::new(), broken: false, cancel })
    }
    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }
    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || self.0.has_broken(&mut conn.client)
    }
}

/// How to reach and use one PostgreSQL server (or a multi-host URL's set).
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub pool_size: u32,
    /// Statements (and lock waits) running longer are cancelled by the server.
    pub statement_timeout_ms: u64,
    /// A COMMIT still waiting after this long (for a synchronous standby,
    /// or a server that stopped answering) is cancelled and reported as of
    /// unknown outcome.
    pub commit_wait: Duration,
    /// `synchronous_commit` for this pool's sessions; `None` keeps the
    /// server's. See [`SynchronousCommit`].
    pub synchronous_commit: Option<SynchronousCommit>,
    /// Waiting longer for a connection fails the call as unavailable.
    pub connect_wait: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            statement_timeout_ms: 5_000,
            commit_wait: Duration::from_secs(5),
            synchronous_commit: None,
            connect_wait: Duration::from_secs(5),
        }
    }
}

/// PostgreSQL's `synchronous_commit`, for Mercato's sessions: what a commit
/// waits for before an order is acknowledged. With a synchronous standby
/// configured on the server, `on` (and `remote_write`, `remote_apply`) wait
/// for it, so a failover loses no acknowledged write; `local` acknowledges
/// once the primary alone has it on disk (faster, and what a failover to an
/// asynchronous standby can lose); `off` does not wait for the local disk
/// either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynchronousCommit {
    RemoteApply,
    On,
    RemoteWrite,
    Local,
    Off,
}

impl SynchronousCommit {
    fn as_sql(self) -> &'static str {
        match self {
            SynchronousCommit::RemoteApply => "remote_apply",
            SynchronousCommit::On => "on",
            SynchronousCommit::RemoteWrite => "remote_write",
            SynchronousCommit::Local => "local",
            SynchronousCommit::Off => "off",
        }
    }
}

pub struct Pg {
    /// Always Some until drop.
    pool: Option<Pool>,
    commit_wait: Duration,
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Closing a blocking client runs a small runtime of its own, which
        // panics on a thread that is already driving tokio: close off-thread.
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool));
        }
    }
}

fn conn(pool: &Pool) -> Result<r2d2::PooledConnection<Manager>, Error> {
    pool.get().map_err(|e| Error::unavailable(format!("database unavailable: {e}")))
}

const MAX_ATTEMPTS: u32 = 6;

#[derive(Debug)]
struct SessionSettings {
    statement_timeout_ms: u64,
    synchronous_commit: Option<SynchronousCommit>,
}

impl r2d2::CustomizeConnection<Conn, postgres::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        // Notices ("relation already exists, skipping" from idempotent
        // migrations) are not worth a log line each.
        let mut sql = format!(
            "SET statement_timeout = {0}; SET lock_timeout = {0}; SET client_min_messages = warning",
            self.statement_timeout_ms
        );
        if let Some(mode) = self.synchronous_commit {
            sql.push_str(&format!("; SET synchronous_commit = {}", mode.as_sql()));
        }
        conn.client.batch_execute(&sql)
    }
}

thread_local! {
    /// Set when the server warned that a COMMIT stopped waiting for its
    /// synchronous standby: committed here, maybe nowhere else. A blocking
    /// client handles notices on the thread that runs its calls.
    static SYNC_WAIT_CUT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn on_notice(notice: postgres::error::DbError) {
    if notice.message().contains("wait for synchronous replication") {
        SYNC_WAIT_CUT.set(true);
    } else {
        tracing::debug!(severity = notice.severity(), message = notice.message(), "postgres notice");
    }
}

/// Watches a COMMIT: one still running `commit_wait` after it began is
/// cancelled by the [`watchdog`] thread. Registering costs a lock and an
/// insert, with no task or thread woken, since every write commits.
///
/// The watchdog takes an overdue entry out of the table and sends the
/// cancel while holding the entry's lock; the committer, when done, takes
/// its entry out itself, or, finding it gone, waits on that lock. So a
/// cancel is never sent after the commit finished; one sent just as it
/// finished may still reach the server later, so its connection is then
/// discarded rather than reused for another transaction.
struct CommitWatch {
    id: u64,
    cancelled: Arc<parking_lot::Mutex<bool>>,
}

struct Watched {
    deadline: Instant,
    token: Arc<postgres::CancelToken>,
    cancelled: Arc<parking_lot::Mutex<bool>>,
}

/// How often the watchdog looks for overdue commits: a cut commit answers
/// within `commit_wait` plus this.
const WATCHDOG_TICK: Duration = Duration::from_millis(50);

/// The commits being watched, and the thread watching them (one for the
/// process, started with the first commit).
fn watchdog() -> &'static parking_lot::Mutex<HashMap<u64, Watched>> {
    static WATCHED: std::sync::OnceLock<parking_lot::Mutex<HashMap<u64, Watched>>> = std::sync::OnceLock::new();
    WATCHED.get_or_init(|| {
        std::thread::Builder::new()
            .name("commit-watchdog".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(WATCHDOG_TICK);
                    let now = Instant::now();
                    let overdue: Vec<Watched> = {
                        let mut watched = watchdog().lock();
                        let ids: Vec<u64> =
                            watched.iter().filter(|(_, w)| w.deadline <= now).map(|(id, _)| *id).collect();
                        ids.iter().filter_map(|id| watched.remove(id)).collect()
                    };
                    for w in overdue {
                        let mut cancelled = w.cancelled.lock();
                        *cancelled = true;
                        metrics::counter!("db_commit_waits_cut_total").increment(1);
                        if let Err(e) = w.token.cancel_query(NoTls) {
                            tracing::warn!(error = %e, "cancelling a COMMIT that waited too long failed");
                        }
                    }
                }
            })
            .expect("starting the commit watchdog");
        parking_lot::Mutex::new(HashMap::new())
    })
}

impl CommitWatch {
    fn start(token: Arc<postgres::CancelToken>, wait: Duration) -> CommitWatch {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cancelled = Arc::new(parking_lot::Mutex::new(false));
        let watched = Watched { deadline: Instant::now() + wait, token, cancelled: cancelled.clone() };
        watchdog().lock().insert(id, watched);
        CommitWatch { id, cancelled }
    }

    /// Stops watching; true when a cancel was sent.
    fn finish(self) -> bool {
        if watchdog().lock().remove(&self.id).is_some() {
            return false;
        }
        *self.cancelled.lock()
    }
}

/// A COMMIT whose outcome this side cannot know.
fn unknown_outcome(why: &str) -> Error {
    Error::new(ErrorCode::OutcomeUnknown, format!("the database did not confirm the commit: {why}"))
}

impl Pg {
    /// A pool of up to `opts.pool_size` connections.
    pub fn open(url: &str, opts: &PgOptions) -> Result<Pg, DbError> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| DbError::Unavailable(format!("invalid database url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(opts.connect_wait);
        }
        config.notice_callback(on_notice);
        let manager = Manager(PostgresConnectionManager::new(config, NoTls));
        let pool = r2d2::Pool::builder()
            .max_size(opts.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(opts.connect_wait)
            .connection_customizer(Box::new(SessionSettings {
                statement_timeout_ms: opts.statement_timeout_ms,
                synchronous_commit: opts.synchronous_commit,
            }))
            // Pool creation must not fail while the server is down: readiness
            // reports it, and connections are made as soon as it is back.
            .build_unchecked(manager);
        Ok(Pg { pool: Some(pool), commit_wait: opts.commit_wait })
    }

    fn pool(&self) -> Pool {
        self.pool.clone().expect("pool is present until drop")
    }

    /// Runs `body` in a transaction. With `want_lsn`, also returns the WAL
    /// position just past its commit, which a replica must have replayed to
    /// show the write (0 when the position could not be read: the write
    /// stands, the caller then cannot route its next reads by it).
    pub async fn write<T, F>(&self, want_lsn: bool, mut body: F) -> Result<(T, u64), Error>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        let (pool, commit_wait) = (self.pool(), self.commit_wait);
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut conn = conn(&pool)?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let Conn { client, prepared, broken, cancel } = &mut *conn;
                let mut t = client.transaction().map_err(|e| Error::from(map_err(e)))?;
                let mut tx = PgTx { conn: &mut t, prepared: &mut *prepared, in_tx: true, lost: false };
                let outcome = body(&mut tx);
                let lost = tx.lost;
                let result = match outcome {
                    Ok(v) => {
                        SYNC_WAIT_CUT.set(false);
                        let watch = CommitWatch::start(cancel.clone(), commit_wait);
                        let committed = t.commit();
                        let cancelled = watch.finish();
                        let cut = SYNC_WAIT_CUT.replace(false) || cancelled;
                        match committed.map_err(map_err) {
                            Ok(()) if !cut => Ok(v),
                            // Refused at commit: nothing committed, the body reruns
                            // (on this connection, which no cancel was sent to).
                            Err(e @ DbError::Transient(_)) if !cancelled => Err(Error::from(e)),
                            Ok(()) => {
                                *broken = true;
                                let why = format!("no synchronous standby confirmed it within {commit_wait:?}");
                                return Err(unknown_outcome(&why));
                            }
                            Err(e) => {
                                *broken = true;
                                return Err(unknown_outcome(&e.to_string()));
                            }
                        }
                    }
                    Err(e) => {
                        let _ = t.rollback();
                        Err(e)
                    }
                };
                // After the commit, so the position is past its record.
                let result = result.map(|v| {
                    let lsn = if want_lsn {
                        let mut tx = PgTx { conn: &mut *client, prepared: &mut *prepared, in_tx: false, lost: false };
                        lsn_of(&mut tx, COMMITTED_LSN).ok().flatten().unwrap_or(0)
                    } else {
                        0
                    };
                    (v, lsn)
                });
                match result {
                    Err(e) if e.code == ErrorCode::Transient && attempt < MAX_ATTEMPTS => {
                        metrics::counter!("db_transaction_retries_total").increment(1);
                        std::thread::sleep(Duration::from_millis(2u64 << attempt));
                    }
                    // Nothing was committed: the server went away or is no
                    // longer the primary. A fresh connection reaches whichever
                    // is the primary now (or waits for one, within bounds).
                    Err(_) if lost && attempt < MAX_ATTEMPTS && started.elapsed() < commit_wait => {
                        metrics::counter!("db_transaction_reconnects_total").increment(1);
                        *broken = true;
                        drop(conn);
                        std::thread::sleep(Duration::from_millis(50u64 << attempt.min(4)));
                        conn = self::conn(&pool)?;
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|e| Error::internal(format!("write task failed: {e}")))?
    }

    /// True when this reaches a primary that takes writes. A connection
    /// that finds a standby (the server was demoted under it) is discarded,
    /// so the next one is made through the URL's `target_session_attrs`.
    pub async fn is_primary(&self) -> bool {
        let pool = self.pool();
        tokio::task::spawn_blocking(move || {
            let Ok(mut conn) = pool.get() else { return false };
            let Conn { client, prepared, broken, .. } = &mut *conn;
            let mut tx = PgTx { conn: client, prepared, in_tx: false, lost: false };
            let standby =
                tx.query_one("SELECT pg_is_in_recovery()", &[]).map(|r| matches!(r.0.first(), Some(Cell::Int(1))));
            match standby {
                Ok(false) => true,
                Ok(true) => {
                    *broken = true;
                    false
                }
                Err(_) => false,
            }
        })
        .await
        .unwrap_or(false)
    }

    pub async fn read<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        let pool = self.pool();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn(&pool)?;
            let Conn { client, prepared, broken, .. } = &mut *conn;
            let mut tx = PgTx { conn: client, prepared, in_tx: false, lost: false };
            let result = body(&mut tx);
            *broken |= tx.lost;
            result
        })
        .await
        .map_err(|e| Error::internal(format!("read task failed: {e}")))?
    }

    /// Runs a query answering one WAL position (see [`PRIMARY_LSN`] and
    /// [`REPLAYED_LSN`]) on this thread; `None` when the server answers
    /// NULL (a replica asked where a primary is, or the reverse).
    pub fn lsn_blocking(&self, sql: &str) -> Result<Option<u64>, DbError> {
        let pool = self.pool();
        let mut conn = pool.get().map_err(|e| DbError::Unavailable(e.to_string()))?;
        let Conn { client, prepared, .. } = &mut *conn;
        lsn_of(&mut PgTx { conn: client, prepared, in_tx: false, lost: false }, sql)
    }

    /// Runs a query answering one text value on this thread.
    pub fn text_blocking(&self, sql: &str) -> Result<Option<String>, DbError> {
        let pool = self.pool();
        let mut conn = pool.get().map_err(|e| DbError::Unavailable(e.to_string()))?;
        let Conn { client, prepared, .. } = &mut *conn;
        let row = PgTx { conn: client, prepared, in_tx: false, lost: false }.query_one(sql, &[])?;
        Ok(match row.0.into_iter().next() {
            Some(Cell::Text(t)) => Some(t),
            _ => None,
        })
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.pool().state();
        PoolStats {
            readers_total: state.connections as usize,
            readers_idle: state.idle_connections as usize,
            write_queue: 0,
        }
    }
}

/// Where this server's WAL has been written to (a primary).
pub const PRIMARY_LSN: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
/// Read right after a commit: the WAL is written at least past the commit's
/// record, since a synchronous commit (`synchronous_commit` other than
/// `off`) returns once its record is flushed. Not the insert position, which
/// on an idle server stands past a page header no replica ever reports
/// having replayed.
const COMMITTED_LSN: &str = PRIMARY_LSN;
/// How far a replica has applied its primary's WAL; NULL on a primary.
pub const REPLAYED_LSN: &str = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint";

pub(crate) fn lsn_of(tx: &mut dyn Tx, sql: &str) -> Result<Option<u64>, DbError> {
    Ok(tx.query_one(sql, &[])?.0.first().and_then(|c| match c {
        Cell::Int(v) => Some(*v as u64),
        _ => None,
    }))
}

/// A NULL that binds to a parameter of any type (PostgreSQL types every
/// parameter, and `Option<i64>` would refuse a text column).
#[derive(Debug)]
struct AnyNull;

impl ToSql for AnyNull {
    fn to_sql(&self, _: &Type, _: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

struct PgTx<'a, C: postgres::GenericClient> {
    conn: &'a mut C,
    prepared: &'a mut HashMap<String, Statement>,
    /// Inside a transaction a failed statement aborts it, so a retry is the
    /// whole body's; outside one the statement alone can be retried.
    in_tx: bool,
    /// A statement failed because the server went away or is not a primary.
    lost: bool,
}

impl<C: postgres::GenericClient> PgTx<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.conn.prepare(sql).map_err(|e| self.failed(e))?;
        if self.prepared.len() >= PREPARED_MAX {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Runs `run` with `sql` prepared. A statement prepared before a schema
    /// change (another instance migrated) is refused by the server: the
    /// connection's statements are dropped, and the statement (outside a
    /// transaction) or the body (inside one) runs again.
    fn run_prepared<T>(
        &mut self,
        sql: &str,
        run: impl Fn(&mut C, &Statement) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let statement = self.statement(sql)?;
        match run(self.conn, &statement) {
            Err(e) if is_stale(&e) => {
                self.prepared.clear();
                if self.in_tx {
                    return Err(DbError::Transient(e.to_string()));
                }
                let statement = self.statement(sql)?;
                run(self.conn, &statement).map_err(|e| self.failed(e))
            }
            other => other.map_err(|e| self.failed(e)),
        }
    }

    fn failed(&mut self, e: postgres::Error) -> DbError {
        self.lost |= is_lost(&e);
        map_err(e)
    }
}

fn bind<'p>(params: &'p [Param<'p>]) -> Vec<Box<dyn ToSql + Sync + 'p>> {
    params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync + 'p> {
            match p {
                Param::Null => Box::new(AnyNull),
                Param::Int(v) => Box::new(*v),
                Param::Text(v) => Box::new(*v),
                Param::Blob(v) => Box::new(*v),
            }
        })
        .collect()
}

fn cells(row: &postgres::Row) -> Result<Row, DbError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let bad = |e: postgres::Error| DbError::Other(format!("column {}: {e}", col.name()));
        let cell = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(bad)?.map(Cell::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(bad)?.map(|v| Cell::Int(v as i64)),
            Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(bad)?.map(|v| Cell::Int(v as i64)),
            Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(bad)?.map(|v| Cell::Int(v as i64)),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(bad)?.map(Cell::Blob),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                row.try_get::<_, Option<String>>(i).map_err(bad)?.map(Cell::Text)
            }
            ref other => return Err(DbError::Other(format!("column {}: unsupported type {other}", col.name()))),
        };
        out.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(out))
}

impl<C: postgres::GenericClient> Tx for PgTx<'_, C> {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError> {
        let boxed = bind(params);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        self.run_prepared(sql, |c, s| c.execute(s, &refs))
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let boxed = bind(params);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        self.run_prepared(sql, |c, s| c.query(s, &refs))?.iter().map(cells).collect()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

/// The server refuses a prepared statement whose result changed shape since
/// it was prepared (a column added to a table it selects `*` from).
fn is_stale(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::FEATURE_NOT_SUPPORTED)
        && e.as_db_error().is_some_and(|d| d.message().contains("cached plan"))
}

/// The server is gone (crashed, shut down, unreachable) or is not a primary
/// (demoted, or a standby promoted elsewhere): what a statement did there
/// is lost with the transaction, and a fresh connection may find the primary.
fn is_lost(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code)
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        }
        // No SQLSTATE: the connection itself failed (closed, or I/O).
        None => e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

fn map_err(e: postgres::Error) -> DbError {
    use postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let msg = db.message().to_string();
        return if *code == SqlState::UNIQUE_VIOLATION {
            DbError::Unique(db.constraint().unwrap_or(&msg).to_string())
        } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            DbError::Transient(msg)
        } else if *code == SqlState::QUERY_CANCELED {
            DbError::Unavailable(format!("statement timed out: {msg}"))
        } else if code.code().starts_with("08") || code.code().starts_with("57") {
            DbError::Unavailable(msg)
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            DbError::Unavailable(format!("the server is not a primary (any more): {msg}"))
        } else {
            DbError::Other(format!("{msg} ({})", code.code()))
        };
    }
    if e.is_closed() {
        DbError::Unavailable(e.to_string())
    } else {
        DbError::Unavailable(format!("database connection failed: {e}"))
    }
}
