//! `name` and `body`: request parameters from the query string, a JSON body or a form body.
//! When several carry the same parameter, the request body wins (SPEC §3). A body sent as
//! `application/x-www-form-urlencoded` whose text is a JSON object is read as JSON: that is
//! what `curl --data '{"body": "…"}'` sends, and the old API's README documents exactly that.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};

use super::urlencoded::{pairs, query_pairs};
use crate::error::ApiError;

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
