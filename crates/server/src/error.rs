//! The API's one error type and its one table of statuses and codes (SPEC §3 "Errors").
//!
//! `IntoResponse` only renders: the detail of a 500 travels in a response extension and is
//! logged by [`LogAnswer`], inside the request's span, never sent to the client.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatd_core::{InvalidInput, StoreError};
use serde::Serialize;
use tower_http::trace::{DefaultOnResponse, OnResponse};
use tracing::Span;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String, field: Option<&'static str> },
    #[error("unauthorized")]
    Unauthorized,
    #[error("application not found")]
    ApplicationNotFound,
    #[error("chat not found")]
    ChatNotFound,
    #[error("message not found")]
    MessageNotFound,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{message}")]
    PayloadTooLarge { message: String, field: Option<&'static str> },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("{field}: {message}")]
    InvalidParameter { field: &'static str, message: String },
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    #[error("overloaded")]
    Overloaded,
    #[error("too many open connections")]
    TooManyConnections,
    #[error("rate limited for {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the request took too long")]
    RequestTimeout,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The JSON body of every error.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

/// The detail of a server-side failure, for the log only.
#[derive(Debug, Clone)]
pub struct ServerErrorDetail(pub Arc<str>);

impl ApiError {
    pub fn bad_request(field: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), field }
    }

    /// A refused parameter: too long bodies are 413, everything else 422 (SPEC §3).
    pub fn invalid(field: &'static str, why: InvalidInput) -> Self {
        match why {
            InvalidInput::TooLong { unit: "bytes", .. } => {
                ApiError::PayloadTooLarge { message: format!("{field} {why}"), field: Some(field) }
            }
            _ => ApiError::InvalidParameter { field, message: format!("{field} {why}") },
        }
    }

    /// Status, stable code, and the sentence shown to the client: the one table.
    pub(crate) fn parts(&self) -> (StatusCode, &'static str, &str) {
        use ApiError::*;
        match self {
            BadRequest { message, .. } => (StatusCode::BAD_REQUEST, "bad_request", message),
            Unauthorized => {
                (StatusCode::UNAUTHORIZED, "unauthorized", "this route needs the admin key as a Bearer token")
            }
            ApplicationNotFound => {
                (StatusCode::NOT_FOUND, "application_not_found", "no application has this token")
            }
            ChatNotFound => {
                (StatusCode::NOT_FOUND, "chat_not_found", "this application has no chat with this number")
            }
            MessageNotFound => {
                (StatusCode::NOT_FOUND, "message_not_found", "this chat has no message with this number")
            }
            RouteNotFound => (StatusCode::NOT_FOUND, "not_found", "no route matches this path"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept this method",
            ),
            PayloadTooLarge { message, .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send parameters as JSON or as a form (application/x-www-form-urlencoded)",
            ),
            InvalidParameter { message, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter", message)
            }
            IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was sent with other parameters; a new request needs a new key",
            ),
            Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "chatd is busy; retry shortly"),
            TooManyConnections => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "chatd has too many open connections; retry shortly",
            ),
            RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this client or for this application; retry later",
            ),
            RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request did not complete in time; a write it carried may or may not have been stored",
            ),
            Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage is unavailable; retry later")
            }
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred"),
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            ApiError::BadRequest { field, .. } | ApiError::PayloadTooLarge { field, .. } => *field,
            ApiError::InvalidParameter { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Seconds a client should wait before trying again, where waiting helps.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Overloaded | ApiError::TooManyConnections => Some(1),
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::Unavailable(_) => Some(5),
            _ => None,
        }
    }
}

impl ApiError {
    /// The raw HTTP/1.1 response for this error, for answers written before hyper takes a
    /// connection (the connection limit); it closes the connection.
    pub fn raw_http1(&self) -> Vec<u8> {
        let (status, code, message) = self.parts();
        let body = serde_json::to_string(&ErrorBody { error: code, message, field: self.field() })
            .expect("an error body serializes");
        let mut head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        if let Some(secs) = self.retry_after() {
            head.push_str(&format!("retry-after: {secs}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        head.into_bytes()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ApplicationNotFound => ApiError::ApplicationNotFound,
            StoreError::ChatNotFound => ApiError::ChatNotFound,
            StoreError::MessageNotFound => ApiError::MessageNotFound,
            StoreError::BadCursor(field) => {
                ApiError::bad_request(Some(field), format!("{field} does not name a listed application"))
            }
            StoreError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            StoreError::Overloaded => ApiError::Overloaded,
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            StoreError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = ErrorBody { error: code, message, field: self.field() };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::Internal(_) | ApiError::Unavailable(_)) {
            let detail = match &self {
                ApiError::Internal(e) => format!("{e:#}"),
                other => other.to_string(),
            };
            response.extensions_mut().insert(ServerErrorDetail(detail.into()));
        }
        response
    }
}

/// The answer to a request whose handler panicked (caught in `startup::wrap`): 500
/// `internal`, like any internal error. The panic's message went to the log already, from
/// the panic hook (`telemetry::log_panics`), never to the client.
pub fn panicked() -> Response {
    ApiError::Internal("a request handler panicked".into()).into_response()
}

/// The request span's answer hook (tower-http's `TraceLayer` runs it inside the span): the
/// default debug line, then the hidden detail of a 5xx answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAnswer;

impl<B> OnResponse<B> for LogAnswer {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        DefaultOnResponse::default().on_response(response, latency, span);
        if let Some(ServerErrorDetail(detail)) = response.extensions().get::<ServerErrorDetail>() {
            if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(%detail, "request failed");
            } else {
                tracing::warn!(%detail, "request refused: storage unavailable");
            }
        }
    }
}

/// The fallback for paths that match no route.
pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

/// The fallback for a known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
