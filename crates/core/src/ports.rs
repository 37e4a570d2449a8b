//! The traits the server calls. See the crate docs for why writes and reads are separate.

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::feed::Subscription;
use crate::search::SearchRequest;
use crate::{
    AppName, AppToken, Application, Chat, ChatNumber, IdempotencyKey, Listed, Message, MessageBody,
    MessageNumber, NumberBound, Page,
};

/// Accepts creates and edits. Every method returns only once the change is durable in the
/// sense of SPEC §4.3 for this backend, and checks existence before it succeeds (§4.2).
/// Numbers are assigned here, never by the caller, so they cannot race.
///
/// A create given an `Idempotency-Key` (SPEC §8, [`crate::idempotency`]) stores the key and
/// its fingerprint in the transaction of the row it creates. Given again within the store's
/// window with the same parameters, it answers what that create answered and writes nothing;
/// with other parameters, [`StoreError::IdempotencyKeyReused`](crate::StoreError). Creates
/// racing with one key create one row, and each answers it.
#[async_trait]
pub trait Ingest: Send + Sync + 'static {
    /// Registers an application under a fresh token.
    async fn create_application(
        &self,
        name: AppName,
        key: Option<IdempotencyKey>,
    ) -> StoreResult<Application>;
    /// Renames an application.
    async fn rename_application(&self, token: AppToken, name: AppName) -> StoreResult<Application>;
    /// Creates the next chat of an application and returns its number.
    async fn create_chat(&self, token: AppToken, key: Option<IdempotencyKey>) -> StoreResult<ChatNumber>;
    /// Appends a message to a chat and returns its number.
    async fn create_message(
        &self,
        token: AppToken,
        chat: ChatNumber,
        body: MessageBody,
        key: Option<IdempotencyKey>,
    ) -> StoreResult<MessageNumber>;
    /// Replaces a message's body.
    async fn edit_message(
        &self,
        token: AppToken,
        chat: ChatNumber,
        number: MessageNumber,
        body: MessageBody,
    ) -> StoreResult<Message>;
    /// Deletes up to [`SWEEP_LIMIT`](crate::idempotency::SWEEP_LIMIT) keys older than the
    /// window (oldest first, through an index on their time) and returns how many it deleted.
    /// Expired keys are never honoured, deleted or not: this only reclaims their space.
    async fn sweep_idempotency_keys(&self) -> StoreResult<usize>;
    /// Whether writes can be accepted now (for `/ready`).
    async fn ready(&self) -> StoreResult<()>;
}

/// Answers reads. Lists are keyset-paginated and never hold more than one page in memory.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    async fn application(&self, token: AppToken) -> StoreResult<Application>;
    async fn applications(&self, page: Page<AppToken>) -> StoreResult<Listed<Application>>;
    async fn chat(&self, token: AppToken, chat: ChatNumber) -> StoreResult<Chat>;
    async fn chats(&self, token: AppToken, page: Page<NumberBound>) -> StoreResult<Listed<Chat>>;
    async fn message(&self, token: AppToken, chat: ChatNumber, number: MessageNumber)
    -> StoreResult<Message>;
    async fn messages(
        &self,
        token: AppToken,
        chat: ChatNumber,
        page: Page<NumberBound>,
    ) -> StoreResult<Listed<Message>>;
    /// Whether reads can be served now (for `/ready`).
    async fn ready(&self) -> StoreResult<()>;
}

/// Answers partial-text searches within one chat (SPEC §5).
#[async_trait]
pub trait Search: Send + Sync + 'static {
    async fn search(
        &self,
        token: AppToken,
        chat: ChatNumber,
        request: SearchRequest,
    ) -> StoreResult<Vec<Message>>;
}

/// Subscribes to a chat's live events. Implemented by the store of each mode.
#[async_trait]
pub trait Feed: Send + Sync + 'static {
    /// Follows the chat from now on; `ApplicationNotFound` or `ChatNotFound` when it does
    /// not exist. What was committed before this call is read from the catalog.
    async fn subscribe(&self, token: AppToken, chat: ChatNumber) -> StoreResult<Subscription>;
}
