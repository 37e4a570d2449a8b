//! The servers under test, each on a runtime of its own (so the load generator's runtime
//! is the same for both): chatd, built in-process, and a bare axum baseline that accepts
//! the same requests and answers same-sized JSON without storing anything.

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
use chatd_server::{Application, Config};
use chatd_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A server running on its own threads.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// chatd only: the store (writer statistics, committed sequence) and the index progress.
    pub chatd: Option<(Arc<SqliteStore>, Arc<Progress>)>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// A server this benchmark did not start (and does not stop).
    pub fn external(addr: SocketAddr) -> Self {
        Running { addr, chatd: None, stop: None, thread: None }
    }

    /// Stops the server and waits for it (chatd commits and indexes what it accepted).
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Waits until the search index covers every commit so far; returns how long it took.
    pub fn wait_indexed(&self) -> std::time::Duration {
        let started = std::time::Instant::now();
        if let Some((store, indexed)) = &self.chatd {
            let target = store.committed().get();
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
    config.indexer_nice = opts.indexer_nice;
    config.merge_nice = opts.merge_nice;
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
    Ok(Running { addr, chatd: Some((store, indexed)), stop: Some(stop_tx), thread: Some(thread) })
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
    Ok(Running { addr, chatd: None, stop: Some(stop_tx), thread: Some(thread) })
}
