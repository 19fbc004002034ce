//! Liveness, readiness and metrics: outside `/api/v1`, for orchestrators.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The longest `/readyz` waits for the database to answer.
const READY_PING_MAX_MS: u64 = 1000;

/// The process is up.
pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" }))).into_response()
}

/// The instance can serve traffic: its database answers and it is not
/// draining. With domains in databases of their own, "its database" is the
/// platform's (every mutating request stores its Idempotency-Key answer
/// there): a domain's database being down fails only the requests that need
/// it, with a 503, and the instance stays in rotation for the rest.
pub async fn readyz(State(s): State<AppState>) -> Response {
    let draining = s.draining.load(Ordering::Relaxed);
    // With the database gone, a ping waits out the pool's connection timeout,
    // which may exceed the request timeout (the probe would then get a bare
    // timeout problem) and the orchestrator's probe timeout (1 s by default on
    // Kubernetes): answer within a bound of our own, and say why.
    let bound = Duration::from_millis((s.http.request_timeout_ms / 2).min(READY_PING_MAX_MS));
    let db = tokio::time::timeout(bound, s.db.ping()).await.unwrap_or(false);
    let status = if db && !draining { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({ "ready": status == StatusCode::OK, "database": db, "draining": draining })))
        .into_response()
}

/// Prometheus exposition.
pub async fn metrics(State(s): State<AppState>) -> Response {
    for (_, db) in s.dbs.sources() {
        let (st, name) = (db.stats(), db.name().to_string());
        metrics::gauge!("db_pool_connections", "db" => name.clone(), "state" => "total").set(st.readers_total as f64);
        metrics::gauge!("db_pool_connections", "db" => name.clone(), "state" => "idle").set(st.readers_idle as f64);
        metrics::gauge!("db_pool_connections", "db" => name.clone(), "state" => "in_use")
            .set((st.readers_total - st.readers_idle) as f64);
        metrics::gauge!("db_write_queue", "db" => name).set(st.write_queue as f64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}
