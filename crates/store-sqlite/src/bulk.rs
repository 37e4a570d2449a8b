//! [`BulkLoader`]: loads rows straight into the database file, without the writer thread.

use std::path::Path;

use chatd_core::error::StoreResult;
use chatd_core::{AppName, AppToken, ChatNumber, MessageBody, MessageNumber, StoreError};
use rusqlite::Connection;

use crate::connection::{map_err, open_writer};
use crate::{DB_FILE, Durability, queries, schema};

/// Loads data straight into the database, bypassing the writer: for benchmarks and bulk
/// imports. Keeps every invariant the writer keeps (numbers from the counts, counts exact,
/// change sequence stamped), in large transactions with `synchronous=OFF`. No server may
/// have the data directory open meanwhile.
#[derive(Debug)]
pub struct BulkLoader {
    db: Connection,
    last_seq: i64,
    pending: usize,
}

impl BulkLoader {
    /// Rows per transaction.
    const BATCH: usize = 50_000;

    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(StoreError::internal)?;
        let mut db = open_writer(&data_dir.join(DB_FILE), Durability::Normal).map_err(map_err)?;
        db.pragma_update(None, "synchronous", "OFF").map_err(map_err)?;
        schema::migrate(&mut db).map_err(map_err)?;
        let last_seq = queries::last_seq(&db)?;
        db.execute_batch("BEGIN").map_err(map_err)?;
        Ok(BulkLoader { db, last_seq, pending: 0 })
    }

    fn row_written(&mut self) -> StoreResult<()> {
        self.pending += 1;
        if self.pending >= Self::BATCH {
            self.db.execute_batch("COMMIT; BEGIN").map_err(map_err)?;
            self.pending = 0;
        }
        Ok(())
    }

    /// Adds an application; returns its token and internal id.
    pub fn application(&mut self, name: &AppName) -> StoreResult<(AppToken, i64)> {
        let token = AppToken::generate().map_err(|e| StoreError::internal(e.to_string()))?;
        let now = chatd_core::Timestamp::now().as_millis();
        self.db
            .prepare_cached(queries::INSERT_APPLICATION)
            .and_then(|mut s| s.execute(rusqlite::params![token.as_str(), name.as_str(), now]))
            .map_err(map_err)?;
        let id = self.db.last_insert_rowid();
        self.row_written()?;
        Ok((token, id))
    }

    /// Adds the next chat of an application; returns its number and internal id.
    pub fn chat(&mut self, application: i64) -> StoreResult<(ChatNumber, i64)> {
        let number: i64 = self
            .db
            .prepare_cached(
                "UPDATE applications SET chats_count = chats_count + 1 WHERE id = ?1 RETURNING chats_count",
            )
            .and_then(|mut s| s.query_row([application], |r| r.get(0)))
            .map_err(map_err)?;
        let now = chatd_core::Timestamp::now().as_millis();
        self.db
            .prepare_cached(queries::INSERT_CHAT)
            .and_then(|mut s| s.execute(rusqlite::params![application, number, now]))
            .map_err(map_err)?;
        let id = self.db.last_insert_rowid();
        self.row_written()?;
        Ok((ChatNumber::try_from(number).map_err(StoreError::internal)?, id))
    }

    /// Appends a message to a chat; returns its number.
    pub fn message(&mut self, chat: i64, body: &MessageBody) -> StoreResult<MessageNumber> {
        let number: i64 = self
            .db
            .prepare_cached(
                "UPDATE chats SET messages_count = messages_count + 1 WHERE id = ?1 RETURNING messages_count",
            )
            .and_then(|mut s| s.query_row([chat], |r| r.get(0)))
            .map_err(map_err)?;
        self.last_seq += 1;
        let now = chatd_core::Timestamp::now().as_millis();
        self.db
            .prepare_cached(queries::INSERT_MESSAGE)
            .and_then(|mut s| s.execute(rusqlite::params![chat, number, body.as_str(), now, self.last_seq]))
            .map_err(map_err)?;
        self.row_written()?;
        MessageNumber::try_from(number).map_err(StoreError::internal)
    }

    /// Commits what is left.
    pub fn finish(self) -> StoreResult<()> {
        self.db.execute_batch("COMMIT").map_err(map_err)
    }
}
