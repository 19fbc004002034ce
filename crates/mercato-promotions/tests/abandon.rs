//! A checkout the sweeper abandoned may still be running: whichever of its
//! late redeem and the abandon reaches the database first, no use stays
//! counted for an order that will never exist. Runs on PostgreSQL too when
//! `MERCATO_TEST_POSTGRES_URL` is set, where the two really race.

use mercato_contracts::promotions::Promotions;
use mercato_core::{Currency, ErrorCode, Id};
use mercato_platform::db::testing;
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;
use mercato_promotions::{Applied, Kind, NewPromotion, PromotionsService, Scope};

async fn service(dir: &std::path::Path) -> (PromotionsService, Id) {
    let db = testing::fresh(dir);
    db.migrate("platform", mercato_platform::MIGRATIONS).await.unwrap();
    db.migrate("promotions", mercato_promotions::MIGRATIONS).await.unwrap();
    let svc = PromotionsService::new(db, IdGen::with_node(1), EventBus::new(), Currency::USD);
    let p = svc
        .create(NewPromotion {
            code: Some("LATE10".into()),
            name: "Late".into(),
            kind: Kind::Percentage(1000),
            min_subtotal: 0,
            scope: Scope::All,
            starts_at: None,
            ends_at: None,
            usage_limit: None,
            per_customer_limit: None,
            active: true,
        })
        .await
        .unwrap();
    (svc, p.id)
}

fn applied(promotion: Id) -> Vec<Applied> {
    vec![Applied { promotion_id: promotion, code: Some("LATE10".into()), description: "10%".into(), amount: 100 }]
}

#[tokio::test]
async fn a_redeem_after_the_abandon_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, promo) = service(dir.path()).await;
    let order = Id(1001);
    svc.abandon(order).await.unwrap();
    let err = svc.redeem(order, Id(7), &applied(promo)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{err:?}");
    assert_eq!(svc.get(promo).await.unwrap().used, 0);
    // An abandon of an order that redeemed gives its use back, once.
    let other = Id(1002);
    svc.redeem(other, Id(7), &applied(promo)).await.unwrap();
    assert_eq!(svc.get(promo).await.unwrap().used, 1);
    svc.abandon(other).await.unwrap();
    svc.abandon(other).await.unwrap();
    assert_eq!(svc.get(promo).await.unwrap().used, 0);
    // Other orders are not affected.
    svc.redeem(Id(1003), Id(7), &applied(promo)).await.unwrap();
    assert_eq!(svc.get(promo).await.unwrap().used, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_redeems_and_abandons_leave_no_use_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, promo) = service(dir.path()).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let svc = svc.clone();
        let order = Id(10_000 + i);
        set.spawn(async move {
            let redeem = {
                let svc = svc.clone();
                tokio::spawn(async move { svc.redeem(order, Id(7), &applied(promo)).await })
            };
            let abandon = tokio::spawn(async move { svc.abandon(order).await });
            let (r, a) = (redeem.await.unwrap(), abandon.await.unwrap());
            a.unwrap();
            if let Err(e) = r {
                assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_eq!(svc.get(promo).await.unwrap().used, 0, "every order was abandoned: no use may remain counted");
    assert_eq!(svc.redemptions(promo).await.unwrap(), 0);
}
