//! Extractors: JSON bodies whose rejections are problem documents, bearer
//! authentication, cart ownership, idempotency keys.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use mercato_contracts::cart::CartOwner;
use mercato_contracts::customers::Principal;
use mercato_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;

/// `axum::Json`, but a bad body is answered with our problem format.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(ApiError(json_rejection(rejection))),
        }
    }
}

/// Not JSON at all is a 400; JSON of the wrong shape (a missing field, a
/// string where a number belongs) is a 422 like any other invalid value.
fn json_rejection(r: JsonRejection) -> Error {
    match r {
        JsonRejection::MissingJsonContentType(_) => {
            Error::new(ErrorCode::UnsupportedMediaType, "expected a JSON body with Content-Type: application/json")
        }
        JsonRejection::JsonDataError(e) => Error::validation(e.body_text()),
        r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Error::new(ErrorCode::PayloadTooLarge, "request body is too large")
        }
        r => Error::new(ErrorCode::MalformedBody, r.body_text()),
    }
}

/// JSON rendered by our own serializer, with the right content type.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(value)).into_response()
}

fn bearer(parts: &Parts) -> Result<Option<&str>, Error> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Error::unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(Error::unauthorized("expected Authorization: Bearer <token>")),
    }
}

/// An authenticated caller (any role).
pub struct Auth(pub Principal, pub String);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?.ok_or_else(|| Error::unauthorized("authentication required"))?;
        let principal = state.customers.authenticate(token).await?;
        Ok(Auth(principal, token.to_string()))
    }
}

/// An authenticated administrator.
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Auth(principal, _) = Auth::from_request_parts(parts, state).await?;
        if !principal.is_admin() {
            return Err(Error::forbidden("administrator role required").into());
        }
        Ok(Admin(principal))
    }
}

pub const CART_TOKEN: &str = "x-cart-token";

/// Whose cart: the customer's when a bearer token is present (and valid), else
/// the guest cart named by `X-Cart-Token`.
pub struct Owner(pub CartOwner);

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if bearer(parts)?.is_some() {
            let Auth(p, _) = Auth::from_request_parts(parts, state).await?;
            return Ok(Owner(CartOwner::Customer(p.customer_id)));
        }
        let token =
            parts.headers.get(CART_TOKEN).and_then(|v| v.to_str().ok()).map(str::to_string).filter(|t| !t.is_empty());
        Ok(Owner(CartOwner::Guest(token)))
    }
}

/// The optional `Idempotency-Key` header.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get("idempotency-key") {
            None => Ok(IdempotencyKey(None)),
            Some(v) => {
                let s = v.to_str().map_err(|_| Error::validation("Idempotency-Key must be visible ASCII"))?.trim();
                if s.is_empty() || s.len() > 255 {
                    return Err(Error::validation("Idempotency-Key must be 1 to 255 characters").into());
                }
                Ok(IdempotencyKey(Some(s.to_string())))
            }
        }
    }
}

/// The client's address as the edge settled it behind trusted proxies (see
/// `forwarded`): the first untrusted hop of their header.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// The client's address: as the edge settled it behind trusted proxies,
/// else the peer's.
pub fn client_ip(ext: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<ClientIp>()
        .map(|c| c.0)
        .or_else(|| ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()))
}

/// The client's address, for abuse limits (login throttles key on it).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_ip(&parts.extensions).map_or_else(|| "unknown".into(), |ip| ip.to_string())))
    }
}

/// Parses a path id, answering 404 (not 400) for ids that cannot exist.
pub fn path_id(raw: &str) -> Result<mercato_core::Id, ApiError> {
    raw.parse().map_err(|_| ApiError(Error::not_found("not found")))
}

/// `axum::extract::Query`, but a bad query string is a 422 problem.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(r) => Err(ApiError(Error::validation(r.body_text()))),
        }
    }
}
