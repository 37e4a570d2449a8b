//! The JSON shapes of SPEC §3. Field names are the old API's, aliases included.

use chatd_core::{Application, Chat, ChatNumber, Message, MessageNumber, Timestamp};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ApplicationView<'a> {
    name: &'a str,
    access_token: &'a str,
    chats_count: i64,
    /// The old API's spelling of `chats_count`.
    chat_count: i64,
    created_at: Timestamp,
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

#[derive(Debug, Serialize)]
pub struct ChatView {
    number: ChatNumber,
    messages_count: i64,
    /// The old API's spelling of `messages_count`.
    message_count: i64,
    created_at: Timestamp,
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

#[derive(Debug, Serialize)]
pub struct MessageView<'a> {
    number: MessageNumber,
    body: &'a str,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a Message> for MessageView<'a> {
    fn from(m: &'a Message) -> Self {
        MessageView { number: m.number, body: &m.body, created_at: m.created_at, updated_at: m.updated_at }
    }
}

/// The answer to creating a chat.
#[derive(Debug, Serialize)]
pub struct ChatCreated<'a> {
    pub number: ChatNumber,
    pub access_token: &'a str,
}

/// The answer to creating a message.
#[derive(Debug, Serialize)]
pub struct MessageCreated<'a> {
    pub number: MessageNumber,
    pub chat_number: ChatNumber,
    pub access_token: &'a str,
}
