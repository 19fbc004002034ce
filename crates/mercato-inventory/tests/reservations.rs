//! Inventory against a real embedded database: all-or-none reservations,
//! idempotent state changes, and conservation of stock under concurrency.

use mercato_contracts::inventory::Inventory;
use mercato_core::{ErrorCode, Id};
use mercato_inventory::{InventoryService, Line};
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;

async fn service(dir: &tempfile::TempDir) -> InventoryService {
    let db = mercato_platform::db::testing::fresh(dir.path());
    db.migrate("platform", mercato_platform::MIGRATIONS).await.unwrap();
    db.migrate("inventory", mercato_inventory::MIGRATIONS).await.unwrap();
    InventoryService::new(db, IdGen::with_node(1), EventBus::new())
}

fn line(sku: &str, quantity: i64) -> Line {
    Line { sku: sku.into(), quantity }
}

#[tokio::test]
async fn reservations_are_all_or_none_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let inv = service(&dir).await;
    inv.set_available("A", 5, "receive", "test").await.unwrap();
    inv.set_available("B", 1, "receive", "test").await.unwrap();

    // B cannot cover 2: nothing is reserved, not even A.
    let err = inv.reserve(Id(1), &[line("A", 3), line("B", 2)]).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::OutOfStock);
    assert_eq!(inv.stock("A").await.unwrap().available, 5);
    assert_eq!(inv.stock("B").await.unwrap().available, 1);

    inv.reserve(Id(2), &[line("A", 3), line("B", 1)]).await.unwrap();
    // A retry with the same id reserves nothing more.
    inv.reserve(Id(2), &[line("A", 3), line("B", 1)]).await.unwrap();
    let a = inv.stock("A").await.unwrap();
    assert_eq!((a.available, a.reserved, a.sold), (2, 3, 0));

    assert!(inv.commit(Id(2)).await.unwrap());
    assert!(!inv.commit(Id(2)).await.unwrap(), "a second commit must do nothing");
    assert!(!inv.release(Id(2)).await.unwrap(), "a committed reservation cannot be released");
    let a = inv.stock("A").await.unwrap();
    assert_eq!((a.available, a.reserved, a.sold), (2, 0, 3));
    assert!(inv.restock(Id(2)).await.unwrap());
    let a = inv.stock("A").await.unwrap();
    assert_eq!((a.available, a.reserved, a.sold), (5, 0, 0));
}

#[tokio::test]
async fn adjustments_are_audited_and_never_go_negative() {
    let dir = tempfile::tempdir().unwrap();
    let inv = service(&dir).await;
    inv.set_available("A", 4, "receive", "alice").await.unwrap();
    let err = inv.adjust("A", -5, "shrinkage", "bob").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert_eq!(inv.adjust("A", -1, "shrinkage", "bob").await.unwrap().available, 3);
    assert_eq!(inv.set_available("A", -1, "x", "y").await.unwrap_err().code, ErrorCode::Validation);
    assert_eq!(inv.adjust("A", 2, "", "y").await.unwrap_err().code, ErrorCode::Validation);
    let trail = inv.adjustments("A", 10).await.unwrap();
    let deltas: Vec<(i64, i64, &str)> = trail.iter().map(|a| (a.delta, a.available_after, a.actor.as_str())).collect();
    assert_eq!(deltas, vec![(-1, 3, "bob"), (4, 4, "alice")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_oversell_and_conserve_stock() {
    let dir = tempfile::tempdir().unwrap();
    let inv = service(&dir).await;
    inv.set_available("HOT", 50, "receive", "test").await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 1..=300i64 {
        let inv = inv.clone();
        set.spawn(async move { (i, inv.reserve(Id(i), &[Line { sku: "HOT".into(), quantity: 1 }]).await) });
    }
    let mut won = Vec::new();
    while let Some(r) = set.join_next().await {
        let (i, outcome) = r.unwrap();
        match outcome {
            Ok(()) => won.push(i),
            Err(e) => assert_eq!(e.code, ErrorCode::OutOfStock),
        }
    }
    assert_eq!(won.len(), 50);
    // Half are paid, half released, concurrently and twice each.
    let mut set = tokio::task::JoinSet::new();
    for (n, i) in won.iter().enumerate() {
        for _ in 0..2 {
            let inv = inv.clone();
            let id = Id(*i);
            set.spawn(async move { if n % 2 == 0 { inv.commit(id).await } else { inv.release(id).await } });
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    let s = inv.stock("HOT").await.unwrap();
    assert_eq!((s.available, s.reserved, s.sold), (25, 0, 25));
    assert_eq!(s.available + s.reserved + s.sold, 50, "stock is conserved");
}

#[tokio::test]
async fn an_allocation_splits_unit_by_unit_and_takes_units_back() {
    let dir = tempfile::tempdir().unwrap();
    let inv = service(&dir).await;
    inv.set_available("F", 5, "receive", "test").await.unwrap();
    let sale = Id(100);
    inv.reserve(sale, &[line("F", 3)]).await.unwrap();
    for order in 1..=3 {
        inv.split(sale, Id(order), "F", 1).await.unwrap();
        // Splitting again for the same order takes nothing more.
        inv.split(sale, Id(order), "F", 1).await.unwrap();
    }
    assert_eq!(inv.split(sale, Id(4), "F", 1).await.unwrap_err().code, ErrorCode::OutOfStock);
    let f = inv.stock("F").await.unwrap();
    assert_eq!((f.available, f.reserved, f.sold), (2, 3, 0));
    // An unpaid order's unit goes back to the open allocation, once.
    assert!(inv.merge_back(Id(2), sale).await.unwrap());
    assert!(!inv.merge_back(Id(2), sale).await.unwrap());
    inv.split(sale, Id(5), "F", 1).await.unwrap();
    // Paid orders sell; closing the allocation frees what it still holds.
    assert!(inv.commit(Id(1)).await.unwrap());
    assert!(inv.release(sale).await.unwrap());
    // A unit returned after the allocation closed goes back to general stock.
    assert!(inv.merge_back(Id(3), sale).await.unwrap());
    let f = inv.stock("F").await.unwrap();
    assert_eq!((f.available, f.reserved, f.sold), (3, 1, 1), "order 5 still holds one unit");
    assert_eq!(f.available + f.reserved + f.sold, 5);
}

#[tokio::test]
async fn an_abandoned_reservation_cannot_be_held_later_and_a_held_one_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let inv = service(&dir).await;
    inv.set_available("A", 5, "receive", "test").await.unwrap();

    // A checkout given up before its reserve ran: the late reserve holds nothing.
    assert!(!inv.abandon(Id(7)).await.unwrap(), "nothing was held");
    let err = inv.reserve(Id(7), &[line("A", 2)]).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    let a = inv.stock("A").await.unwrap();
    assert_eq!((a.available, a.reserved), (5, 0));

    // Given up after its reserve: the units come back, once.
    inv.reserve(Id(8), &[line("A", 3)]).await.unwrap();
    assert!(inv.abandon(Id(8)).await.unwrap());
    assert!(!inv.abandon(Id(8)).await.unwrap());
    let a = inv.stock("A").await.unwrap();
    assert_eq!((a.available, a.reserved), (5, 0));

    // A plain release of a reservation never made records nothing: orders
    // cancel only what they reserved.
    assert!(!inv.release(Id(9)).await.unwrap());
    inv.reserve(Id(9), &[line("A", 1)]).await.unwrap();
    assert_eq!(inv.stock("A").await.unwrap().reserved, 1);
}
