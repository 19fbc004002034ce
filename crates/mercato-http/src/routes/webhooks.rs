//! Outgoing webhooks (admin): register endpoints, inspect deliveries and their
//! attempts, redeliver. The signing secret is shown once, in the answer to the
//! create call.

use crate::dto::{PageDto, ts};
use crate::error::{ApiResult, Problem};
use crate::extract::{Admin, Json, Query, json_response, path_id};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mercato_contracts::webhooks::{Attempt, Delivery, Endpoint, EndpointPatch};
use mercato_core::Id;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver))
}

// ---- shapes ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where events are POSTed: http or https, at most 2048 characters.
    #[schema(example = "https://erp.example.com/mercato/events")]
    pub url: String,
    /// 1 to 50 patterns: `*` for every event, an event type (`order.paid`) or
    /// a prefix ending in a dot (`order.`).
    #[schema(example = json!(["order.", "stock.changed"]))]
    pub events: Vec<String>,
    #[schema(example = "ERP order import")]
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    /// `false` pauses the endpoint: no deliveries for new events; pending ones
    /// wait until it is active again.
    pub active: Option<bool>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// An empty string clears it.
    pub description: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpointDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    pub active: bool,
    /// The signing secret (`whsec_...`), in the create response only. Verify
    /// `Mercato-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Endpoint> for WebhookEndpointDto {
    fn from(e: Endpoint) -> Self {
        WebhookEndpointDto {
            id: e.id,
            url: e.url,
            description: e.description,
            events: e.events,
            active: e.active,
            secret: e.secret,
            created_at: ts(e.created_at),
            updated_at: ts(e.updated_at),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WebhookAttemptDto {
    /// 1-based across every attempt of the delivery, redeliveries included.
    pub number: u32,
    pub started_at: String,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why there was no answer (timeout, connection refused).
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl From<Attempt> for WebhookAttemptDto {
    fn from(a: Attempt) -> Self {
        WebhookAttemptDto {
            number: a.number,
            started_at: ts(a.started_at),
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryDto {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub endpoint_id: Id,
    /// `evt_<id>`: the body's `id` and the `Mercato-Webhook-Id` header.
    #[schema(example = "evt_1234")]
    pub event_id: String,
    #[schema(example = "order.paid")]
    pub event_type: String,
    /// `pending`, `delivered`, `failed` (retries exhausted) or `cancelled`
    /// (endpoint deleted).
    #[schema(example = "delivered")]
    pub status: String,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Oldest first.
    pub attempts: Vec<WebhookAttemptDto>,
}

impl From<Delivery> for WebhookDeliveryDto {
    fn from(d: Delivery) -> Self {
        WebhookDeliveryDto {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: format!("evt_{}", d.event_id),
            event_type: d.event_type,
            status: d.status.as_str().to_string(),
            next_attempt_at: d.next_attempt_at.map(ts),
            delivered_at: d.delivered_at.map(ts),
            last_error: d.last_error,
            created_at: ts(d.created_at),
            updated_at: ts(d.updated_at),
            attempts: d.attempts.into_iter().map(WebhookAttemptDto::from).collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListParams {
    /// 1 to 100; 20 by default.
    limit: Option<usize>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

// ---- handlers ----

/// Register a webhook endpoint (admin). The response carries the signing
/// secret; it is never shown again.
#[utoipa::path(post, path = "/api/v1/admin/webhooks", tag = "admin", request_body = CreateWebhookRequest, security(("bearer" = [])),
    responses((status = 201, body = WebhookEndpointDto), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_webhook(
    State(s): State<AppState>,
    _a: Admin,
    Json(req): Json<CreateWebhookRequest>,
) -> ApiResult<Response> {
    let endpoint = s.webhooks.create_endpoint(&req.url, req.events, req.description).await?;
    Ok(json_response(StatusCode::CREATED, &WebhookEndpointDto::from(endpoint)))
}

/// Every webhook endpoint, oldest first (admin).
#[utoipa::path(get, path = "/api/v1/admin/webhooks", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = PageDto<WebhookEndpointDto>), (status = 403, body = Problem)))]
async fn list_webhooks(State(s): State<AppState>, _a: Admin) -> ApiResult<Response> {
    let items: Vec<WebhookEndpointDto> =
        s.webhooks.list_endpoints().await?.into_iter().map(WebhookEndpointDto::from).collect();
    Ok(json_response(StatusCode::OK, &PageDto { items, next_cursor: None }))
}

/// One webhook endpoint (admin).
#[utoipa::path(get, path = "/api/v1/admin/webhooks/{id}", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WebhookEndpointDto), (status = 404, body = Problem)))]
async fn get_webhook(State(s): State<AppState>, _a: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let endpoint = s.webhooks.get_endpoint(path_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &WebhookEndpointDto::from(endpoint)))
}

/// Change a webhook endpoint's URL, event patterns, description, or pause and
/// resume it (admin).
#[utoipa::path(patch, path = "/api/v1/admin/webhooks/{id}", tag = "admin", request_body = UpdateWebhookRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WebhookEndpointDto), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_webhook(
    State(s): State<AppState>,
    _a: Admin,
    Path(id): Path<String>,
    Json(req): Json<UpdateWebhookRequest>,
) -> ApiResult<Response> {
    let patch = EndpointPatch { active: req.active, url: req.url, events: req.events, description: req.description };
    let endpoint = s.webhooks.update_endpoint(path_id(&id)?, patch).await?;
    Ok(json_response(StatusCode::OK, &WebhookEndpointDto::from(endpoint)))
}

/// Delete a webhook endpoint (admin): it gets nothing more and its pending
/// deliveries are cancelled.
#[utoipa::path(delete, path = "/api/v1/admin/webhooks/{id}", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_webhook(State(s): State<AppState>, _a: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    s.webhooks.delete_endpoint(path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An endpoint's deliveries, newest first, each with its attempts (admin).
#[utoipa::path(get, path = "/api/v1/admin/webhooks/{id}/deliveries", tag = "admin",
    params(("id" = String, Path), DeliveryListParams), security(("bearer" = [])),
    responses((status = 200, body = PageDto<WebhookDeliveryDto>), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn list_deliveries(
    State(s): State<AppState>,
    _a: Admin,
    Path(id): Path<String>,
    Query(q): Query<DeliveryListParams>,
) -> ApiResult<Response> {
    let (deliveries, next) =
        s.webhooks.list_deliveries(path_id(&id)?, q.limit.unwrap_or(20), q.cursor.as_deref()).await?;
    let items: Vec<WebhookDeliveryDto> = deliveries.into_iter().map(WebhookDeliveryDto::from).collect();
    Ok(json_response(StatusCode::OK, &PageDto { items, next_cursor: next }))
}

/// Send a delivery again now, with a fresh set of retries (admin). The
/// receiver sees the same event id.
#[utoipa::path(post, path = "/api/v1/admin/webhooks/deliveries/{id}/redeliver", tag = "admin",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 202, body = WebhookDeliveryDto, description = "queued"), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the endpoint is paused or the delivery was cancelled")))]
async fn redeliver(State(s): State<AppState>, _a: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let delivery = s.webhooks.redeliver(path_id(&id)?).await?;
    Ok(json_response(StatusCode::ACCEPTED, &WebhookDeliveryDto::from(delivery)))
}
