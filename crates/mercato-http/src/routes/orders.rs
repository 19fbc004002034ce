use crate::dto::*;
use crate::error::{ApiResult, Problem};
use crate::extract::{Admin, Auth, IdempotencyKey, Json, Query, json_response, path_id};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use mercato_contracts::orders::{Address, AdminFilter, Order, OrderStatus, PaymentResult};
use mercato_core::{Error, ErrorCode, Id};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(pay_order))
        .routes(routes!(payment_webhook))
        .routes(routes!(admin_list_orders))
        .routes(routes!(admin_fulfil))
        .routes(routes!(admin_complete))
        .routes(routes!(admin_cancel))
        .routes(routes!(admin_refund))
}

fn order(o: Order) -> Response {
    json_response(StatusCode::OK, &OrderDto::from(o))
}

/// Place an order from the caller's cart, reserving stock for every line or
/// none. With `Idempotency-Key`, a retry returns the first response and
/// creates nothing; the same key with a different body is refused.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = PlaceOrderRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 201, body = OrderDto), (status = 409, body = Problem, description = "out of stock, or the key is in use"),
        (status = 422, body = Problem, description = "invalid address, empty cart, or key reused with another body")))]
async fn place_order(
    State(s): State<AppState>,
    Auth(p, _): Auth,
    IdempotencyKey(key): IdempotencyKey,
    Json(raw): Json<serde_json::Value>,
) -> ApiResult<Response> {
    // The fingerprint is over the canonical JSON (sorted keys), so key order
    // and whitespace do not make the "same" request look different.
    let fingerprint = mercato_platform::sha256_hex(raw.to_string().as_bytes());
    let req: PlaceOrderRequest =
        serde_json::from_value(raw).map_err(|e| Error::validation(format!("invalid order request: {e}")))?;
    let address: Address = req.shipping_address.into();
    let placed = s.checkout.place(p.customer_id, address, req.shipping_method, key, fingerprint).await?;
    let order: Order = serde_json::from_str(&placed.body)
        .map_err(|e| Error::internal(format!("stored checkout response unreadable: {e}")))?;
    let mut resp = json_response(StatusCode::CREATED, &OrderDto::from(order));
    if placed.replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    limit: Option<usize>,
    cursor: Option<String>,
    /// Admin only.
    status: Option<String>,
    /// Admin only.
    customer_id: Option<String>,
    /// Admin only: placed at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    created_from: Option<String>,
    /// Admin only: placed before this time (RFC 3339).
    created_to: Option<String>,
}

/// An RFC 3339 time in query parameter `field`, as ms since 1970.
fn time_param(field: &str, value: Option<&str>) -> Result<Option<i64>, Error> {
    let Some(v) = value else { return Ok(None) };
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map_err(|_| Error::field(field, "must be an RFC 3339 time, such as 2026-12-01T00:00:00Z"))?;
    Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

fn page(orders: Vec<Order>, next: Option<String>) -> Response {
    json_response(
        StatusCode::OK,
        &PageDto { items: orders.into_iter().map(OrderDto::from).collect::<Vec<_>>(), next_cursor: next },
    )
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(OrderListParams), security(("bearer" = [])),
    responses((status = 200, body = PageDto<OrderDto>), (status = 401, body = Problem)))]
async fn list_orders(
    State(s): State<AppState>,
    Auth(p, _): Auth,
    Query(q): Query<OrderListParams>,
) -> ApiResult<Response> {
    let filter = AdminFilter { customer_id: Some(p.customer_id), ..AdminFilter::default() };
    let (orders, next) = s.orders.list(filter, q.limit.unwrap_or(20), q.cursor.as_deref()).await?;
    Ok(page(orders, next))
}

/// One of the caller's orders. Other customers' orders do not exist for them.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OrderDto), (status = 404, body = Problem)))]
async fn get_order(State(s): State<AppState>, Auth(p, _): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let o = if p.is_admin() { s.orders.get(id).await? } else { s.orders.get_for(p.customer_id, id).await? };
    Ok(order(o))
}

/// Cancel one of the caller's unpaid orders; its stock is released.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OrderDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn cancel_order(State(s): State<AppState>, Auth(p, _): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    Ok(order(s.checkout.cancel_by_customer(p.customer_id, id).await?))
}

/// Pay an order. Test cards: 4242424242424242 succeeds, 4000000000000002 is
/// declined, 4000000000003220 settles asynchronously through a webhook.
#[utoipa::path(post, path = "/api/v1/orders/{id}/payments", tag = "orders", request_body = PaymentRequest, security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 201, body = PaymentDto, description = "paid"), (status = 202, body = PaymentDto, description = "processing; a webhook settles it"),
        (status = 402, body = Problem, description = "declined"), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn pay_order(
    State(s): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Json(req): Json<PaymentRequest>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    if req.method != "test_card" {
        return Err(Error::field("method", "the test provider accepts only 'test_card'").into());
    }
    Ok(match s.checkout.pay(p.customer_id, id, &req.card_number, key.as_deref()).await? {
        PaymentResult::Paid(payment) => json_response(StatusCode::CREATED, &PaymentDto::from(payment)),
        PaymentResult::Processing(payment) => json_response(StatusCode::ACCEPTED, &PaymentDto::from(payment)),
    })
}

/// Webhook endpoint of the `test` payment provider. Deliveries must carry a
/// valid `Mercato-Signature`; duplicates and late deliveries change nothing.
#[utoipa::path(post, path = "/api/v1/payments/webhooks/test", tag = "payments", request_body(content = Object, content_type = "application/json"),
    params(("Mercato-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">")),
    responses((status = 200, description = "accepted"), (status = 400, body = Problem)))]
async fn payment_webhook(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let sig = headers
        .get(mercato_contracts::payments::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::new(ErrorCode::InvalidSignature, "missing Mercato-Signature header"))?;
    if let Some(payment) = s.payments.handle_webhook(sig, &body).await? {
        s.checkout.on_payment_succeeded(payment.order_id).await?;
    }
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "received": true })))
}

/// All orders, newest first, filterable by status, customer and when they
/// were placed (admin). Across shards the listing is merged from every
/// database, and the cursor pages exactly while orders arrive.
#[utoipa::path(get, path = "/api/v1/admin/orders", tag = "admin", params(OrderListParams), security(("bearer" = [])),
    responses((status = 200, body = PageDto<OrderDto>), (status = 403, body = Problem)))]
async fn admin_list_orders(
    State(s): State<AppState>,
    _a: Admin,
    Query(q): Query<OrderListParams>,
) -> ApiResult<Response> {
    let filter = AdminFilter {
        status: q.status.as_deref().map(OrderStatus::parse).transpose()?,
        customer_id: q.customer_id.as_deref().map(|c| c.parse::<Id>()).transpose()?,
        created_from: time_param("created_from", q.created_from.as_deref())?,
        created_to: time_param("created_to", q.created_to.as_deref())?,
    };
    let (orders, next) = s.orders.list(filter, q.limit.unwrap_or(20), q.cursor.as_deref()).await?;
    Ok(page(orders, next))
}

/// Mark a paid order fulfilled (shipped).
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/fulfil", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OrderDto), (status = 409, body = Problem)))]
async fn admin_fulfil(State(s): State<AppState>, _a: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(order(s.orders.fulfil(path_id(&id)?).await?))
}

/// Mark a fulfilled order completed.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/complete", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OrderDto), (status = 409, body = Problem)))]
async fn admin_complete(State(s): State<AppState>, _a: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(order(s.orders.complete(path_id(&id)?).await?))
}

/// Cancel an order: unpaid ones release their stock; paid ones are refunded in
/// full and restocked.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/cancel", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    request_body(content = CancelRequest, description = "optional"),
    responses((status = 200, body = OrderDto), (status = 409, body = Problem)))]
async fn admin_cancel(
    State(s): State<AppState>,
    _a: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: CancelRequest = if body.is_empty() {
        CancelRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Error::validation(e.to_string()),
            _ => Error::new(ErrorCode::MalformedBody, e.to_string()),
        })?
    };
    Ok(order(s.checkout.cancel_by_admin(path_id(&id)?, req.reason).await?))
}

/// Refund part or all of a paid order through the payment provider.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/refunds", tag = "admin", params(("id" = String, Path)), security(("bearer" = [])),
    request_body = RefundRequest, responses((status = 200, body = OrderDto), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn admin_refund(
    State(s): State<AppState>,
    _a: Admin,
    Path(id): Path<String>,
    Json(req): Json<RefundRequest>,
) -> ApiResult<Response> {
    Ok(order(s.checkout.refund(path_id(&id)?, req.amount, req.reason).await?))
}
