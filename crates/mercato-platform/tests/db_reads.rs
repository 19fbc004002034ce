//! Reads through the pool: on SQLite a read body runs in one read transaction,
//! which must end however the body ends, or the reader would keep serving its
//! old snapshot to every later read. Runs on PostgreSQL too when
//! `MERCATO_TEST_POSTGRES_URL` is set.

use mercato_core::Error;
use mercato_platform::{db::testing, params};

#[tokio::test]
async fn a_read_that_fails_or_panics_leaves_no_old_snapshot_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = testing::fresh(dir.path());
    db.write(|tx| {
        tx.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)", params![])?;
        tx.execute("INSERT INTO counter (id, n) VALUES (1, 1)", params![])?;
        Ok(())
    })
    .await
    .unwrap();
    // More failing reads than there are readers, through both entry points,
    // so that every pooled connection has ended a body badly.
    for i in 0..12 {
        let body = move |tx: &mut dyn mercato_platform::Tx| -> Result<i64, Error> {
            let n = tx.query_one("SELECT n FROM counter WHERE id = 1", params![])?.int(0)?;
            assert_eq!(n, 1);
            if i % 3 == 0 {
                panic!("a read body that panics");
            }
            Err(Error::conflict("a read body that fails after reading"))
        };
        let r = if i % 2 == 0 { db.read(body).await } else { db.lookup(body).await };
        assert!(r.is_err());
    }
    db.write(|tx| tx.execute("UPDATE counter SET n = 2 WHERE id = 1", params![]).map(drop).map_err(Error::from))
        .await
        .unwrap();
    for _ in 0..12 {
        let n = db.lookup(|tx| tx.query_one("SELECT n FROM counter WHERE id = 1", params![])?.int(0)).await.unwrap();
        assert_eq!(n, 2, "a reader kept a snapshot from before the write");
        let n = db.read(|tx| tx.query_one("SELECT n FROM counter WHERE id = 1", params![])?.int(0)).await.unwrap();
        assert_eq!(n, 2, "a reader kept a snapshot from before the write");
    }
}
