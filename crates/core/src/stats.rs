//! Counters of a writer's work, readable while it runs: what each backend's group commit
//! did, for logs, tests, the benchmark and `GET /metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in microseconds, of the buckets of [`WriterStatsSnapshot::commit_micros`]:
/// from a commit that only wrote to the page cache to one that waited seconds on a disk.
pub const COMMIT_MICROS_BOUNDS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000,
];

/// Upper bounds of the buckets of [`WriterStatsSnapshot::batch_writes`]: one write alone, up
/// to the largest `--max-batch` in use.
pub const BATCH_BOUNDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// Counters of the writer's work, readable while it runs.
#[derive(Debug, Default)]
pub struct WriterStats {
    commits: AtomicU64,
    jobs: AtomicU64,
    largest_batch: AtomicU64,
    commit_micros: Buckets<{ COMMIT_MICROS_BOUNDS.len() }>,
    batch_writes: Buckets<{ BATCH_BOUNDS.len() }>,
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
    /// How long each committed batch took, from its first statement to its commit (and, on
    /// PostgreSQL, its retries), in microseconds; bounds [`COMMIT_MICROS_BOUNDS`].
    pub commit_micros: Histogram<{ COMMIT_MICROS_BOUNDS.len() }>,
    /// Writes (jobs) per committed transaction; bounds [`BATCH_BOUNDS`].
    pub batch_writes: Histogram<{ BATCH_BOUNDS.len() }>,
}

impl WriterStatsSnapshot {
    /// Average jobs per commit.
    pub fn average_batch(&self) -> f64 {
        if self.commits == 0 { 0.0 } else { self.jobs as f64 / self.commits as f64 }
    }
}

impl WriterStats {
    /// Counts one committed transaction carrying `batch` jobs, which took `took`.
    pub fn record(&self, batch: usize, took: Duration) {
        let batch = batch as u64;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(batch, Ordering::Relaxed);
        self.largest_batch.fetch_max(batch, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros.record(&COMMIT_MICROS_BOUNDS, micros);
        self.batch_writes.record(&BATCH_BOUNDS, batch);
    }

    pub fn snapshot(&self) -> WriterStatsSnapshot {
        WriterStatsSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            jobs: self.jobs.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            commit_micros: self.commit_micros.snapshot(COMMIT_MICROS_BOUNDS),
            batch_writes: self.batch_writes.snapshot(BATCH_BOUNDS),
        }
    }
}

/// How many values fell in each bucket of a fixed set of bounds: counted with atomics, so
/// the writer records without a lock and a reader takes a snapshot at any time.
#[derive(Debug)]
struct Buckets<const N: usize> {
    /// `within[i]`: values above `bounds[i - 1]` and at most `bounds[i]`.
    within: [AtomicU64; N],
    /// Values above the last bound.
    over: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Default for Buckets<N> {
    fn default() -> Self {
        Buckets {
            within: std::array::from_fn(|_| AtomicU64::new(0)),
            over: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Buckets<N> {
    fn record(&self, bounds: &[u64; N], value: u64) {
        let slot = bounds.iter().position(|&b| value <= b).map_or(&self.over, |i| &self.within[i]);
        slot.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    fn snapshot(&self, bounds: [u64; N]) -> Histogram<N> {
        Histogram {
            bounds,
            within: std::array::from_fn(|i| self.within[i].load(Ordering::Relaxed)),
            over: self.over.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram read from the writer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram<const N: usize> {
    /// The buckets' upper bounds, increasing.
    pub bounds: [u64; N],
    /// `within[i]`: values above `bounds[i - 1]` and at most `bounds[i]` (not cumulative).
    pub within: [u64; N],
    /// Values above the last bound.
    pub over: u64,
    /// The sum of every value recorded.
    pub sum: u64,
}

impl<const N: usize> Histogram<N> {
    /// Values recorded, every bucket's count added up (so it agrees with the buckets even
    /// while the writer records).
    pub fn count(&self) -> u64 {
        self.within.iter().sum::<u64>() + self.over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_commit_lands_in_the_bucket_of_its_size_and_duration() {
        let stats = WriterStats::default();
        stats.record(1, Duration::from_micros(100));
        stats.record(3, Duration::from_micros(101));
        stats.record(5000, Duration::from_secs(60));
        let s = stats.snapshot();
        assert_eq!((s.commits, s.jobs, s.largest_batch), (3, 5004, 5000));

        assert_eq!(s.batch_writes.within[..4], [1, 0, 1, 0], "1 is at most 1, 3 is above 2 and at most 4");
        assert_eq!(s.batch_writes.over, 1, "5000 is above every bound");
        assert_eq!((s.batch_writes.count(), s.batch_writes.sum), (3, 5004));

        assert_eq!(s.commit_micros.within[..2], [1, 1], "100 µs on the first bound, 101 µs in the next");
        assert_eq!(s.commit_micros.over, 1);
        assert_eq!(s.commit_micros.sum, 60_000_201);
    }
}
