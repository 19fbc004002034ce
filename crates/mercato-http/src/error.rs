//! Every error leaves as an RFC 9457 problem document with a stable `type`
//! per kind. Internal details are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mercato_core::{Error, ErrorCode};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_BASE: &str = "https://mercato.dev/problems/";

/// The one table from error kind to HTTP status and title.
pub fn status_of(code: ErrorCode) -> (StatusCode, &'static str) {
    use ErrorCode as C;
    match code {
        C::Validation => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request"),
        C::MalformedBody => (StatusCode::BAD_REQUEST, "Malformed request body"),
        C::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type"),
        C::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
        C::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
        C::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        C::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        C::TokenExpired => (StatusCode::UNAUTHORIZED, "Token expired"),
        C::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
        C::Conflict => (StatusCode::CONFLICT, "Conflict"),
        C::OutOfStock => (StatusCode::CONFLICT, "Out of stock"),
        C::IllegalTransition => (StatusCode::CONFLICT, "Illegal state transition"),
        C::IdempotencyMismatch => (StatusCode::UNPROCESSABLE_ENTITY, "Idempotency key reused"),
        C::IdempotencyInProgress => (StatusCode::CONFLICT, "Request in progress"),
        C::PaymentDeclined => (StatusCode::PAYMENT_REQUIRED, "Payment declined"),
        C::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
        C::EmptyCart => (StatusCode::UNPROCESSABLE_ENTITY, "Empty cart"),
        C::CouponInvalid => (StatusCode::UNPROCESSABLE_ENTITY, "Coupon not applicable"),
        C::SoldOut => (StatusCode::CONFLICT, "Sold out"),
        C::NotStarted => (StatusCode::TOO_EARLY, "Not started"),
        C::LimitReached => (StatusCode::FORBIDDEN, "Purchase limit reached"),
        C::InvalidSignature => (StatusCode::BAD_REQUEST, "Invalid signature"),
        C::Unavailable | C::Transient => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
        C::OutcomeUnknown => (StatusCode::SERVICE_UNAVAILABLE, "Outcome unknown"),
        C::ShardMoved => (StatusCode::SERVICE_UNAVAILABLE, "Moving between databases"),
        C::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
    }
}

/// RFC 9457 problem details, plus `code` (the last segment of `type`) and any
/// structured details the error carries.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub extra: Option<serde_json::Value>,
}

/// The error type handlers return.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let (status, title) = status_of(e.code);
        let detail = if status.is_server_error() {
            tracing::error!(code = %e.code, error = %e.message, "request failed");
            match e.code {
                ErrorCode::Unavailable | ErrorCode::Transient => {
                    "the service is temporarily unavailable; retry shortly".to_string()
                }
                ErrorCode::OutcomeUnknown => "the database did not confirm this write: it may or may not have \
                                              happened; retry with the same Idempotency-Key to find out"
                    .to_string(),
                ErrorCode::ShardMoved => "this data is moving between databases and nothing was written; retry \
                                          in a moment"
                    .to_string(),
                _ => "an internal error occurred".to_string(),
            }
        } else {
            e.message.clone()
        };
        let extra = e.details.filter(|_| !status.is_server_error()).map(|d| match d {
            serde_json::Value::Object(_) => d,
            other => serde_json::json!({ "details": other }),
        });
        let body = Problem {
            kind: format!("{PROBLEM_BASE}{}", e.code.as_str()),
            title: title.to_string(),
            status: status.as_u16(),
            detail,
            code: e.code.as_str().to_string(),
            extra,
        };
        let mut resp = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = e.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
