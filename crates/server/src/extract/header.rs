//! `Idempotency-Key` (SPEC §8): a create's optional name, so that a client can retry it
//! safely. A malformed key (empty, over 255 characters, not printable ASCII, or given twice)
//! is a 400 naming the header. The struct also describes the header in the OpenAPI document.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chatd_core::IdempotencyKey;
use utoipa::IntoParams;

use crate::error::ApiError;

/// The request's `Idempotency-Key`, if it sent one.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct RetryKey {
    /// 1–255 printable ASCII characters naming this create within the application (for
    /// `POST /applications`, among all application creates). Sent again within 24 hours
    /// with the same parameters, the create is not repeated: the answer is the first one
    /// (same status, same number). With other parameters: 422 `idempotency_key_reused`.
    /// (HTTP drops spaces at either end of a header value.)
    #[param(rename = "Idempotency-Key", value_type = String, required = false, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$")]
    pub key: Option<IdempotencyKey>,
}

/// The header's name, as SPEC §8 spells it.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

impl<S: Send + Sync> FromRequestParts<S> for RetryKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).into_iter();
        let Some(value) = values.next() else { return Ok(RetryKey { key: None }) };
        let refused =
            |why: String| ApiError::bad_request(Some(IDEMPOTENCY_KEY), format!("{IDEMPOTENCY_KEY} {why}"));
        if values.next().is_some() {
            return Err(refused("must be sent once".to_owned()));
        }
        let key = IdempotencyKey::parse(value.as_bytes()).map_err(|why| refused(why.to_string()))?;
        Ok(RetryKey { key: Some(key) })
    }
}
