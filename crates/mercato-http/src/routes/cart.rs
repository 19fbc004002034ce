use crate::dto::*;
use crate::error::{ApiResult, Problem};
use crate::extract::{CART_TOKEN, Json, Owner, json_response};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use mercato_contracts::cart::PricedCart;
use mercato_core::Money;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_cart))
        .routes(routes!(add_item))
        .routes(routes!(set_quantity, remove_item))
        .routes(routes!(set_shipping))
        .routes(routes!(set_coupon, remove_coupon))
}

fn render(s: &AppState, cart: PricedCart, new_token: Option<String>) -> Response {
    let currency = cart.currency;
    let body = CartDto {
        id: cart.id,
        items: cart
            .items
            .into_iter()
            .map(|l| LineDto {
                sku: l.sku,
                product_id: l.product_id,
                name: l.name,
                options: l.options,
                quantity: l.quantity,
                unit_price: l.unit_price.into(),
                line_total: l.line_total.into(),
            })
            .collect(),
        totals: cart.totals.into(),
        discounts: cart.discounts.into_iter().map(|a| DiscountDto::from_applied(a, currency)).collect(),
        coupon: cart.coupon,
        coupon_problem: cart.coupon_problem.map(|e| CouponProblemDto {
            code: e.details.as_ref().and_then(|d| d["coupon"].as_str()).unwrap_or_default().to_string(),
            reason: e.details.as_ref().and_then(|d| d["reason"].as_str()).unwrap_or("not_applicable").to_string(),
            detail: e.message,
        }),
        shipping_method: cart.shipping_method,
        shipping_methods: s
            .cart
            .shipping_methods()
            .iter()
            .map(|m| ShippingMethodDto {
                code: m.code.clone(),
                name: m.name.clone(),
                price: Money::new(m.price, currency).into(),
                free_over: m.free_over.map(|f| Money::new(f, currency).into()),
            })
            .collect(),
        unavailable: cart.unavailable,
    };
    let mut resp = json_response(StatusCode::OK, &body);
    if let Some(t) = new_token.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(CART_TOKEN, t);
    }
    resp
}

/// The caller's cart, priced now. Guests send `X-Cart-Token`.
#[utoipa::path(get, path = "/api/v1/cart", tag = "cart",
    params(("X-Cart-Token" = Option<String>, Header, description = "guest cart token")),
    responses((status = 200, body = CartDto), (status = 401, body = Problem)))]
async fn get_cart(State(s): State<AppState>, Owner(owner): Owner) -> ApiResult<Response> {
    let cart = s.cart.view(&owner).await?;
    Ok(render(&s, cart, None))
}

/// Add units of a SKU. A guest's first add creates a cart and returns its
/// token in the `X-Cart-Token` response header.
#[utoipa::path(post, path = "/api/v1/cart/items", tag = "cart", request_body = AddItemRequest,
    params(("X-Cart-Token" = Option<String>, Header, description = "guest cart token")),
    responses((status = 200, body = CartDto, headers(("X-Cart-Token" = String, description = "set when a guest cart was created"))),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn add_item(
    State(s): State<AppState>,
    Owner(owner): Owner,
    Json(req): Json<AddItemRequest>,
) -> ApiResult<Response> {
    let (cart, token) = s.cart.add(&owner, &req.sku, req.quantity).await?;
    Ok(render(&s, cart, token))
}

/// Set the quantity of a line.
#[utoipa::path(put, path = "/api/v1/cart/items/{sku}", tag = "cart", request_body = SetQuantityRequest,
    params(("sku" = String, Path)), responses((status = 200, body = CartDto), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn set_quantity(
    State(s): State<AppState>,
    Owner(owner): Owner,
    Path(sku): Path<String>,
    Json(req): Json<SetQuantityRequest>,
) -> ApiResult<Response> {
    let cart = s.cart.set_quantity(&owner, &sku, req.quantity).await?;
    Ok(render(&s, cart, None))
}

/// Remove a line.
#[utoipa::path(delete, path = "/api/v1/cart/items/{sku}", tag = "cart",
    params(("sku" = String, Path)), responses((status = 200, body = CartDto), (status = 404, body = Problem)))]
async fn remove_item(State(s): State<AppState>, Owner(owner): Owner, Path(sku): Path<String>) -> ApiResult<Response> {
    let cart = s.cart.remove(&owner, &sku).await?;
    Ok(render(&s, cart, None))
}

/// Choose a shipping method.
#[utoipa::path(put, path = "/api/v1/cart/shipping-method", tag = "cart", request_body = ShippingMethodRequest,
    responses((status = 200, body = CartDto), (status = 422, body = Problem)))]
async fn set_shipping(
    State(s): State<AppState>,
    Owner(owner): Owner,
    Json(req): Json<ShippingMethodRequest>,
) -> ApiResult<Response> {
    let (cart, token) = s.cart.set_shipping_method(&owner, &req.code).await?;
    Ok(render(&s, cart, token))
}

/// Apply a coupon code. It must apply to the cart now; the cart then shows the
/// discount line. Re-checked at checkout.
#[utoipa::path(post, path = "/api/v1/cart/coupon", tag = "cart", request_body = CouponRequest,
    responses((status = 200, body = CartDto), (status = 422, body = Problem, description = "coupon-invalid: details.reason says why")))]
async fn set_coupon(
    State(s): State<AppState>,
    Owner(owner): Owner,
    Json(req): Json<CouponRequest>,
) -> ApiResult<Response> {
    let cart = s.cart.set_coupon(&owner, &req.code).await?;
    Ok(render(&s, cart, None))
}

/// Remove the coupon from the cart.
#[utoipa::path(delete, path = "/api/v1/cart/coupon", tag = "cart", responses((status = 200, body = CartDto), (status = 404, body = Problem)))]
async fn remove_coupon(State(s): State<AppState>, Owner(owner): Owner) -> ApiResult<Response> {
    let cart = s.cart.remove_coupon(&owner).await?;
    Ok(render(&s, cart, None))
}
