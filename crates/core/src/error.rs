//! The typed outcomes a backend reports to its caller.

use std::error::Error as StdError;

/// Why a store could not do what it was asked. Each variant is a different decision for the
/// caller: a missing resource (404), a full queue (retry soon), a backend outage (retry
/// later), or a bug (500). They are never folded together.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No application has this token.
    #[error("application not found")]
    ApplicationNotFound,
    /// The application exists but has no chat with this number.
    #[error("chat not found")]
    ChatNotFound,
    /// The chat exists but has no message with this number.
    #[error("message not found")]
    MessageNotFound,
    /// A list cursor that names nothing this store listed (e.g. an unknown application
    /// token given as `after`); carries the parameter's name.
    #[error("the pagination cursor {0} is not valid")]
    BadCursor(&'static str),
    /// An `Idempotency-Key` that named another create (other parameters) within its window.
    /// Nothing was written.
    #[error("the idempotency key was used for another request")]
    IdempotencyKeyReused,
    /// The write queue is full: the request was not accepted and nothing was written.
    #[error("the write queue is full")]
    Overloaded,
    /// The backend cannot take writes or reads right now (disk full, shutting down, I/O
    /// error). Nothing of the request was written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected backend failure.
    #[error("internal storage error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// Wraps an unexpected error.
    pub fn internal(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StoreError::Internal(e.into())
    }
}

/// Shorthand for results of store calls.
pub type StoreResult<T> = Result<T, StoreError>;
