use crate::dto::{AddressDto, MoneyDto, OrderDto, ts};
use crate::error::{ApiResult, Problem};
use crate::extract::{Admin, Auth, IdempotencyKey, Json, json_response, path_id};
use crate::routes::promotions::parse_time;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use mercato_contracts::flashsale::{FlashSale, NewFlashSale, SaleState};
use mercato_contracts::orders::Address;
use mercato_core::{Error, ErrorCode, Id};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create)).routes(routes!(get_sale)).routes(routes!(purchase))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFlashSaleRequest {
    pub sku: String,
    pub price: MoneyDto,
    pub quantity: i64,
    /// RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
    pub per_customer_limit: i64,
}

#[derive(Serialize, ToSchema)]
pub struct FlashSaleDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub sku: String,
    pub price: MoneyDto,
    pub quantity: i64,
    /// Units not yet taken by a pending or paid order.
    pub remaining: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub per_customer_limit: i64,
    /// `scheduled`, `active`, `sold_out` or `ended`.
    pub state: &'static str,
    pub created_at: String,
}

fn dto(s: FlashSale) -> FlashSaleDto {
    FlashSaleDto {
        id: s.id,
        sku: s.sku,
        price: s.price.into(),
        quantity: s.quantity,
        remaining: s.remaining,
        starts_at: ts(s.starts_at),
        ends_at: ts(s.ends_at),
        per_customer_limit: s.per_customer_limit,
        state: match s.state {
            SaleState::Scheduled => "scheduled",
            SaleState::Active => "active",
            SaleState::SoldOut => "sold_out",
            SaleState::Ended => "ended",
        },
        created_at: ts(s.created_at),
    }
}

/// Create a flash sale (admin). Its units are taken from available stock now.
#[utoipa::path(post, path = "/api/v1/admin/flash-sales", tag = "admin", request_body = NewFlashSaleRequest, security(("bearer" = [])),
    responses((status = 201, body = FlashSaleDto), (status = 404, body = Problem), (status = 409, body = Problem, description = "not enough stock"), (status = 422, body = Problem)))]
async fn create(State(s): State<AppState>, _a: Admin, Json(r): Json<NewFlashSaleRequest>) -> ApiResult<Response> {
    let sale = s
        .checkout
        .create_flash_sale(NewFlashSale {
            sku: r.sku,
            price: r.price.into(),
            quantity: r.quantity,
            starts_at: parse_time("starts_at", &r.starts_at)?,
            ends_at: parse_time("ends_at", &r.ends_at)?,
            per_customer_limit: r.per_customer_limit,
        })
        .await?;
    Ok(json_response(StatusCode::CREATED, &dto(sale)))
}

/// A flash sale with its remaining units and state.
#[utoipa::path(get, path = "/api/v1/flash-sales/{id}", tag = "catalog", params(("id" = String, Path)),
    responses((status = 200, body = FlashSaleDto), (status = 404, body = Problem)))]
async fn get_sale(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json_response(StatusCode::OK, &dto(s.flash.describe(path_id(&id)?).await?)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    /// Optional here; required before the order ships.
    pub shipping_address: Option<AddressDto>,
}

/// Buy one unit at the sale price. Requires `Idempotency-Key`; a retry with
/// the same key returns the same order.
#[utoipa::path(post, path = "/api/v1/flash-sales/{id}/purchase", tag = "orders", params(("id" = String, Path),
        ("Idempotency-Key" = String, Header, description = "required")),
    request_body(content = PurchaseRequest, description = "optional"), security(("bearer" = [])),
    responses((status = 201, body = OrderDto), (status = 403, body = Problem, description = "per-customer limit reached"),
        (status = 409, body = Problem, description = "sold out or ended"), (status = 425, body = Problem, description = "not started")))]
async fn purchase(
    State(s): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: Bytes,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let key = key.ok_or_else(|| Error::validation("the Idempotency-Key header is required for purchases"))?;
    let req: PurchaseRequest = if body.is_empty() {
        PurchaseRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Error::validation(e.to_string()),
            _ => Error::new(ErrorCode::MalformedBody, e.to_string()),
        })?
    };
    let address: Option<Address> = req.shipping_address.map(Into::into);
    let (order, replayed) = s.checkout.purchase_flash(id, p.customer_id, &key, address).await?;
    let mut resp = json_response(StatusCode::CREATED, &OrderDto::from(order));
    if replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}
