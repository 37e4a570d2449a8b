//! Read-only connections: an [`Idle`] list opened on demand and kept, and [`Readers`], the
//! front that runs a lookup by key on the calling thread and any longer query on tokio's
//! blocking pool, at most `size` at once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use chatd_core::{StoreError, error::StoreResult};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::{map_err, open_reader};

/// Read-only connections to one database file, reused between calls.
#[derive(Debug)]
pub(crate) struct Idle {
    path: PathBuf,
    connections: Mutex<Vec<Connection>>,
}

impl Idle {
    pub fn new(path: PathBuf) -> Self {
        Idle { path, connections: Mutex::new(Vec::new()) }
    }

    /// An idle connection, or a new one.
    pub fn take(&self) -> StoreResult<Connection> {
        let idle = self.connections.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match idle {
            Some(db) => Ok(db),
            None => open_reader(&self.path).map_err(map_err),
        }
    }

    pub fn give_back(&self, db: Connection) {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).push(db);
    }

    /// Runs `f` on a connection, blocking the calling thread.
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let db = self.take()?;
        let result = f(&db);
        self.give_back(db);
        result
    }
}

#[derive(Debug)]
pub(crate) struct Readers {
    idle: Arc<Idle>,
    /// Held by the blocking task itself, so a caller that goes away (client disconnect)
    /// does not free its slot while its query still runs.
    permits: Arc<Semaphore>,
}

impl Readers {
    pub fn new(path: PathBuf, size: usize) -> Self {
        Readers { idle: Arc::new(Idle::new(path)), permits: Arc::new(Semaphore::new(size)) }
    }

    /// Runs `f`, a lookup by key, on the calling thread.
    ///
    /// Handing a query to the blocking pool and waking the caller with its answer cost about
    /// half of a GET's CPU (32–39 µs per GET of one message with it, 18–23 without, HTTP
    /// included; docs/benchmarks-log.md). The price is that a lookup that must read from the disk holds
    /// the thread, and the connections that share it, for that one read. The number of these
    /// at once is bounded by the threads that serve connections, not by `size`.
    pub fn lookup<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.idle.with(f)
    }

    /// Runs `f` with a read-only connection, off the async worker threads: for queries that
    /// may take long (a page of up to 1,000 rows).
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("closed".into()))?;
        let idle = self.idle.clone();
        // A panic inside the query loses that connection; the next call opens another.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            idle.with(f)
        })
        .await
        .map_err(StoreError::internal)?
    }
}
