//! Outgoing webhooks against a real embedded database and real HTTP receivers
//! on 127.0.0.1: signatures, retries with backoff, idempotent subscription,
//! pattern filtering, per-endpoint order, endpoints that hang, and two
//! dispatchers sharing one database.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use mercato_contracts::webhooks::Webhooks;
use mercato_core::{ErrorCode, Id};
use mercato_platform::db::DbOptions;
use mercato_platform::events::{Event, EventBus, RelayOptions, emit, spawn_relay};
use mercato_platform::ids::IdGen;
use mercato_platform::{Db, now_ms};
use mercato_webhooks::{
    Delivery, DeliveryStatus, DispatchOptions, Endpoint, EndpointPatch, RetryPolicy, WebhooksService, verify,
};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn open(dir: &tempfile::TempDir) -> Db {
    let db = Db::open_sqlite(&dir.path().join("t.db"), "t", DbOptions::default()).unwrap();
    db.migrate("platform", mercato_platform::MIGRATIONS).await.unwrap();
    db.migrate("webhooks", mercato_webhooks::MIGRATIONS).await.unwrap();
    db
}

fn fast(base_ms: u64, jitter: bool) -> DispatchOptions {
    DispatchOptions {
        retry: RetryPolicy { base: Duration::from_millis(base_ms), jitter, ..RetryPolicy::default() },
        timeout: Duration::from_millis(500),
        ..DispatchOptions::default()
    }
}

async fn service(db: &Db, node: i64, opts: DispatchOptions) -> WebhooksService {
    WebhooksService::new(db.clone(), IdGen::with_node(node), EventBus::new()).with_options(opts)
}

fn event(id: i64, kind: &str) -> Event {
    Event {
        id,
        aggregate: "order".into(),
        aggregate_id: "42".into(),
        kind: kind.into(),
        version: 1,
        payload: serde_json::json!({ "order_id": "42", "n": id }),
        // After any endpoint a test creates: an endpoint gets only events
        // from its creation on.
        created_at: 4_102_444_800_123,
    }
}

fn patterns(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// Polls `check` until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- a real receiver ----

#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    id: String,
    content_type: String,
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    url: String,
    secret: Arc<Mutex<Option<String>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Answers for the next requests, whatever the event; then `per_event`;
    /// then 200.
    script: Arc<Mutex<VecDeque<u16>>>,
    per_event: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    bad_signatures: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rx = Receiver { url: format!("http://{}/hook", listener.local_addr().unwrap()), ..Receiver::default() };
        let app = Router::new().route("/hook", post(receive)).with_state(rx.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        rx
    }
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
    fn ids(&self) -> Vec<String> {
        self.hits().into_iter().map(|h| h.id).collect()
    }
    fn set_secret(&self, e: &Endpoint) {
        *self.secret.lock().unwrap() = e.secret.clone();
    }
}

async fn receive(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let id = header("mercato-webhook-id");
    let signature = header("mercato-signature");
    let secret = rx.secret.lock().unwrap().clone().unwrap_or_default();
    if verify(secret.as_bytes(), &signature, &body, now_ms() / 1000, 300).is_err() {
        *rx.bad_signatures.lock().unwrap() += 1;
        return StatusCode::BAD_REQUEST;
    }
    let answer = rx
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| rx.per_event.lock().unwrap().get_mut(&id).and_then(|q| q.pop_front()))
        .unwrap_or(200);
    rx.hits.lock().unwrap().push(Hit {
        at: Instant::now(),
        id,
        content_type: header("content-type"),
        signature,
        body: body.to_vec(),
        answered: answer,
    });
    StatusCode::from_u16(answer).unwrap()
}

/// Accepts connections and never answers.
async fn hanging_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

async fn deliveries(svc: &WebhooksService, endpoint: Id) -> Vec<Delivery> {
    svc.list_deliveries(endpoint, 100, None).await.unwrap().0
}

async fn all_delivered(svc: &WebhooksService, endpoint: Id, n: usize) -> bool {
    let d = deliveries(svc, endpoint).await;
    d.len() == n && d.iter().all(|d| d.status == DeliveryStatus::Delivered)
}

// ---- tests ----

#[tokio::test]
async fn a_delivery_is_signed_json_the_receiver_can_verify() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let svc = service(&db, 1, fast(50, true)).await;
    let rx = Receiver::start().await;
    let ep = svc.create_endpoint(&rx.url, patterns(&["order."]), Some("erp".into())).await.unwrap();
    let secret = ep.secret.clone().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 30, "{secret}");
    rx.set_secret(&ep);
    // The secret is shown once.
    assert!(svc.get_endpoint(ep.id).await.unwrap().secret.is_none());
    assert!(svc.list_endpoints().await.unwrap().iter().all(|e| e.secret.is_none()));
    assert!(!serde_json::to_string(&svc.get_endpoint(ep.id).await.unwrap()).unwrap().contains("whsec_"));

    let _dispatcher = svc.spawn_dispatcher();
    svc.on_event(event(101, "order.placed")).await.unwrap();
    eventually(Duration::from_secs(5), "delivered", || all_delivered(&svc, ep.id, 1)).await;

    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.id, "evt_101");
    assert_eq!(hit.content_type, "application/json");
    assert_eq!(*rx.bad_signatures.lock().unwrap(), 0);
    verify(secret.as_bytes(), &hit.signature, &hit.body, now_ms() / 1000, 300).unwrap();
    assert!(verify(b"whsec_wrong", &hit.signature, &hit.body, now_ms() / 1000, 300).is_err());
    let body: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "id": "evt_101",
            "type": "order.placed",
            "version": 1,
            "created_at": "2100-01-01T00:00:00.123Z",
            "data": { "order_id": "42", "n": 101 },
        })
    );
    let d = &deliveries(&svc, ep.id).await[0];
    assert_eq!((d.event_id, d.event_type.as_str()), (101, "order.placed"));
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].status_code, Some(200));
    assert!(d.delivered_at.is_some() && d.next_attempt_at.is_none() && d.last_error.is_none());
}

#[tokio::test]
async fn failing_twice_then_succeeding_makes_three_attempts_with_growing_delays() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    // Jitter off so the schedule is exact: 200 ms, then 400 ms.
    let svc = service(&db, 1, fast(200, false)).await;
    let rx = Receiver::start().await;
    let ep = svc.create_endpoint(&rx.url, patterns(&["*"]), None).await.unwrap();
    rx.set_secret(&ep);
    rx.script.lock().unwrap().extend([500, 500]);
    let _dispatcher = svc.spawn_dispatcher();
    svc.on_event(event(7, "order.paid")).await.unwrap();
    eventually(Duration::from_secs(10), "delivered after retries", || all_delivered(&svc, ep.id, 1)).await;

    let hits = rx.hits();
    assert_eq!(hits.iter().map(|h| h.answered).collect::<Vec<_>>(), [500, 500, 200]);
    assert!(hits.iter().all(|h| h.id == "evt_7"), "the same event id on every attempt");
    let (g1, g2) = (hits[1].at - hits[0].at, hits[2].at - hits[1].at);
    assert!(g1 >= Duration::from_millis(190), "first retry after {g1:?}");
    assert!(g2 >= Duration::from_millis(390), "second retry after {g2:?}");
    assert!(g2 > g1, "delays grow: {g1:?} then {g2:?}");

    let d = &deliveries(&svc, ep.id).await[0];
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(d.attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [Some(500), Some(500), Some(200)]);
    assert!(d.attempts.iter().all(|a| a.error.is_none() && a.duration_ms >= 0));
    let (a1, a2) =
        (d.attempts[1].started_at - d.attempts[0].started_at, d.attempts[2].started_at - d.attempts[1].started_at);
    assert!(a1 >= 190 && a2 >= 390 && a2 > a1, "recorded gaps {a1} ms then {a2} ms");
}

#[tokio::test]
async fn jittered_retries_stay_under_the_exponential_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let svc = service(&db, 1, fast(150, true)).await;
    let rx = Receiver::start().await;
    let ep = svc.create_endpoint(&rx.url, patterns(&["*"]), None).await.unwrap();
    rx.set_secret(&ep);
    rx.script.lock().unwrap().extend([503, 503, 503]);
    let _dispatcher = svc.spawn_dispatcher();
    svc.on_event(event(1, "order.paid")).await.unwrap();
    eventually(Duration::from_secs(10), "delivered", || all_delivered(&svc, ep.id, 1)).await;
    let d = &deliveries(&svc, ep.id).await[0];
    assert_eq!(d.attempts.len(), 4);
    for (i, w) in d.attempts.windows(2).enumerate() {
        let ceiling = 150 * (1 << i) as i64;
        let gap = w[1].started_at - w[0].started_at;
        // Full jitter: anywhere in [0, ceiling], plus the previous attempt's
        // duration and scheduling slack.
        assert!(gap <= ceiling + w[0].duration_ms + 250, "gap {i}: {gap} ms over ceiling {ceiling} ms");
    }
}

#[tokio::test]
async fn a_redelivered_event_creates_no_second_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let svc = service(&db, 1, fast(50, true)).await;
    let rx = Receiver::start().await;
    let ep = svc.create_endpoint(&rx.url, patterns(&["order.placed"]), None).await.unwrap();
    rx.set_secret(&ep);
    svc.on_event(event(5, "order.placed")).await.unwrap();
    svc.on_event(event(5, "order.placed")).await.unwrap();
    assert_eq!(deliveries(&svc, ep.id).await.len(), 1);
    let _dispatcher = svc.spawn_dispatcher();
    eventually(Duration::from_secs(5), "delivered", || all_delivered(&svc, ep.id, 1)).await;
    // The outbox may hand the same event over again after it went out.
    svc.on_event(event(5, "order.placed")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliveries(&svc, ep.id).await.len(), 1);
    assert_eq!(rx.ids(), ["evt_5"]);
}

#[tokio::test]
async fn patterns_choose_the_events_an_endpoint_gets() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let svc = service(&db, 1, fast(50, true)).await;
    let url = "http://127.0.0.1:9/never-called";
    let exact = svc.create_endpoint(url, patterns(&["order.paid"]), None).await.unwrap();
    let prefix = svc.create_endpoint(url, patterns(&["order."]), None).await.unwrap();
    let all = svc.create_endpoint(url, patterns(&["*"]), None).await.unwrap();
    let two = svc.create_endpoint(url, patterns(&["stock.changed", "customer."]), None).await.unwrap();
    let paused = svc.create_endpoint(url, patterns(&["*"]), None).await.unwrap();
    svc.update_endpoint(paused.id, EndpointPatch { active: Some(false), ..Default::default() }).await.unwrap();
    let deleted = svc.create_endpoint(url, patterns(&["*"]), None).await.unwrap();
    svc.delete_endpoint(deleted.id).await.unwrap();

    for (i, kind) in
        ["order.placed", "order.paid", "product.created", "stock.changed", "customer.registered", "orders.paid"]
            .into_iter()
            .enumerate()
    {
        svc.on_event(event(i as i64 + 1, kind)).await.unwrap();
    }
    let kinds = |ep: Id| {
        let svc = svc.clone();
        async move {
            let mut k: Vec<String> = deliveries(&svc, ep).await.into_iter().map(|d| d.event_type).collect();
            k.reverse(); // listing is newest first
            k
        }
    };
    assert_eq!(kinds(exact.id).await, ["order.paid"]);
    assert_eq!(kinds(prefix.id).await, ["order.placed", "order.paid"]);
    assert_eq!(kinds(all.id).await.len(), 6);
    assert_eq!(kinds(two.id).await, ["stock.changed", "customer.registered"]);
    assert!(kinds(paused.id).await.is_empty());
    assert_eq!(svc.list_deliveries(deleted.id, 10, None).await.unwrap_err().code, ErrorCode::NotFound);

    // Changing the patterns applies to the next events.
    svc.update_endpoint(exact.id, EndpointPatch { events: Some(patterns(&["product."])), ..Default::default() })
        .await
        .unwrap();
    svc.on_event(event(10, "product.updated")).await.unwrap();
    svc.on_event(event(11, "order.paid")).await.unwrap();
    assert_eq!(kinds(exact.id).await, ["order.paid", "product.updated"]);
}

#[tokio::test]
async fn an_endpoint_that_hangs_blocks_neither_on_event_nor_other_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let svc = service(&db, 1, fast(50, true)).await;
    let hang = svc.create_endpoint(&hanging_receiver().await, patterns(&["*"]), None).await.unwrap();
    let rx = Receiver::start().await;
    let good = svc.create_endpoint(&rx.url, patterns(&["*"]), None).await.unwrap();
    rx.set_secret(&good);
    let _dispatcher = svc.spawn_dispatcher();

    let mut slowest = Duration::ZERO;
    for id in 1..=20 {
        let start = Instant::now();
        svc.on_event(event(id, "order.placed")).await.unwrap();
        slowest = slowest.max(start.elapsed());
    }
    assert!(slowest < Duration::from_millis(250), "on_event took {slowest:?}");
    // The healthy endpoint gets everything while the other one hangs.
    eventually(Duration::from_secs(5), "healthy endpoint served", || all_delivered(&svc, good.id, 20)).await;
    assert_eq!(rx.ids(), (1..=20).map(|i| format!("evt_{i}")).collect::<Vec<_>>());
    // The hanging one times out (500 ms here, 5 s by default) and is retried;
    // its later events wait behind the first.
    eventually(Duration::from_secs(5), "timeout recorded", || {
        let svc = svc.clone();
        async move {
            let d = deliveries(&svc, hang.id).await;
            let first = d.iter().find(|d| d.event_id == 1).unwrap();
            !first.attempts.is_empty()
        }
    })
    .await;
    let d = deliveries(&svc, hang.id).await;
    let first = d.iter().find(|d| d.event_id == 1).unwrap();
    assert_eq!(first.status, DeliveryStatus::Pending);
    let err = first.attempts[0].error.as_deref().unwrap();
    assert!(err.contains("timed out"), "{err}");
    assert!(first.attempts[0].status_code.is_none() && first.attempts[0].duration_ms >= 450);
    assert!(d.iter().filter(|d| d.event_id != 1).all(|d| d.attempts.is_empty()));
}

#[tokio::test]
async fn each_endpoint_gets_its_events_in_order_even_across_retries() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let svc = service(&db, 1, fast(100, true)).await;
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    let ea = svc.create_endpoint(&a.url, patterns(&["*"]), None).await.unwrap();
    let eb = svc.create_endpoint(&b.url, patterns(&["*"]), None).await.unwrap();
    a.set_secret(&ea);
    b.set_secret(&eb);
    // Endpoint A refuses event 3 twice and event 7 once; B accepts everything.
    a.per_event.lock().unwrap().insert("evt_3".into(), VecDeque::from([500, 502]));
    a.per_event.lock().unwrap().insert("evt_7".into(), VecDeque::from([500]));
    let _dispatcher = svc.spawn_dispatcher();
    for id in 1..=12 {
        svc.on_event(event(id, "stock.changed")).await.unwrap();
    }
    eventually(Duration::from_secs(10), "A served", || all_delivered(&svc, ea.id, 12)).await;
    eventually(Duration::from_secs(10), "B served", || all_delivered(&svc, eb.id, 12)).await;
    let expected: Vec<String> = (1..=12).map(|i| format!("evt_{i}")).collect();
    let mut a_ids = a.ids();
    // Retries repeat an event, but nothing later is sent before it succeeded.
    a_ids.dedup();
    assert_eq!(a_ids, expected);
    assert_eq!(a.ids().len(), 15);
    assert_eq!(b.ids(), expected);
}

#[tokio::test]
async fn two_dispatchers_on_one_database_never_send_an_attempt_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let one = service(&db, 1, fast(50, true)).await;
    let two = service(&db, 2, fast(50, true)).await;
    let mut rxs = Vec::new();
    let mut eps = Vec::new();
    for _ in 0..4 {
        let rx = Receiver::start().await;
        let ep = one.create_endpoint(&rx.url, patterns(&["*"]), None).await.unwrap();
        rx.set_secret(&ep);
        rxs.push(rx);
        eps.push(ep);
    }
    let _d1 = one.spawn_dispatcher();
    let _d2 = two.spawn_dispatcher();
    for id in 1..=25 {
        let svc = if id % 2 == 0 { &one } else { &two };
        svc.on_event(event(id, "order.placed")).await.unwrap();
    }
    for ep in &eps {
        eventually(Duration::from_secs(10), "served", || all_delivered(&one, ep.id, 25)).await;
    }
    let expected: Vec<String> = (1..=25).map(|i| format!("evt_{i}")).collect();
    for rx in &rxs {
        assert_eq!(rx.ids(), expected);
    }
}

#[tokio::test]
async fn permanent_failure_unblocks_the_queue_and_redeliver_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let mut opts = fast(10, true);
    opts.retry.max_attempts = 3;
    let svc = service(&db, 1, opts).await;
    let rx = Receiver::start().await;
    let ep = svc.create_endpoint(&rx.url, patterns(&["order."]), None).await.unwrap();
    rx.set_secret(&ep);
    rx.per_event.lock().unwrap().insert("evt_1".into(), VecDeque::from([500, 500, 500]));
    let _dispatcher = svc.spawn_dispatcher();
    svc.on_event(event(1, "order.placed")).await.unwrap();
    svc.on_event(event(2, "order.paid")).await.unwrap();
    eventually(Duration::from_secs(5), "second event delivered", || {
        let svc = svc.clone();
        async move { deliveries(&svc, ep.id).await.iter().any(|d| d.event_id == 2 && d.status == DeliveryStatus::Delivered) }
    })
    .await;
    let first = deliveries(&svc, ep.id).await.into_iter().find(|d| d.event_id == 1).unwrap();
    assert_eq!(first.status, DeliveryStatus::Failed);
    assert_eq!(first.attempts.len(), 3);
    assert_eq!(first.last_error.as_deref(), Some("http status 500"));
    assert_eq!(rx.ids(), ["evt_1", "evt_1", "evt_1", "evt_2"]);

    // The receiver is fixed; an administrator sends it again.
    let again = svc.redeliver(first.id).await.unwrap();
    assert_eq!(again.status, DeliveryStatus::Pending);
    eventually(Duration::from_secs(5), "redelivered", || all_delivered(&svc, ep.id, 2)).await;
    let first = svc.get_delivery(first.id).await.unwrap();
    assert_eq!(first.attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(first.attempts[3].status_code, Some(200));
    assert_eq!(rx.ids().last().map(String::as_str), Some("evt_1"));
    assert_eq!(svc.redeliver(Id(12345)).await.unwrap_err().code, ErrorCode::NotFound);
}

#[tokio::test]
async fn endpoints_are_validated_updated_paginated_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let svc = service(&db, 1, fast(50, true)).await;
    for (url, ev) in [
        ("ftp://example.com/x", vec!["*"]),
        ("not a url", vec!["*"]),
        ("https://example.com/x", vec![]),
        ("https://example.com/x", vec!["order*"]),
    ] {
        let err = svc.create_endpoint(url, patterns(&ev), None).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation, "{url} {ev:?}");
    }
    let long = format!("https://example.com/{}", "a".repeat(2040));
    assert_eq!(svc.create_endpoint(&long, patterns(&["*"]), None).await.unwrap_err().code, ErrorCode::Validation);

    let ep =
        svc.create_endpoint("https://example.com/hook", patterns(&["order."]), Some(" crm ".into())).await.unwrap();
    assert_eq!(ep.description.as_deref(), Some("crm"));
    assert!(ep.active);
    let changed = svc
        .update_endpoint(
            ep.id,
            EndpointPatch {
                url: Some("http://10.0.0.1:8080/in".into()),
                events: Some(patterns(&["stock.changed"])),
                active: Some(false),
                description: Some(String::new()),
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.url, "http://10.0.0.1:8080/in");
    assert_eq!(changed.events, ["stock.changed"]);
    assert!(!changed.active && changed.description.is_none() && changed.secret.is_none());
    let bad = EndpointPatch { url: Some("gopher://x".into()), ..Default::default() };
    assert_eq!(svc.update_endpoint(ep.id, bad).await.unwrap_err().code, ErrorCode::Validation);
    svc.update_endpoint(ep.id, EndpointPatch { active: Some(true), ..Default::default() }).await.unwrap();

    for id in 1..=5 {
        svc.on_event(event(id, "stock.changed")).await.unwrap();
    }
    let (page1, cursor) = svc.list_deliveries(ep.id, 2, None).await.unwrap();
    assert_eq!(page1.iter().map(|d| d.event_id).collect::<Vec<_>>(), [5, 4]);
    let (page2, cursor) = svc.list_deliveries(ep.id, 2, cursor.as_deref()).await.unwrap();
    assert_eq!(page2.iter().map(|d| d.event_id).collect::<Vec<_>>(), [3, 2]);
    let (page3, cursor) = svc.list_deliveries(ep.id, 2, cursor.as_deref()).await.unwrap();
    assert_eq!(page3.iter().map(|d| d.event_id).collect::<Vec<_>>(), [1]);
    assert!(cursor.is_none());
    assert_eq!(svc.list_deliveries(ep.id, 0, None).await.unwrap_err().code, ErrorCode::Validation);
    assert_eq!(svc.list_deliveries(ep.id, 10, Some("x")).await.unwrap_err().code, ErrorCode::Validation);

    svc.delete_endpoint(ep.id).await.unwrap();
    assert_eq!(svc.get_endpoint(ep.id).await.unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(svc.delete_endpoint(ep.id).await.unwrap_err().code, ErrorCode::NotFound);
    assert!(svc.list_endpoints().await.unwrap().is_empty());
    let pending = svc.get_delivery(page1[0].id).await.unwrap();
    assert_eq!(pending.status, DeliveryStatus::Cancelled);
    svc.on_event(event(6, "stock.changed")).await.unwrap();
    let left = db
        .read(|tx| tx.query_one("SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = 6", &[])?.int(0))
        .await
        .unwrap();
    assert_eq!(left, 0, "a deleted endpoint gets no new deliveries");
}

#[tokio::test]
async fn events_from_the_outbox_reach_the_endpoint_through_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let bus = EventBus::new();
    let svc =
        WebhooksService::new(db.clone(), IdGen::with_node(1), bus.clone()).with_retry_base(Duration::from_millis(50));
    svc.subscribe();
    let rx = Receiver::start().await;
    let ep = svc.create_endpoint(&rx.url, patterns(&["order."]), None).await.unwrap();
    rx.set_secret(&ep);
    let _relay = spawn_relay(db.clone(), 0, bus.clone(), RelayOptions::new("test"));
    let _dispatcher = svc.spawn_dispatcher();
    db.write(|tx| {
        emit(tx, "order", "9", "order.placed", &serde_json::json!({ "order_id": "9" }))?;
        emit(tx, "product", "3", "product.created", &serde_json::json!({ "product_id": "3" }))?;
        emit(tx, "order", "9", "order.paid", &serde_json::json!({ "order_id": "9" }))
    })
    .await
    .unwrap();
    bus.wake();
    eventually(Duration::from_secs(5), "both order events delivered", || all_delivered(&svc, ep.id, 2)).await;
    let bodies: Vec<serde_json::Value> = rx.hits().iter().map(|h| serde_json::from_slice(&h.body).unwrap()).collect();
    assert_eq!(bodies.iter().map(|b| b["type"].as_str().unwrap()).collect::<Vec<_>>(), ["order.placed", "order.paid"]);
    assert_eq!(bodies[0]["data"]["order_id"], "9");
}

#[tokio::test]
async fn an_endpoint_gets_no_event_from_before_it_existed() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let svc = service(&db, 1, fast(50, true)).await;
    let ep = svc.create_endpoint("http://127.0.0.1:9/hook", patterns(&["*"]), None).await.unwrap();
    // Redelivered after a cursor was restored: it happened before the
    // endpoint was registered.
    let mut old = event(7, "order.placed");
    old.created_at = ep.created_at - 60_000;
    svc.on_event(old).await.unwrap();
    assert_eq!(deliveries(&svc, ep.id).await.len(), 0);
    svc.on_event(event(8, "order.placed")).await.unwrap();
    assert_eq!(deliveries(&svc, ep.id).await.len(), 1);
}
