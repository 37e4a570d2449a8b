//! [`BulkLoader`]: loads rows straight into the database file, without the writer thread.

use std::path::Path;

use chatd_core::error::StoreResult;
use chatd_core::{AppName, AppToken, ChatNumber, MessageBody, MessageNumber, StoreError, Timestamp};
use rusqlite::Connection;

use crate::connection::{map_err, open_writer};
use crate::writer::WriteCtx;
use crate::{DB_FILE, Durability, queries, schema};

/// Loads data straight into the database, bypassing the writer: for benchmarks and bulk
/// imports. Rows go in through the writer's own statements (`queries::append_chat`,
/// `queries::append_message`), so they keep every invariant the writer keeps (numbers
/// from the parents' highest numbers, counts exact, change sequence stamped), in large transactions with
/// `synchronous=OFF`. No server may have the data directory open meanwhile. After an
/// error, drop the loader rather than finish it: the rows since its last commit are then
/// rolled back, whatever part of a row the error left.
#[derive(Debug)]
pub struct BulkLoader {
    db: Connection,
    /// The clock (read again for every row) and the change sequence.
    ctx: WriteCtx,
    /// Rows written since the last commit.
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
        let ctx = WriteCtx::new(Timestamp::now(), queries::last_seq(&db)?, None);
        db.execute_batch("BEGIN").map_err(map_err)?;
        Ok(BulkLoader { db, ctx, pending: 0 })
    }

    /// Writes one row with `write`, stamped with the current time; commits every
    /// [`Self::BATCH`] rows.
    fn row<T>(&mut self, write: impl FnOnce(&Connection, &mut WriteCtx) -> StoreResult<T>) -> StoreResult<T> {
        self.ctx.now = Timestamp::now();
        let written = write(&self.db, &mut self.ctx)?;
        self.pending += 1;
        if self.pending >= Self::BATCH {
            self.db.execute_batch("COMMIT; BEGIN").map_err(map_err)?;
            self.pending = 0;
        }
        Ok(written)
    }

    /// Adds an application; returns its token and internal id.
    pub fn application(&mut self, name: &AppName) -> StoreResult<(AppToken, i64)> {
        let token = AppToken::generate().map_err(|e| StoreError::internal(e.to_string()))?;
        self.row(|db, ctx| {
            let added = queries::insert_application(db, ctx, token, name.clone(), None)?;
            Ok((added.token, db.last_insert_rowid()))
        })
    }

    /// Adds the next chat of an application; returns its number and internal id.
    pub fn chat(&mut self, application: i64) -> StoreResult<(ChatNumber, i64)> {
        self.row(|db, ctx| {
            let last = queries::last_chat_number(db, application)?;
            queries::append_chat(db, ctx, application, last)
        })
    }

    /// Appends a message to a chat; returns its number.
    pub fn message(&mut self, chat: i64, body: &MessageBody) -> StoreResult<MessageNumber> {
        self.row(|db, ctx| {
            let last = queries::last_message_number(db, chat)?;
            queries::append_message(db, ctx, chat, last, body)
        })
    }

    /// Commits what is left.
    pub fn finish(self) -> StoreResult<()> {
        self.db.execute_batch("COMMIT").map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use chatd_core::{Catalog, Ingest};

    use super::*;
    use crate::{Options, SqliteStore};

    #[tokio::test]
    async fn loaded_rows_are_numbered_and_counted_as_the_writer_numbers_them_and_both_carry_on() {
        let dir = tempfile::tempdir().unwrap();
        let body = MessageBody::parse("hello".into(), usize::MAX).unwrap();
        let mut loader = BulkLoader::open(dir.path()).unwrap();
        let (token, app) = loader.application(&AppName::parse("loaded".into()).unwrap()).unwrap();
        let (one, first) = loader.chat(app).unwrap();
        let (two, second) = loader.chat(app).unwrap();
        let numbers: Vec<i64> = [first, second, first]
            .into_iter()
            .map(|chat| loader.message(chat, &body).unwrap().get())
            .collect();
        assert!(matches!(loader.chat(app + 100), Err(StoreError::ApplicationNotFound)));
        assert!(matches!(loader.message(second + 100, &body), Err(StoreError::ChatNotFound)));
        loader.finish().unwrap();
        assert_eq!((one.get(), two.get()), (1, 2));
        assert_eq!(numbers, [1, 1, 2]);

        // A second loader goes on from what the first committed.
        let mut loader = BulkLoader::open(dir.path()).unwrap();
        assert_eq!(loader.chat(app).unwrap().0.get(), 3);
        assert_eq!(loader.message(second, &body).unwrap().get(), 2);
        loader.finish().unwrap();

        let store = SqliteStore::open(&Options::new(dir.path())).unwrap();
        assert_eq!(store.application(token.clone()).await.unwrap().chats_count, 3);
        assert_eq!(store.chat(token.clone(), one).await.unwrap().messages_count, 2);
        assert_eq!(store.committed().get(), 4, "one change per loaded message");
        // So does the writer.
        assert_eq!(store.create_chat(token.clone(), None).await.unwrap().get(), 4);
        assert_eq!(store.create_message(token.clone(), two, body, None).await.unwrap().get(), 3);
        assert_eq!(store.committed().get(), 5);
        store.close().await;
    }
}
