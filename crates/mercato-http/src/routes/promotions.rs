use crate::dto::{MoneyDto, ts};
use crate::error::{ApiResult, Problem};
use crate::extract::{Admin, Json, json_response, path_id};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mercato_contracts::promotions::{Kind, NewPromotion, Promotion, Scope};
use mercato_core::{Error, Id, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(get_one, update))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPromotionRequest {
    /// A coupon code customers enter; omit for an automatic promotion.
    pub code: Option<String>,
    pub name: String,
    /// `percentage` (value in basis points: 1000 = 10%) or `fixed` (value in minor units).
    pub kind: String,
    pub value: i64,
    /// Cart subtotal required, minor units.
    #[serde(default)]
    pub min_subtotal: i64,
    /// `all` (default), `categories` or `skus`.
    pub scope: Option<String>,
    /// Category ids (with `categories`) or SKUs (with `skus`).
    #[serde(default)]
    pub scope_values: Vec<String>,
    /// RFC 3339.
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    pub active: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionPatchRequest {
    pub active: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PromotionDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub code: Option<String>,
    pub name: String,
    pub description: String,
    pub kind: &'static str,
    pub value: i64,
    pub min_subtotal: MoneyDto,
    pub scope: &'static str,
    pub scope_values: Vec<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    /// Uses so far (orders that redeemed it and were not cancelled unpaid).
    pub used: i64,
    pub active: bool,
    pub created_at: String,
}

fn dto(p: Promotion, s: &AppState) -> PromotionDto {
    let currency = s.catalog.currency();
    let (kind, value) = match p.kind {
        Kind::Percentage(v) => ("percentage", v),
        Kind::Fixed(v) => ("fixed", v),
    };
    let (scope, scope_values) = match &p.scope {
        Scope::All => ("all", vec![]),
        Scope::Categories(ids) => ("categories", ids.iter().map(|i| i.to_string()).collect()),
        Scope::Skus(skus) => ("skus", skus.clone()),
    };
    PromotionDto {
        id: p.id,
        description: p.describe(currency),
        code: p.code,
        name: p.name,
        kind,
        value,
        min_subtotal: Money::new(p.min_subtotal, currency).into(),
        scope,
        scope_values,
        starts_at: p.starts_at.map(ts),
        ends_at: p.ends_at.map(ts),
        usage_limit: p.usage_limit,
        per_customer_limit: p.per_customer_limit,
        used: p.used,
        active: p.active,
        created_at: ts(p.created_at),
    }
}

/// Parses an RFC 3339 timestamp into epoch milliseconds.
pub fn parse_time(field: &str, v: &str) -> Result<i64, Error> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| Error::field(field, "must be an RFC 3339 timestamp such as 2026-11-11T00:00:00Z"))
}

/// Create a coupon or an automatic promotion (admin).
#[utoipa::path(post, path = "/api/v1/admin/promotions", tag = "admin", request_body = NewPromotionRequest, security(("bearer" = [])),
    responses((status = 201, body = PromotionDto), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create(State(s): State<AppState>, _a: Admin, Json(r): Json<NewPromotionRequest>) -> ApiResult<Response> {
    let kind = match r.kind.as_str() {
        "percentage" => Kind::Percentage(r.value),
        "fixed" => Kind::Fixed(r.value),
        _ => return Err(Error::field("kind", "must be percentage or fixed").into()),
    };
    let scope = match r.scope.as_deref().unwrap_or("all") {
        "all" => Scope::All,
        "categories" => Scope::Categories(
            r.scope_values
                .iter()
                .map(|v| v.parse::<Id>())
                .collect::<Result<_, _>>()
                .map_err(|_| Error::field("scope_values", "category ids"))?,
        ),
        "skus" => Scope::Skus(r.scope_values.clone()),
        _ => return Err(Error::field("scope", "must be all, categories or skus").into()),
    };
    let new = NewPromotion {
        code: r.code,
        name: r.name,
        kind,
        min_subtotal: r.min_subtotal,
        scope,
        starts_at: r.starts_at.as_deref().map(|v| parse_time("starts_at", v)).transpose()?,
        ends_at: r.ends_at.as_deref().map(|v| parse_time("ends_at", v)).transpose()?,
        usage_limit: r.usage_limit,
        per_customer_limit: r.per_customer_limit,
        active: r.active.unwrap_or(true),
    };
    let p = s.promotions.create(new).await?;
    Ok(json_response(StatusCode::CREATED, &dto(p, &s)))
}

/// All promotions, newest first (admin).
#[utoipa::path(get, path = "/api/v1/admin/promotions", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<PromotionDto>)))]
async fn list(State(s): State<AppState>, _a: Admin) -> ApiResult<Response> {
    let items: Vec<PromotionDto> = s.promotions.list().await?.into_iter().map(|p| dto(p, &s)).collect();
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "items": items })))
}

/// One promotion with its usage (admin).
#[utoipa::path(get, path = "/api/v1/admin/promotions/{id}", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PromotionDto), (status = 404, body = Problem)))]
async fn get_one(State(s): State<AppState>, _a: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let p = s.promotions.get(path_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &dto(p, &s)))
}

/// Activate or deactivate a promotion (admin).
#[utoipa::path(patch, path = "/api/v1/admin/promotions/{id}", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    request_body = PromotionPatchRequest, responses((status = 200, body = PromotionDto), (status = 404, body = Problem)))]
async fn update(
    State(s): State<AppState>,
    _a: Admin,
    Path(id): Path<String>,
    Json(r): Json<PromotionPatchRequest>,
) -> ApiResult<Response> {
    let p = s.promotions.set_active(path_id(&id)?, r.active).await?;
    Ok(json_response(StatusCode::OK, &dto(p, &s)))
}
