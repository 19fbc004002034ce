//! The `Idempotency-Key` layer for mutating endpoints (see
//! `mercato_platform::idempotency`). Keys are scoped to the caller's
//! credentials (bearer token or cart token), so two clients never collide.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mercato_core::Error;
use mercato_platform::idempotency::{self, Begin};
use mercato_platform::sha256_hex;

/// Response headers worth replaying.
const KEPT_HEADERS: &[&str] = &["content-type", "x-cart-token", "location"];

/// Routes that guarantee idempotency in their domain (checkout, webhooks).
fn handled_elsewhere(method: &Method, route: &str) -> bool {
    (method == Method::POST && (route == "/api/v1/orders" || route == "/api/v1/flash-sales/{id}/purchase"))
        || route.starts_with("/api/v1/payments/webhooks")
}

pub async fn layer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").map(|v| v.to_str().map(|s| s.trim().to_string())) else {
        return next.run(req).await;
    };
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    if handled_elsewhere(&method, &route) {
        return next.run(req).await;
    }
    let key = match key {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k,
        _ => {
            return ApiError(Error::validation("Idempotency-Key must be 1 to 255 visible ASCII characters"))
                .into_response();
        }
    };
    let scope = {
        let credential = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        sha256_hex(format!("{}|{}", credential("authorization"), credential("x-cart-token")).as_bytes())
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, s.http.body_limit_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError(Error::new(mercato_core::ErrorCode::PayloadTooLarge, "request body is too large"))
                .into_response();
        }
    };
    let mut fp = format!("{} {}\n", parts.method, parts.uri.path()).into_bytes();
    fp.extend_from_slice(&bytes);
    let fingerprint = sha256_hex(&fp);
    let lease = s.idempotency_lease_ms as i64;
    match idempotency::begin(&s.db, &scope, &key, &fingerprint, lease).await {
        Err(e) => ApiError(e).into_response(),
        Ok(Begin::Replay { status, headers, body }) => replay(status, &headers, body),
        Ok(Begin::Proceed) => {
            // The claim's lease is short and renewed while the request runs:
            // if this instance dies, a retry may take the key over within
            // one lease instead of one sized for the slowest request.
            let renewal = {
                let (db, scope, key) = (s.db.clone(), scope.clone(), key.clone());
                mercato_platform::KeepAlive::start(
                    std::time::Duration::from_millis((lease / 3).max(1) as u64),
                    "idempotency key",
                    move || {
                        let (db, scope, key) = (db.clone(), scope.clone(), key.clone());
                        async move { idempotency::renew(&db, &scope, &key, lease).await }
                    },
                )
            };
            let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            renewal.stop().await;
            let (parts, body) = resp.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            // Only a final answer is kept for the key. A server error, or an
            // answer that says to come back later (Retry-After: a payment
            // still being processed, a rate limit), is not one: the claim is
            // dropped so that the retry it asks for runs again, instead of
            // replaying "later" forever.
            let final_answer = !parts.status.is_server_error() && !parts.headers.contains_key(header::RETRY_AFTER);
            let outcome = if !final_answer {
                idempotency::abandon(&s.db, &scope, &key).await
            } else {
                let headers: serde_json::Map<String, serde_json::Value> = KEPT_HEADERS
                    .iter()
                    .filter_map(|h| {
                        parts.headers.get(*h).and_then(|v| v.to_str().ok()).map(|v| (h.to_string(), v.into()))
                    })
                    .collect();
                let headers = serde_json::Value::Object(headers).to_string();
                idempotency::finish(&s.db, &scope, &key, parts.status.as_u16(), headers, body.to_vec()).await
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "could not record idempotent response");
            }
            Response::from_parts(parts, Body::from(body))
        }
    }
}

fn replay(status: u16, headers: &str, body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(headers) {
        for (name, value) in map {
            if let (Ok(n), Some(v)) =
                (HeaderName::try_from(name), value.as_str().and_then(|v| HeaderValue::from_str(v).ok()))
            {
                resp.headers_mut().insert(n, v);
            }
        }
    }
    resp.headers_mut().entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
    resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}
