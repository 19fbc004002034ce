//! Moving a logical shard to another database while the shop runs (stage
//! 7): `mercato shards move`.
//!
//! The copy and the catching up are PostgreSQL's logical replication, not
//! ours: the database the shard leaves publishes the shard's rows (a row
//! filter on the id bits that name the shard), the one it goes to subscribes,
//! copies them and then follows every change. Mercato only decides when the
//! shard changes hands:
//!
//! 1. the destination records the shard `incoming` (its statements refuse
//!    there), and loses any rows of it a failed move left;
//! 2. publication, slot and subscription; wait until the copy is done and
//!    the destination trails by less than [`CAUGHT_UP`];
//! 3. **freeze**: one transaction on the source takes the shard's row `FOR
//!    UPDATE` (waiting for the writes under way, which hold it `FOR KEY
//!    SHARE`) and marks it `moved`. From its commit the source refuses the
//!    shard, and statements refused wait and read the map again;
//! 4. the shard's marker row, replicated with its rows, is bumped on the
//!    source; once the destination shows it, it has applied every write the
//!    source took on the shard: it serves the shard. The freeze ends;
//! 5. the replication is dropped and the source's stale copy deleted.
//!
//! The source gives the shard up before the destination takes it, so a
//! crash between 3 and 4 leaves the shard served nowhere (writes to it wait,
//! then fail, and the shop refuses to start) rather than by two databases;
//! running the same move again finishes it.

use crate::service::check_shards;
use crate::store;
use mercato_core::Error;
use mercato_platform::Db;
use mercato_platform::db::Dialect;
use mercato_platform::shards::{INCOMING, MOVED, Records, SERVING, ShardRing};
use std::time::{Duration, Instant};

/// The destination trails the source by less than this when the freeze
/// starts, so the freeze waits for about this much replication.
const CAUGHT_UP: Duration = Duration::from_millis(100);
/// Longest wait for the copy and the catching up.
const COPY_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest wait for the destination to show the freeze's marker.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(60);
/// Rows of the stale copy deleted per transaction.
const DELETE_BATCH: i64 = 5_000;
/// Statements that read the shard just before the freeze (their fence saw
/// it served) may still be reading the source's copy: wait this long before
/// deleting it.
const READERS_GRACE: Duration = Duration::from_secs(2);

/// What a move did, for the operator and the tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MoveReport {
    pub shard: u16,
    /// 1-based, as in `database.domains.orders.shards`.
    pub from: usize,
    pub to: usize,
    /// Orders of the shard the destination holds once it serves it.
    pub orders: i64,
    pub copy_ms: u64,
    /// From the source refusing the shard to the destination serving it.
    pub freeze_ms: u64,
    /// Orders of the stale copy deleted from the source.
    pub deleted: u64,
}

/// Each database of `ring` with the shards it serves and their states: the
/// map as the databases record it.
pub async fn shard_table(ring: &ShardRing) -> Result<Vec<Vec<(i64, String)>>, Error> {
    let records = Records::read(ring).await?.records;
    Ok(records.into_iter().map(|db| db.into_iter().map(|(s, _, st)| (s, st)).collect()).collect())
}

/// Moves logical shard `shard` to database `to` (0-based in the ring):
/// its rows of `tables` (each with the column naming the shard, children
/// first; the orders' [`store::SHARD_TABLES`] and those of the domains whose
/// rows live with an order). `source_conninfo` is how the destination's
/// server reaches the source's (libpq URL or key=value string). `say` hears
/// progress.
pub async fn move_shard(
    ring: &ShardRing,
    tables: &[(&'static str, &'static str)],
    shard: u16,
    to: usize,
    source_conninfo: &dyn Fn(usize) -> String,
    say: &dyn Fn(&str),
) -> Result<MoveReport, Error> {
    let logical = i64::from(ring.logical());
    if shard >= ring.logical() {
        return Err(Error::field("shard", format!("must be below orders.logical_shards ({logical})")));
    }
    let dbs = ring.databases();
    let Some(dest) = dbs.get(to) else {
        return Err(Error::field("to", format!("must be between 1 and {} (the shards list)", dbs.len())));
    };
    if dbs.iter().any(|d| d.dialect() != Dialect::Postgres) {
        return Err(Error::validation("moving a shard needs PostgreSQL databases (logical replication)"));
    }
    let s = i64::from(shard);
    let table = shard_table(ring).await?;
    let state_in = |i: usize| table[i].iter().find(|(x, _)| *x == s).map(|(_, st)| st.as_str());
    // The database serving the shard; or, when none does (a move stopped
    // after its freeze, or before its cleanup), the one it moved from.
    let from = (0..dbs.len())
        .find(|&i| i != to && state_in(i) == Some(SERVING))
        .or_else(|| (0..dbs.len()).find(|&i| i != to && state_in(i) == Some(MOVED)));
    let Some(from) = from else {
        return match state_in(to) {
            Some(SERVING) => Err(Error::conflict(format!("logical shard {shard} is already in database {}", to + 1))),
            _ => Err(Error::validation(format!("no database records logical shard {shard}"))),
        };
    };
    let source = &dbs[from];
    let name = format!("mercato_shard_{shard}");
    let mut report = MoveReport { shard, from: from + 1, to: to + 1, orders: 0, copy_ms: 0, freeze_ms: 0, deleted: 0 };

    if state_in(to) == Some(SERVING) && state_in(from) == Some(MOVED) {
        say("the shard already moved; dropping the replication and the stale copy");
    } else if state_in(from) == Some(MOVED) {
        say("resuming a move stopped during its freeze");
        let frozen = Instant::now();
        hand_over(source, dest, s, logical).await?;
        report.freeze_ms = frozen.elapsed().as_millis() as u64;
    } else {
        let wal = source.read(store::wal_level).await?;
        if wal != "logical" {
            return Err(Error::validation(format!(
                "database {} has wal_level = {wal}: moving a shard out of it needs wal_level = logical \
                 (set it and restart that server)",
                from + 1
            )));
        }
        say(&format!("moving logical shard {shard} from database {} to {}", from + 1, to + 1));
        // Leftovers of a move that failed before its freeze.
        let n = name.clone();
        dest.read(move |tx| store::unsubscribe(tx, &n)).await?;
        drop_publication(source, &name, tables).await?;
        dest.write(move |tx| store::set_shard_state(tx, s, logical, INCOMING)).await?;
        delete_rows(dest, tables, s, logical).await?;

        let copying = Instant::now();
        source.write(move |tx| store::bump_mark(tx, s)).await?;
        let n = name.clone();
        let t = tables.to_vec();
        source.read(move |tx| store::publish_shard(tx, &n, &t, s, logical)).await?;
        let (n, conninfo) = (name.clone(), source_conninfo(from));
        dest.read(move |tx| store::subscribe(tx, &n, &conninfo)).await?;
        say("copying the shard's rows");
        let n = name.clone();
        wait(COPY_TIMEOUT, "the copy of the shard's rows", || {
            let n = n.clone();
            async move { Ok(dest.read(move |tx| store::tables_syncing(tx, &n)).await? == 0) }
        })
        .await?;
        say("following the shard's changes until the destination is close behind");
        loop {
            let lag = catch_up(source, dest, s, COPY_TIMEOUT).await?;
            if lag < CAUGHT_UP {
                break;
            }
        }
        report.copy_ms = copying.elapsed().as_millis() as u64;

        say("freezing the shard's writes");
        let frozen = Instant::now();
        let state = source
            .write(move |tx| {
                let state = store::freeze_shard(tx, s)?;
                store::set_shard_state(tx, s, logical, MOVED)?;
                Ok(state)
            })
            .await?;
        if state.as_deref() != Some(SERVING) {
            return Err(Error::internal(format!("logical shard {shard} changed state during the move: {state:?}")));
        }
        hand_over(source, dest, s, logical).await?;
        report.freeze_ms = frozen.elapsed().as_millis() as u64;
        say(&format!("database {} serves logical shard {shard}; writes were held {} ms", to + 1, report.freeze_ms));
    }

    let n = name.clone();
    dest.read(move |tx| store::unsubscribe(tx, &n)).await?;
    drop_publication(source, &name, tables).await?;
    report.orders = dest.read(move |tx| store::count_shard_orders(tx, s, logical)).await?;
    tokio::time::sleep(READERS_GRACE).await;
    say("deleting the source's stale copy");
    report.deleted = source.read(move |tx| store::count_shard_orders(tx, s, logical)).await? as u64;
    delete_rows(source, tables, s, logical).await?;
    // The ring as the databases now say: refuses if the move left anything
    // a start would refuse.
    check_shards(ring).await?;
    Ok(report)
}

/// After the freeze: waits until the destination shows the freeze's marker
/// (so it has every write the source took on the shard), then has it serve
/// the shard.
async fn hand_over(source: &Db, dest: &Db, s: i64, logical: i64) -> Result<(), Error> {
    // The freeze's marker, or a later one: any write on the source's marker
    // row after the freeze is replicated after every write before it.
    let mark = source.write(move |tx| store::bump_mark(tx, s)).await?;
    wait(FREEZE_TIMEOUT, "the destination to apply the shard's last writes", || async move {
        Ok(dest.read(move |tx| store::mark(tx, s)).await? == Some(mark))
    })
    .await?;
    dest.write(move |tx| store::set_shard_state(tx, s, logical, SERVING)).await
}

/// Bumps the shard's marker on the source and waits for the destination to
/// show it: how far behind it was.
async fn catch_up(source: &Db, dest: &Db, s: i64, timeout: Duration) -> Result<Duration, Error> {
    let started = Instant::now();
    let mark = source.write(move |tx| store::bump_mark(tx, s)).await?;
    wait(timeout, "the destination to catch up", || async move {
        Ok(dest.read(move |tx| store::mark(tx, s)).await? == Some(mark))
    })
    .await?;
    Ok(started.elapsed())
}

/// Deletes shard `s`'s rows of `tables` from `db`, in batches.
async fn delete_rows(db: &Db, tables: &[(&'static str, &'static str)], s: i64, logical: i64) -> Result<(), Error> {
    for &(table, column) in tables {
        while db.write(move |tx| store::delete_shard_rows(tx, table, column, s, logical, DELETE_BATCH)).await? > 0 {}
    }
    Ok(())
}

/// Drops the publication and its slot on the source, once the slot is no
/// longer in use (a dropped subscription's sender takes a moment to go).
async fn drop_publication(source: &Db, name: &str, tables: &[(&'static str, &'static str)]) -> Result<(), Error> {
    let t = tables.to_vec();
    wait(Duration::from_secs(30), "the shard's replication slot to be released", || {
        let (n, n2, t) = (name.to_string(), name.to_string(), t.clone());
        async move {
            source.read(move |tx| store::unpublish_shard(tx, &n, &t)).await?;
            Ok(!source.read(move |tx| store::slot_exists(tx, &n2)).await?)
        }
    })
    .await
}

/// Polls `done` every 20 ms until it says so, or fails after `timeout`.
async fn wait<F, Fut>(timeout: Duration, what: &str, mut done: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if done().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::unavailable(format!("gave up waiting for {what} after {timeout:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
