//! The query strings of lists (SPEC §3 "Lists") and of search (SPEC §5).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chatd_core::search::{self, Keyword, SearchRequest};
use chatd_core::{AppToken, Limit, NumberBound, Order, Page};

use super::number;
use super::urlencoded::query_pairs;
use crate::error::ApiError;

/// `limit`, `after`, `before` and `order` of a list request, with keys still raw.
#[derive(Debug)]
pub struct ListQuery {
    pub limit: Limit,
    pub order: Order,
    pub after: Option<String>,
    pub before: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut q = query_pairs(parts)?;
        let limit = match q.remove("limit") {
            None => Limit::DEFAULT,
            Some(raw) => raw.parse::<u32>().ok().and_then(|n| Limit::new(n).ok()).ok_or_else(|| {
                ApiError::InvalidParameter {
                    field: "limit",
                    message: format!("limit must be 1 to {}", Limit::MAX),
                }
            })?,
        };
        let order = match q.remove("order").as_deref() {
            None | Some("asc") => Order::Asc,
            Some("desc") => Order::Desc,
            Some(_) => {
                return Err(ApiError::InvalidParameter {
                    field: "order",
                    message: "order must be asc or desc".into(),
                });
            }
        };
        Ok(ListQuery { limit, order, after: q.remove("after"), before: q.remove("before") })
    }
}

impl ListQuery {
    /// The page over numbered keys (chats, messages): bounds are 0 or a positive number.
    pub fn numbered(&self) -> Result<Page<NumberBound>, ApiError> {
        let key = |raw: &Option<String>, field| raw.as_deref().map(|r| number(r, field)).transpose();
        Ok(Page {
            limit: self.limit,
            order: self.order,
            after: key(&self.after, "after")?,
            before: key(&self.before, "before")?,
        })
    }

    /// The page over applications, whose cursor is an application's token.
    pub fn by_token(&self) -> Result<Page<AppToken>, ApiError> {
        let key = |raw: &Option<String>, field| {
            raw.as_deref()
                .map(|r| {
                    AppToken::parse(r)
                        .ok_or_else(|| ApiError::bad_request(Some(field), "the cursor is not valid"))
                })
                .transpose()
        };
        Ok(Page {
            limit: self.limit,
            order: self.order,
            after: key(&self.after, "after")?,
            before: key(&self.before, "before")?,
        })
    }
}

/// Where a live stream starts (SPEC §8): after `Last-Event-ID` (a reconnecting client; it
/// wins), else after `?after`, else (`None`) with the next message created.
#[derive(Debug, Clone, Copy)]
pub struct StreamFrom(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for StreamFrom {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        const HEADER: &str = "Last-Event-ID";
        let raw = match parts.headers.get(HEADER) {
            Some(header) => {
                let raw = header.to_str().map_err(|_| {
                    ApiError::bad_request(Some(HEADER), format!("{HEADER} must be a message number"))
                })?;
                Some((raw.trim().to_owned(), HEADER))
            }
            None => query_pairs(parts)?.remove("after").map(|raw| (raw, "after")),
        };
        let bound = raw.map(|(raw, field)| number::<NumberBound>(&raw, field)).transpose()?;
        Ok(StreamFrom(bound.map(NumberBound::get)))
    }
}

/// `keyword` (or `q`), `limit` (1–1000, default 50) and `offset` of a search (SPEC §5).
#[derive(Debug)]
pub struct SearchQuery(pub SearchRequest);

impl<S: Send + Sync> FromRequestParts<S> for SearchQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut q = query_pairs(parts)?;
        let raw = q.remove("keyword").or_else(|| q.remove("q")).unwrap_or_default();
        let keyword = Keyword::parse(&raw).map_err(|e| ApiError::InvalidParameter {
            field: "keyword",
            message: format!("keyword {e} (and must have something left to match after normalisation)"),
        })?;
        let mut number = |field: &'static str, default: usize, range: std::ops::RangeInclusive<usize>| match q
            .remove(field)
        {
            None => Ok(default),
            Some(raw) => raw.parse::<usize>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                ApiError::InvalidParameter {
                    field,
                    message: format!("{field} must be an integer from {} to {}", range.start(), range.end()),
                }
            }),
        };
        let limit = number("limit", search::DEFAULT_LIMIT, 1..=search::MAX_LIMIT)?;
        let offset = number("offset", 0, 0..=search::MAX_DEPTH - limit)?;
        Ok(SearchQuery(SearchRequest { keyword, limit, offset }))
    }
}
