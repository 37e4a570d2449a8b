//! WAL checkpoints off the write path. SQLite's automatic checkpoint runs inside the
//! committing connection, so every thousandth page or so one commit (and every request
//! waiting on it) would pay for copying the WAL into the database and an fsync. Here a
//! thread of its own runs PASSIVE checkpoints after commits, which never block the writer.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use chatd_core::progress::Progress;
use rusqlite::Connection;

/// Least time between two checkpoints.
const INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    committed: Arc<Progress>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn spawn(path: &Path, committed: Arc<Progress>) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (stop, committed) = (stop.clone(), committed.clone());
            std::thread::Builder::new()
                .name("chatd-checkpoint".into())
                .spawn(move || {
                    let mut seen = committed.get();
                    while !stop.load(Ordering::Acquire) {
                        let now = committed.wait_beyond(seen, Duration::from_secs(1));
                        if now > seen {
                            seen = now;
                            if let Err(e) = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                                tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                            }
                            std::thread::sleep(INTERVAL);
                        }
                    }
                })
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
        };
        Ok(Checkpointer { stop, committed, handle: Some(handle) })
    }

    /// Stops the thread (SQLite checkpoints once more when the last connection closes).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.committed.nudge();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
