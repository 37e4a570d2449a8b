//! Opening the database: the read-write connection (WAL, durability, foreign keys) and the
//! read-only ones, the pragmas both share, and how SQLite's errors map to the store's.

use std::path::Path;

use chatd_core::StoreError;
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "chatd.sqlite3";

/// How hard a commit waits for the disk (SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is fsynced at every commit, so an acknowledged write
    /// survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a crash of chatd, but the last commits may be lost on
    /// power loss or an OS crash.
    Normal,
}

pub(crate) fn open_writer(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    db.pragma_update(None, "synchronous", sync)?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    stable_plans(&db)?;
    db.set_prepared_statement_cache_capacity(64);
    Ok(db)
}

/// Keeps cached statements prepared. The bundled SQLite is built with STAT4, which marks
/// statements to be re-prepared whenever a parameter used by the planner is bound again —
/// that is, on every call of a cached statement, which then spends its time in SQLite's
/// parser. The query planner stability guarantee turns that off; every plan here is a plain
/// index lookup anyway (see `queries::tests`).
fn stable_plans(db: &Connection) -> rusqlite::Result<()> {
    db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(drop)
}

pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let db = Connection::open_with_flags(path, flags)?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    stable_plans(&db)?;
    db.set_prepared_statement_cache_capacity(64);
    Ok(db)
}

/// Sorts SQLite's errors into outages (the request may be retried; nothing was written)
/// and bugs.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Unavailable("the disk is full".into()),
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly,
        ) => StoreError::Unavailable(format!("storage error: {e}")),
        _ => StoreError::internal(e),
    }
}
