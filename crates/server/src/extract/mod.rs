//! Extractors that turn raw requests into domain values, answering malformed input with the
//! API's JSON errors (never axum's plain-text rejections).
//!
//! - [`Params`]: `name` and `body`, from the query string, a JSON body or a form body;
//! - [`AppPath`], [`ChatPath`], [`MessagePath`]: a route's token and numbers, parsed;
//! - [`ListQuery`] and [`SearchQuery`]: the query strings of lists and of search.

mod params;
mod path;
mod query;
mod urlencoded;

pub use params::Params;
pub use path::{AppPath, ChatPath, MessagePath};
pub use query::{ListQuery, SearchQuery};

use crate::error::ApiError;

/// A chat or message number from a path; anything but a positive integer is a 400.
fn number<N: std::str::FromStr>(raw: &str, field: &'static str) -> Result<N, ApiError> {
    raw.parse().map_err(|_| {
        let why = chatd_core::InvalidInput::NotAPositiveInteger;
        ApiError::bad_request(Some(field), format!("{field} {why}"))
    })
}
