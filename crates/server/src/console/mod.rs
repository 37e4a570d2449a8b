//! The console: a small page at `GET /` of the API listener, for a person trying chatd in a
//! browser. One HTML page, one script and one stylesheet, plain files beside this module
//! compiled into the binary (no build step, nothing fetched from elsewhere). The script uses
//! only the public API, from the page's own origin.
//!
//! Every answer here carries a strict `Content-Security-Policy` (the page's own script and
//! stylesheet, requests to its own origin, nothing inline, no framing, no form posts), so
//! that a message body that slipped into the page as markup could still run nothing.
//! `Cache-Control: no-cache` with an `ETag` of the version and content: a browser revalidates
//! each time (a 304 while nothing changed) and so picks up a new chatd's page at once.
//!
//! The routes are not in the OpenAPI document: they are a page, not part of the API.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What the page may load and do: its own script, stylesheet and API; images only from
/// itself or `data:` (the empty favicon); no plugins, frames, base URL or form targets.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the console, as served.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// `"<version>-<hash of the body>"`, so a rebuilt page is a new one even within a version.
    etag: LazyLock<HeaderValue>,
}

impl Asset {
    /// Answers the file, or 304 when the browser's copy (`If-None-Match`) is this one.
    fn answer(&self, request: &HeaderMap) -> Response {
        let etag = &*self.etag;
        let fresh = request.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|v| {
            v.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == etag.as_bytes())
        });
        let mut response =
            if fresh { StatusCode::NOT_MODIFIED.into_response() } else { self.body.into_response() };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::ETAG, etag.clone());
        response
    }
}

/// FNV-1a: a content hash for the `ETag`, not a security measure.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn etag(body: &str) -> HeaderValue {
    let tag = format!("\"{}-{:016x}\"", env!("CARGO_PKG_VERSION"), fnv1a(body.as_bytes()));
    HeaderValue::from_str(&tag).expect("a version and a hex hash are a valid header value")
}

macro_rules! asset {
    ($name:ident, $file:literal, $type:literal) => {
        static $name: Asset = Asset {
            body: include_str!($file),
            content_type: $type,
            etag: LazyLock::new(|| etag($name.body)),
        };
    };
}

asset!(PAGE, "index.html", "text/html; charset=utf-8");
asset!(SCRIPT, "console.js", "text/javascript; charset=utf-8");
asset!(STYLE, "console.css", "text/css; charset=utf-8");

/// The console's routes: the page at `/`, its script and its stylesheet.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { PAGE.answer(&h) }))
        .route("/console.js", get(|h: HeaderMap| async move { SCRIPT.answer(&h) }))
        .route("/console.css", get(|h: HeaderMap| async move { STYLE.answer(&h) }))
}
