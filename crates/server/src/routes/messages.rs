//! `/applications/{token}/chats/{chat}/messages…`: a chat's messages, numbered 1, 2, 3…,
//! their edits, and their search.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chatd_core::MessageBody;

use super::{ApiResult, AppState, list_response};
use crate::error::ApiError;
use crate::extract::{ChatPath, ListQuery, MessagePath, Params, RetryKey, SearchQuery};
use crate::openapi::params::{self, NumberCursor, PageQuery, TextBody, TextQuery};
use crate::openapi::{BadRequest, InvalidOrKeyReused, InvalidParameter, NoChat, NoMessage};
use crate::views::{MessageCreated, MessageView};

/// `body` from the request's parameters, at most `max_bytes` long.
fn message_body(params: &mut Params, max_bytes: usize) -> ApiResult<MessageBody> {
    MessageBody::parse(params.string("body")?.unwrap_or_default(), max_bytes)
        .map_err(|e| ApiError::invalid("body", e))
}

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
pub(super) async fn list_messages(
    State(s): State<AppState>,
    path: ChatPath,
    uri: OriginalUri,
    query: ListQuery,
) -> ApiResult<Response> {
    let listed = s.catalog.messages(path.token, path.chat, query.numbered()?).await?;
    Ok(list_response(&uri, &query, &listed, |m| m.number.to_string(), MessageView::from))
}

/// Create a message; the answer carries its number.
#[utoipa::path(
    post, path = "/applications/{token}/chats/{chat}/messages", tag = "messages",
    params(ChatPath, TextQuery, RetryKey),
    request_body = TextBody,
    responses(
        (status = 201, description = "The new message's number", body = MessageCreated, links(
            ("GetMessage" = (operation_id = "get_message", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/chat_number"), ("message" = "$response.body#/number")))),
            ("UpdateMessage" = (operation_id = "update_message", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/chat_number"), ("message" = "$response.body#/number")))),
            ("PatchMessage" = (operation_id = "update_message_patch", parameters(("token" = "$response.body#/access_token"), ("chat" = "$response.body#/chat_number"), ("message" = "$response.body#/number")))),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NoChat),
        (status = 422, response = InvalidOrKeyReused),
    )
)]
pub(super) async fn create_message(
    State(s): State<AppState>,
    path: ChatPath,
    key: RetryKey,
    mut params: Params,
) -> ApiResult<Response> {
    let body = message_body(&mut params, s.max_message_bytes)?;
    let number = s.ingest.create_message(path.token.clone(), path.chat, body, key.key).await?;
    let created = MessageCreated { number, chat_number: path.chat, access_token: path.token.as_str() };
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
pub(super) async fn get_message(State(s): State<AppState>, path: MessagePath) -> ApiResult<Response> {
    let message = s.catalog.message(path.token, path.chat, path.message).await?;
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
pub(super) async fn update_message(
    State(s): State<AppState>,
    path: MessagePath,
    mut params: Params,
) -> ApiResult<Response> {
    let body = message_body(&mut params, s.max_message_bytes)?;
    let message = s.ingest.edit_message(path.token, path.chat, path.message, body).await?;
    Ok(Json(MessageView::from(&message)).into_response())
}

/// Search the messages of a chat by partial text, best first (SPEC §5).
#[utoipa::path(
    get, path = "/applications/{token}/chats/{chat}/messages/search", tag = "messages",
    params(ChatPath, params::SearchQuery),
    responses(
        (status = 200, description = "The matching messages, best first", body = Vec<MessageView>),
        (status = 400, response = BadRequest),
        (status = 404, response = NoChat),
        (status = 422, response = InvalidParameter),
    )
)]
pub(super) async fn search_messages(
    State(s): State<AppState>,
    path: ChatPath,
    SearchQuery(request): SearchQuery,
) -> ApiResult<Response> {
    let found = s.search.search(path.token, path.chat, request).await?;
    Ok(Json(found.iter().map(MessageView::from).collect::<Vec<_>>()).into_response())
}
