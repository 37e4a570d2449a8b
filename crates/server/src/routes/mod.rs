//! Routes and handlers, one file per resource. Handlers take typed input from the
//! extractors (`crate::extract`), call one port, and shape the answer; they hold no storage
//! logic and do not know which backend runs.

mod applications;
mod chats;
mod messages;
mod operations;
mod stream;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chatd_core::{Catalog, Feed, Ingest, Listed, Order, Search};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::error::{self, ApiError};
use crate::extract::ListQuery;
use crate::metrics::Metrics;
use crate::openapi::{
    BadRequest, Common, Internal, InvalidOrKeyReused, InvalidParameter, KeyReused, NoApplication, NoChat,
    NoMessage, PayloadTooLarge, RateLimited, RequestTimeout, Unauthorized, Unavailable, UnsupportedMediaType,
};

pub use operations::router as operations;

/// What every handler shares: one port of each kind, the limits, and the shutdown signal.
#[derive(Clone)]
pub struct AppState {
    pub ingest: Arc<dyn Ingest>,
    pub catalog: Arc<dyn Catalog>,
    pub search: Arc<dyn Search>,
    pub feed: Arc<dyn Feed>,
    /// One permit per stream that may be open at once.
    pub streams: Arc<Semaphore>,
    /// Turns true when chatd begins to shut down: open streams end.
    pub stopping: watch::Receiver<bool>,
    /// When set, listing all applications needs `Authorization: Bearer <key>`.
    pub admin_key: Option<Arc<str>>,
    /// Largest message body in bytes.
    pub max_message_bytes: usize,
    /// What `GET /metrics` shows; a stream route holds [`Metrics::stream_opened`]'s guard.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("max_message_bytes", &self.max_message_bytes).finish_non_exhaustive()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The full API (port 3000 by default), health checks aside.
pub fn api_router(state: AppState) -> Router {
    use {applications as a, chats as c, messages as m};
    Router::new()
        .route("/applications", get(a::list_applications).post(a::create_application))
        .route(
            "/applications/{token}",
            get(a::get_application).put(a::update_application).patch(a::update_application),
        )
        .route("/applications/{token}/chats", get(c::list_chats).post(c::create_chat))
        .route("/applications/{token}/chats/{chat}", get(c::get_chat))
        .route("/applications/{token}/chats/{chat}/messages", get(m::list_messages).post(m::create_message))
        .route("/applications/{token}/chats/{chat}/messages/search", get(m::search_messages))
        .route("/applications/{token}/chats/{chat}/messages/stream", get(stream::stream_messages))
        .route(
            "/applications/{token}/chats/{chat}/messages/{message}",
            get(m::get_message).put(m::update_message).patch(m::update_message),
        )
        .route("/openapi.json", get(operations::openapi_json))
        .route("/metrics", get(operations::metrics))
        .with_state(state)
}

/// The creation routes only (port 8080 by default), for clients of the old Go service;
/// health checks aside.
pub fn creation_router(state: AppState) -> Router {
    Router::new()
        .route("/applications/{token}/chats", post(chats::create_chat))
        .route("/applications/{token}/chats/{chat}/messages", post(messages::create_message))
        .with_state(state)
}

/// The OpenAPI description of [`api_router`]: every operation below and the shapes they
/// answer with; [`Common`] adds what follows from the extractors and layers (form bodies,
/// 413 and 415 wherever a body is read, lists' `Link` header, 408, 429, 500 and 503 everywhere).
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "chatd",
        description = "A chat-storage HTTP API (SPEC §3). Every path also works with a trailing slash. \
            `name` and `body` are read from a JSON body, a form body or the query string; the body wins. \
            The creation operations (POST chats, POST messages) are also served on the creation \
            listener (port 8080 by default)."
    ),
    paths(
        applications::list_applications, applications::create_application,
        applications::get_application, applications::update_application,
        chats::list_chats, chats::create_chat, chats::get_chat,
        messages::list_messages, messages::create_message, messages::search_messages,
        stream::stream_messages,
        messages::get_message, messages::update_message,
        operations::health, operations::ready, operations::metrics,
    ),
    components(responses(
        BadRequest, Unauthorized, NoApplication, NoChat, NoMessage, PayloadTooLarge, UnsupportedMediaType,
        InvalidParameter, KeyReused, InvalidOrKeyReused, RateLimited, RequestTimeout, Unavailable, Internal,
    )),
    modifiers(&Common),
    tags(
        (name = "applications", description = "Client applications, named by their access token."),
        (name = "chats", description = "Chats of an application, numbered 1, 2, 3…"),
        (name = "messages", description = "Messages of a chat, numbered 1, 2, 3…, and their search."),
        (name = "operations", description = "Liveness, readiness and metrics."),
    )
)]
pub struct ApiDoc;

/// What both listeners share: JSON fallbacks; a request span (at debug level, named by
/// the matched route, never the raw path: paths carry tokens) whose answer hook logs the
/// hidden detail of 5xx answers; and the request metrics, by matched route too.
///
/// This is the only layer added with `Router::layer` besides the limits' one: each such
/// layer boxes every route again, and axum clones the whole chain of boxes at every level
/// on every request. Layers that can wrap the router whole do so, in `startup::wrap`.
pub fn finish(router: Router, metrics: &Arc<Metrics>) -> Router {
    let span = |req: &Request| {
        // Fields are only evaluated when the span is enabled.
        let route = || req.extensions().get::<axum::extract::MatchedPath>().map_or("-", |p| p.as_str());
        tracing::debug_span!("request", method = %req.method(), route = route())
    };
    router.fallback(error::route_not_found).method_not_allowed_fallback(error::method_not_allowed).layer(
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http().make_span_with(span).on_response(error::LogAnswer))
            .layer(metrics.layer()),
    )
}

/// A list's answer: a JSON array, with a `Link: <…>; rel="next"` header when more rows exist.
fn list_response<'a, T, V: Serialize>(
    uri: &OriginalUri,
    query: &ListQuery,
    listed: &'a Listed<T>,
    key: impl Fn(&T) -> String,
    view: impl Fn(&'a T) -> V,
) -> Response {
    let body: Vec<V> = listed.items.iter().map(view).collect();
    let mut response = Json(body).into_response();
    if let (true, Some(last)) = (listed.more, listed.items.last()) {
        let last = key(last);
        let (after, before) = match query.order {
            Order::Asc => (Some(last.as_str()), query.before.as_deref()),
            Order::Desc => (query.after.as_deref(), Some(last.as_str())),
        };
        #[derive(Serialize)]
        struct Next<'a> {
            limit: u32,
            order: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            after: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            before: Option<&'a str>,
        }
        let order = if query.order == Order::Asc { "asc" } else { "desc" };
        let next = Next { limit: query.limit.get(), order, after, before };
        let qs = serde_urlencoded::to_string(&next).unwrap_or_default();
        let link = format!("<{}?{qs}>; rel=\"next\"", uri.0.path());
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}
