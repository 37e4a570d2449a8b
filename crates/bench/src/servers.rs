//! The servers under test, each on a runtime of its own (so the load generator's runtime
//! is the same for all): chatd, built in-process (embedded, or in its scale-out mode on a
//! PostgreSQL database); a bare axum baseline that accepts the same
//! requests and answers same-sized JSON without storing anything; and the durable floor, the
//! baseline's message create plus the least a durable store must do for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use axum::Json;
use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chatd_core::progress::Progress;
use chatd_core::stats::WriterStatsSnapshot;
use chatd_server::backend::Backend;
use chatd_server::config::Synchronous;
use chatd_server::{Application, Config};
use chatd_store_postgres::PgStore;
use chatd_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A server running on its own threads.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// chatd only, embedded: its store (writer statistics, committed sequence).
    pub chatd: Option<Arc<SqliteStore>>,
    /// chatd only, on PostgreSQL: its store (writer statistics).
    pub postgres: Option<Arc<PgStore>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// A thread that ends after the server's: the floor's writer.
    writer: Option<JoinHandle<()>>,
    /// chatd only: how far its change sequence is committed, and indexed for search.
    progress: Option<(Arc<Progress>, Arc<Progress>)>,
}

impl Running {
    /// A server this benchmark did not start (and does not stop).
    pub fn external(addr: SocketAddr) -> Self {
        Running::serving(addr, None, None)
    }

    /// A server at `addr`, stopped through `stop`, running on `thread`; nothing looked into.
    fn serving(addr: SocketAddr, stop: Option<oneshot::Sender<()>>, thread: Option<JoinHandle<()>>) -> Self {
        Running { addr, chatd: None, postgres: None, stop, thread, writer: None, progress: None }
    }

    /// What chatd's writer has committed so far, whichever its backend (chatd in this
    /// process only).
    pub fn writer_stats(&self) -> Option<WriterStatsSnapshot> {
        match (&self.chatd, &self.postgres) {
            (Some(store), _) => Some(store.writer_stats()),
            (None, Some(store)) => Some(store.writer_stats()),
            (None, None) => None,
        }
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

/// chatd with its defaults but `synchronous` and the index commit interval (the options')
/// on `dir`, full API on a free port, no creation listener.
pub fn start_chatd(dir: &Path, opts: &crate::Opts) -> anyhow::Result<Running> {
    let mut config = Config::ephemeral(dir);
    config.synchronous = opts.synchronous;
    config.index_commit_interval = opts.index_commit_interval;
    serve_chatd(config, opts.server_threads)
}

/// chatd in its scale-out mode with its defaults, on the PostgreSQL database at `url` (its
/// migrations run at start), full API on a free port, no creation listener. `dir` is its
/// data directory, which this mode leaves unused.
pub fn start_chatd_postgres(dir: &Path, url: &str, opts: &crate::Opts) -> anyhow::Result<Running> {
    let mut config = Config::ephemeral(dir);
    config.database_url = Some(url.to_owned());
    serve_chatd(config, opts.server_threads)
}

/// The parts of a started chatd the benchmark looks into.
enum Insides {
    Embedded(Arc<SqliteStore>, Arc<Progress>),
    Postgres(Arc<PgStore>),
}

/// Builds chatd from `config` and serves it on a runtime of `workers` threads.
fn serve_chatd(mut config: Config, workers: usize) -> anyhow::Result<Running> {
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
            let insides = match app.backend() {
                Backend::Embedded(embedded) => {
                    Insides::Embedded(embedded.store.clone(), embedded.indexed.clone())
                }
                Backend::Postgres(store) => Insides::Postgres(store.clone()),
            };
            let _ = ready_tx.send(Ok((app.api_addr(), insides)));
            if let Err(e) = app.run_until(async move { drop(stop_rx.await) }).await {
                eprintln!("chatd stopped with an error: {e:#}");
            }
        });
    });
    let (addr, insides) = ready_rx.recv()??;
    let mut running = Running::serving(addr, Some(stop_tx), Some(thread));
    match insides {
        Insides::Embedded(store, indexed) => {
            running.progress = Some((store.committed(), indexed));
            running.chatd = Some(store);
        }
        Insides::Postgres(store) => running.postgres = Some(store),
    }
    Ok(running)
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
    Ok(Running::serving(addr, Some(stop_tx), Some(thread)))
}

/// The durable floor's SQLite database, under the directory it is given.
pub const FLOOR_DB: &str = "floor.sqlite3";

/// One create handed to the floor's writer: the chat's key and the body, and where to answer.
type FloorJob = ((String, i64), String, oneshot::Sender<Option<i64>>);

/// The store the floor's writer thread owns: SQLite in WAL mode, one insert per message, one
/// transaction per batch.
struct FloorDb(rusqlite::Connection);

impl FloorDb {
    /// Creates the database at `path` with this `synchronous` (`FULL`: an fsync per commit).
    fn create(path: &Path, synchronous: Synchronous) -> anyhow::Result<FloorDb> {
        let db = rusqlite::Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        let synchronous = match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        db.pragma_update(None, "synchronous", synchronous)?;
        db.execute_batch(
            "CREATE TABLE messages (
                 id INTEGER PRIMARY KEY, token TEXT NOT NULL, chat INTEGER NOT NULL,
                 number INTEGER NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL,
                 UNIQUE (token, chat, number))",
        )?;
        Ok(FloorDb(db))
    }

    /// Stores one batch of `(chat, number, body)` in one transaction: committed when it returns.
    fn store(&mut self, rows: &[(&(String, i64), i64, &str)]) -> Result<(), String> {
        let tx = self.0.unchecked_transaction().map_err(|e| e.to_string())?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO messages (token, chat, number, body, created_at) \
                     VALUES (?1, ?2, ?3, ?4, unixepoch('subsec') * 1000)",
                )
                .map_err(|e| e.to_string())?;
            for ((token, chat), number, body) in rows {
                insert.execute(rusqlite::params![token, chat, number, body]).map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }
}

/// The durable floor: the baseline's create-message route (same request, same answer) plus
/// the least any server that keeps SPEC §4's promises must add: the message is stored, and
/// the 201 sent only once it is committed, by one writer thread that commits each batch of
/// waiting creates in one SQLite transaction (`synchronous` as chatd's, in [`FLOOR_DB`]
/// under `dir`). Nothing else: no application or chat lookup, numbers kept in memory, no
/// count, no change feed, no search index. What chatd costs beyond this is its design; what
/// this costs beyond the baseline is durability on this machine.
pub fn start_floor(workers: usize, dir: &Path, synchronous: Synchronous) -> anyhow::Result<Running> {
    let db = FloorDb::create(&dir.join(FLOOR_DB), synchronous)?;
    let (jobs, queue) = std::sync::mpsc::channel::<FloorJob>();
    let writer =
        std::thread::Builder::new().name("floor-writer".into()).spawn(move || floor_writer(db, queue))?;
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
    Ok(running)
}

/// Stores every create waiting in `queue` as one batch, then answers them; ends when every
/// sender is gone.
fn floor_writer(mut db: FloorDb, queue: std::sync::mpsc::Receiver<FloorJob>) {
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
        let stored = db.store(&rows);
        let numbers: Vec<i64> = rows.iter().map(|r| r.1).collect();
        match &stored {
            Ok(()) => last.extend(pending),
            Err(e) => eprintln!("durable floor: a batch failed: {e}"),
        }
        for ((_, _, reply), number) in batch.drain(..).zip(numbers) {
            let _ = reply.send(stored.is_ok().then_some(number));
        }
    }
}
