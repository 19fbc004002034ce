//! The embedded backend: one writer thread that runs transaction bodies in
//! commit groups, plus a small pool of read connections (WAL lets readers run
//! beside the writer).

use super::{Cell, DbError, DbOptions, Dialect, Param, PoolStats, Row, Synchronous, Tx};
use mercato_core::Error;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, types::ValueRef};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Semaphore, mpsc, oneshot};

type Finisher = Box<dyn FnOnce(Option<&DbError>) + Send>;
type Job = Box<dyn FnOnce(&mut SqliteTx<'_>) -> Finisher + Send>;

pub struct Sqlite {
    jobs: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
    readers_total: usize,
}

/// How often the checkpointer copies committed WAL frames into the database
/// while writes are few...
const CHECKPOINT_IDLE: std::time::Duration = std::time::Duration::from_millis(100);
/// ...and while they are many: a checkpoint that found more than
/// `CHECKPOINT_BUSY_FRAMES` frames comes back this soon.
const CHECKPOINT_BUSY: std::time::Duration = std::time::Duration::from_millis(10);
const CHECKPOINT_BUSY_FRAMES: i64 = 1_000;

/// Copies the WAL into the database file (and fsyncs it) off the writer's
/// path: auto-checkpoints ran inside the commit of whichever write crossed
/// 1,000 pages, which under checkout load (about 15,000 WAL pages a second)
/// was many times a second. PASSIVE never blocks the writer or readers.
/// Measured: checkout 1,616-1,766 -> 2,291-2,436 iterations/s. (Mapping the
/// database into memory as well was slower, 2,050-2,116, and each
/// connection's mapping counted again in RSS.)
///
/// Under heavier load (80,000 frames a second) a fixed 100 ms let the WAL
/// reach the writer's 10,000-page safety net between two passes, and the
/// writer then checkpointed and fsynced inside a commit while every other
/// write waited: hence the shorter pause while the WAL fills fast. Stops once
/// every handle to the database is gone.
fn checkpointer(conn: Connection, alive: std::sync::Weak<AtomicUsize>) {
    let mut pause = CHECKPOINT_IDLE;
    loop {
        std::thread::sleep(pause);
        if alive.upgrade().is_none() {
            return;
        }
        let frames =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
        match frames {
            Ok((wal, copied)) => {
                tracing::debug!(wal, copied, "sqlite checkpoint");
                pause = if wal > CHECKPOINT_BUSY_FRAMES { CHECKPOINT_BUSY } else { CHECKPOINT_IDLE };
            }
            Err(e) => tracing::warn!(error = %e, "sqlite checkpoint failed"),
        }
    }
}

fn configure(conn: &Connection, sync: Synchronous, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints run on their own thread (`checkpointer`); this is only the
    // safety net should that thread fall far behind. (The WAL starts over
    // only when the writer begins with every frame copied, which under
    // steady writes is mostly this checkpoint. Measured: 3,000 pages was
    // slower than 10,000, 20,000 no faster, and 100,000 slower again: the
    // readers' frame lookups grow with the WAL.)
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(())
}

impl Sqlite {
    pub fn open(path: &Path, name: &str, opts: DbOptions) -> Result<Sqlite, DbError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DbError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let writer = Connection::open(path).map_err(map_err)?;
        configure(&writer, opts.synchronous, 16 * 1024).map_err(map_err)?;
        let mut readers = Vec::with_capacity(opts.readers);
        for _ in 0..opts.readers.max(1) {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(map_err)?;
            conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(map_err)?;
            conn.pragma_update(None, "cache_size", -(8 * 1024)).map_err(map_err)?;
            conn.set_prepared_statement_cache_capacity(256);
            readers.push(conn);
        }
        let readers_total = readers.len();
        let (jobs, rx) = mpsc::channel::<Job>(4096);
        let queued = Arc::new(AtomicUsize::new(0));
        let max_batch = opts.max_batch.max(1);
        let queued_w = queued.clone();
        std::thread::Builder::new()
            .name(format!("sqlite-writer-{name}"))
            .spawn(move || writer_loop(writer, rx, max_batch, queued_w))
            .map_err(|e| DbError::Other(e.to_string()))?;
        let checkpoints = Connection::open(path).map_err(map_err)?;
        checkpoints.busy_timeout(std::time::Duration::from_secs(5)).map_err(map_err)?;
        let alive = Arc::downgrade(&queued);
        std::thread::Builder::new()
            .name(format!("sqlite-checkpoint-{name}"))
            .spawn(move || checkpointer(checkpoints, alive))
            .map_err(|e| DbError::Other(e.to_string()))?;
        Ok(Sqlite {
            jobs,
            queued,
            readers: Arc::new(Mutex::new(readers)),
            reader_slots: Arc::new(Semaphore::new(readers_total)),
            readers_total,
        })
    }

    pub async fn write<T, F>(&self, mut body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, Error>>();
        let job: Job = Box::new(move |conn: &mut SqliteTx<'_>| {
            let outcome = conn.savepoint(&mut body);
            Box::new(move |commit_error: Option<&DbError>| {
                let result = match commit_error {
                    None => outcome,
                    Some(e) => Err(e.clone().into()),
                };
                let _ = tx.send(result);
            })
        });
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(job).await.is_err() {
            return Err(Error::unavailable("database writer has stopped"));
        }
        rx.await.map_err(|_| Error::unavailable("database writer has stopped"))?
    }

    pub async fn read<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        let permit = self.reader_slots.clone().acquire_owned().await.map_err(|_| Error::unavailable("closed"))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || run_read(&readers, permit, body))
            .await
            .map_err(|e| Error::internal(format!("read task failed: {e}")))?
    }

    /// Runs a short read on the calling thread when a reader is idle. A point
    /// lookup on cached pages takes a few microseconds; sending it to the
    /// blocking pool and waking the task again costs two thread switches,
    /// which the checkout profile showed to be most of its CPU.
    pub async fn lookup<T, F>(&self, body: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, Error> + Send + 'static,
    {
        let Ok(permit) = self.reader_slots.clone().try_acquire_owned() else {
            return self.read(body).await;
        };
        run_read(&self.readers, permit, body)
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            readers_total: self.readers_total,
            readers_idle: self.reader_slots.available_permits(),
            write_queue: self.queued.load(Ordering::Relaxed),
        }
    }
}

/// Runs `body` on an idle reader (the permit guarantees there is one) and puts
/// the reader back.
fn run_read<T>(
    readers: &Mutex<Vec<Connection>>,
    permit: tokio::sync::OwnedSemaphorePermit,
    body: impl FnOnce(&mut dyn Tx) -> Result<T, Error>,
) -> Result<T, Error> {
    let conn = readers.lock().pop().expect("a permit guarantees an idle reader");
    // One read transaction for the whole body: its statements see one
    // snapshot, and the WAL read lock and page-cache check are taken once
    // instead of once per statement.
    let result = match run_cached(&conn, "BEGIN") {
        Ok(()) => {
            let mut tx = SqliteTx { conn: &conn };
            catch_unwind(AssertUnwindSafe(|| body(&mut tx)))
                .unwrap_or_else(|_| Err(Error::internal("read body panicked")))
        }
        Err(e) => Err(map_err(e).into()),
    };
    // A reader must never go back to the pool inside a transaction: it would
    // keep serving that old snapshot.
    if !conn.is_autocommit() && run_cached(&conn, "COMMIT").is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    readers.lock().push(conn);
    drop(permit);
    result
}

/// Takes the first job, then whatever else is already queued (up to
/// `max_batch`), runs each in a savepoint inside one transaction, commits once,
/// and only then answers every caller. A caller's write is never acknowledged
/// before its commit.
fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, max_batch: usize, queued: Arc<AtomicUsize>) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let mut finishers = Vec::with_capacity(batch.len());
        let begin = run_cached(&conn, "BEGIN IMMEDIATE").map_err(map_err);
        if let Err(e) = begin {
            // Dropping a job drops its reply channel: each caller gets "unavailable".
            batch.clear();
            tracing::error!(error = %e, "sqlite writer could not begin a transaction");
            continue;
        }
        let mut tx = SqliteTx { conn: &conn };
        // Jobs that arrived while the group ran join it before the commit: a
        // commit writes every page the group dirtied once, and the pages
        // checkout touches (the tails of orders, outbox, history...) are
        // mostly the same for every job.
        loop {
            for job in batch.drain(..) {
                finishers.push(job(&mut tx));
            }
            while finishers.len() + batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            queued.fetch_sub(batch.len(), Ordering::Relaxed);
        }
        let commit = run_cached(&conn, "COMMIT").map_err(map_err);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        metrics::histogram!("db_commit_group_size").record(finishers.len() as f64);
        for fin in finishers {
            fin(commit.as_ref().err());
        }
    }
}

/// Runs a statement without parameters from the statement cache: the
/// writer's transaction and savepoint statements run several times per commit
/// group, and `execute_batch` would parse each one anew.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(drop)
}

pub struct SqliteTx<'c> {
    conn: &'c Connection,
}

impl SqliteTx<'_> {
    /// Runs one body in its own savepoint so its failure rolls back only its own
    /// writes, never a neighbour's in the same commit group.
    fn savepoint<T>(&mut self, body: &mut dyn FnMut(&mut dyn Tx) -> Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = run_cached(self.conn, "SAVEPOINT body") {
            return Err(map_err(e).into());
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| body(self)))
            .unwrap_or_else(|_| Err(Error::internal("transaction body panicked")));
        let end = match outcome {
            Ok(_) => run_cached(self.conn, "RELEASE body"),
            Err(_) => self.conn.execute_batch("ROLLBACK TO body; RELEASE body"),
        };
        match (outcome, end) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(map_err(e).into()),
        }
    }
}

/// Statements keep PostgreSQL's `$1` placeholders: SQLite reads `$1` as a
/// *named* parameter, numbered by first appearance, so each value is bound by
/// its name rather than its position (a query may mention `$2` first). The
/// SQL text is then used as written, and the statement cache is keyed by it
/// without rewriting it on every call.
fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Param<'_>]) -> rusqlite::Result<()> {
    const NAMES: [&str; 24] = [
        "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16", "$17",
        "$18", "$19", "$20", "$21", "$22", "$23", "$24",
    ];
    for (i, p) in params.iter().enumerate() {
        let idx = match NAMES.get(i) {
            // Most statements mention $1, $2, ... in order, so the i-th
            // parameter is usually the one: no search by name.
            Some(name) if stmt.parameter_name(i + 1) == Some(name) => Some(i + 1),
            Some(name) => stmt.parameter_index(name)?,
            None => stmt.parameter_index(&format!("${}", i + 1))?,
        };
        // A value the statement never mentions is skipped: PostgreSQL refuses
        // such a call outright, so its test suite catches the mistake.
        let Some(idx) = idx else { continue };
        match p {
            Param::Null => stmt.raw_bind_parameter(idx, rusqlite::types::Null)?,
            Param::Int(v) => stmt.raw_bind_parameter(idx, v)?,
            Param::Text(v) => stmt.raw_bind_parameter(idx, v)?,
            Param::Blob(v) => stmt.raw_bind_parameter(idx, v)?,
        }
    }
    Ok(())
}

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        bind(&mut stmt, params).map_err(map_err)?;
        let n = stmt.raw_execute().map(|n| n as u64).map_err(map_err);
        note_scan(&stmt, sql);
        n
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        bind(&mut stmt, params).map_err(map_err)?;
        let ncols = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            let mut cells = Vec::with_capacity(ncols);
            for i in 0..ncols {
                cells.push(match row.get_ref(i).map_err(map_err)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Int(v as i64),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            out.push(Row(cells));
        }
        drop(rows);
        note_scan(&stmt, sql);
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

/// Steps of a full table scan above which a statement is reported: a missing
/// index shows up as a query that slows down as the table grows (it once cost
/// checkout a quarter of its CPU), long before it shows up in a profile.
const SCAN_REPORT_STEPS: i32 = 1000;

fn note_scan(stmt: &rusqlite::Statement<'_>, sql: &str) {
    let steps = stmt.reset_status(rusqlite::StatementStatus::FullscanStep);
    let auto_index = stmt.reset_status(rusqlite::StatementStatus::AutoIndex);
    if steps > SCAN_REPORT_STEPS || auto_index > 0 {
        metrics::counter!("db_full_scans_total").increment(1);
        tracing::debug!(target: "mercato::db::scan", steps, auto_index, sql, "statement scanned a table");
    }
}

fn map_err(e: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode as C;
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        let msg = msg.clone().unwrap_or_else(|| e.to_string());
        return match f.code {
            C::ConstraintViolation
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                DbError::Unique(msg)
            }
            C::DatabaseBusy | C::DatabaseLocked => DbError::Transient(msg),
            C::CannotOpen | C::NotADatabase | C::DiskFull | C::SystemIoFailure => DbError::Unavailable(msg),
            _ => DbError::Other(msg),
        };
    }
    DbError::Other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_bound_by_number_not_by_first_appearance() {
        let conn = Connection::open_in_memory().unwrap();
        let mut tx = SqliteTx { conn: &conn };
        let args: Vec<Param<'_>> = (1..=10).map(Param::Int).collect();
        let rows = tx.query("SELECT $2, $1, $10, $2 + $1", &args).unwrap();
        assert_eq!(rows[0].int(0).unwrap(), 2);
        assert_eq!(rows[0].int(1).unwrap(), 1);
        assert_eq!(rows[0].int(2).unwrap(), 10);
        assert_eq!(rows[0].int(3).unwrap(), 3);
        let rows = tx.query("SELECT '$1' || $1", &[Param::Text("x")]).unwrap();
        assert_eq!(rows[0].str(0).unwrap(), "$1x");
    }
}
