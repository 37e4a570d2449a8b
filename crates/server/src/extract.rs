//! Extractors that turn raw requests into domain values, answering malformed input with the
//! API's JSON errors (never axum's plain-text rejections).
//!
//! Parameters (`name`, `body`) come from the query string, a JSON body or a form body; when
//! several carry the same parameter, the request body wins (SPEC §3). A body sent as
//! `application/x-www-form-urlencoded` whose text is a JSON object is read as JSON: that is
//! what `curl --data '{"body": "…"}'` sends, and the old API's README documents exactly that.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, header, request::Parts};
use chatd_core::{AppToken, Limit, Order, Page};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Decodes one `application/x-www-form-urlencoded` component, refusing invalid UTF-8
/// (rather than replacing it, as lossy decoders do, which would store mangled text).
fn decode(component: &[u8]) -> Option<String> {
    let plus_as_space: Vec<u8> = component.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&plus_as_space).decode_utf8().ok().map(|s| s.into_owned())
}

/// Key/value pairs from a query string or form, refusing invalid UTF-8 and a key given twice.
fn pairs(raw: &[u8], source: &str) -> Result<HashMap<String, String>, ApiError> {
    let mut map = HashMap::new();
    for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let (Some(k), Some(v)) = (decode(k), decode(v)) else {
            return Err(ApiError::bad_request(None, format!("the {source} is not valid URL-encoded UTF-8")));
        };
        if map.contains_key(&k) {
            let message = format!("parameter '{k}' is given more than once in the {source}");
            return Err(ApiError::bad_request(None, message));
        }
        map.insert(k, v);
    }
    Ok(map)
}

/// The parameters of a query string.
pub fn query_pairs(parts: &Parts) -> Result<HashMap<String, String>, ApiError> {
    pairs(parts.uri.query().unwrap_or("").as_bytes(), "query string")
}

/// Request parameters merged from the query string and the body (the body wins).
#[derive(Debug, Default)]
pub struct Params {
    from_query: HashMap<String, String>,
    from_body: HashMap<String, serde_json::Value>,
}

impl Params {
    /// The string value of `field`, or a 422 when it is present with another JSON type.
    pub fn string(&mut self, field: &'static str) -> Result<Option<String>, ApiError> {
        match self.from_body.remove(field) {
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(serde_json::Value::Null) => Ok(None),
            Some(_) => {
                Err(ApiError::InvalidParameter { field, message: format!("{field} must be a string") })
            }
            None => Ok(self.from_query.remove(field)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
}

fn body_kind(headers: &HeaderMap, body: &[u8]) -> Result<Option<BodyKind>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let looks_like_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Some(if looks_like_json { BodyKind::Json } else { BodyKind::Form }));
    };
    let essence =
        content_type.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Some(BodyKind::Json)),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(Some(BodyKind::Json)),
        "application/x-www-form-urlencoded" if looks_like_json => Ok(Some(BodyKind::Json)),
        "application/x-www-form-urlencoded" => Ok(Some(BodyKind::Form)),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let from_query = query_pairs(&parts)?;
        let headers = parts.headers.clone();
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { message: "the request body is too large".into(), field: None }
            } else {
                ApiError::bad_request(None, "the request body could not be read")
            }
        })?;
        let from_body = match body_kind(&headers, &bytes)? {
            None => HashMap::new(),
            Some(BodyKind::Form) => pairs(&bytes, "form body")?
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
            Some(BodyKind::Json) => match serde_json::from_slice::<JsonObject>(&bytes) {
                Ok(JsonObject(map)) => map,
                Err(e) if e.classify() == serde_json::error::Category::Data => {
                    let message = "the JSON body must be an object that names each key once";
                    return Err(ApiError::bad_request(None, message));
                }
                Err(_) => return Err(ApiError::bad_request(None, "the JSON body is malformed")),
            },
        };
        Ok(Params { from_query, from_body })
    }
}

/// A JSON body's top-level object, refusing a key given twice (which JSON parsers settle
/// differently: the last wins here, the first elsewhere) just as query strings and forms do.
struct JsonObject(HashMap<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = JsonObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<JsonObject, A::Error> {
                let mut map = HashMap::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(format_args!("key {key:?} is given twice")));
                    }
                    let value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(JsonObject(map))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

/// `axum::extract::Path` with the API's error shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|_| ApiError::bad_request(None, "the path is not valid UTF-8"))
    }
}

/// An application token from a path. A string that cannot be a token is answered exactly
/// like an unknown one.
pub fn token(raw: &str) -> Result<AppToken, ApiError> {
    AppToken::parse(raw).ok_or(ApiError::ApplicationNotFound)
}

/// A chat or message number from a path or query; anything but a positive integer is a 400.
pub fn number<N: std::str::FromStr>(raw: &str, field: &'static str) -> Result<N, ApiError> {
    raw.parse().map_err(|_| {
        let why = chatd_core::InvalidInput::NotAPositiveInteger;
        ApiError::bad_request(Some(field), format!("{field} {why}"))
    })
}

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
    /// The page over numbered keys (chats, messages).
    pub fn numbered<N: std::str::FromStr>(&self) -> Result<Page<N>, ApiError> {
        let key = |raw: &Option<String>, field| raw.as_deref().map(|r| number::<N>(r, field)).transpose();
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
