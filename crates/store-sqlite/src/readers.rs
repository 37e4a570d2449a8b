//! A small pool of read-only connections. Each query runs on tokio's blocking pool with a
//! connection taken from here; a semaphore caps concurrent queries at the pool's size.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use chatd_core::{StoreError, error::StoreResult};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::{map_err, open_reader};

#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    /// Connections are opened lazily, on first use, and kept.
    pub fn new(path: PathBuf, size: usize) -> Self {
        Readers { path, idle: Mutex::new(Vec::with_capacity(size)), permits: Semaphore::new(size) }
    }

    /// Runs `f` with a read-only connection, off the async worker threads.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| StoreError::Unavailable("closed".into()))?;
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let db = match idle {
            Some(db) => db,
            None => open_reader(&self.path).map_err(map_err)?,
        };
        let (db, result) = tokio::task::spawn_blocking(move || {
            let result = f(&db);
            (db, result)
        })
        .await
        // A panic inside the query loses that connection; the next call opens another.
        .map_err(StoreError::internal)?;
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(db);
        result
    }
}
