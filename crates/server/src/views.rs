//! The JSON shapes of SPEC §3. Field names are the old API's, aliases included. Each shape
//! also describes itself for the OpenAPI document (`ToSchema`), so the document cannot
//! drift from what is serialized.

use chatd_core::{Application, Chat, ChatNumber, Message, MessageNumber, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

// How a `Timestamp` serializes, for the OpenAPI document only.
/// RFC 3339 in UTC with milliseconds.
#[derive(ToSchema)]
#[schema(format = DateTime, example = "2019-11-11T19:14:51.589Z")]
#[allow(dead_code)]
struct Rfc3339(String);

/// An application, named by its token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Application)]
pub struct ApplicationView<'a> {
    name: &'a str,
    /// The application's secret: it names the application in every path.
    access_token: &'a str,
    #[schema(minimum = 0)]
    chats_count: i64,
    /// The old API's spelling of `chats_count`.
    #[schema(minimum = 0)]
    chat_count: i64,
    #[schema(value_type = Rfc3339)]
    created_at: Timestamp,
    #[schema(value_type = Rfc3339)]
    updated_at: Timestamp,
}

impl<'a> From<&'a Application> for ApplicationView<'a> {
    fn from(a: &'a Application) -> Self {
        ApplicationView {
            name: &a.name,
            access_token: a.token.as_str(),
            chats_count: a.chats_count,
            chat_count: a.chats_count,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A chat, named by its number within its application.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Chat)]
pub struct ChatView {
    #[schema(value_type = i64, minimum = 1)]
    number: ChatNumber,
    #[schema(minimum = 0)]
    messages_count: i64,
    /// The old API's spelling of `messages_count`.
    #[schema(minimum = 0)]
    message_count: i64,
    #[schema(value_type = Rfc3339)]
    created_at: Timestamp,
    #[schema(value_type = Rfc3339)]
    updated_at: Timestamp,
}

impl From<&Chat> for ChatView {
    fn from(c: &Chat) -> Self {
        ChatView {
            number: c.number,
            messages_count: c.messages_count,
            message_count: c.messages_count,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A message, named by its number within its chat.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView<'a> {
    #[schema(value_type = i64, minimum = 1)]
    number: MessageNumber,
    body: &'a str,
    #[schema(value_type = Rfc3339)]
    created_at: Timestamp,
    #[schema(value_type = Rfc3339)]
    updated_at: Timestamp,
}

impl<'a> From<&'a Message> for MessageView<'a> {
    fn from(m: &'a Message) -> Self {
        MessageView { number: m.number, body: &m.body, created_at: m.created_at, updated_at: m.updated_at }
    }
}

/// The answer to creating a chat.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCreated<'a> {
    #[schema(value_type = i64, minimum = 1)]
    pub number: ChatNumber,
    /// The application's token, as given in the path.
    pub access_token: &'a str,
}

/// The answer to creating a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageCreated<'a> {
    #[schema(value_type = i64, minimum = 1)]
    pub number: MessageNumber,
    #[schema(value_type = i64, minimum = 1)]
    pub chat_number: ChatNumber,
    /// The application's token, as given in the path.
    pub access_token: &'a str,
}
