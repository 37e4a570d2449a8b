//! Extractors that turn raw requests into domain values, answering malformed input with the
//! API's JSON errors (never axum's plain-text rejections).
//!
//! - [`Params`]: `name` and `body`, from the query string, a JSON body or a form body;
//! - [`AppPath`], [`ChatPath`], [`MessagePath`]: a route's token and numbers, parsed;
//! - [`ListQuery`] and [`SearchQuery`]: the query strings of lists and of search;
//! - [`StreamFrom`]: where a live stream starts (`Last-Event-ID` or `?after`);
//! - [`RetryKey`]: a create's `Idempotency-Key` header.

mod header;
mod params;
mod path;
mod query;
mod urlencoded;

pub use header::RetryKey;
pub use params::Params;
pub use path::{AppPath, ChatPath, MessagePath};
pub use query::{ListQuery, SearchQuery, StreamFrom};

use crate::error::ApiError;

/// A number from a path or a list's bound; anything but its one spelling is a 400.
fn number<N>(raw: &str, field: &'static str) -> Result<N, ApiError>
where
    N: std::str::FromStr<Err = chatd_core::InvalidInput>,
{
    raw.parse().map_err(|why| ApiError::bad_request(Some(field), format!("{field} {why}")))
}
