//! Read-only connections: an [`Idle`] list opened on demand and kept, and [`Readers`], the
//! front that runs a lookup by key on the calling thread while lookups are quick (see
//! [`Pace`]) and any longer query on tokio's blocking pool, at most `size` at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chatd_core::{StoreError, error::StoreResult};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::connection::{map_err, open_reader};

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

/// Whether lookups by key are quick enough to run on the calling thread: a moving average of
/// recent lookups' wall time, each counted up to [`Pace::CAP`].
///
/// Served from memory, a lookup takes microseconds, and running it right on the request's
/// thread saves handing it to another thread and back, a large part of a GET's CPU. A
/// lookup that must read the disk (a database larger than the memory that caches it) takes
/// as long as those reads, and inline it would hold that async thread and every connection
/// sharing it, `GET /health` included. So lookups go to the pool while the average is at or above
/// [`Pace::INLINE_BELOW`], and come back once lookups are quick again (those on the pool
/// are timed too). It is one average: while most lookups are served from memory, the few
/// that read the disk still run inline; and wall time counts a thread preempted
/// mid-lookup too, which [`Pace::CAP`] bounds.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    average_ns: AtomicU64,
}

impl Pace {
    /// Lookups run inline while their average wall time is below this.
    pub const INLINE_BELOW: Duration = Duration::from_micros(50);
    /// A single lookup counts for at most this much (a thread preempted mid-lookup is not a
    /// disk read, and should not send lookups away for long).
    pub const CAP: Duration = Duration::from_millis(1);

    pub fn inline(&self) -> bool {
        self.average_ns.load(Ordering::Relaxed) < Self::INLINE_BELOW.as_nanos() as u64
    }

    /// Folds one lookup's wall time into the average (a sixteenth of it).
    pub fn record(&self, took: Duration) {
        let sample = took.min(Self::CAP).as_nanos() as u64;
        let fold = |old: u64| Some(old - old / 16 + sample / 16);
        let _ = self.average_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, fold);
    }
}

/// How many lookups ran on the calling thread and how many on the blocking pool, since start
/// (a copy: it does not move).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    pub inline: u64,
    pub pooled: u64,
}

#[derive(Debug)]
pub(crate) struct Readers {
    idle: Arc<Idle>,
    /// Held by the blocking task itself, so a caller that goes away (client disconnect)
    /// does not free its slot while its query still runs.
    permits: Arc<Semaphore>,
    /// The same for lookups sent to the pool: as many, but apart, so that a lookup never
    /// waits behind long list pages. Lookups served from memory queue here too while the pace
    /// keeps lookups on the pool.
    lookup_permits: Arc<Semaphore>,
    pace: Arc<Pace>,
    inline: AtomicU64,
    /// Counted when the lookup runs, so one whose caller went away while it waited for a
    /// permit is not.
    pooled: Arc<AtomicU64>,
}

impl Readers {
    pub fn new(path: PathBuf, size: usize) -> Self {
        Readers {
            idle: Arc::new(Idle::new(path)),
            permits: Arc::new(Semaphore::new(size)),
            lookup_permits: Arc::new(Semaphore::new(size)),
            pace: Arc::new(Pace::default()),
            inline: AtomicU64::new(0),
            pooled: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Runs `f`, a lookup by key: on the calling thread while lookups are quick, otherwise on
    /// the blocking pool (see [`Pace`]).
    pub async fn lookup<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        // Only the query is timed: opening a connection (the first lookups) is not a disk read.
        if self.pace.inline() {
            self.inline.fetch_add(1, Ordering::Relaxed);
            return self.idle.with(|db| timed(&self.pace, || f(db)));
        }
        let (pace, pooled) = (self.pace.clone(), self.pooled.clone());
        Self::off_thread(&self.lookup_permits, &self.idle, move |db| {
            pooled.fetch_add(1, Ordering::Relaxed);
            timed(&pace, || f(db))
        })
        .await
    }

    /// Runs `f`, a query that reads no table (the readiness probe), on the calling thread,
    /// without counting it in the pace.
    pub fn probe<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.idle.with(f)
    }

    pub fn lookup_stats(&self) -> LookupStats {
        LookupStats {
            inline: self.inline.load(Ordering::Relaxed),
            pooled: self.pooled.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` with a read-only connection, off the async worker threads: for queries that
    /// may take long (a page of up to 1,000 rows).
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        Self::off_thread(&self.permits, &self.idle, f).await
    }

    async fn off_thread<T, F>(permits: &Arc<Semaphore>, idle: &Arc<Idle>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit =
            permits.clone().acquire_owned().await.map_err(|_| StoreError::Unavailable("closed".into()))?;
        let idle = idle.clone();
        // A panic inside the query loses that connection; the next call opens another.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            idle.with(f)
        })
        .await
        .map_err(StoreError::internal)?
    }

    #[cfg(test)]
    pub fn pace(&self) -> &Pace {
        &self.pace
    }
}

/// Runs `f` and records its wall time in `pace`.
fn timed<T>(pace: &Pace, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = f();
    pace.record(started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_runs_on_the_calling_thread_while_quick_and_on_the_pool_while_slow() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("db.sqlite3");
        Connection::open(&path).and_then(|db| db.execute_batch("CREATE TABLE t (x)")).expect("a database");
        let readers = Readers::new(path, 1);
        let here = std::thread::current().id();
        let thread =
            || async { readers.lookup(|_| Ok(std::thread::current().id())).await.expect("a lookup") };
        for _ in 0..100 {
            readers.pace().record(Duration::from_micros(1));
        }
        assert_eq!(thread().await, here, "a quick lookup left the calling thread");
        for _ in 0..100 {
            readers.pace().record(Duration::from_micros(300));
        }
        assert_ne!(thread().await, here, "a slow lookup ran on the calling thread");
        assert_eq!(readers.lookup_stats(), LookupStats { inline: 1, pooled: 1 });
    }

    #[test]
    fn slow_lookups_move_to_the_pool_and_quick_ones_bring_them_back() {
        let pace = Pace::default();
        assert!(pace.inline(), "lookups start inline");
        for _ in 0..100 {
            pace.record(Duration::from_micros(5));
        }
        assert!(pace.inline());
        // One preempted lookup (capped at 1 ms) does not send lookups away for long...
        pace.record(Duration::from_millis(80));
        let back_after = (1..).find(|_| {
            pace.record(Duration::from_micros(5));
            pace.inline()
        });
        assert!(back_after.unwrap() <= 20, "inline again after {back_after:?} quick lookups");
        // ...while lookups that read the disk (a few hundred µs each) do.
        for _ in 0..20 {
            pace.record(Duration::from_micros(300));
        }
        assert!(!pace.inline(), "disk-bound lookups still inline");
        // Quick again (served from memory, on the pool): back inline.
        for _ in 0..60 {
            pace.record(Duration::from_micros(5));
        }
        assert!(pace.inline());
    }
}
