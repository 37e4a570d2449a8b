//! Typed path parameters: the token and numbers a route names, parsed before the handler
//! runs. A string that cannot be a token is answered exactly like an unknown token (404); a
//! number that is not a positive integer is a 400 naming it.
//!
//! The structs also describe the parameters in the OpenAPI document.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use chatd_core::{AppToken, ChatNumber, MessageNumber};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

/// `/applications/{token}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// The application's access token.
    #[param(value_type = String)]
    pub token: AppToken,
}

/// `/applications/{token}/chats/{chat}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChatPath {
    /// The application's access token.
    #[param(value_type = String)]
    pub token: AppToken,
    /// The chat's number within the application.
    #[param(value_type = i64, minimum = 1)]
    pub chat: ChatNumber,
}

/// `/applications/{token}/chats/{chat}/messages/{message}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// The application's access token.
    #[param(value_type = String)]
    pub token: AppToken,
    /// The chat's number within the application.
    #[param(value_type = i64, minimum = 1)]
    pub chat: ChatNumber,
    /// The message's number within the chat.
    #[param(value_type = i64, minimum = 1)]
    pub message: MessageNumber,
}

/// The path's parameters as the router matched them: read as strings, so that a bad number
/// gets the API's 400 rather than axum's rejection.
#[derive(Debug, Deserialize)]
struct Raw {
    token: String,
    chat: Option<String>,
    message: Option<String>,
}

impl Raw {
    async fn from_parts<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<Raw>::from_request_parts(parts, state)
            .await
            .map(|Path(raw)| raw)
            .map_err(|_| ApiError::bad_request(None, "the path is not valid UTF-8"))
    }

    fn token(&self) -> Result<AppToken, ApiError> {
        AppToken::parse(&self.token).ok_or(ApiError::ApplicationNotFound)
    }

    fn chat(&self) -> Result<ChatNumber, ApiError> {
        super::number(segment(&self.chat, "chat")?, "chat_number")
    }

    fn message(&self) -> Result<MessageNumber, ApiError> {
        super::number(segment(&self.message, "message")?, "message_number")
    }
}

/// A parameter the route must have: its absence is a routing bug, not the client's.
fn segment<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    value.as_deref().ok_or_else(|| ApiError::Internal(format!("the route has no {{{name}}}").into()))
}

impl<S: Send + Sync> FromRequestParts<S> for AppPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Raw::from_parts(parts, state).await?;
        Ok(AppPath { token: raw.token()? })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ChatPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Raw::from_parts(parts, state).await?;
        Ok(ChatPath { token: raw.token()?, chat: raw.chat()? })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MessagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Raw::from_parts(parts, state).await?;
        Ok(MessagePath { token: raw.token()?, chat: raw.chat()?, message: raw.message()? })
    }
}
