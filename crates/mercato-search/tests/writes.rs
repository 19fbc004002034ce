//! Freshness, replacement, deletion, batching of commits and persistence.

mod common;

use std::sync::Arc;

use common::*;
use mercato_search::{SearchEngine, SearchQuery, TantivyEngine};

#[tokio::test]
async fn writes_are_visible_when_the_call_returns() {
    let engine = TantivyEngine::in_memory().unwrap();
    assert_eq!(engine.count().await.unwrap(), 0);
    assert!(search_ids(&engine, query("mug")).await.is_empty());

    engine.upsert(vec![doc(12, "Coffee Mug", KITCHEN, &["White"], 899, 1, "")]).await.unwrap();
    assert_eq!(search_ids(&engine, query("mug")).await, vec![12]);
    assert_eq!(engine.count().await.unwrap(), 1);

    // Upsert replaces by id: the old text is gone, the new one found, the count unchanged.
    engine.upsert(vec![doc(12, "Tea Cup", KITCHEN, &["Blue"], 1_099, 1, "")]).await.unwrap();
    assert!(search_ids(&engine, query("mug")).await.is_empty());
    let result = engine.search(query("tea")).await.unwrap();
    assert_eq!((ids(&result), result.hits[0].price), (vec![12], 1_099));
    assert_eq!(engine.count().await.unwrap(), 1);

    // Within one call the last version of an id wins.
    engine
        .upsert(vec![doc(7, "Old Name", KITCHEN, &[], 1, 1, ""), doc(7, "New Name", KITCHEN, &[], 2, 1, "")])
        .await
        .unwrap();
    assert_eq!(engine.count().await.unwrap(), 2);
    assert!(search_ids(&engine, query("old")).await.is_empty());
    assert_eq!(search_ids(&engine, query("new name")).await, vec![7]);

    engine.delete(vec![12, 999]).await.unwrap();
    assert!(search_ids(&engine, query("tea")).await.is_empty());
    assert_eq!(engine.count().await.unwrap(), 1);
    engine.delete(vec![]).await.unwrap();
    engine.upsert(vec![]).await.unwrap();
}

#[tokio::test]
async fn clear_removes_everything_and_later_writes_survive() {
    let engine = engine_with_catalog().await;
    assert_eq!(engine.count().await.unwrap(), 14);
    engine.clear().await.unwrap();
    assert_eq!(engine.count().await.unwrap(), 0);
    let result = engine.search(query("")).await.unwrap();
    assert_eq!((result.total, result.hits.len(), result.facets.categories.len()), (0, 0, 0));

    engine.upsert(catalog()).await.unwrap();
    assert_eq!(engine.count().await.unwrap(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_and_upserts_in_one_batch_keep_their_order() {
    let engine = Arc::new(engine_with_catalog().await);
    // Queue an upsert, a clear and another upsert back to back, so they usually share a writer batch.
    let (a, b, c) = tokio::join!(
        engine.upsert(vec![doc(100, "Before Clear", KITCHEN, &[], 1, 1, "")]),
        engine.clear(),
        engine.upsert(vec![doc(101, "After Clear", KITCHEN, &[], 1, 1, "")]),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    // join! polls in order, so the operations were queued in this order.
    assert_eq!(search_ids(&engine, query("")).await, vec![101]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let engine = Arc::new(TantivyEngine::in_memory().unwrap());
    let before = engine.commits();
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let name = format!("Widget w{n}x");
                engine.upsert(vec![doc(n, &name, KITCHEN, &[], 100 + n, n, "")]).await.unwrap();
                // Visible to this caller as soon as its own call returned.
                assert_eq!(search_ids(&engine, query(&format!("w{n}x"))).await, vec![n]);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let commits = engine.commits() - before;
    assert_eq!(engine.count().await.unwrap(), 100);
    assert!(commits <= 10, "100 concurrent upserts took {commits} commits");
    eprintln!("100 concurrent upserts: {commits} commits");
}

#[tokio::test]
async fn index_directory_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = TantivyEngine::open(dir.path()).unwrap();
        engine.upsert(catalog()).await.unwrap();
        engine.delete(vec![14]).await.unwrap();
        // A second engine on the same directory is refused while the first holds it.
        let err = TantivyEngine::open(dir.path()).err().expect("second writer must be refused");
        assert!(err.message.contains("in use"), "{}", err.message);
    }
    {
        let engine = TantivyEngine::open(dir.path()).unwrap();
        assert_eq!(engine.count().await.unwrap(), 13);
        assert_eq!(search_ids(&engine, query("Apple iPhone 15")).await.first(), Some(&4));
        let r = engine.search(SearchQuery { category: Some(SHOES), ..query("") }).await.unwrap();
        assert_eq!(sorted(ids(&r)), vec![9, 10]);
        engine.upsert(vec![doc(50, "Garden Hose", HOME, &[], 2_999, 50_000, "")]).await.unwrap();
    }
    let engine = TantivyEngine::open(&dir.path().join("")).unwrap();
    assert_eq!(engine.count().await.unwrap(), 14);
    assert_eq!(search_ids(&engine, query("hose")).await, vec![50]);
}
