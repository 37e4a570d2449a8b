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
                    let mut at = Position::new(start, options.min_commit_interval);
                    // Published as indexed: the last commit, or beyond it when the sequences
                    // after it have no rows (a rolled-back write).
                    let mut done = start;
                    loop {
                        let stopping = stop.load(Ordering::Acquire);
                        let pending = at.applied > at.committed;
                        let wait = if stopping {
                            Duration::ZERO
                        } else if pending {
                            options.min_commit_interval.saturating_sub(at.last_commit.elapsed())
                        } else {
                            options.poll_interval
                        };
                        let target = committed.wait_beyond(at.applied.max(done), wait);
                        if stopping && target <= done && !pending {
                            break;
                        }
                        let mut published = |seq| indexed.publish(seq);
                        let feed = feed.as_ref();
                        let batch = options.read_batch;
                        // Documents are added as their rows commit, so that indexing work is
                        // spread over time; the commit that makes them searchable waits for
                        // the interval (none when stopping).
                        let settle = if stopping { Duration::ZERO } else { options.min_commit_interval };
                        let caught_up = match &mut writer {
                            Some(w) => {
                                catch_up(&index, w, feed, &mut at, batch, settle, Some(&mut published))
                            }
                            // A failure may have come after a commit, from the reader's
                            // reload: reload before resuming, or that commit would be
                            // published without being searchable.
                            None => index.reload().and_then(|()| index.writer()).and_then(|w| {
                                let w = writer.insert(w);
                                catch_up(&index, w, feed, &mut at, batch, settle, Some(&mut published))
                            }),
                        };
                        match caught_up {
                            Ok(()) if at.applied == at.committed => {
                                // Every change up to `target` was committed before the feed
                                // was read, so all of them are covered (a sequence with no
                                // row is simply covered too).
                                done = done.max(at.committed).max(target);
                                indexed.publish(done);
                            }
                            Ok(()) => {
                                // Applied, not yet committed: at most `APPLY_EVERY` between
                                // reads of the feed, however often the writer commits.
                                std::thread::sleep(APPLY_EVERY);
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
                                let resume = index.indexed_seq().unwrap_or(at.committed);
                                at = Position::new(resume, options.min_commit_interval);
                                done = resume;
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

/// Least time between two reads of the feed while documents wait for their commit.
const APPLY_EVERY: Duration = Duration::from_millis(10);

/// How far the index writer has got in the change sequence.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// The last change added to the writer.
    applied: i64,
    /// The last change committed (and so searchable).
    committed: i64,
    last_commit: Instant,
}

impl Position {
    /// At `seq`, committed, with a commit due at once.
    fn new(seq: i64, interval: Duration) -> Self {
        let last_commit = Instant::now().checked_sub(interval).unwrap_or_else(Instant::now);
        Position { applied: seq, committed: seq, last_commit }
    }
}

/// Applies every change after `at.applied`. Commits when caught up if `settle` has passed
/// since the last commit, and during a long catch-up at least every [`MAX_UNCOMMITTED`].
/// `progress` sees each commit's sequence.
fn catch_up(
    index: &SearchIndex,
    writer: &mut tantivy::IndexWriter,
    feed: &dyn ChangeFeed,
    at: &mut Position,
    batch: usize,
    settle: Duration,
    mut progress: Option<&mut dyn FnMut(i64)>,
) -> StoreResult<()> {
    loop {
        let changes = feed.changes_after(at.applied, batch)?;
        for change in &changes {
            index.apply(writer, change)?;
        }
        at.applied = changes.last().map_or(at.applied, |c| c.seq);
        let caught_up = changes.len() < batch;
        let due = if caught_up { settle } else { MAX_UNCOMMITTED };
        if at.applied > at.committed && at.last_commit.elapsed() >= due {
            index.commit(writer, at.applied)?;
            at.committed = at.applied;
            at.last_commit = Instant::now();
            if let Some(p) = progress.as_deref_mut() {
                p(at.committed);
            }
        }
        if caught_up {
            return Ok(());
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
    let mut at = Position::new(0, Duration::ZERO);
    catch_up(index, &mut writer, feed, &mut at, 8192, Duration::ZERO, Some(progress))?;
    Ok(at.committed)
}

/// The index's writer, held by a command that writes the database offline (`chatd import`)
/// from its start to its end: a server cannot start on the directory meanwhile (it needs
/// the writer), nor can `chatd reindex` or another import.
pub struct IndexLock {
    writer: tantivy::IndexWriter,
}

impl std::fmt::Debug for IndexLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexLock").finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Takes the index's writer; fails (`Unavailable`) while a server or command holds it.
    pub fn lock(&self) -> StoreResult<IndexLock> {
        Ok(IndexLock { writer: self.writer()? })
    }
}

/// Indexes every change after what the index covers, and commits; returns the sequence
/// covered. `progress` is told the sequence reached at each commit.
pub fn catch_up_offline(
    index: &SearchIndex,
    lock: &mut IndexLock,
    feed: &dyn ChangeFeed,
    progress: &mut dyn FnMut(i64),
) -> StoreResult<i64> {
    let mut at = Position::new(index.indexed_seq()?, Duration::ZERO);
    catch_up(index, &mut lock.writer, feed, &mut at, 8192, Duration::ZERO, Some(progress))?;
    Ok(at.committed)
}
