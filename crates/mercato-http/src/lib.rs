//! Mercato's HTTP edge: routes, request/response types, OpenAPI, problem+json
//! errors and the middleware stack.
//!
//! Architecture invariant: this crate is thin. A handler parses, calls one
//! domain use case, and renders. It owns no business rule and no SQL.

pub mod dto;
pub mod error;
pub mod extract;
pub mod forwarded;
pub mod idempotency;
pub mod render;
pub mod routes;
pub mod state;

use crate::error::ApiError;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mercato_core::{Error, ErrorCode};
pub use state::AppState;
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_scalar::{Scalar, Servable};

#[derive(OpenApi)]
#[openapi(
    info(title = "Mercato", description = "An e-commerce backend: catalog, inventory, customers, cart, checkout, orders, payments."),
    modifiers(&BearerAuth, &EventSchemas),
    tags(
        (name = "auth", description = "Registration, login, sessions"),
        (name = "catalog", description = "Categories and products"),
        (name = "cart", description = "Guest and customer carts"),
        (name = "orders", description = "Checkout, orders, payments"),
        (name = "payments", description = "Payment provider webhooks"),
        (name = "admin", description = "Back-office operations (admin role)"),
    )
)]
struct ApiDoc;

/// Every event's schema, and the envelope outgoing webhooks carry them in.
struct EventSchemas;

impl Modify for EventSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut table = String::from("| type | data | version |\n|---|---|---|\n");
        for doc in mercato_contracts::documented() {
            for t in doc.types {
                table.push_str(&format!("| `{t}` | [{0}](#/components/schemas/{0}) | {1} |\n", doc.name, doc.version));
            }
            components.schemas.extend(doc.refers_to);
            components.schemas.insert(doc.name, doc.schema);
        }
        let envelope = ObjectBuilder::new()
            .description(Some(format!(
                "The body of every outgoing webhook (and the form of the events themselves): `data` is the \
                 event's own object, whose schema `type` and `version` name. A consumer reads the versions \
                 it knows; new optional fields may appear within a version.\n\n{table}"
            )))
            .property("id", ObjectBuilder::new().schema_type(Type::String).examples([serde_json::json!("evt_1234567")]))
            .property(
                "type",
                ObjectBuilder::new().schema_type(Type::String).examples([serde_json::json!("order.paid")]),
            )
            .property("version", ObjectBuilder::new().schema_type(Type::Integer).examples([serde_json::json!(1)]))
            .property(
                "created_at",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime))),
            )
            .property("data", ObjectBuilder::new().schema_type(Type::Object))
            .required("id")
            .required("type")
            .required("version")
            .required("created_at")
            .required("data");
        components.schemas.insert("WebhookEvent".to_string(), envelope.into());
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::auth::router())
        .merge(routes::catalog::router())
        .merge(routes::inventory::router())
        .merge(routes::cart::router())
        .merge(routes::orders::router())
        .merge(routes::promotions::router())
        .merge(routes::search::router())
        .merge(routes::webhooks::router())
        .merge(routes::events::router())
        .merge(routes::flash::router())
}

#[derive(Clone)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = mercato_platform::random_token();
        axum::http::HeaderValue::from_str(&id[..22]).ok().map(RequestId::new)
    }
}

/// The whole application: API, docs, ops endpoints and the middleware stack
/// (outermost first): request id, tracing, metrics, panic guard, timeout,
/// body limit.
pub fn app(state: AppState) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let timeout = Duration::from_millis(state.http.request_timeout_ms);
    let body_limit = state.http.body_limit_bytes;
    let doc_json = serde_json::to_vec(&doc).unwrap_or_default();
    let request_id = HeaderName::from_static("x-request-id");
    let proxies = forwarded::TrustedProxies::parse(&state.http.trusted_proxies, &state.http.forwarded_header)
        .unwrap_or_else(|e| {
            // `Config::validate` refuses this before a server starts.
            tracing::error!(error = %e, "ignoring forwarding headers");
            forwarded::TrustedProxies::default()
        });
    let draining = state.draining.clone();
    let replicated = state.dbs.sources().iter().any(|(_, db)| db.has_replicas());
    // route_layer: runs after routing, so the layer sees the matched route.
    api.route_layer(middleware::from_fn_with_state(state.clone(), idempotency::layer))
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let body = doc_json.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .merge(Scalar::with_url("/docs", doc))
        .fallback(|| async { ApiError(Error::not_found("no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            ApiError(Error::new(ErrorCode::MethodNotAllowed, "this endpoint does not accept that method"))
        })
        .layer(middleware::from_fn(move |req: Request, next: Next| read_after(req, next, replicated)))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(move |req: Request, next: Next| {
                    edge(req, next, proxies.clone(), draining.clone())
                }))
                .layer(SetRequestIdLayer::new(request_id.clone(), RandomRequestId))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    let client = extract::client_ip(req.extensions());
                    tracing::info_span!("request", request_id = %id, client = ?client, method = %req.method(), uri = %req.uri().path())
                }))
                .layer(middleware::from_fn(record_metrics))
                .layer(CatchPanicLayer::custom(|_| ApiError(Error::internal("handler panicked")).into_response()))
                .layer(middleware::from_fn(move |req: Request, next: Next| deadline(req, next, timeout)))
                .layer(axum::extract::DefaultBodyLimit::max(body_limit)),
        )
}

/// The header carrying a client's read-your-writes token, both ways.
pub const READ_AFTER_HEADER: &str = "mercato-read-after";
/// The same token as a cookie, for browsers.
pub const READ_AFTER_COOKIE: &str = "mercato_read_after";

/// Read-your-writes across replicas: the request runs as a session that
/// starts from the positions the client sent (header or cookie), and when
/// it wrote to a database with replicas, the answer carries the new token
/// both ways, so that the client's next reads never go to a replica that
/// has not replayed its writes. Without replicas, nothing to do.
async fn read_after(req: Request, next: Next, replicated: bool) -> Response {
    use mercato_platform::db::{ReadAfter, session};
    if !replicated {
        return next.run(req).await;
    }
    let mut start = ReadAfter::default();
    let headers = req.headers();
    for v in headers.get_all(READ_AFTER_HEADER).iter().filter_map(|v| v.to_str().ok()) {
        start.merge(&ReadAfter::parse(v));
    }
    for v in headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        for (name, value) in v.split(';').filter_map(|c| c.trim().split_once('=')) {
            if name == READ_AFTER_COOKIE {
                start.merge(&ReadAfter::parse(value));
            }
        }
    }
    let (mut response, moved) = session(start, next.run(req)).await;
    if let Some(after) = moved {
        let token = after.encode();
        let cookie = format!("{READ_AFTER_COOKIE}={token}; Path=/; Max-Age=300; HttpOnly; SameSite=Lax");
        let h = response.headers_mut();
        if let (Ok(t), Ok(c)) = (HeaderValue::from_str(&token), HeaderValue::from_str(&cookie)) {
            h.insert(HeaderName::from_static(READ_AFTER_HEADER), t);
            h.append(axum::http::header::SET_COOKIE, c);
        }
    }
    response
}

/// What the edge settles before anything else sees the request: who the
/// client is (behind trusted proxies, from their forwarding header), and
/// whether a request id that came with it may be kept (a proxy's is passed
/// through end to end; one that could not be logged safely is replaced).
/// While the instance drains, every response closes its connection, so
/// that a proxy's kept-alive connections move to the other instances
/// before the listener closes.
async fn edge(
    mut req: Request,
    next: Next,
    proxies: forwarded::TrustedProxies,
    draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Response {
    // Without trusted proxies the client is the peer, which the extractors
    // read from ConnectInfo: nothing to settle on the common path.
    if !proxies.is_empty()
        && let Some(peer) = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        let client = proxies.client(peer.0.ip(), req.headers());
        req.extensions_mut().insert(extract::ClientIp(client));
    }
    let keep_id = req.headers().get("x-request-id").is_none_or(|v| {
        (1..=128).contains(&v.len())
            && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
    });
    if !keep_id {
        req.headers_mut().remove("x-request-id");
    }
    let mut resp = next.run(req).await;
    if draining.load(std::sync::atomic::Ordering::Relaxed) {
        resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    resp
}

async fn deadline(req: Request, next: Next, timeout: Duration) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError(Error::new(ErrorCode::Unavailable, "request timed out")).into_response(),
    }
}

/// Per-route request count, error count and latency histogram, labelled by the
/// route template (never the raw path, which would explode cardinality).
/// Labels are static strings: formatting and allocating three label strings
/// per request was a visible share of a cached product page.
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| intern(p.as_str()));
    let method = static_method(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let labels = [("method", method), ("route", route), ("status", intern(status.as_str()))];
    metrics::counter!("http_requests_total", &labels).increment(1);
    if status.is_server_error() {
        metrics::counter!("http_request_errors_total", &labels).increment(1);
    }
    metrics::histogram!("http_request_duration_seconds", &labels[..2]).record(start.elapsed().as_secs_f64());
    resp
}

/// Label values, leaked once each. Only bounded sets come here: route
/// templates (as many as the router has routes) and status codes.
fn intern(value: &str) -> &'static str {
    static VALUES: std::sync::LazyLock<parking_lot::RwLock<std::collections::HashSet<&'static str>>> =
        std::sync::LazyLock::new(Default::default);
    if let Some(v) = VALUES.read().get(value) {
        return v;
    }
    let mut values = VALUES.write();
    match values.get(value) {
        Some(v) => v,
        None => {
            let v: &'static str = Box::leak(value.into());
            values.insert(v);
            v
        }
    }
}

fn static_method(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
