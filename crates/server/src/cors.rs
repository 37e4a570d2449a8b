//! CORS: which web pages on other origins may call the API from a browser
//! (`--cors-origins`). By default none may: a browser lets a page read only answers of its
//! own origin.
//!
//! [`CrossOrigin`] wraps each listener's whole service (`startup::wrap`), outside the routes,
//! the rate limits and the fallbacks, so that:
//! - a request whose `Origin` is allowed goes through tower-http's `CorsLayer`, which answers
//!   its preflight (`OPTIONS`) itself, for any path, before routing and rate limiting, and
//!   adds the CORS headers to every other answer, errors (404, 408, 413, 429, 503, 500)
//!   included: a page can read why a call failed, and `Retry-After`;
//! - any other request (no `Origin`, as from curl, or one not allowed) passes untouched: no
//!   CORS header, so the browser keeps the answer from the page. Its answer only gains
//!   `Vary: Origin` (when CORS is on), so that a cache does not hand it to an allowed page.
//!
//! Scripts may send the headers the API reads (`Authorization`, `Content-Type`,
//! `Idempotency-Key`, `Last-Event-ID`), and read the ones it sets beyond the safelisted few
//! (`Link` to page a list, `Retry-After`, `Location`). No credentials (cookies): the API has
//! none, and without them `*` is allowed. A connection refused over `--max-connections` is
//! answered before its request is read, so without CORS headers.

use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response};
use futures::FutureExt;
use futures::future::{Either, Map};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

/// How long a browser may reuse a preflight's answer before asking again (browsers cap it
/// lower: Chromium at two hours).
const MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// Which origins' pages may call the API: `--cors-origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: pages of any origin.
    Any,
    /// These origins only, each written as browsers send it in `Origin`
    /// (`https://app.example.com`, `http://localhost:5173`): lowercase, no default port.
    List(Vec<String>),
}

impl FromStr for CorsOrigins {
    type Err = String;

    /// `*`, or a comma-separated list of `scheme://host[:port]`; each origin is checked here,
    /// so that a mistyped one stops chatd at start rather than blocking pages unseen.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "*" {
            return Ok(CorsOrigins::Any);
        }
        let origins = s.split(',').map(str::trim).filter(|o| !o.is_empty()).map(origin);
        let origins = origins.collect::<Result<Vec<_>, _>>()?;
        if origins.is_empty() {
            return Err(
                "expected `*` or a comma-separated list of origins such as https://app.example.com".into()
            );
        }
        Ok(CorsOrigins::List(origins))
    }
}

/// One origin, `scheme://host[:port]`, in the form browsers send (lowercase, the scheme's
/// default port left out), or why it is not one.
fn origin(s: &str) -> Result<String, String> {
    let expected =
        || format!("{s:?} is not an origin: expected scheme://host[:port], e.g. https://app.example.com");
    if s == "*" {
        return Err("`*` stands alone: it allows every origin".into());
    }
    if !s.is_ascii() {
        return Err(format!("{s:?}: write the host in its ASCII (punycode) form, as browsers send it"));
    }
    let (scheme, rest) = s.split_once("://").ok_or_else(expected)?;
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err(expected());
    }
    if rest.contains(['/', '?', '#', '@']) {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        return Err(format!("{s:?}: an origin has no path, query or user name; write {scheme}://{host}"));
    }
    let rest = rest.to_ascii_lowercase();
    // `[v6]:port`, `host:port` or either without its port.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (address, after) = v6.split_once(']').ok_or_else(expected)?;
            if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || ":.".contains(c)) {
                return Err(expected());
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(expected)?),
            };
            (format!("[{address}]"), port)
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest.as_str(), None),
            };
            let label_ok =
                |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !host.trim_end_matches('.').split('.').all(label_ok) {
                return Err(expected());
            }
            (host.to_owned(), port)
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("{s:?}: the port must be a number from 1 to 65535")),
        },
    };
    let default = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    Ok(match port {
        Some(p) if Some(p) != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The layer that answers browsers from other origins (see the module's doc); with no
/// origins configured it passes every request through untouched.
#[derive(Debug, Clone, Default)]
pub struct CrossOrigin {
    allowed: Option<Arc<Allowed>>,
}

#[derive(Debug)]
struct Allowed {
    origins: CorsOrigins,
    layer: CorsLayer,
}

impl CrossOrigin {
    /// CORS for `origins`; `None` (the default) turns it off.
    pub fn new(origins: Option<&CorsOrigins>) -> Self {
        let allowed = origins.map(|origins| {
            let allow_origin = match origins {
                CorsOrigins::Any => AllowOrigin::any(),
                CorsOrigins::List(list) => AllowOrigin::list(
                    list.iter().map(|o| HeaderValue::from_str(o).expect("parsed origins are ASCII")),
                ),
            };
            let layer = CorsLayer::new()
                .allow_origin(allow_origin)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                    HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([header::LINK, header::RETRY_AFTER, header::LOCATION])
                .max_age(MAX_AGE);
            Arc::new(Allowed { origins: origins.clone(), layer })
        });
        CrossOrigin { allowed }
    }
}

impl Allowed {
    fn allows(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|o| o.as_bytes() == origin.as_bytes()),
        }
    }
}

impl<S> Layer<S> for CrossOrigin {
    type Service = CrossOriginService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CrossOriginService { allowed: self.allowed.clone(), inner }
    }
}

/// [`CrossOrigin`] around a service.
#[derive(Debug, Clone)]
pub struct CrossOriginService<S> {
    allowed: Option<Arc<Allowed>>,
    inner: S,
}

type Answer<B, E> = Result<Response<B>, E>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CrossOriginService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<
        tower_http::cors::ResponseFuture<S::Future>,
        Map<S::Future, fn(Answer<ResBody, S::Error>) -> Answer<ResBody, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service made ready is the one that serves; a clone takes its place.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let Some(allowed) = &self.allowed else {
            return Either::Right(ready.call(request).map(same));
        };
        if request.headers().get(header::ORIGIN).is_some_and(|o| allowed.allows(o)) {
            let mut cors: Cors<S> = allowed.layer.layer(ready);
            Either::Left(cors.call(request))
        } else {
            Either::Right(ready.call(request).map(vary_origin))
        }
    }
}

fn same<B, E>(answer: Answer<B, E>) -> Answer<B, E> {
    answer
}

/// Marks an answer given without CORS headers as depending on `Origin`.
fn vary_origin<B, E>(answer: Answer<B, E>) -> Answer<B, E> {
    answer.map(|mut response| {
        response.headers_mut().append(header::VARY, HeaderValue::from_static("origin"));
        response
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Result<Vec<String>, String> {
        match s.parse::<CorsOrigins>()? {
            CorsOrigins::List(l) => Ok(l),
            CorsOrigins::Any => Ok(vec!["*".into()]),
        }
    }

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        assert_eq!(" * ".parse::<CorsOrigins>(), Ok(CorsOrigins::Any));
        assert_eq!(
            list("https://App.Example.com, http://localhost:5173,,http://127.0.0.1:80,https://x.io:443")
                .unwrap(),
            ["https://app.example.com", "http://localhost:5173", "http://127.0.0.1", "https://x.io"]
        );
        assert_eq!(list("http://[::1]:8080,http://[::1]").unwrap(), ["http://[::1]:8080", "http://[::1]"]);
        assert_eq!(list("app://local-host.").unwrap(), ["app://local-host."]);
    }

    #[test]
    fn a_malformed_origin_is_refused_with_what_to_write() {
        for (bad, says) in [
            ("", "comma-separated list"),
            (" , ", "comma-separated list"),
            ("https://app.example.com/", "write https://app.example.com"),
            ("https://app.example.com/path?q", "no path"),
            ("https://user@app.example.com", "write https://app.example.com"),
            ("app.example.com", "expected scheme://host[:port]"),
            ("https://", "expected scheme://host[:port]"),
            ("https://a..b", "expected scheme://host[:port]"),
            ("https://a b", "expected scheme://host[:port]"),
            ("1http://a", "expected scheme://host[:port]"),
            ("http://a:0", "port"),
            ("http://a:65536", "port"),
            ("http://a:+80", "port"),
            ("http://a:", "port"),
            ("http://[::1", "expected scheme://host[:port]"),
            ("http://[::1]x", "expected scheme://host[:port]"),
            ("http://a,*", "stands alone"),
            ("https://bücher.example", "punycode"),
        ] {
            let error = bad.parse::<CorsOrigins>().expect_err(bad);
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
