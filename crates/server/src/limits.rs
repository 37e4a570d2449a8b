//! Per-request limits (SPEC §6): the time a request may take, and rate limits per client IP
//! and per application token. The rate limits are tower_governor's (GCRA buckets keyed by
//! IP or token); an answer over a limit is `429 rate_limited` with `Retry-After`.
//!
//! Size limits live where the sizes are known: the request body in `DefaultBodyLimit`, a
//! message body in its domain type. Connection limits live in [`crate::serve`].

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use chatd_core::AppToken;
use futures::future::Either;
// No extra headers on allowed answers.
use governor::middleware::NoOpMiddleware;
use tower::{Layer, Service, ServiceBuilder};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{KeyExtractor, PeerIpKeyExtractor};
use tower_governor::{GovernorError, GovernorLayer};
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;

/// tower_governor's keyed limiter, as its services share it.
type SharedLimiter<Key> = governor::RateLimiter<
    Key,
    governor::state::keyed::DefaultKeyedStateStore<Key>,
    governor::clock::DefaultClock,
    NoOpMiddleware,
>;

/// A sustained rate and the burst allowed above it; a rate of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Every per-request limit.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub timeout: Duration,
    pub per_ip: RateLimit,
    pub per_token: RateLimit,
}

/// The limit layers, built once and shared by both listeners, so that a client meets one
/// budget whichever port it uses.
#[derive(Clone)]
pub struct Limiters {
    timeout: Duration,
    per_ip: Option<GovernorLayer<PeerIpKeyExtractor, NoOpMiddleware, Body>>,
    per_token: Option<GovernorLayer<TokenKey, NoOpMiddleware, Body>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("timeout", &self.timeout)
            .field("per_ip", &self.per_ip.is_some())
            .field("per_token", &self.per_token.is_some())
            .finish()
    }
}

impl Limiters {
    /// Must run inside a tokio runtime: each rate limit starts a task that forgets idle keys.
    pub fn new(limits: RequestLimits) -> Self {
        Limiters {
            timeout: limits.timeout,
            per_ip: rate_layer(limits.per_ip, PeerIpKeyExtractor),
            per_token: rate_layer(limits.per_token, TokenKey),
        }
    }

    /// Wraps every route of `router` in the limits. Call it before adding routes that must
    /// stay unlimited (health checks).
    pub fn apply(&self, router: Router) -> Router {
        // Per-IP first, so that one client cannot spend other applications' budgets by
        // cycling tokens, then per-token, then the clock. One `Router::layer` for all of
        // them (see `routes::finish` on why).
        router.layer(
            ServiceBuilder::new()
                .option_layer(self.per_ip.clone())
                .option_layer(self.per_token.clone().map(WithTokenLayer))
                .map_response(json_timeout)
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, self.timeout)),
        )
    }
}

/// tower-http's timeout answers a bare 408; give it the API's JSON body. A write already
/// handed to the writer may still commit, as it would if the client had hung up: the
/// answer says so.
fn json_timeout(response: Response) -> Response {
    let bare =
        response.status() == StatusCode::REQUEST_TIMEOUT && !response.headers().contains_key(CONTENT_TYPE);
    if bare { ApiError::RequestTimeout.into_response() } else { response }
}

/// tower_governor's layer for one limit, or `None` when the limit is off.
fn rate_layer<K>(limit: RateLimit, key: K) -> Option<GovernorLayer<K, NoOpMiddleware, Body>>
where
    K: KeyExtractor + Send + Sync + 'static,
    K::Key: Send + Sync,
{
    if limit.per_second == 0 {
        return None;
    }
    let period =
        Duration::from_nanos(1_000_000_000 / u64::from(limit.per_second)).max(Duration::from_nanos(1));
    let config = GovernorConfigBuilder::default()
        .key_extractor(key)
        .period(period)
        .burst_size(limit.burst.max(1))
        .finish()
        .expect("a non-zero period and burst make a configuration");
    // The services hold the limiter, not the configuration (dropped with the layer once the
    // router is built): follow the limiter.
    forget_idle_keys(Arc::downgrade(config.limiter()));
    Some(GovernorLayer::new(config).error_handler(rate_limited))
}

/// Drops the buckets of keys that have been quiet long enough to be full again, once a
/// minute, so that the maps do not grow with every IP and token ever seen. Ends when the
/// services using the limiter are dropped.
fn forget_idle_keys<Key>(limiter: Weak<SharedLimiter<Key>>)
where
    Key: Clone + std::hash::Hash + Eq + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(limiter) = limiter.upgrade() else { return };
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
}

/// The JSON answer over a limit.
fn rate_limited(error: GovernorError) -> Response {
    match error {
        // tower_governor rounds the wait down to whole seconds; round it up instead, so a
        // client that waits as told is not refused again.
        GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::RateLimited { retry_after: wait_time + 1 }.into_response()
        }
        other => ApiError::Internal(format!("rate limiter: {other}").into()).into_response(),
    }
}

/// The application token a path names, if it can be one.
fn path_token(path: &str) -> Option<AppToken> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (Some("applications"), Some(token)) => AppToken::parse(token),
        _ => None,
    }
}

/// Keys the per-token limit by the token in the path. Only requests that have one reach it
/// (see [`WithToken`]); a path token that cannot be a token at all is a 404 that never
/// meets this limit, so random paths cannot grow its map (they meet the per-IP limit).
#[derive(Debug, Clone, Copy)]
struct TokenKey;

impl KeyExtractor for TokenKey {
    type Key = AppToken;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<AppToken, GovernorError> {
        path_token(request.uri().path()).ok_or(GovernorError::UnableToExtractKey)
    }
}

/// Applies a layer to the requests whose path names a token and lets the others (creating
/// or listing applications) through untouched.
/// Hand-written: neither tower nor tower-http applies a layer to a subset of requests.
#[derive(Debug, Clone)]
struct WithTokenLayer<L>(L);

impl<S: Clone, L: Layer<S>> Layer<S> for WithTokenLayer<L> {
    type Service = WithToken<S, L::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        WithToken { plain: inner.clone(), limited: self.0.layer(inner) }
    }
}

#[derive(Debug, Clone)]
struct WithToken<S, T> {
    plain: S,
    limited: T,
}

impl<S, T> Service<Request> for WithToken<S, T>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    T: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, T::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        ready!(self.plain.poll_ready(cx))?;
        self.limited.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if path_token(request.uri().path()).is_some() {
            Either::Right(self.limited.call(request))
        } else {
            Either::Left(self.plain.call(request))
        }
    }
}
