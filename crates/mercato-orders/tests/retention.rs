//! Finished checkout records are kept for the Idempotency-Key replay window,
//! then forgotten; unfinished ones stay for the sweeper.

use mercato_platform::{Db, params};

async fn open(dir: &tempfile::TempDir) -> Db {
    let db = mercato_platform::db::testing::fresh(dir.path());
    db.migrate("platform", mercato_platform::MIGRATIONS).await.unwrap();
    db.migrate("orders", mercato_orders::MIGRATIONS).await.unwrap();
    db
}

async fn record(db: &Db, customer: i64, key: String, state: &'static str, at: i64) {
    db.write(move |tx| {
        Ok(tx.execute(
            "INSERT INTO checkouts (customer_id, idempotency_key, fingerprint, order_id, state, lease_until, created_at, response) \
             VALUES ($1, $2, 'fp', $3, $4, $5, $5, '{}')",
            params![customer, &key, customer * 10_000 + at % 10_000, state, at],
        )?)
    })
    .await
    .unwrap();
}

async fn keys(db: &Db) -> Vec<String> {
    db.read(|tx| {
        tx.query("SELECT idempotency_key FROM checkouts ORDER BY idempotency_key", params![])?
            .iter()
            .map(|r| r.text(0))
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn finished_checkouts_past_the_cutoff_are_forgotten_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let cutoff = 1_000_000;
    // More old records than one batch deletes, across customers.
    for i in 0..2_500 {
        record(&db, 1 + i % 7, format!("old-{i:05}"), "done", cutoff - 1 - i).await;
    }
    record(&db, 1, "recent".into(), "done", cutoff).await;
    record(&db, 2, "unfinished".into(), "pending", cutoff - 50_000).await;

    let purged = mercato_orders::purge_checkouts(&db, cutoff).await.unwrap();
    assert_eq!(purged, 2_500);
    assert_eq!(keys(&db).await, vec!["recent".to_string(), "unfinished".to_string()]);
    // Nothing left to do: a second pass deletes nothing.
    assert_eq!(mercato_orders::purge_checkouts(&db, cutoff).await.unwrap(), 0);
}
