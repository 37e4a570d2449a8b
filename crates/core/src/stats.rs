//! Counters of a writer's work, readable while it runs: what each backend's group commit
//! did, for logs, tests and the benchmark.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the writer's work, readable while it runs.
#[derive(Debug, Default)]
pub struct WriterStats {
    commits: AtomicU64,
    jobs: AtomicU64,
    largest_batch: AtomicU64,
}

/// A snapshot of [`WriterStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStatsSnapshot {
    /// Transactions committed.
    pub commits: u64,
    /// Jobs carried by those transactions.
    pub jobs: u64,
    /// The most jobs one transaction carried.
    pub largest_batch: u64,
}

impl WriterStatsSnapshot {
    /// Average jobs per commit.
    pub fn average_batch(&self) -> f64 {
        if self.commits == 0 { 0.0 } else { self.jobs as f64 / self.commits as f64 }
    }
}

impl WriterStats {
    /// Counts one committed transaction carrying `batch` jobs.
    pub fn record(&self, batch: usize) {
        let batch = batch as u64;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(batch, Ordering::Relaxed);
        self.largest_batch.fetch_max(batch, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> WriterStatsSnapshot {
        WriterStatsSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            jobs: self.jobs.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }
}
