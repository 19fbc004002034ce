//! The outbox, for operators (admin): events a subscriber gave up on, and
//! their redrive once the cause is mended.

use crate::dto::ts;
use crate::error::{ApiResult, Problem};
use crate::extract::{Admin, Query, json_response};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mercato_core::Error;
use mercato_platform::events::DeadLetter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_dead_letters)).routes(routes!(redrive))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeadLetterDto {
    /// The subscriber that gave up, e.g. `webhooks.outgoing`.
    #[schema(example = "inventory.on-order")]
    pub subscriber: String,
    #[schema(example = "evt_1234567")]
    pub event_id: String,
    #[schema(example = "order.paid")]
    pub event_type: String,
    pub aggregate: String,
    pub aggregate_id: String,
    pub payload: serde_json::Value,
    /// Deliveries tried, redrives included.
    pub attempts: i64,
    /// The last failure, as `code: message`.
    pub error: String,
    pub event_created_at: String,
    pub dead_at: String,
}

impl From<DeadLetter> for DeadLetterDto {
    fn from(d: DeadLetter) -> Self {
        DeadLetterDto {
            subscriber: d.subscriber,
            event_id: format!("evt_{}", d.event.id),
            event_type: d.event.kind,
            aggregate: d.event.aggregate,
            aggregate_id: d.event.aggregate_id,
            payload: d.event.payload,
            attempts: d.attempts,
            error: d.error,
            event_created_at: ts(d.event.created_at),
            dead_at: ts(d.dead_at),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeadLettersDto {
    pub items: Vec<DeadLetterDto>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// 1 to 500; 100 by default.
    limit: Option<usize>,
}

/// Events a subscriber failed on `events.max_attempts` times, in every
/// database, newest first (admin). Other subscribers went on; this one
/// skipped the event and waits for a redrive.
#[utoipa::path(get, path = "/api/v1/admin/events/dead-letters", tag = "admin", params(DeadLetterParams),
    security(("bearer" = [])), responses((status = 200, body = DeadLettersDto), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
async fn list_dead_letters(
    State(s): State<AppState>,
    _a: Admin,
    Query(q): Query<DeadLetterParams>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::validation("limit must be between 1 and 500").into());
    }
    let items = s.events.dead_letters(limit).await?.into_iter().map(DeadLetterDto::from).collect();
    Ok(json_response(StatusCode::OK, &DeadLettersDto { items }))
}

/// Hand a dead-lettered event to its subscriber again, now (admin). 204:
/// the subscriber accepted it and the dead letter is gone. 409: it failed
/// again; the dead letter stays with the new error.
#[utoipa::path(post, path = "/api/v1/admin/events/dead-letters/{event_id}/{subscriber}/redrive", tag = "admin",
    params(("event_id" = String, Path, example = "evt_1234567"), ("subscriber" = String, Path, example = "inventory.on-order")),
    security(("bearer" = [])),
    responses((status = 204, description = "handled; the dead letter is gone"), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the subscriber failed again")))]
async fn redrive(
    State(s): State<AppState>,
    _a: Admin,
    Path((event_id, subscriber)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = event_id
        .strip_prefix("evt_")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::not_found(format!("no dead letter for event {event_id}")))?;
    s.events.redrive(id, &subscriber).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
