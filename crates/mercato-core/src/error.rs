//! One error type for every domain. Each kind has a stable machine-readable code;
//! the HTTP edge turns it into an RFC 9457 problem document.

use std::fmt;

/// Stable error kinds. The string form is part of the public API (it ends the
/// problem `type` URI), so variants are only ever added, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Input failed validation (a field is missing, out of range, malformed).
    Validation,
    /// The request body is not valid JSON or does not match the schema.
    MalformedBody,
    /// The request body is not JSON (wrong or missing Content-Type).
    UnsupportedMediaType,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The endpoint exists but not with this HTTP method.
    MethodNotAllowed,
    /// The thing asked for does not exist, or the caller may not know it exists.
    NotFound,
    /// No or invalid credentials.
    Unauthorized,
    /// The access token has expired or was revoked.
    TokenExpired,
    /// Authenticated, but not allowed.
    Forbidden,
    /// The state of the resource does not allow this (a unique value is taken,
    /// a concurrent request holds it).
    Conflict,
    /// Not enough stock for a line.
    OutOfStock,
    /// The transition asked for is not legal from the current state.
    IllegalTransition,
    /// An `Idempotency-Key` was reused with a different request.
    IdempotencyMismatch,
    /// A request with this `Idempotency-Key` is still being processed.
    IdempotencyInProgress,
    /// The payment provider declined the payment.
    PaymentDeclined,
    /// Too many attempts; try again later.
    RateLimited,
    /// The cart has nothing to check out.
    EmptyCart,
    /// A coupon does not exist, is outside its window, used up, or does not
    /// apply to the cart; `details.reason` says which.
    CouponInvalid,
    /// A flash sale has sold out.
    SoldOut,
    /// A flash sale has not started yet.
    NotStarted,
    /// A per-customer purchase limit was reached.
    LimitReached,
    /// A webhook's signature or timestamp is invalid.
    InvalidSignature,
    /// A dependency (the database, a provider) is unavailable; retry later.
    Unavailable,
    /// The database did not confirm a write (the primary died or was cut
    /// off while committing): it may or may not have happened. A retry
    /// under the same `Idempotency-Key` finds out.
    OutcomeUnknown,
    /// The database reached no longer serves the logical shard asked for: it
    /// moved (stage 7), or is being moved. Nothing was written; the caller
    /// reads the shard map again and retries where the shard is now, so
    /// clients only see it when a move's freeze outlasts those retries.
    ShardMoved,
    /// A transient conflict inside the storage layer (serialization failure,
    /// deadlock, busy). Retried by the storage layer before it ever surfaces.
    Transient,
    /// A bug. Never shown to clients in detail.
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Validation => "validation",
            ErrorCode::MalformedBody => "malformed-body",
            ErrorCode::UnsupportedMediaType => "unsupported-media-type",
            ErrorCode::PayloadTooLarge => "payload-too-large",
            ErrorCode::MethodNotAllowed => "method-not-allowed",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token-expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Conflict => "conflict",
            ErrorCode::OutOfStock => "out-of-stock",
            ErrorCode::IllegalTransition => "illegal-transition",
            ErrorCode::IdempotencyMismatch => "idempotency-key-reused",
            ErrorCode::IdempotencyInProgress => "idempotency-key-in-progress",
            ErrorCode::PaymentDeclined => "payment-declined",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::EmptyCart => "empty-cart",
            ErrorCode::CouponInvalid => "coupon-invalid",
            ErrorCode::SoldOut => "sold-out",
            ErrorCode::NotStarted => "not-started",
            ErrorCode::LimitReached => "limit-reached",
            ErrorCode::InvalidSignature => "invalid-signature",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::OutcomeUnknown => "outcome-unknown",
            ErrorCode::ShardMoved => "shard-moved",
            ErrorCode::Transient => "transient",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain error: a code, a human message, and optional structured details
/// (field errors, the SKU that ran out) that clients can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Seconds after which a retry may succeed (rate limits, in-progress keys).
    pub retry_after: Option<u64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), details: None, retry_after: None }
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }
    /// A validation error about one field, in the shape clients can map to a form.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(ErrorCode::Validation, format!("{field}: {message}"))
            .with_details(serde_json::json!({ "errors": [{ "field": field, "message": message }] }))
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, what)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn illegal_transition(from: &str, action: &str) -> Self {
        Self::new(ErrorCode::IllegalTransition, format!("cannot {action} an order that is {from}"))
            .with_details(serde_json::json!({ "from": from, "action": action }))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code
    }
}
