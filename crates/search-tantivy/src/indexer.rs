//! The indexer thread, and the offline rebuild used by `chatd reindex`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chatd_core::error::StoreResult;
use chatd_core::progress::Progress;
use chatd_core::search::ChangeFeed;

use crate::SearchIndex;

/// How the indexer batches its work.
#[derive(Debug, Clone, Copy)]
pub struct IndexerOptions {
    /// Changes read from the store per round trip.
    pub read_batch: usize,
    /// Least time between two index commits, so that a flood of creates makes few
    /// segments. Bounds the create-to-searchable lag together with the commit's own time.
    pub min_commit_interval: Duration,
    /// Longest sleep without a signal from the writer (a safety net; signals are normal).
    pub poll_interval: Duration,
}

impl Default for IndexerOptions {
    fn default() -> Self {
        IndexerOptions {
            read_batch: 4096,
            min_commit_interval: Duration::from_millis(200),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// A running indexer. [`Indexer::close`] indexes what is committed, then stops.
#[derive(Debug)]
pub struct Indexer {
    stop: Arc<AtomicBool>,
    committed: Arc<Progress>,
    /// Catch-ups that failed (each is retried after the poll interval).
    failures: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Indexer {
    /// Starts following `feed`: waits on `committed` (published by the store's writer after
    /// each commit), indexes every newer change in sequence order, commits, and publishes
    /// the covered sequence to `indexed`.
    pub fn spawn(
        index: Arc<SearchIndex>,
        feed: Arc<dyn ChangeFeed>,
        committed: Arc<Progress>,
        indexed: Arc<Progress>,
        options: IndexerOptions,
    ) -> StoreResult<Self> {
        let mut writer = index.writer()?;
        let mut start = index.indexed_seq()?;
        let last = feed.last_seq()?;
        if start > last {
            // The index covers changes the database no longer has (a database restored from
            // a backup, or commits lost with synchronous=NORMAL on power loss): sequences
            // will be reused, so nothing of the index can be trusted. Start over.
            tracing::warn!(
                indexed = start,
                database = last,
                "the search index is ahead of the database; rebuilding it"
            );
            writer.delete_all_documents().map_err(crate::map_err)?;
            index.commit(&mut writer, 0)?;
            start = 0;
        }
        indexed.publish(start);
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, committed, failures) = (stop.clone(), committed.clone(), failures.clone());
            std::thread::Builder::new()
                .name("chatd-indexer".into())
                .spawn(move || {
                    // `None` after a failure: the writer is dropped (which discards what it
                    // had not committed) and a fresh one is taken at the next attempt.
                    let mut writer = Some(writer);
                    let mut done = start;
                    let mut last_commit = Instant::now() - options.min_commit_interval;
                    loop {
                        let stopping = stop.load(Ordering::Acquire);
                        let target = committed
                            .wait_beyond(done, if stopping { Duration::ZERO } else { options.poll_interval });
                        if target <= done && stopping {
                            break;
                        }
                        let since = last_commit.elapsed();
                        if !stopping && since < options.min_commit_interval {
                            std::thread::sleep(options.min_commit_interval - since);
                        }
                        let mut published = |seq| indexed.publish(seq);
                        let feed = feed.as_ref();
                        let batch = options.read_batch;
                        let caught_up = match &mut writer {
                            Some(w) => catch_up(&index, w, feed, done, batch, Some(&mut published)),
                            None => index.writer().and_then(|w| {
                                catch_up(&index, writer.insert(w), feed, done, batch, Some(&mut published))
                            }),
                        };
                        match caught_up {
                            Ok(seq) => {
                                // Caught up: every change up to `target` was committed before
                                // the feed was read, so all of them are covered (a sequence
                                // with no row is simply covered too).
                                done = seq.max(target);
                                last_commit = Instant::now();
                                indexed.publish(done);
                            }
                            Err(e) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(error = %e, "indexing failed; retrying");
                                // Not `rollback`: when it fails (as on a full disk) the writer
                                // has given up its lock, and a second rollback panics. A new
                                // writer starts from the last commit just the same.
                                writer = None;
                                // Resume from what the index has committed, not from where
                                // this catch-up began: part of it may be committed already.
                                done = index.indexed_seq().unwrap_or(done);
                                if stopping {
                                    break;
                                }
                                std::thread::sleep(options.poll_interval);
                            }
                        }
                    }
                    tracing::debug!(indexed = done, "indexer stopped");
                })
                .map_err(chatd_core::StoreError::internal)?
        };
        Ok(Indexer { stop, committed, failures, handle: Some(handle) })
    }

    /// How many catch-ups have failed so far (e.g. on a full disk); each is retried.
    pub fn failures(&self) -> Arc<AtomicU64> {
        self.failures.clone()
    }

    /// Indexes everything committed so far, then stops the thread.
    pub fn close(mut self) {
        self.stop.store(true, Ordering::Release);
        self.committed.nudge();
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            tracing::error!("the indexer thread panicked");
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.committed.nudge();
    }
}

/// Longest a catch-up runs without committing: commits are what make documents searchable
/// and what a restart resumes from, but each one costs a segment.
const MAX_UNCOMMITTED: Duration = Duration::from_secs(1);

/// Applies every change after `from`, committing when caught up (and at least every
/// [`MAX_UNCOMMITTED`] during a long catch-up); returns the sequence now covered.
/// `progress` sees each commit's sequence.
fn catch_up(
    index: &SearchIndex,
    writer: &mut tantivy::IndexWriter,
    feed: &dyn ChangeFeed,
    from: i64,
    batch: usize,
    mut progress: Option<&mut dyn FnMut(i64)>,
) -> StoreResult<i64> {
    let (mut applied, mut committed) = (from, from);
    let mut since_commit = Instant::now();
    loop {
        let changes = feed.changes_after(applied, batch)?;
        for change in &changes {
            index.apply(writer, change)?;
        }
        applied = changes.last().map_or(applied, |c| c.seq);
        let caught_up = changes.len() < batch;
        if applied > committed && (caught_up || since_commit.elapsed() >= MAX_UNCOMMITTED) {
            index.commit(writer, applied)?;
            committed = applied;
            since_commit = Instant::now();
            if let Some(p) = progress.as_deref_mut() {
                p(committed);
            }
        }
        if caught_up {
            return Ok(committed);
        }
    }
}

/// Rebuilds the index from the whole feed: takes the index's writer (so it fails while a
/// server holds it), drops every document, and re-adds every message. `progress` is told
/// the sequence reached after each batch; the last sequence is `feed.last_seq()`.
pub fn rebuild(
    index: &SearchIndex,
    feed: &dyn ChangeFeed,
    progress: &mut dyn FnMut(i64),
) -> StoreResult<i64> {
    let mut writer = index.writer()?;
    writer.delete_all_documents().map_err(crate::map_err)?;
    index.commit(&mut writer, 0)?;
    catch_up(index, &mut writer, feed, 0, 8192, Some(progress))
}
