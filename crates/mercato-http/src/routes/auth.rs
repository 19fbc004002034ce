use crate::dto::*;
use crate::error::{ApiResult, Problem};
use crate::extract::{Auth, CART_TOKEN, ClientAddr, Json, json_response};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register)).routes(routes!(login)).routes(routes!(logout)).routes(routes!(me))
}

/// Create a customer account.
///
/// The answer is the same whether or not the email already has an account, so
/// registration cannot be used to find out who is a customer.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse), (status = 422, body = Problem)))]
async fn register(State(s): State<AppState>, Json(req): Json<RegisterRequest>) -> ApiResult<Response> {
    let (email, name) = s.customers.register(&req.email, &req.password, &req.name).await?;
    Ok(json_response(StatusCode::CREATED, &RegisterResponse { email, name }))
}

/// Exchange credentials for a bearer access token.
///
/// Send `X-Cart-Token` to merge a guest cart into the customer's cart.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    params(("X-Cart-Token" = Option<String>, Header, description = "guest cart to merge")),
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn login(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let out = s.customers.login(&req.email, &req.password, &addr).await?;
    if let Some(token) = headers.get(CART_TOKEN).and_then(|v| v.to_str().ok()) {
        s.cart.merge_guest(token, out.customer.id).await?;
    }
    Ok(json_response(
        StatusCode::OK,
        &LoginResponse {
            access_token: out.access_token,
            token_type: "Bearer",
            expires_in: out.expires_in,
            customer: out.customer.into(),
        },
    ))
}

/// Revoke the access token used for this request.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(State(s): State<AppState>, Auth(_, token): Auth) -> ApiResult<Response> {
    s.customers.logout(&token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The authenticated customer.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = CustomerDto), (status = 401, body = Problem)))]
async fn me(State(s): State<AppState>, Auth(p, _): Auth) -> ApiResult<Response> {
    let c = s.customers.get(p.customer_id).await?;
    Ok(json_response(StatusCode::OK, &CustomerDto::from(c)))
}
