//! The PostgreSQL backend: a pool of blocking connections driven from tokio's
//! blocking pool. Transactions run at READ COMMITTED with the same conditional
//! updates as on SQLite; a serialization failure or deadlock reruns the body
//! (bodies only touch the database, so rerunning is safe), and every statement
//! runs under a statement timeout.
//!
//! Each connection keeps its statements prepared: a statement given as text
//! costs two round trips (prepare, then execute) and a parse and plan on the
//! server every time, a prepared one a single round trip.

use super::{Cell, DbError, Dialect, Param, PoolStats, Row, Tx};
use mercato_core::{Error, ErrorCode};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};
use r2d2_postgres::PostgresConnectionManager;
use std::collections::HashMap;
use std::time::Duration;

type Pool = r2d2::Pool<Manager>;

/// Statements one connection keeps prepared. Most SQL is fixed text; the few
/// statements built per call (IN lists, filters) have a handful of shapes
/// each, and the bound only guards against a shape per value.
const PREPARED_MAX: usize = 512;

/// A pooled connection and the statements prepared on it.
struct Conn {
    client: Client,
    prepared: HashMap<String, Statement>,
}

/// Makes [`Conn`]s: r2d2_postgres's manager, plus the statement cache.
#[derive(Debug)]
struct Manager(PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        Ok(Conn { client: self.0.connect()?, prepared: HashMap::new() })
    }
    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }
    fn has_broken(&self, conn: &mut Conn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

pub struct Pg {
    /// Always Some until drop.
    pool: Option<Pool>,
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
struct StatementTimeout(u64);

impl r2d2::CustomizeConnection<Conn, postgres::Error> for StatementTimeout {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        // Notices ("relation already exists, skipping" from idempotent
        // migrations) are not worth a log line each.
        conn.client.batch_execute(&format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; SET client_min_messages = warning",
            self.0, self.0
        ))
    }
}

impl Pg {
    /// A pool of up to `pool_size` connections; waiting longer than
    /// `connect_wait` for one fails the call as unavailable.
    pub fn open(url: &str, pool_size: u32, statement_timeout_ms: u64, connect_wait: Duration) -> Result<Pg, DbError> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| DbError::Unavailable(format!("invalid database url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_wait);
        }
        let manager = Manager(PostgresConnectionManager::new(config, NoTls));
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(connect_wait)
            .connection_customizer(Box::new(StatementTimeout(statement_timeout_ms)))
            // Pool creation must not fail while the server is down: readiness
            // reports it, and connections are made as soon as it is back.
            .build_unchecked(manager);
        Ok(Pg { pool: Some(pool) })
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
        let pool = self.pool();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn(&pool)?;
            let Conn { client, prepared } = &mut *conn;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut t = client.transaction().map_err(|e| Error::from(map_err(e)))?;
                let outcome = body(&mut PgTx { conn: &mut t, prepared: &mut *prepared, in_tx: true });
                let result = match outcome {
                    Ok(v) => t.commit().map(|_| v).map_err(|e| Error::from(map_err(e))),
                    Err(e) => {
                        let _ = t.rollback();
                        Err(e)
                    }
                };
                // After the commit, so the position is past its record.
                let result = result.map(|v| {
                    let lsn = if want_lsn {
                        let mut tx = PgTx { conn: &mut *client, prepared: &mut *prepared, in_tx: false };
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
                    other => return other,
                }
            }
        })
        .await
        .map_err(|e| Error::internal(format!("write task failed: {e}")))?
    }

    pub async fn read<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        let pool = self.pool();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn(&pool)?;
            let Conn { client, prepared } = &mut *conn;
            body(&mut PgTx { conn: client, prepared, in_tx: false })
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
        let Conn { client, prepared } = &mut *conn;
        lsn_of(&mut PgTx { conn: client, prepared, in_tx: false }, sql)
    }

    /// Runs a query answering one text value on this thread.
    pub fn text_blocking(&self, sql: &str) -> Result<Option<String>, DbError> {
        let pool = self.pool();
        let mut conn = pool.get().map_err(|e| DbError::Unavailable(e.to_string()))?;
        let Conn { client, prepared } = &mut *conn;
        let row = PgTx { conn: client, prepared, in_tx: false }.query_one(sql, &[])?;
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
}

impl<C: postgres::GenericClient> PgTx<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.conn.prepare(sql).map_err(map_err)?;
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
                run(self.conn, &statement).map_err(map_err)
            }
            other => other.map_err(map_err),
        }
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
