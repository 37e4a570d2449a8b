//! [`SqliteSource`]: blocking reads for the search side, apart from the store's readers.

use std::path::Path;

use chatd_core::error::StoreResult;
use chatd_core::search::{Change, ChangeFeed, ChatKey, MessageSource};
use chatd_core::{AppToken, ChatNumber, Message, MessageNumber};
use rusqlite::Connection;

use crate::DB_FILE;
use crate::queries;
use crate::readers::Idle;

/// Blocking reads for search (verification) and for feeding the index, on read-only
/// connections of its own. Callers run it off the async runtime's worker threads.
#[derive(Debug)]
pub struct SqliteSource {
    idle: Idle,
}

impl SqliteSource {
    /// Reads the database in `data_dir`, which must exist.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        let idle = Idle::new(data_dir.join(DB_FILE));
        idle.give_back(idle.take()?);
        Ok(SqliteSource { idle })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.idle.with(f)
    }
}

impl MessageSource for SqliteSource {
    fn chat_key(&self, token: &AppToken, chat: ChatNumber) -> StoreResult<ChatKey> {
        self.with(|db| queries::chat_key(db, token, chat))
    }

    fn messages(&self, chat: ChatKey, numbers: &[MessageNumber]) -> StoreResult<Vec<Message>> {
        self.with(|db| queries::messages_by_numbers(db, chat, numbers))
    }
}

impl ChangeFeed for SqliteSource {
    fn changes_after(&self, after: i64, limit: usize) -> StoreResult<Vec<Change>> {
        self.with(|db| queries::changes_after(db, after, limit))
    }

    fn last_seq(&self) -> StoreResult<i64> {
        self.with(queries::last_seq)
    }
}
