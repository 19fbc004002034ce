//! The payments service against a real embedded database: asynchronous
//! settlement through signed webhooks, and webhooks that arrive twice, late,
//! out of order or forged.

use mercato_contracts::payments::Payments;
use mercato_core::{Currency, ErrorCode, Id, Money};
use mercato_payments::test_provider::{ASYNC, TestProvider};
use mercato_payments::{PayOutcome, PaymentStatus, PaymentsService, signature};
use mercato_platform::events::EventBus;
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, now_ms};
use std::sync::Arc;

const SECRET: &[u8] = b"whsec_test_secret";

async fn service(dir: &tempfile::TempDir) -> (PaymentsService, Db) {
    let db = mercato_platform::db::testing::fresh(dir.path());
    db.migrate("platform", mercato_platform::MIGRATIONS).await.unwrap();
    db.migrate("payments", mercato_payments::MIGRATIONS).await.unwrap();
    let provider = TestProvider::new(db.clone(), SECRET.to_vec(), 60_000, 300);
    (
        PaymentsService::new(
            mercato_platform::shards::ShardRing::single(db.clone(), 256),
            IdGen::with_node(1),
            EventBus::new(),
            Arc::new(provider),
        ),
        db,
    )
}

fn webhook(kind: &str, attempt: &str, event: &str, signed_at: i64) -> (String, Vec<u8>) {
    let body =
        serde_json::json!({ "id": event, "type": kind, "data": { "attempt_id": attempt } }).to_string().into_bytes();
    (signature::sign(SECRET, signed_at, &body), body)
}

fn usd(a: i64) -> Money {
    Money::new(a, Currency::USD)
}

#[tokio::test]
async fn async_payment_settles_once_and_ignores_duplicate_late_and_forged_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let (payments, db) = service(&dir).await;
    let order = Id(42);
    let PayOutcome::Processing(p) = payments.pay(order, usd(1500), ASYNC, None, vec![], vec![]).await.unwrap() else {
        panic!("the async card must answer processing");
    };
    assert_eq!(p.status, PaymentStatus::Processing);
    // A second attempt while the first is processing is refused: one charge per order.
    let again = payments.pay(order, usd(1500), "4242424242424242", None, vec![], vec![]).await.err().unwrap();
    assert_eq!(again.code, ErrorCode::Conflict);

    // The attempt id is what the provider reports back; read it like the provider would.
    let attempt =
        db.read(|tx| tx.query_one("SELECT attempt_id FROM payment_intents", &[])?.int(0)).await.unwrap().to_string();
    let now = now_ms() / 1000;

    // Forged: wrong secret.
    let body = br#"{"id":"evt_x","type":"charge.succeeded","data":{"attempt_id":"1"}}"#;
    let forged = signature::sign(b"not-the-secret", now, body);
    assert_eq!(payments.handle_webhook(&forged, body).await.unwrap_err().code, ErrorCode::InvalidSignature);

    // Replayed from outside the tolerance window: rejected even with a valid signature.
    let (sig, body) = webhook("charge.succeeded", &attempt, "evt_old", now - 301);
    assert_eq!(payments.handle_webhook(&sig, &body).await.unwrap_err().code, ErrorCode::InvalidSignature);
    assert_eq!(payments.for_order(order).await.unwrap().unwrap().status, PaymentStatus::Processing);

    // The real one settles the payment, exactly once.
    let (sig, body) = webhook("charge.succeeded", &attempt, "evt_ok", now);
    let settled = payments.handle_webhook(&sig, &body).await.unwrap();
    assert_eq!(settled.map(|p| p.order_id), Some(order));
    // The same delivery again: accepted, but nothing happens twice.
    assert!(payments.handle_webhook(&sig, &body).await.unwrap().is_none());
    // An out-of-order failure report for the same attempt changes nothing.
    let (sig, body) = webhook("charge.failed", &attempt, "evt_late_fail", now);
    assert!(payments.handle_webhook(&sig, &body).await.unwrap().is_none());
    let p = payments.for_order(order).await.unwrap().unwrap();
    assert_eq!(p.status, PaymentStatus::Succeeded);

    // Paying a paid order is an illegal transition, not a second charge.
    let err = payments.pay(order, usd(1500), "4242424242424242", None, vec![], vec![]).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::IllegalTransition);
}

#[tokio::test]
async fn declines_allow_retry_and_refunds_never_exceed_the_payment() {
    let dir = tempfile::tempdir().unwrap();
    let (payments, _db) = service(&dir).await;
    let order = Id(7);
    let declined = payments.pay(order, usd(2000), "4000000000000002", None, vec![], vec![]).await.err().unwrap();
    assert_eq!(declined.code, ErrorCode::PaymentDeclined);
    assert_eq!(
        payments.pay(order, usd(2000), "4242", None, vec![], vec![]).await.err().unwrap().code,
        ErrorCode::Validation
    );
    let PayOutcome::Succeeded(p) =
        payments.pay(order, usd(2000), "4242424242424242", None, vec![], vec![]).await.unwrap()
    else {
        panic!("4242 must succeed");
    };
    assert_eq!(p.status, PaymentStatus::Succeeded);

    assert_eq!(payments.refund(order, Some(1200), "damaged").await.unwrap().amount, usd(1200));
    let too_much = payments.refund(order, Some(801), "again").await.err().unwrap();
    assert_eq!(too_much.code, ErrorCode::Validation);
    assert_eq!(payments.refund(order, None, "rest").await.unwrap().amount, usd(800));
    assert_eq!(payments.for_order(order).await.unwrap().unwrap().refunded, usd(2000));
    assert!(payments.refund(order, None, "nothing left").await.is_err());
}
