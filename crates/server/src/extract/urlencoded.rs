//! `application/x-www-form-urlencoded` pairs, as query strings and form bodies carry them.

use std::collections::HashMap;

use axum::http::request::Parts;

use crate::error::ApiError;

/// Decodes one `application/x-www-form-urlencoded` component, refusing invalid UTF-8
/// (rather than replacing it, as lossy decoders do, which would store mangled text).
fn decode(component: &[u8]) -> Option<String> {
    let plus_as_space: Vec<u8> = component.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&plus_as_space).decode_utf8().ok().map(|s| s.into_owned())
}

/// Key/value pairs from a query string or form, refusing invalid UTF-8 and a key given twice.
pub(super) fn pairs(raw: &[u8], source: &str) -> Result<HashMap<String, String>, ApiError> {
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
pub(super) fn query_pairs(parts: &Parts) -> Result<HashMap<String, String>, ApiError> {
    pairs(parts.uri.query().unwrap_or("").as_bytes(), "query string")
}
