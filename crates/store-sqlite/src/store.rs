//! [`SqliteStore`]: the store the server holds. Writes are jobs handed to the writer thread;
//! reads run on the reader pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chatd_core::error::StoreResult;
use chatd_core::feed::{Hub, STREAM_CAPACITY, Subscription};
use chatd_core::idempotency::{self, Fingerprint, Idempotent};
use chatd_core::progress::Progress;
use chatd_core::{
    AppName, AppToken, Application, Catalog, Chat, ChatNumber, Feed, IdempotencyKey, Ingest, Listed, Message,
    MessageBody, MessageNumber, NumberBound, Page, StoreError,
};
use rusqlite::Connection;
use tokio::sync::{mpsc::error::TrySendError, oneshot};

use crate::connection::{map_err, open_writer};
use crate::readers::{LookupStats, Readers};
use chatd_core::stats::{WriterStats, WriterStatsSnapshot};

use crate::queries::RetryKey;
use crate::writer::{self, JobSender, Op, Outcomes, WriteCtx, WriteFault};
use crate::{DB_FILE, Durability, queries, schema};

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the database file; created if missing.
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Jobs the write queue holds before answering `Overloaded`.
    pub queue_capacity: usize,
    /// Most jobs one transaction carries.
    pub max_batch: usize,
    /// Concurrent list queries on the blocking pool; and, apart, up to as many lookups by key
    /// while lookups run on the pool (while they are quick they run on the caller's thread).
    pub readers: usize,
    /// Live events a followed chat keeps for its slowest stream before dropping it.
    pub stream_capacity: usize,
    /// How long an `Idempotency-Key` is honoured after its create (SPEC §8: 24 hours).
    pub idempotency_window: Duration,
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            durability: Durability::Full,
            queue_capacity: 1024,
            max_batch: 512,
            readers: 4,
            stream_capacity: STREAM_CAPACITY,
            idempotency_window: idempotency::DEFAULT_WINDOW,
        }
    }
}

/// The embedded store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteStore {
    /// `None` once [`SqliteStore::close`] has begun: later writes answer `Unavailable`.
    sender: RwLock<Option<JobSender>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Readers,
    stats: Arc<WriterStats>,
    /// The last change sequence committed; the search indexer waits on it.
    committed: Arc<Progress>,
    /// Set while writes fail for want of storage.
    fault: Arc<WriteFault>,
    /// Live events of committed messages, for streams.
    hub: Arc<Hub>,
    /// Where the database lives, to measure its free space.
    data_dir: PathBuf,
    /// How long an `Idempotency-Key` is honoured.
    idempotency_window: Duration,
}

/// After writes failed for want of storage, the free space `/ready` waits for before it says
/// writes are accepted again: room for one request of the largest default size (1 MiB).
const FREE_SPACE_TO_RESUME: u64 = 1024 * 1024;

impl SqliteStore {
    /// Opens (or creates) the database, migrates it, and starts the writer thread.
    pub fn open(options: &Options) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&options.data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", options.data_dir.display()))
        })?;
        let path = options.data_dir.join(DB_FILE);
        let mut db = open_writer(&path, options.durability).map_err(map_err)?;
        schema::migrate(&mut db).map_err(map_err)?;
        let stats = Arc::new(WriterStats::default());
        let committed = Arc::new(Progress::default());
        let fault = Arc::new(WriteFault::default());
        let hub = Hub::new(options.stream_capacity);
        let outcomes = Outcomes {
            stats: stats.clone(),
            committed: committed.clone(),
            fault: fault.clone(),
            hub: hub.clone(),
        };
        let (sender, handle) =
            writer::spawn(db, options.queue_capacity.max(1), options.max_batch.max(1), outcomes)
                .map_err(StoreError::internal)?;
        Ok(SqliteStore {
            sender: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            readers: Readers::new(path, options.readers.max(1)),
            stats,
            committed,
            fault,
            hub,
            data_dir: options.data_dir.clone(),
            idempotency_window: options.idempotency_window,
        })
    }

    /// The last change sequence committed, published after every commit.
    pub fn committed(&self) -> Arc<Progress> {
        self.committed.clone()
    }

    /// What the writer has done so far.
    pub fn writer_stats(&self) -> WriterStatsSnapshot {
        self.stats.snapshot()
    }

    /// Lookups by key run on the calling thread and on the blocking pool so far.
    /// Writes waiting in the queue for the writer to take them into a batch.
    pub fn queued(&self) -> usize {
        let guard = self.sender.read().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().map_or(0, |s| s.max_capacity() - s.capacity())
    }

    pub fn lookup_stats(&self) -> LookupStats {
        self.readers.lookup_stats()
    }

    /// Stops taking writes, lets the writer commit everything already queued, and waits
    /// for it to exit. Safe to call more than once.
    pub async fn close(&self) {
        drop(self.sender.write().unwrap_or_else(PoisonError::into_inner).take());
        let handle = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            let joined = tokio::task::spawn_blocking(move || handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the writer thread ended abnormally");
            }
        }
    }

    /// Hands a job to the writer and waits for its committed result.
    async fn submit<T, F>(&self, run: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriteCtx) -> StoreResult<T> + Send + 'static,
    {
        let answer = self.enqueue(run)?;
        answer.await.map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }

    /// Puts a job in the writer's queue without waiting: jobs enqueued one after another
    /// are applied in that order. Returns where the committed result will arrive.
    fn enqueue<T, F>(&self, run: F) -> StoreResult<oneshot::Receiver<StoreResult<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriteCtx) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let guard = self.sender.read().unwrap_or_else(PoisonError::into_inner);
        let sender = guard.as_ref().ok_or_else(shutting_down)?;
        sender.try_send(Box::new(Op::new(run, reply))).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Overloaded,
            TrySendError::Closed(_) => shutting_down(),
        })?;
        Ok(answer)
    }
}

fn shutting_down() -> StoreError {
    StoreError::Unavailable("chatd is shutting down".into())
}

#[async_trait]
impl Ingest for SqliteStore {
    async fn create_application(
        &self,
        name: AppName,
        key: Option<IdempotencyKey>,
    ) -> StoreResult<Application> {
        let token = AppToken::generate().map_err(|e| StoreError::internal(e.to_string()))?;
        let key = Idempotent::new(key, || Fingerprint::application(&name));
        let window = self.idempotency_window;
        self.submit(move |db, ctx| {
            let key = key.as_ref().map(|key| RetryKey { key, window });
            queries::insert_application(db, ctx, token, name, key)
        })
        .await
    }

    async fn rename_application(&self, token: AppToken, name: AppName) -> StoreResult<Application> {
        self.submit(move |db, ctx| queries::rename_application(db, ctx, &token, &name)).await
    }

    async fn create_chat(&self, token: AppToken, key: Option<IdempotencyKey>) -> StoreResult<ChatNumber> {
        let key = Idempotent::new(key, Fingerprint::chat);
        let window = self.idempotency_window;
        self.submit(move |db, ctx| {
            let key = key.as_ref().map(|key| RetryKey { key, window });
            queries::insert_chat(db, ctx, &token, key)
        })
        .await
    }

    async fn create_message(
        &self,
        token: AppToken,
        chat: ChatNumber,
        body: MessageBody,
        key: Option<IdempotencyKey>,
    ) -> StoreResult<MessageNumber> {
        let key = Idempotent::new(key, || Fingerprint::message(chat, &body));
        let window = self.idempotency_window;
        self.submit(move |db, ctx| {
            let key = key.as_ref().map(|key| RetryKey { key, window });
            queries::insert_message(db, ctx, &token, chat, &body, key)
        })
        .await
    }

    async fn edit_message(
        &self,
        token: AppToken,
        chat: ChatNumber,
        number: MessageNumber,
        body: MessageBody,
    ) -> StoreResult<Message> {
        self.submit(move |db, ctx| queries::update_message(db, ctx, &token, chat, number, &body)).await
    }

    async fn sweep_idempotency_keys(&self) -> StoreResult<usize> {
        let window = self.idempotency_window;
        self.submit(move |db, ctx| queries::sweep_keys(db, ctx, window, idempotency::SWEEP_LIMIT)).await
    }

    async fn ready(&self) -> StoreResult<()> {
        {
            let guard = self.sender.read().unwrap_or_else(PoisonError::into_inner);
            match guard.as_ref() {
                Some(sender) if !sender.is_closed() => {}
                _ => return Err(shutting_down()),
            }
        }
        if let Some(why) = self.fault.get() {
            // The last batch failed (e.g. the disk was full). Rather than wait for a client's
            // write to find out whether that is over: first the free space (a one-page probe
            // fits long before a real batch does), then a commit, which clears the fault.
            let dir = self.data_dir.clone();
            let available = tokio::task::spawn_blocking(move || fs4::available_space(dir))
                .await
                .map_err(StoreError::internal)?
                // When the space cannot be measured, the probe commit alone decides.
                .unwrap_or(u64::MAX);
            if available < FREE_SPACE_TO_RESUME {
                return Err(StoreError::Unavailable(format!("{why}; {available} bytes free")));
            }
            self.submit(|db, _| queries::probe_write(db)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Feed for SqliteStore {
    async fn subscribe(&self, token: AppToken, chat: ChatNumber) -> StoreResult<Subscription> {
        let key = self.readers.lookup(move |db| queries::chat_key(db, &token, chat)).await?;
        let subscription = self.hub.subscribe(key);
        // A batch the writer is applying now decided, job by job, that nobody followed the
        // chat, and will publish nothing for it. Wait for it to commit, so that what it
        // wrote is in whatever the caller reads next; every later batch sees this
        // subscription.
        self.submit(|_, _| Ok(())).await?;
        Ok(subscription)
    }
}

#[async_trait]
impl Catalog for SqliteStore {
    async fn application(&self, token: AppToken) -> StoreResult<Application> {
        self.readers.lookup(move |db| queries::application(db, &token)).await
    }

    async fn applications(&self, page: Page<AppToken>) -> StoreResult<Listed<Application>> {
        self.readers.run(move |db| queries::applications(db, &page)).await
    }

    async fn chat(&self, token: AppToken, chat: ChatNumber) -> StoreResult<Chat> {
        self.readers.lookup(move |db| queries::chat(db, &token, chat)).await
    }

    async fn chats(&self, token: AppToken, page: Page<NumberBound>) -> StoreResult<Listed<Chat>> {
        self.readers.run(move |db| queries::chats(db, &token, &page)).await
    }

    async fn message(
        &self,
        token: AppToken,
        chat: ChatNumber,
        number: MessageNumber,
    ) -> StoreResult<Message> {
        self.readers.lookup(move |db| queries::message(db, &token, chat, number)).await
    }

    async fn messages(
        &self,
        token: AppToken,
        chat: ChatNumber,
        page: Page<NumberBound>,
    ) -> StoreResult<Listed<Message>> {
        self.readers.run(move |db| queries::messages(db, &token, chat, &page)).await
    }

    async fn ready(&self) -> StoreResult<()> {
        self.readers.probe(|db| db.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chatd_core::AppName;

    use super::*;

    type TestJob<T> = Box<dyn FnOnce(&Connection, &mut WriteCtx) -> StoreResult<T> + Send>;

    /// Holds the writer inside a job of its own, queues `jobs` in order meanwhile, then lets
    /// it go: the writer finds them all waiting and takes them into one batch, after the
    /// holder's. Returns the jobs' answers.
    async fn one_batch<T: Send + 'static>(store: &SqliteStore, jobs: Vec<TestJob<T>>) -> Vec<StoreResult<T>> {
        let (holding, held) = oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = store
            .enqueue(move |_, _| {
                let _ = holding.send(());
                let _ = released.recv();
                Ok(())
            })
            .unwrap();
        // The writer runs the holder: its batch is closed, so the jobs wait for the next.
        held.await.unwrap();
        let answers: Vec<_> = jobs.into_iter().map(|job| store.enqueue(job).unwrap()).collect();
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap());
        }
        results
    }

    fn app_names(store: &SqliteStore) -> Vec<String> {
        let db = Connection::open(store.data_dir.join(DB_FILE)).unwrap();
        let mut s = db.prepare("SELECT name FROM applications ORDER BY id").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn insert(name: &'static str) -> TestJob<i64> {
        Box::new(move |db, ctx| {
            let token = AppToken::generate().unwrap();
            queries::insert_application(db, ctx, token, AppName::parse(name.to_owned()).unwrap(), None)?;
            Ok(ctx.next_seq())
        })
    }

    /// A stream that subscribes while the writer is between applying a create and committing
    /// it (the create saw nobody following the chat, so publishes nothing) still gets it:
    /// subscribing waits for that batch, so the create is in what the stream reads next.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscription_made_while_a_batch_is_applied_misses_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&Options::new(dir.path())).unwrap());
        let app = store.create_application(AppName::parse("app".into()).unwrap(), None).await.unwrap();
        let chat = store.create_chat(app.token.clone(), None).await.unwrap();

        // One batch: the create, then a job that stops the writer before the COMMIT.
        let (applied, is_applied) = oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let body = MessageBody::parse("in flight".into(), 100).unwrap();
        let token = app.token.clone();
        let jobs: Vec<TestJob<()>> = vec![
            Box::new(move |db, ctx| queries::insert_message(db, ctx, &token, chat, &body, None).map(drop)),
            Box::new(move |_, _| {
                let _ = applied.send(());
                let _ = released.recv();
                Ok(())
            }),
        ];
        let batch = tokio::spawn({
            let store = store.clone();
            async move { one_batch(&store, jobs).await }
        });
        is_applied.await.unwrap();

        // What a stream does: subscribe, read the chat, then follow the subscription.
        let stream = tokio::spawn({
            let (store, token) = (store.clone(), app.token.clone());
            async move {
                let subscription = store.subscribe(token.clone(), chat).await.unwrap();
                (subscription, store.chat(token, chat).await.unwrap().messages_count)
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        release.send(()).unwrap();
        let (mut subscription, count) = stream.await.unwrap();
        for answer in batch.await.unwrap() {
            answer.unwrap();
        }
        let live = tokio::time::timeout(Duration::from_millis(500), subscription.recv()).await;
        assert!(count == 1 || live.is_ok(), "the create is neither in the chat's count nor an event");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_fails_before_writing_leaves_its_batch_and_the_change_sequence_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&Options::new(dir.path())).unwrap();
        let refused: TestJob<i64> = Box::new(|_, ctx| {
            ctx.next_seq();
            Err(StoreError::ApplicationNotFound)
        });
        let answers = one_batch(&store, vec![insert("first"), refused, insert("third")]).await;
        let stats = store.writer_stats();
        assert_eq!((stats.commits, stats.largest_batch), (2, 3), "the holder's batch, then the jobs' one");
        assert_eq!(answers[0].as_ref().ok(), Some(&1));
        assert!(matches!(answers[1], Err(StoreError::ApplicationNotFound)), "{:?}", answers[1]);
        // The refused job's sequence number was given back: the sequence stays dense.
        assert_eq!(answers[2].as_ref().ok(), Some(&2));
        assert_eq!(app_names(&store), ["first", "third"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_fails_after_writing_rolls_back_its_whole_batch_and_the_writer_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&Options::new(dir.path())).unwrap();
        let half_written: TestJob<i64> = Box::new(|db, ctx| {
            let token = AppToken::generate().unwrap();
            queries::insert_application(db, ctx, token, AppName::parse("half".to_owned()).unwrap(), None)?;
            Err(StoreError::Unavailable("failed midway".into()))
        });
        let answers = one_batch(&store, vec![insert("first"), half_written, insert("third")]).await;
        // "first" alone would have committed: all three failing shows they shared the batch.
        for answer in &answers {
            assert!(
                matches!(answer, Err(StoreError::Unavailable(why)) if why == "failed midway"),
                "{answer:?}"
            );
        }
        assert!(app_names(&store).is_empty(), "nothing of the batch was committed");
        assert_eq!(store.submit(insert("after")).await.unwrap(), 1, "the sequence resumes where it was");
        assert_eq!(app_names(&store), ["after"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_is_answered_while_long_reads_hold_every_reader_slot_inline_and_pooled() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(dir.path());
        options.readers = 1;
        let store = Arc::new(SqliteStore::open(&options).unwrap());
        let token = AppToken::generate().unwrap();
        let kept = token.clone();
        store
            .submit(move |db, ctx| {
                queries::insert_application(db, ctx, kept, AppName::parse("kept".into()).unwrap(), None)
            })
            .await
            .unwrap();

        // A long read takes the only slot and keeps it until released.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let long = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .readers
                    .run(move |_| {
                        let _ = started_tx.send(());
                        let _ = release_rx.recv();
                        Ok(())
                    })
                    .await
            }
        });
        started_rx.await.unwrap();
        // The slot really is taken: a list page waits for it...
        let waiting =
            tokio::time::timeout(Duration::from_millis(200), store.applications(Page::default())).await;
        assert!(waiting.is_err(), "a list page ran while the only reader slot was held");
        // ...while a lookup by key does not.
        let found = tokio::time::timeout(Duration::from_secs(5), store.application(token.clone()))
            .await
            .expect("the lookup waited for the long read")
            .unwrap();
        assert_eq!((found.token, found.name.as_str()), (token.clone(), "kept"));
        let one: ChatNumber = "1".parse().unwrap();
        let chat = tokio::time::timeout(Duration::from_secs(5), store.chat(token.clone(), one))
            .await
            .expect("the chat lookup waited for the long read");
        assert!(matches!(chat, Err(StoreError::ChatNotFound)), "{chat:?}");
        let message = tokio::time::timeout(
            Duration::from_secs(5),
            store.message(token.clone(), one, "1".parse().unwrap()),
        )
        .await
        .expect("the message lookup waited for the long read");
        assert!(matches!(message, Err(StoreError::ChatNotFound)), "{message:?}");
        assert_eq!(store.lookup_stats().inline + store.lookup_stats().pooled, 3);

        // Whichever way the pace sends it (set here, as lookups' timing varies by machine): a
        // quick lookup runs on this thread, one that reads the disk on the blocking pool,
        // apart from list pages; both answer while the long read holds the only list slot.
        for (took, inline, pooled) in [(1, 1, 0), (300, 0, 1)] {
            for _ in 0..100 {
                store.readers.pace().record(Duration::from_micros(took));
            }
            let before = store.lookup_stats();
            let found = tokio::time::timeout(Duration::from_secs(5), store.application(token.clone()))
                .await
                .expect("the lookup waited for the long read")
                .unwrap();
            assert_eq!(found.name.as_str(), "kept");
            let after = store.lookup_stats();
            assert_eq!(
                (after.inline - before.inline, after.pooled - before.pooled),
                (inline, pooled),
                "{took} µs"
            );
        }

        release_tx.send(()).unwrap();
        long.await.unwrap().unwrap();
        let listed = store.applications(Page::default()).await.unwrap();
        assert_eq!(listed.items.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_error_fails_its_batch_even_when_it_wrote_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&Options::new(dir.path())).unwrap();
        let broken: TestJob<i64> = Box::new(|db, _| {
            db.execute("INSERT INTO no_such_table VALUES (1)", []).map_err(map_err)?;
            Ok(0)
        });
        let answers = one_batch(&store, vec![insert("first"), broken, insert("third")]).await;
        assert!(answers.iter().all(Result::is_err), "{answers:?}");
        assert!(app_names(&store).is_empty(), "nothing of the batch was committed");
    }
}
