//! The servers under test, each on a runtime of its own (so the load generator's runtime
//! is the same for all): chatd, built in-process; a bare axum baseline that accepts the same
//! requests and answers same-sized JSON without storing anything; and the durable floor, the
//! baseline's message create plus the least a durable store must do for it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use axum::Json;
use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chatd_core::MessageNumber;
use chatd_core::error::StoreResult;
use chatd_core::progress::Progress;
use chatd_core::search::{Change, ChangeFeed, ChatKey};
use chatd_search_tantivy::{Indexer, IndexerOptions, SearchIndex};
use chatd_server::config::Synchronous;
use chatd_server::{Application, Config};
use chatd_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A server running on its own threads.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// chatd only: its store (writer statistics, committed sequence).
    pub chatd: Option<Arc<SqliteStore>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// A thread that ends after the server's: the floor's writer (and its indexer).
    writer: Option<JoinHandle<()>>,
    /// A server with a search index: how far its change sequence is committed, and indexed.
    progress: Option<(Arc<Progress>, Arc<Progress>)>,
}

impl Running {
    /// A server this benchmark did not start (and does not stop).
    pub fn external(addr: SocketAddr) -> Self {
        Running { addr, chatd: None, stop: None, thread: None, writer: None, progress: None }
    }

    /// Stops the server and waits for it (chatd commits and indexes what it accepted).
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for t in [self.thread.take(), self.writer.take()].into_iter().flatten() {
            let _ = t.join();
        }
    }

    /// Waits until the search index covers every commit so far; returns how long it took.
    pub fn wait_indexed(&self) -> std::time::Duration {
        let started = std::time::Instant::now();
        if let Some((committed, indexed)) = &self.progress {
            let target = committed.get();
            while indexed.get() < target {
                indexed.wait_beyond(indexed.get(), std::time::Duration::from_millis(200));
            }
        }
        started.elapsed()
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("server")
        .enable_all()
        .build()
        .expect("a runtime")
}

/// chatd with its defaults (but `synchronous`) on `dir`, API on port 0.
pub fn start_chatd(dir: &Path, opts: &crate::Opts) -> anyhow::Result<Running> {
    let workers = opts.server_threads;
    let mut config = Config::ephemeral(dir);
    config.synchronous = opts.synchronous;
    config.index_commit_interval = opts.index_commit_interval;
    config.creation_listen = chatd_server::config::Listen::Off;
    config.log = "warn".into();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime(workers).block_on(async move {
            let app = match Application::build(config).await {
                Ok(app) => app,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok((app.api_addr(), app.store(), app.indexed())));
            if let Err(e) = app.run_until(async move { drop(stop_rx.await) }).await {
                eprintln!("chatd stopped with an error: {e:#}");
            }
        });
    });
    let (addr, store, indexed) = ready_rx.recv()??;
    Ok(Running {
        addr,
        progress: Some((store.committed(), indexed)),
        chatd: Some(store),
        stop: Some(stop_tx),
        thread: Some(thread),
        writer: None,
    })
}

/// The bare baseline: same routes and request parsing (JSON), same-sized answers, no storage.
pub fn start_baseline(workers: usize, page: Value) -> anyhow::Result<Running> {
    let counter = Arc::new(AtomicI64::new(0));
    let message = json!({"number": 1, "body": "ka lo mi ne ru ta shi po", "created_at": "2026-11-28T01:43:51.341Z", "updated_at": "2026-11-28T01:43:51.341Z"});
    let router = axum::Router::new()
        .route(
            "/applications/{token}/chats",
            post({
                let counter = counter.clone();
                move |UrlPath(token): UrlPath<String>| async move {
                    let number = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    (StatusCode::CREATED, Json(json!({"number": number, "access_token": token})))
                }
            }),
        )
        .route(
            "/applications/{token}/chats/{chat}/messages",
            post(move |UrlPath((token, chat)): UrlPath<(String, i64)>, Json(body): Json<Value>| async move {
                let _ = body.get("body");
                let number = counter.fetch_add(1, Ordering::Relaxed) + 1;
                (
                    StatusCode::CREATED,
                    Json(json!({"number": number, "chat_number": chat, "access_token": token})),
                )
            })
            .get(move || async move { Json(page.clone()) }),
        )
        .route(
            "/applications/{token}/chats/{chat}/messages/{m}",
            get(move || async move { Json(message.clone()) }),
        );
    serve_router(workers, router)
}

/// Serves `router` on a runtime of `workers` threads at a free port of 127.0.0.1.
fn serve_router(workers: usize, router: axum::Router) -> anyhow::Result<Running> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime(workers).block_on(async move {
            let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(listener.local_addr());
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { drop(stop_rx.await) })
                .await;
        });
    });
    let addr = ready_rx.recv()??;
    Ok(Running { addr, chatd: None, stop: Some(stop_tx), thread: Some(thread), writer: None, progress: None })
}

/// One create handed to the floor's writer: the chat's key and the body, and where to answer.
type FloorJob = ((String, i64), String, oneshot::Sender<Option<i64>>);

/// What the floor's writer does with each batch of creates before it answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorStore {
    /// Nothing: the hand-off to the writer thread and back alone.
    HandOff,
    /// Each message appended to a file as a line, one `fdatasync` per batch.
    File,
    /// One insert per message into SQLite in WAL mode with this `synchronous` (`FULL`: an
    /// fsync per commit), one transaction per batch. The durable floor proper.
    Sqlite(Synchronous),
    /// [`FloorStore::Sqlite`], and every committed message then indexed for search by
    /// chatd's own index and indexer thread (`chatd-search-tantivy`, chatd's defaults), fed
    /// from memory instead of a change table: what the product's prescribed parts (axum,
    /// SQLite written by one group-committing thread, tantivy) cost together, without
    /// chatd's lookups, counts and change feed.
    /// With `synchronous=FULL`, chatd's default.
    Indexed,
    /// [`FloorStore::Indexed`] with the leanest tantivy index in place of chatd's: one field
    /// of the body's 3-grams with their positions (tantivy's own n-gram tokenizer), the chat
    /// and the number; no characters, words or message identity, so it cannot answer 1- or
    /// 2-character terms or edits: by design cheaper than any tantivy gram index that could.
    Grams,
}

impl FloorStore {
    /// File name of what it writes under the floor's directory (none for the hand-off).
    pub fn file_name(self) -> Option<&'static str> {
        match self {
            FloorStore::HandOff => None,
            FloorStore::File => Some("floor.log"),
            FloorStore::Sqlite(_) | FloorStore::Indexed | FloorStore::Grams => Some("floor.sqlite3"),
        }
    }

    /// Directory of the search index under the floor's directory, if it keeps one.
    pub fn index_dir(self) -> Option<&'static str> {
        match self {
            FloorStore::Indexed | FloorStore::Grams => Some("index"),
            _ => None,
        }
    }
}

impl std::fmt::Display for FloorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FloorStore::HandOff => "hand-off only",
            FloorStore::File => "file append + fdatasync",
            FloorStore::Sqlite(Synchronous::Normal) => "SQLite, synchronous=NORMAL",
            FloorStore::Sqlite(Synchronous::Full) => "SQLite, synchronous=FULL",
            FloorStore::Indexed => "SQLite, synchronous=FULL, + chatd's search index",
            FloorStore::Grams => "SQLite, synchronous=FULL, + a bare 3-gram index",
        })
    }
}

/// The store a floor's writer thread owns.
enum Sink {
    Nothing,
    File(std::fs::File),
    Sqlite(rusqlite::Connection, Option<Box<FloorIndex>>),
}

/// A search index behind the floor's SQLite: its indexer thread follows a change sequence
/// kept in memory, appended after each commit.
struct FloorIndex {
    feed: Arc<MemoryFeed>,
    committed: Arc<Progress>,
    indexed: Arc<Progress>,
    indexer: FloorIndexer,
    /// Each chat's key for the index, in order of first appearance.
    chats: HashMap<(String, i64), i64>,
}

/// The committed changes the indexer has not covered yet.
#[derive(Default)]
struct MemoryFeed {
    changes: Mutex<VecDeque<Change>>,
    last: AtomicI64,
}

impl ChangeFeed for MemoryFeed {
    fn changes_after(&self, after: i64, limit: usize) -> StoreResult<Vec<Change>> {
        let changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(changes.iter().filter(|c| c.seq > after).take(limit).cloned().collect())
    }

    fn last_seq(&self) -> StoreResult<i64> {
        Ok(self.last.load(Ordering::Acquire))
    }
}

/// The thread that follows a [`FloorIndex`]'s feed.
enum FloorIndexer {
    /// chatd's own.
    Chatd(Indexer),
    /// The bare 3-gram index's: until `stop`, then it indexes what is left.
    Grams { stop: Arc<AtomicBool>, thread: JoinHandle<()> },
}

impl FloorIndex {
    fn open(dir: &Path, store: FloorStore) -> anyhow::Result<FloorIndex> {
        let feed = Arc::new(MemoryFeed::default());
        let committed = Arc::new(Progress::default());
        let indexed = Arc::new(Progress::default());
        let indexer = if store == FloorStore::Grams {
            let stop = Arc::new(AtomicBool::new(false));
            let thread =
                spawn_gram_indexer(dir, feed.clone(), committed.clone(), indexed.clone(), stop.clone())?;
            FloorIndexer::Grams { stop, thread }
        } else {
            let index = Arc::new(SearchIndex::open(dir)?);
            FloorIndexer::Chatd(Indexer::spawn(
                index,
                feed.clone(),
                committed.clone(),
                indexed.clone(),
                IndexerOptions::default(),
            )?)
        };
        Ok(FloorIndex { feed, committed, indexed, indexer, chats: HashMap::new() })
    }

    /// Lets the index cover every commit, then stops its thread.
    fn close(self) {
        match self.indexer {
            FloorIndexer::Chatd(indexer) => indexer.close(),
            FloorIndexer::Grams { stop, thread } => {
                stop.store(true, Ordering::Release);
                self.committed.nudge();
                let _ = thread.join();
            }
        }
    }

    /// Hands a committed batch of `(chat, number, body, rowid)` to the indexer.
    fn committed(&mut self, rows: &[(&(String, i64), i64, &str)], ids: &[i64]) {
        let mut changes = self.feed.changes.lock().unwrap_or_else(PoisonError::into_inner);
        // What the indexer has read is kept until it is committed to the index (a failed
        // index commit reads it again); at most a few commit intervals' worth.
        let indexed = self.indexed.get();
        while changes.front().is_some_and(|c| c.seq <= indexed) {
            changes.pop_front();
        }
        let mut seq = self.feed.last.load(Ordering::Acquire);
        for ((key, number, body), &message) in rows.iter().zip(ids) {
            let next_key = self.chats.len() as i64 + 1;
            let chat = *self.chats.entry((*key).clone()).or_insert(next_key);
            seq += 1;
            changes.push_back(Change {
                seq,
                message,
                chat: ChatKey(chat),
                number: MessageNumber::try_from(*number).expect("numbers start at 1"),
                body: (*body).to_owned(),
                replaces: false,
            });
        }
        self.feed.last.store(seq, Ordering::Release);
        drop(changes);
        self.committed.publish(seq);
    }
}

impl Sink {
    fn open(store: FloorStore, dir: &Path) -> anyhow::Result<Sink> {
        let Some(name) = store.file_name() else { return Ok(Sink::Nothing) };
        let path = dir.join(name);
        Ok(match store {
            FloorStore::HandOff => Sink::Nothing,
            FloorStore::File => Sink::File(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
            FloorStore::Sqlite(_) | FloorStore::Indexed | FloorStore::Grams => {
                let db = rusqlite::Connection::open(path)?;
                db.pragma_update(None, "journal_mode", "WAL")?;
                let synchronous = match store {
                    FloorStore::Sqlite(Synchronous::Normal) => "NORMAL",
                    _ => "FULL",
                };
                db.pragma_update(None, "synchronous", synchronous)?;
                db.execute_batch(
                    "CREATE TABLE messages (
                         id INTEGER PRIMARY KEY, token TEXT NOT NULL, chat INTEGER NOT NULL,
                         number INTEGER NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL,
                         UNIQUE (token, chat, number))",
                )?;
                let index = match store.index_dir() {
                    Some(index) => Some(Box::new(FloorIndex::open(&dir.join(index), store)?)),
                    None => None,
                };
                Sink::Sqlite(db, index)
            }
        })
    }

    /// Stores one batch of `(chat, number, body)`: durable (as the store allows) when it returns.
    fn store(&mut self, rows: &[(&(String, i64), i64, &str)]) -> Result<(), String> {
        match self {
            Sink::Nothing => Ok(()),
            Sink::File(file) => {
                use std::io::Write;
                let mut lines = String::new();
                for ((token, chat), number, body) in rows {
                    // The benchmark's bodies are words and spaces; JSON keeps any other line whole.
                    lines.push_str(&format!("{token}\t{chat}\t{number}\t{}\n", json!(body)));
                }
                file.write_all(lines.as_bytes()).and_then(|()| file.sync_data()).map_err(|e| e.to_string())
            }
            Sink::Sqlite(db, index) => {
                let tx = db.unchecked_transaction().map_err(|e| e.to_string())?;
                let mut ids = Vec::with_capacity(rows.len());
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO messages (token, chat, number, body, created_at) \
                             VALUES (?1, ?2, ?3, ?4, unixepoch('subsec') * 1000)",
                        )
                        .map_err(|e| e.to_string())?;
                    for ((token, chat), number, body) in rows {
                        insert
                            .execute(rusqlite::params![token, chat, number, body])
                            .map_err(|e| e.to_string())?;
                        if index.is_some() {
                            ids.push(tx.last_insert_rowid());
                        }
                    }
                }
                tx.commit().map_err(|e| e.to_string())?;
                if let Some(index) = index {
                    index.committed(rows, &ids);
                }
                Ok(())
            }
        }
    }

    /// Lets the index, if any, cover every commit, then stops its indexer.
    fn close(self) {
        if let Sink::Sqlite(_, Some(index)) = self {
            index.close();
        }
    }
}

/// The durable floor: the baseline's create-message route (same request, same answer) plus
/// the least any server that keeps SPEC §4's promises must add: the message is stored, and
/// the 201 sent only once it is committed, by one writer thread that commits each batch of
/// waiting creates at once (`FloorStore::Sqlite`: in one SQLite transaction). Nothing else:
/// no application or chat lookup, numbers kept in memory, no count, no change feed, no
/// search index. What chatd costs beyond this is its design; what this costs beyond the
/// baseline is durability on this machine. The other stores split that cost into its steps.
pub fn start_floor(workers: usize, dir: &Path, store: FloorStore) -> anyhow::Result<Running> {
    let sink = Sink::open(store, dir)?;
    let progress = match &sink {
        Sink::Sqlite(_, Some(index)) => Some((index.committed.clone(), index.indexed.clone())),
        _ => None,
    };
    let (jobs, queue) = std::sync::mpsc::channel::<FloorJob>();
    let writer =
        std::thread::Builder::new().name("floor-writer".into()).spawn(move || floor_writer(sink, queue))?;
    let router = axum::Router::new().route(
        "/applications/{token}/chats/{chat}/messages",
        post(move |UrlPath((token, chat)): UrlPath<(String, i64)>, Json(body): Json<Value>| {
            let jobs = jobs.clone();
            async move {
                let text = body.get("body").and_then(Value::as_str).unwrap_or_default().to_owned();
                let (reply, answer) = oneshot::channel();
                let committed = match jobs.send(((token.clone(), chat), text, reply)) {
                    Ok(()) => answer.await.ok().flatten(),
                    Err(_) => None,
                };
                match committed {
                    Some(number) => (
                        StatusCode::CREATED,
                        Json(json!({"number": number, "chat_number": chat, "access_token": token})),
                    ),
                    None => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "not stored"}))),
                }
            }
        }),
    );
    // The writer ends when the router (holding the last sender) is dropped with the runtime.
    let mut running = serve_router(workers, router)?;
    running.writer = Some(writer);
    running.progress = progress;
    Ok(running)
}

/// The bare 3-gram index's thread: like chatd's indexer, it adds each change as it is
/// committed and commits the index at most every 200 ms, publishing what it covers.
fn spawn_gram_indexer(
    dir: &Path,
    feed: Arc<MemoryFeed>,
    committed: Arc<Progress>,
    indexed: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    use tantivy::schema::{FAST, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
    let mut schema = Schema::builder();
    let grams = schema.add_text_field(
        "grams",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("tri")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    let chat = schema.add_i64_field("chat", INDEXED);
    let number = schema.add_i64_field("number", FAST);
    std::fs::create_dir_all(dir)?;
    let index = tantivy::Index::create_in_dir(dir, schema.build())?;
    index.tokenizers().register("tri", tantivy::tokenizer::NgramTokenizer::new(3, 3, false)?);
    let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 50_000_000)?;
    const COMMIT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
    Ok(std::thread::Builder::new().name("floor-grams".into()).spawn(move || {
        let (mut applied, mut done, mut last_commit) = (0, 0, std::time::Instant::now());
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let wait = if applied > done {
                COMMIT_EVERY.saturating_sub(last_commit.elapsed())
            } else {
                COMMIT_EVERY
            };
            committed.wait_beyond(applied, wait);
            let changes = feed.changes_after(applied, 4096).unwrap_or_default();
            for change in &changes {
                let body = chatd_core::search::normalize(&change.body);
                let doc = tantivy::doc!(grams => body, chat => change.chat.0, number => change.number.get());
                writer.add_document(doc).expect("a document");
                applied = change.seq;
            }
            if applied > done && (stopping || last_commit.elapsed() >= COMMIT_EVERY) {
                writer.commit().expect("an index commit");
                done = applied;
                last_commit = std::time::Instant::now();
                indexed.publish(done);
            }
            if stopping && changes.is_empty() && done == applied && applied >= committed.get() {
                break;
            }
        }
    })?)
}

/// Stores every create waiting in `queue` as one batch, then answers them; ends when every
/// sender is gone.
fn floor_writer(mut sink: Sink, queue: std::sync::mpsc::Receiver<FloorJob>) {
    let mut last: HashMap<(String, i64), i64> = HashMap::new();
    let mut batch = Vec::new();
    while let Ok(first) = queue.recv() {
        batch.push(first);
        batch.extend(queue.try_iter().take(1023));
        // This batch's numbers, and each chat's last one in it (kept only if it is stored).
        let mut pending = HashMap::new();
        let rows: Vec<_> = batch
            .iter()
            .map(|(key, body, _)| {
                let number = pending.get(key).or_else(|| last.get(key)).copied().unwrap_or(0) + 1;
                pending.insert(key.clone(), number);
                (key, number, body.as_str())
            })
            .collect();
        let stored = sink.store(&rows);
        let numbers: Vec<i64> = rows.iter().map(|r| r.1).collect();
        match &stored {
            Ok(()) => last.extend(pending),
            Err(e) => eprintln!("durable floor: a batch failed: {e}"),
        }
        for ((_, _, reply), number) in batch.drain(..).zip(numbers) {
            let _ = reply.send(stored.is_ok().then_some(number));
        }
    }
    sink.close();
}
