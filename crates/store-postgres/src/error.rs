//! sqlx's errors as the store's typed outcomes.

use chatd_core::StoreError;

/// An error of PostgreSQL or of the way to it. Anything that says the server cannot serve
/// now (connection lost or refused, no connection free in time, shutting down, out of
/// resources, read-only) is `Unavailable` (503, retry later); what can only be a bug
/// (a statement PostgreSQL refuses as written, a row of an unexpected shape) is `Internal`.
pub(crate) fn map(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // 42: syntax or access rule violations; 22: data exceptions; 23: integrity
            // constraints (the writer's numbering makes these bugs, never a client's doing).
            Some(code) if code.starts_with("42") || code.starts_with("22") || code.starts_with("23") => {
                StoreError::internal(e)
            }
            _ => StoreError::Unavailable(format!("database: {}", db.message())),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::BeginFailed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(format!("database: {e}")),
        _ => StoreError::internal(e),
    }
}

/// Whether PostgreSQL gave up on the transaction only because of another one (deadlock
/// detected, serialization failure): running it again can succeed.
pub(crate) fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}
