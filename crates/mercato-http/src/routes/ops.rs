//! Liveness, readiness and metrics: outside `/api/v1`, for orchestrators.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;

/// The process is up.
pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" }))).into_response()
}

/// The instance can serve traffic: its database answers and it is not draining.
pub async fn readyz(State(s): State<AppState>) -> Response {
    let draining = s.draining.load(Ordering::Relaxed);
    let db = s.db.ping().await;
    let status = if db && !draining { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({ "ready": status == StatusCode::OK, "database": db, "draining": draining })))
        .into_response()
}

/// Prometheus exposition.
pub async fn metrics(State(s): State<AppState>) -> Response {
    let st = s.db.stats();
    metrics::gauge!("db_pool_connections", "db" => s.db.name().to_string(), "state" => "total")
        .set(st.readers_total as f64);
    metrics::gauge!("db_pool_connections", "db" => s.db.name().to_string(), "state" => "idle")
        .set(st.readers_idle as f64);
    metrics::gauge!("db_pool_connections", "db" => s.db.name().to_string(), "state" => "in_use")
        .set((st.readers_total - st.readers_idle) as f64);
    metrics::gauge!("db_write_queue", "db" => s.db.name().to_string()).set(st.write_queue as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}
