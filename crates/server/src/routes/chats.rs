//! `/applications/{token}/chats` and `/applications/{token}/chats/{chat}`: an application's
//! chats, numbered 1, 2, 3…

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{ApiResult, AppState, list_response};
use crate::extract::{AppPath, ChatPath, ListQuery, RetryKey};
use crate::openapi::params::{NumberCursor, PageQuery};
use crate::openapi::{BadRequest, InvalidParameter, KeyReused, NoApplication, NoChat};
use crate::views::{ChatCreated, ChatView};

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
pub(super) async fn list_chats(
    State(s): State<AppState>,
    path: AppPath,
    uri: OriginalUri,
    query: ListQuery,
) -> ApiResult<Response> {
    let listed = s.catalog.chats(path.token, query.numbered()?).await?;
    Ok(list_response(&uri, &query, &listed, |c| c.number.to_string(), ChatView::from))
}

/// Create a chat; the answer carries its number.
#[utoipa::path(
    post, path = "/applications/{token}/chats", tag = "chats",
    params(AppPath, RetryKey),
    responses(
        (status = 201, description = "The new chat's number", body = ChatCreated, links(
            ("GetChat" = (operation_id = "get_chat", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/number")))),
            ("ListMessages" = (operation_id = "list_messages", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/number")))),
            ("CreateMessage" = (operation_id = "create_message", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/number")))),
            ("SearchMessages" = (operation_id = "search_messages", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/number")))),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NoApplication),
        (status = 422, response = KeyReused),
    )
)]
pub(super) async fn create_chat(
    State(s): State<AppState>,
    path: AppPath,
    key: RetryKey,
) -> ApiResult<Response> {
    let number = s.ingest.create_chat(path.token.clone(), key.key).await?;
    Ok((StatusCode::CREATED, Json(ChatCreated { number, access_token: path.token.as_str() })).into_response())
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
pub(super) async fn get_chat(State(s): State<AppState>, path: ChatPath) -> ApiResult<Response> {
    let chat = s.catalog.chat(path.token, path.chat).await?;
    Ok(Json(ChatView::from(&chat)).into_response())
}
