//! The single writer: one thread owns the only read-write connection. Requests hand it jobs
//! through a bounded channel; it applies every job waiting at that moment inside one
//! transaction (group commit), commits once, and only then answers each job. Numbers are
//! assigned here, so they cannot race, and a reply is never sent for an uncommitted row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use chatd_core::feed::{ChatEvent, EventKind, Hub};
use chatd_core::progress::Progress;
use chatd_core::search::ChatKey;
use chatd_core::stats::WriterStats;
use chatd_core::{Message, StoreError, Timestamp, error::StoreResult};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::connection::map_err;

/// What a job sees while it runs: the batch's clock, the change sequence to stamp rows, and
/// the live events the batch publishes once it has committed.
#[derive(Debug)]
pub(crate) struct WriteCtx {
    pub now: Timestamp,
    last_seq: i64,
    /// Where events go; `None` where nobody can follow (the bulk loader).
    hub: Option<Arc<Hub>>,
    events: Vec<(ChatKey, ChatEvent)>,
}

impl WriteCtx {
    /// A context whose change sequence continues after `last_seq`.
    pub fn new(now: Timestamp, last_seq: i64, hub: Option<Arc<Hub>>) -> Self {
        WriteCtx { now, last_seq, hub, events: Vec::new() }
    }

    /// Records an event of the chat whose row id is `chat`, if anybody follows it; `message`
    /// is only built then.
    pub fn event(&mut self, chat: i64, kind: EventKind, message: impl FnOnce() -> Message) {
        let chat = ChatKey(chat);
        if self.hub.as_ref().is_some_and(|hub| hub.watches(chat)) {
            self.events.push((chat, ChatEvent::new(kind, message())));
        }
    }

    /// Hands the batch's events to the hub, each chat's in order. Only after the commit.
    fn publish(&mut self) {
        let Some(hub) = &self.hub else { return };
        let mut by_chat: HashMap<ChatKey, Vec<ChatEvent>> = HashMap::new();
        for (chat, event) in self.events.drain(..) {
            by_chat.entry(chat).or_default().push(event);
        }
        for (chat, events) in by_chat {
            hub.publish(chat, events);
        }
    }

    /// The next value of the change sequence; strictly increasing in commit order.
    pub fn next_seq(&mut self) -> i64 {
        self.last_seq += 1;
        self.last_seq
    }
}

/// A unit of work for the writer, type-erased so that one channel carries every kind.
///
/// Jobs run without a savepoint of their own (one costs a copy of every page the job
/// touches): every job checks what it needs before its first write, so a job refused by
/// those checks has written nothing. A job that fails after writing, or on an error of
/// SQLite's own (disk full, I/O), is reported through [`Job::apply`]'s result, and the
/// whole batch is rolled back.
pub(crate) trait Job: Send {
    /// Runs inside the batch transaction. `Err` means the job failed after writing part of
    /// its rows, or on an error of SQLite's own: the batch must not commit.
    fn apply(&mut self, db: &Connection, ctx: &mut WriteCtx) -> StoreResult<()>;
    /// Answers the requester: the job's own result if the batch committed, else `failure`.
    fn answer(self: Box<Self>, failure: Option<&StoreError>);
}

/// A job made of a closure and the channel its caller waits on.
pub(crate) struct Op<T, F> {
    run: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Op<T, F> {
    pub fn new(run: F, reply: oneshot::Sender<StoreResult<T>>) -> Self {
        Op { run: Some(run), result: None, reply }
    }
}

impl<T, F> Job for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut WriteCtx) -> StoreResult<T> + Send,
{
    fn apply(&mut self, db: &Connection, ctx: &mut WriteCtx) -> StoreResult<()> {
        let Some(run) = self.run.take() else { return Ok(()) };
        let (seq_before, events_before) = (ctx.last_seq, ctx.events.len());
        let changes_before = db.total_changes();
        let result = run(db, ctx);
        let outcome = match &result {
            Ok(_) => Ok(()),
            // A failed statement's own rows are undone by SQLite; only earlier, completed
            // statements of the job count here. An error from the database itself (rather
            // than a check of the job's) fails the batch even when nothing counted: after
            // some errors (a corrupt page) SQLite cannot promise the statement left nothing.
            Err(e) if db.total_changes() != changes_before || from_database(e) => Err(clone_failure(e)),
            Err(_) => {
                // Nothing of it was written: neither is its place in the change sequence,
                // which must name only committed rows (the indexer waits for every one).
                ctx.last_seq = seq_before;
                ctx.events.truncate(events_before);
                Ok(())
            }
        };
        self.result = Some(result);
        outcome
    }

    fn answer(self: Box<Self>, failure: Option<&StoreError>) {
        let result = match (failure, self.result) {
            (None, Some(result)) => result,
            (Some(e), _) => Err(clone_failure(e)),
            (None, None) => Err(StoreError::internal("job was never applied")),
        };
        // The requester may have gone away (client disconnected); its write still stands.
        let _ = self.reply.send(result);
    }
}

/// Whether an error came from SQLite rather than from a job's own checks (which all run
/// before its first write).
fn from_database(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Internal(_))
}

fn clone_failure(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        other => StoreError::internal(other.to_string()),
    }
}

/// Why the last batch could not be written, while that lasts: set when a batch fails for
/// want of storage (disk full, I/O error), cleared by the next batch that commits. `/ready`
/// reports it instead of claiming that writes are accepted.
#[derive(Debug, Default)]
pub(crate) struct WriteFault(Mutex<Option<String>>);

impl WriteFault {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, why: Option<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = why;
    }
}

pub(crate) type JobSender = mpsc::Sender<Box<dyn Job>>;

/// What the writer tells the rest of the store after each batch.
#[derive(Debug, Clone)]
pub(crate) struct Outcomes {
    pub stats: Arc<WriterStats>,
    /// The last change sequence committed.
    pub committed: Arc<Progress>,
    pub fault: Arc<WriteFault>,
    /// Live events of the committed rows.
    pub hub: Arc<Hub>,
}

/// Starts the writer thread on `db`. It runs until every sender is dropped, then applies
/// what is still queued and exits.
pub(crate) fn spawn(
    db: Connection,
    capacity: usize,
    max_batch: usize,
    outcomes: Outcomes,
) -> std::io::Result<(JobSender, JoinHandle<()>)> {
    let last_seq: i64 = db
        .query_row("SELECT coalesce(max(change_seq), 0) FROM messages", [], |r| r.get(0))
        .map_err(std::io::Error::other)?;
    outcomes.committed.publish(last_seq);
    let (tx, rx) = mpsc::channel(capacity);
    let handle = std::thread::Builder::new()
        .name("chatd-writer".into())
        .spawn(move || run(db, rx, max_batch, last_seq, &outcomes))?;
    Ok((tx, handle))
}

fn run(
    db: Connection,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    mut last_seq: i64,
    Outcomes { stats, committed, fault, hub }: &Outcomes,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let mut ctx = WriteCtx::new(Timestamp::now(), last_seq, Some(hub.clone()));
        let started = Instant::now();
        let failure = commit_batch(&db, &mut batch, &mut ctx).err();
        match &failure {
            None => {
                last_seq = ctx.last_seq;
                stats.record(size, started.elapsed());
                committed.publish(last_seq);
                ctx.publish();
                fault.set(None);
                tracing::trace!(size, "committed batch");
            }
            Some(e) => {
                tracing::error!(error = %e, size, "batch failed; nothing of it was written");
                if let StoreError::Unavailable(why) = e {
                    fault.set(Some(why.clone()));
                }
            }
        }
        for job in batch.drain(..) {
            job.answer(failure.as_ref());
        }
    }
    tracing::debug!(stats = ?stats.snapshot(), "writer stopped");
    // Streams end; their clients resume from storage when chatd is back.
    hub.close_all();
}

fn commit_batch(db: &Connection, batch: &mut [Box<dyn Job>], ctx: &mut WriteCtx) -> StoreResult<()> {
    db.prepare_cached("BEGIN IMMEDIATE").and_then(|mut s| s.execute([])).map_err(map_err)?;
    for job in batch.iter_mut() {
        let applied = job.apply(db, ctx);
        if db.is_autocommit() {
            // SQLite ended the transaction by itself (disk full, I/O error).
            return Err(StoreError::Unavailable(
                "the database rejected the write; nothing was written".into(),
            ));
        }
        if let Err(e) = applied {
            let _ = db.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    let committed = db.prepare_cached("COMMIT").and_then(|mut s| s.execute([]));
    if let Err(e) = committed {
        if !db.is_autocommit() {
            let _ = db.execute_batch("ROLLBACK");
        }
        return Err(map_err(e));
    }
    Ok(())
}
