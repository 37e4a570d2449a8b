//! Routes and handlers. Handlers parse input into domain types, call one port, and shape
//! the answer; they hold no storage logic.

use std::sync::Arc;

use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chatd_core::search::{self as core_search, Keyword, SearchRequest};
use chatd_core::{AppName, Catalog, ChatNumber, Ingest, Listed, MessageBody, MessageNumber, Order, Search};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tower_http::trace::TraceLayer;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::{self, ApiError};
use crate::extract::{self, ApiPath, ListQuery, Params};
use crate::openapi::params::{
    NameBody, NameQuery, NumberCursor, PageQuery, SearchQuery, TextBody, TextQuery, TokenCursor,
};
use crate::openapi::{
    BadRequest, Common, Internal, InvalidParameter, NoApplication, NoChat, NoMessage, PayloadTooLarge,
    RateLimited, RequestTimeout, Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::views::{ApplicationView, ChatCreated, ChatView, MessageCreated, MessageView};

/// What every handler shares: one writer port, one reader port, the limits.
#[derive(Clone)]
pub struct AppState {
    pub ingest: Arc<dyn Ingest>,
    pub catalog: Arc<dyn Catalog>,
    pub search: Arc<dyn Search>,
    /// When set, listing all applications needs `Authorization: Bearer <key>`.
    pub admin_key: Option<Arc<str>>,
    /// Largest message body in bytes.
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("max_message_bytes", &self.max_message_bytes).finish_non_exhaustive()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The full API (port 3000 by default), health checks aside.
pub fn api_router(state: AppState) -> Router {
    Router::new()
        .route("/applications", get(list_applications).post(create_application))
        .route(
            "/applications/{token}",
            get(get_application).put(update_application).patch(update_application),
        )
        .route("/applications/{token}/chats", get(list_chats).post(create_chat))
        .route("/applications/{token}/chats/{chat}", get(get_chat))
        .route("/applications/{token}/chats/{chat}/messages", get(list_messages).post(create_message))
        .route("/applications/{token}/chats/{chat}/messages/search", get(search_messages))
        .route(
            "/applications/{token}/chats/{chat}/messages/{message}",
            get(get_message).put(update_message).patch(update_message),
        )
        .route("/openapi.json", get(openapi_json))
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
        list_applications, create_application, get_application, update_application,
        list_chats, create_chat, get_chat,
        list_messages, create_message, search_messages, get_message, update_message,
        health, ready,
    ),
    components(responses(
        BadRequest, Unauthorized, NoApplication, NoChat, NoMessage, PayloadTooLarge, UnsupportedMediaType,
        InvalidParameter, RateLimited, RequestTimeout, Unavailable, Internal,
    )),
    modifiers(&Common),
    tags(
        (name = "applications", description = "Client applications, named by their access token."),
        (name = "chats", description = "Chats of an application, numbered 1, 2, 3…"),
        (name = "messages", description = "Messages of a chat, numbered 1, 2, 3…, and their search."),
        (name = "operations", description = "Liveness and readiness."),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document of this API.
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::json()).into_response()
}

/// The creation routes only (port 8080 by default), for clients of the old Go service;
/// health checks aside.
pub fn creation_router(state: AppState) -> Router {
    Router::new()
        .route("/applications/{token}/chats", post(create_chat))
        .route("/applications/{token}/chats/{chat}/messages", post(create_message))
        .with_state(state)
}

/// Health checks, served on both listeners and exempt from the request limits.
pub fn operations(state: AppState) -> Router {
    Router::new().route("/health", get(health)).route("/ready", get(ready)).with_state(state)
}

/// What both listeners share: JSON fallbacks, and a request span (at debug level, named by
/// the matched route, never the raw path: paths carry tokens) whose answer hook logs the
/// hidden detail of 5xx answers.
///
/// This is the only layer added with `Router::layer` besides the limits' one: each such
/// layer boxes every route again, and axum clones the whole chain of boxes at every level
/// on every request. (heaptrack: 18 of the 98 allocations of a message create were those
/// clones while the 5xx log, the body limit and each limit were layers of their own; 6 of
/// 78 since.) The body limit wraps the router whole, in `startup`.
pub fn finish(router: Router) -> Router {
    let span = |req: &Request| {
        // Fields are only evaluated when the span is enabled.
        let route = || req.extensions().get::<axum::extract::MatchedPath>().map_or("-", |p| p.as_str());
        tracing::debug_span!("request", method = %req.method(), route = route())
    };
    router
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(TraceLayer::new_for_http().make_span_with(span).on_response(error::LogAnswer))
}

/// The answer of the health and readiness checks.
#[derive(Debug, Serialize, ToSchema)]
struct Status {
    /// `ok` (health) or `ready` (readiness).
    #[schema(value_type = String)]
    status: &'static str,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "Alive", body = Status)))]
async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: storage takes writes and answers reads.
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready", body = Status), (status = 503, response = Unavailable))
)]
async fn ready(State(s): State<AppState>) -> ApiResult<Json<Status>> {
    s.ingest.ready().await?;
    s.catalog.ready().await?;
    Ok(Json(Status { status: "ready" }))
}

// ------------------------------------------------------------------------- paths

/// Path parameters. Numbers are read as strings so that a bad one gets the API's 400.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AppPath {
    /// The application's access token.
    token: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ChatPath {
    /// The application's access token.
    token: String,
    /// The chat's number within the application.
    #[param(value_type = i64, minimum = 1)]
    chat: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct MessagePath {
    /// The application's access token.
    token: String,
    /// The chat's number within the application.
    #[param(value_type = i64, minimum = 1)]
    chat: String,
    /// The message's number within the chat.
    #[param(value_type = i64, minimum = 1)]
    message: String,
}

fn chat_number(raw: &str) -> ApiResult<ChatNumber> {
    extract::number(raw, "chat_number")
}

fn message_number(raw: &str) -> ApiResult<MessageNumber> {
    extract::number(raw, "message_number")
}

fn app_name(params: &mut Params) -> ApiResult<AppName> {
    AppName::parse(params.string("name")?.unwrap_or_default()).map_err(|e| ApiError::invalid("name", e))
}

fn message_body(params: &mut Params, max_bytes: usize) -> ApiResult<MessageBody> {
    MessageBody::parse(params.string("body")?.unwrap_or_default(), max_bytes)
        .map_err(|e| ApiError::invalid("body", e))
}

// ------------------------------------------------------------------------- lists

/// A JSON array, with a `Link: <…>; rel="next"` header when more rows exist.
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

// ------------------------------------------------------------------------- applications

fn check_admin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(key) = &state.admin_key else { return Ok(()) };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(key.as_bytes())) { Ok(()) } else { Err(ApiError::Unauthorized) }
}

/// List every application.
///
/// Needs the admin key when the operator configured one.
#[utoipa::path(
    get, path = "/applications", tag = "applications",
    params(PageQuery, TokenCursor),
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The applications, one page", body = Vec<ApplicationView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 422, response = InvalidParameter),
    )
)]
async fn list_applications(
    State(s): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    query: ListQuery,
) -> ApiResult<Response> {
    check_admin(&s, &headers)?;
    let listed = s.catalog.applications(query.by_token()?).await?;
    Ok(list_response(&uri, &query, &listed, |a| a.token.as_str().to_owned(), ApplicationView::from))
}

/// Register an application; the answer carries its access token.
#[utoipa::path(
    post, path = "/applications", tag = "applications",
    params(NameQuery),
    request_body = NameBody,
    responses(
        (status = 201, description = "The new application", body = ApplicationView, links(
            ("GetApplication" = (operation_id = "get_application", parameters(("token" = "$response.body#/access_token")))),
            ("UpdateApplication" = (operation_id = "update_application", parameters(("token" = "$response.body#/access_token")))),
            ("PatchApplication" = (operation_id = "update_application_patch", parameters(("token" = "$response.body#/access_token")))),
            ("ListChats" = (operation_id = "list_chats", parameters(("token" = "$response.body#/access_token")))),
            ("CreateChat" = (operation_id = "create_chat", parameters(("token" = "$response.body#/access_token")))),
        )),
        (status = 400, response = BadRequest),
        (status = 422, response = InvalidParameter),
    )
)]
async fn create_application(State(s): State<AppState>, mut params: Params) -> ApiResult<Response> {
    let name = app_name(&mut params)?;
    let app = s.ingest.create_application(name).await?;
    Ok((StatusCode::CREATED, Json(ApplicationView::from(&app))).into_response())
}

/// An application.
#[utoipa::path(
    get, path = "/applications/{token}", tag = "applications",
    params(AppPath),
    responses(
        (status = 200, description = "The application", body = ApplicationView),
        (status = 400, response = BadRequest),
        (status = 404, response = NoApplication),
    )
)]
async fn get_application(State(s): State<AppState>, ApiPath(p): ApiPath<AppPath>) -> ApiResult<Response> {
    let app = s.catalog.application(extract::token(&p.token)?).await?;
    Ok(Json(ApplicationView::from(&app)).into_response())
}

/// Rename an application.
#[utoipa::path(
    method(put, patch), path = "/applications/{token}", tag = "applications",
    params(AppPath, NameQuery),
    request_body = NameBody,
    responses(
        (status = 200, description = "The application", body = ApplicationView),
        (status = 400, response = BadRequest),
        (status = 404, response = NoApplication),
        (status = 422, response = InvalidParameter),
    )
)]
async fn update_application(
    State(s): State<AppState>,
    ApiPath(p): ApiPath<AppPath>,
    mut params: Params,
) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let app = s.ingest.rename_application(token, app_name(&mut params)?).await?;
    Ok(Json(ApplicationView::from(&app)).into_response())
}

// ------------------------------------------------------------------------- chats

/// The chats of an application.
#[utoipa::path(
    get, path = "/applications/{token}/chats", tag = "chats",
    params(AppPath, PageQuery, NumberCursor),
    responses(
        (status = 200, description = "The chats, one page", body = Vec<ChatView>),
        (status = 400, response = BadRequest),
        (status = 404, response = NoApplication),
        (status = 422, response = InvalidParameter),
    )
)]
async fn list_chats(
    State(s): State<AppState>,
    ApiPath(p): ApiPath<AppPath>,
    uri: OriginalUri,
    query: ListQuery,
) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let listed = s.catalog.chats(token, query.numbered()?).await?;
    Ok(list_response(&uri, &query, &listed, |c| c.number.to_string(), ChatView::from))
}

/// Create a chat; the answer carries its number.
#[utoipa::path(
    post, path = "/applications/{token}/chats", tag = "chats",
    params(AppPath),
    responses(
        (status = 201, description = "The new chat's number", body = ChatCreated, links(
            ("GetChat" = (operation_id = "get_chat", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/number")))),
            ("ListMessages" = (operation_id = "list_messages", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/number")))),
            ("CreateMessage" = (operation_id = "create_message", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/number")))),
            ("SearchMessages" = (operation_id = "search_messages", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/number")))),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NoApplication),
    )
)]
async fn create_chat(State(s): State<AppState>, ApiPath(p): ApiPath<AppPath>) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let number = s.ingest.create_chat(token.clone()).await?;
    Ok((StatusCode::CREATED, Json(ChatCreated { number, access_token: token.as_str() })).into_response())
}

/// A chat.
#[utoipa::path(
    get, path = "/applications/{token}/chats/{chat}", tag = "chats",
    params(ChatPath),
    responses(
        (status = 200, description = "The chat", body = ChatView),
        (status = 400, response = BadRequest),
        (status = 404, response = NoChat),
    )
)]
async fn get_chat(State(s): State<AppState>, ApiPath(p): ApiPath<ChatPath>) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let chat = s.catalog.chat(token, chat_number(&p.chat)?).await?;
    Ok(Json(ChatView::from(&chat)).into_response())
}

// ------------------------------------------------------------------------- messages

/// The messages of a chat.
#[utoipa::path(
    get, path = "/applications/{token}/chats/{chat}/messages", tag = "messages",
    params(ChatPath, PageQuery, NumberCursor),
    responses(
        (status = 200, description = "The messages, one page", body = Vec<MessageView>),
        (status = 400, response = BadRequest),
        (status = 404, response = NoChat),
        (status = 422, response = InvalidParameter),
    )
)]
async fn list_messages(
    State(s): State<AppState>,
    ApiPath(p): ApiPath<ChatPath>,
    uri: OriginalUri,
    query: ListQuery,
) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let listed = s.catalog.messages(token, chat_number(&p.chat)?, query.numbered()?).await?;
    Ok(list_response(&uri, &query, &listed, |m| m.number.to_string(), MessageView::from))
}

/// Create a message; the answer carries its number.
#[utoipa::path(
    post, path = "/applications/{token}/chats/{chat}/messages", tag = "messages",
    params(ChatPath, TextQuery),
    request_body = TextBody,
    responses(
        (status = 201, description = "The new message's number", body = MessageCreated, links(
            ("GetMessage" = (operation_id = "get_message", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/chat_number"), ("message" = "$response.body#/number")))),
            ("UpdateMessage" = (operation_id = "update_message", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/chat_number"), ("message" = "$response.body#/number")))),
            ("PatchMessage" = (operation_id = "update_message_patch", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/chat_number"), ("message" = "$response.body#/number")))),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NoChat),
        (status = 422, response = InvalidParameter),
    )
)]
async fn create_message(
    State(s): State<AppState>,
    ApiPath(p): ApiPath<ChatPath>,
    mut params: Params,
) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let chat = chat_number(&p.chat)?;
    let body = message_body(&mut params, s.max_message_bytes)?;
    let number = s.ingest.create_message(token.clone(), chat, body).await?;
    let created = MessageCreated { number, chat_number: chat, access_token: token.as_str() };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// A message.
#[utoipa::path(
    get, path = "/applications/{token}/chats/{chat}/messages/{message}", tag = "messages",
    params(MessagePath),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 400, response = BadRequest),
        (status = 404, response = NoMessage),
    )
)]
async fn get_message(State(s): State<AppState>, ApiPath(p): ApiPath<MessagePath>) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let message = s.catalog.message(token, chat_number(&p.chat)?, message_number(&p.message)?).await?;
    Ok(Json(MessageView::from(&message)).into_response())
}

/// Edit a message's body.
#[utoipa::path(
    method(put, patch), path = "/applications/{token}/chats/{chat}/messages/{message}", tag = "messages",
    params(MessagePath, TextQuery),
    request_body = TextBody,
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 400, response = BadRequest),
        (status = 404, response = NoMessage),
        (status = 422, response = InvalidParameter),
    )
)]
async fn update_message(
    State(s): State<AppState>,
    ApiPath(p): ApiPath<MessagePath>,
    mut params: Params,
) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let (chat, number) = (chat_number(&p.chat)?, message_number(&p.message)?);
    let body = message_body(&mut params, s.max_message_bytes)?;
    let message = s.ingest.edit_message(token, chat, number, body).await?;
    Ok(Json(MessageView::from(&message)).into_response())
}

// ------------------------------------------------------------------------- search

/// `keyword` (or `q`), `limit` (1–1000, default 50) and `offset` of a search (SPEC §5).
fn search_request(parts: &axum::http::request::Parts) -> ApiResult<SearchRequest> {
    let mut q = extract::query_pairs(parts)?;
    let raw = q.remove("keyword").or_else(|| q.remove("q")).unwrap_or_default();
    let keyword = Keyword::parse(&raw).map_err(|e| ApiError::InvalidParameter {
        field: "keyword",
        message: format!("keyword {e} (and must have something left to match after normalisation)"),
    })?;
    let mut number =
        |field: &'static str, default: usize, range: std::ops::RangeInclusive<usize>| match q.remove(field) {
            None => Ok(default),
            Some(raw) => raw.parse::<usize>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                ApiError::InvalidParameter {
                    field,
                    message: format!("{field} must be an integer from {} to {}", range.start(), range.end()),
                }
            }),
        };
    let limit = number("limit", core_search::DEFAULT_LIMIT, 1..=core_search::MAX_LIMIT)?;
    let offset = number("offset", 0, 0..=core_search::MAX_DEPTH - limit)?;
    Ok(SearchRequest { keyword, limit, offset })
}

/// Search the messages of a chat by partial text, best first (SPEC §5).
#[utoipa::path(
    get, path = "/applications/{token}/chats/{chat}/messages/search", tag = "messages",
    params(ChatPath, SearchQuery),
    responses(
        (status = 200, description = "The matching messages, best first", body = Vec<MessageView>),
        (status = 400, response = BadRequest),
        (status = 404, response = NoChat),
        (status = 422, response = InvalidParameter),
    )
)]
async fn search_messages(
    State(s): State<AppState>,
    ApiPath(p): ApiPath<ChatPath>,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let token = extract::token(&p.token)?;
    let chat = chat_number(&p.chat)?;
    let (parts, _) = request.into_parts();
    let found = s.search.search(token, chat, search_request(&parts)?).await?;
    Ok(Json(found.iter().map(MessageView::from).collect::<Vec<_>>()).into_response())
}
