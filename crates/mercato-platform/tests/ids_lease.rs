//! Node leases of the id generator: an instance that loses its lease, or
//! cannot renew it, stops minting rather than risk an id another instance
//! mints too. Leases here last under a second so that lapses happen within a
//! test; every wait polls against a generous deadline rather than sleeping a
//! precise time. Runs on PostgreSQL too when `MERCATO_TEST_POSTGRES_URL` is set.

use mercato_core::{Error, ErrorCode, Id};
use mercato_platform::ids::{IdGen, LeaseTerms, node_of};
use mercato_platform::{Db, db::testing, params};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn short() -> LeaseTerms {
    // Renewed every 300 ms, valid until 150 ms before it expires.
    LeaseTerms { duration: Duration::from_millis(900), margin: Duration::from_millis(150) }
}

async fn platform_db(dir: &std::path::Path) -> Db {
    let db = testing::fresh(dir);
    db.migrate("platform", mercato_platform::MIGRATIONS).await.unwrap();
    db
}

/// Calls `step` until it returns Some, every few milliseconds, for at most
/// [`DEADLINE`].
async fn poll<T>(what: &str, mut step: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = step() {
            return t;
        }
        assert!(start.elapsed() < DEADLINE, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn hold_nodes(db: &Db, nodes: impl IntoIterator<Item = i64>) {
    let nodes: Vec<i64> = nodes.into_iter().collect();
    let far = mercato_platform::now_ms() + 3_600_000;
    db.write(move |tx| {
        for n in &nodes {
            tx.execute(
                "INSERT INTO id_nodes (node, holder, expires_at) VALUES ($1, 'another instance', $2) \
                 ON CONFLICT (node) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
                params![*n, far],
            )?;
        }
        Ok(())
    })
    .await
    .unwrap();
}

/// A refusal is the 503 kind, never some other failure.
fn is_refusal(e: Error) -> bool {
    assert_eq!(e.code, ErrorCode::Unavailable, "{e}");
    true
}

#[tokio::test]
async fn a_generator_whose_node_is_taken_over_stops_minting_on_it_and_moves_to_a_new_node() {
    let dir = tempfile::tempdir().unwrap();
    let db = platform_db(dir.path()).await;
    let ids = IdGen::lease_with(&db, short()).await.unwrap();
    let old = ids.node().unwrap();
    let mut minted: Vec<Id> = vec![ids.next().unwrap()];
    assert_eq!(node_of(minted[0]), old);

    // Another holder takes every node, ours included, so that no new node
    // can be leased until the test frees one.
    hold_nodes(&db, 0..1024).await;
    // Until the generator sees the takeover (at its next renewal) it may
    // still mint on its node, or refuse if its validity lapsed first; once it
    // has seen it, it has no node and refuses for as long as every node is held.
    poll("the generator to see the takeover", || {
        match ids.next() {
            Ok(id) => {
                assert_eq!(node_of(id), old);
                minted.push(id);
            }
            Err(e) => assert!(is_refusal(e)),
        }
        ids.node().is_none().then_some(())
    })
    .await;
    let no_id = |ids: &IdGen| match ids.next() {
        Ok(id) => panic!("minted {id:?} on node {} after the takeover was seen", node_of(id)),
        Err(e) => is_refusal(e),
    };
    let until = Instant::now() + 2 * short().duration;
    while Instant::now() < until {
        assert!(no_id(&ids));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let spare = if old == 500 { 501 } else { 500 };
    db.write(move |tx| Ok(tx.execute("UPDATE id_nodes SET expires_at = 0 WHERE node = $1", params![spare])?))
        .await
        .unwrap();
    let switched = minted.len();
    minted.push(poll("the generator to lease the freed node", || ids.next().ok()).await);
    assert_eq!(ids.node(), Some(spare));
    // It stays on the new node through its renewals (a lapse on a slow
    // machine may refuse a few), and its ids keep increasing across the switch.
    let until = Instant::now() + 2 * short().duration;
    while Instant::now() < until {
        match ids.next() {
            Ok(id) => minted.push(id),
            Err(e) => assert!(is_refusal(e)),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    minted.push(poll("an id after several renewals", || ids.next().ok()).await);
    assert!(minted[switched..].iter().all(|id| node_of(*id) == spare), "an id on another node than the new one");
    assert!(minted.windows(2).all(|w| w[0] < w[1]), "ids did not keep increasing");
    let holder: String = db
        .read(move |tx| tx.query_one("SELECT holder FROM id_nodes WHERE node = $1", params![old])?.text(0))
        .await
        .unwrap();
    assert_eq!(holder, "another instance", "the taken-over node was taken back");
}

#[tokio::test]
async fn a_generator_that_cannot_renew_stops_minting_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let db = platform_db(dir.path()).await;
    let ids = IdGen::lease_with(&db, short()).await.unwrap();
    let node = ids.node().unwrap();
    ids.next().unwrap();
    // Renewals fail (as they would with the database down) while the table
    // is out of reach.
    db.write(|tx| Ok(tx.execute("ALTER TABLE id_nodes RENAME TO id_nodes_away", params![])?)).await.unwrap();
    poll("the lease to lapse", || ids.next().err().map(is_refusal)).await;
    assert!(ids.next().unwrap_err().message.contains("lapsed"));
    // A failed renewal is not a takeover: the node is kept.
    assert_eq!(ids.node(), Some(node));
    db.write(|tx| Ok(tx.execute("ALTER TABLE id_nodes_away RENAME TO id_nodes", params![])?)).await.unwrap();
    let id = poll("a renewal to succeed", || ids.next().ok()).await;
    assert_eq!(node_of(id), node);
}

#[tokio::test]
async fn generators_leased_concurrently_get_different_nodes_and_never_mint_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = platform_db(dir.path()).await;
    // One node is expired rather than free, so two leases want the same one.
    hold_nodes(&db, [0, 1]).await;
    db.write(|tx| Ok(tx.execute("UPDATE id_nodes SET expires_at = 0 WHERE node = 0", params![])?)).await.unwrap();
    let leases: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { IdGen::lease_with(&db, short()).await })
        })
        .collect();
    let mut generators = Vec::new();
    for l in leases {
        generators.push(l.await.unwrap().unwrap());
    }
    let nodes: HashSet<i64> = generators.iter().map(|g| g.node().unwrap()).collect();
    assert_eq!(nodes.len(), generators.len(), "two generators leased one node");
    assert!(!nodes.contains(&1), "a generator took a node another instance holds");

    // Minting in parallel, through a few renewals (a lapse on a slow machine
    // may refuse some: uniqueness is what is checked here).
    let until = Instant::now() + 2 * short().duration;
    let minters: Vec<_> = generators
        .into_iter()
        .map(|g| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                while Instant::now() < until {
                    out.extend((0..50).filter_map(|_| g.next().ok()));
                    std::thread::sleep(Duration::from_millis(2));
                }
                out
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for m in minters {
        // The threads block, not the runtime: the renewals go on.
        let ids = tokio::task::spawn_blocking(move || m.join().unwrap()).await.unwrap();
        assert!(!ids.is_empty(), "a generator minted nothing");
        for id in ids {
            assert!(seen.insert(id), "{id:?} minted twice");
        }
    }
}
