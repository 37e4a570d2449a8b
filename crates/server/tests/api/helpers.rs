//! `spawn_app()` and typed client helpers.

use std::net::SocketAddr;
use std::sync::Arc;

use chatd_core::progress::Progress;
use chatd_core::stats::WriterStatsSnapshot;
use chatd_server::backend::Backend;
use chatd_server::{Application, Config};
use chatd_store_postgres::PgStore;
use chatd_store_sqlite::SqliteStore;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Whether this test binary runs the suite on PostgreSQL (`api_postgres`, which includes
/// these same files) rather than embedded (`api`).
pub fn on_postgres() -> bool {
    env!("CARGO_CRATE_NAME") == "api_postgres"
}

/// The storage behind a test server, kept for the checks tests make on it.
pub enum Storage {
    Embedded {
        store: Arc<SqliteStore>,
        /// How far the search index has caught up.
        indexed: Arc<Progress>,
        /// Failed (and retried) index catch-ups.
        index_failures: Arc<std::sync::atomic::AtomicU64>,
    },
    Postgres(Arc<PgStore>),
}

/// The file in a test's data directory that names its PostgreSQL database, so that a
/// restart on the same directory finds the same data (as the embedded mode does).
const DATABASE_URL_FILE: &str = "database-url";

/// A running server on port 0 with its own data directory (and, on PostgreSQL, database).
pub struct TestApp {
    /// `http://127.0.0.1:<port>` of the full API.
    pub api: String,
    /// `http://127.0.0.1:<port>` of the creation routes.
    pub creation: String,
    pub api_addr: SocketAddr,
    pub client: Client,
    pub storage: Storage,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Kept so that the directory lives as long as the app; `stop` hands it back.
    pub dir: Option<TempDir>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after letting the test adjust its configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_in(tempfile::tempdir().unwrap(), adjust).await
}

/// Starts a server on an existing data directory (for restarts).
pub async fn spawn_app_in(dir: TempDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::ephemeral(dir.path());
    if on_postgres() {
        config.database_url = Some(database_url(dir.path()));
    }
    adjust(&mut config);
    let app = Application::build(config).await.expect("the server starts");
    let api_addr = app.api_addr();
    let creation = app.creation_addr().map(|a| format!("http://{a}")).unwrap_or_default();
    let storage = match app.backend() {
        Backend::Embedded(e) => Storage::Embedded {
            store: e.store.clone(),
            indexed: e.indexed.clone(),
            index_failures: e.index_failures(),
        },
        Backend::Postgres(pg) => Storage::Postgres(pg.clone()),
    };
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        api: format!("http://{api_addr}"),
        creation,
        api_addr,
        client: Client::builder().pool_max_idle_per_host(64).build().unwrap(),
        storage,
        shutdown: Some(tx),
        server: Some(server),
        dir: Some(dir),
    }
}

/// Names `url` as the database of a test's data directory (before any server starts on it).
pub fn use_database(dir: &std::path::Path, url: &str) {
    std::fs::write(dir.join(DATABASE_URL_FILE), url).unwrap();
}

/// The test's database: the one its data directory names, else a fresh one (then named
/// there) on the shared test server.
fn database_url(dir: &std::path::Path) -> String {
    let file = dir.join(DATABASE_URL_FILE);
    if let Ok(url) = std::fs::read_to_string(&file) {
        return url;
    }
    let url = chatd_pg_testing::TestPostgres::shared().fresh_database().expect("a database for the test");
    std::fs::write(&file, &url).unwrap();
    url
}

impl TestApp {
    /// What the writer has committed so far.
    pub fn writer_stats(&self) -> WriterStatsSnapshot {
        match &self.storage {
            Storage::Embedded { store, .. } => store.writer_stats(),
            Storage::Postgres(pg) => pg.writer_stats(),
        }
    }

    /// The embedded mode's store and index progress; for tests of that mode alone.
    pub fn embedded(&self) -> (&Arc<SqliteStore>, &Arc<Progress>, &Arc<std::sync::atomic::AtomicU64>) {
        match &self.storage {
            Storage::Embedded { store, indexed, index_failures } => (store, indexed, index_failures),
            Storage::Postgres(_) => panic!("this test is for the embedded mode"),
        }
    }

    /// Shuts the server down gracefully and hands back its data directory.
    pub async fn stop(mut self) -> TempDir {
        let _ = self.shutdown.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().expect("the server stops cleanly");
        self.dir.take().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Response {
        self.client.post(self.url(path)).json(&body).send().await.unwrap()
    }

    /// Creates an application and returns its token.
    pub async fn create_app(&self, name: &str) -> String {
        let r = self.post_json("/applications", json!({ "name": name })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a chat and returns its number.
    pub async fn create_chat(&self, token: &str) -> i64 {
        let r = self.client.post(self.url(&format!("/applications/{token}/chats"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["number"].as_i64().unwrap()
    }

    /// Creates a message and returns its number.
    pub async fn create_message(&self, token: &str, chat: i64, body: &str) -> i64 {
        let path = format!("/applications/{token}/chats/{chat}/messages");
        let r = self.post_json(&path, json!({ "body": body })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["number"].as_i64().unwrap()
    }

    /// Every message of a chat, following `Link` headers page by page.
    pub async fn all_messages(&self, token: &str, chat: i64) -> Vec<Value> {
        follow_pages(
            &self.client,
            &self.api,
            &format!("/applications/{token}/chats/{chat}/messages?limit=1000"),
        )
        .await
    }

    /// Waits until the search index covers every commit made so far (polling a condition,
    /// with a deadline, never a blind sleep). On PostgreSQL a message is searchable in the
    /// transaction that stores it: there is nothing to wait for.
    pub async fn wait_indexed(&self) {
        let Storage::Embedded { store, indexed, .. } = &self.storage else { return };
        let target = store.committed().get();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while indexed.get() < target {
            assert!(std::time::Instant::now() < deadline, "the index did not catch up within 10 s");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Searches a chat; returns the status and the JSON answer.
    pub async fn search(&self, token: &str, chat: i64, keyword: &str) -> (u16, Value) {
        let url = self.url(&format!("/applications/{token}/chats/{chat}/messages/search"));
        let r = self.client.get(url).query(&[("keyword", keyword)]).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The bodies a search returns, in order; panics unless it answers 200.
    pub async fn search_bodies(&self, token: &str, chat: i64, keyword: &str) -> Vec<String> {
        let (status, found) = self.search(token, chat, keyword).await;
        assert_eq!(status, 200, "search {keyword:?}: {found}");
        found.as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap().to_owned()).collect()
    }

    /// Sends raw bytes on a fresh connection and returns the status and the body as JSON.
    pub async fn raw(&self, request: &[u8]) -> (u16, Value) {
        raw_request(self.api_addr, request).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// GETs `path` and every page its `Link: rel="next"` headers lead to.
pub async fn follow_pages(client: &Client, base: &str, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next.take() {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with(">; rel=\"next\""), "{l}");
            l[1..l.find('>').unwrap()].to_owned()
        });
        out.extend(r.json::<Vec<Value>>().await.unwrap());
    }
    out
}

/// One HTTP/1.1 exchange over a raw socket, for requests a client library refuses to send.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Reads one HTTP/1.1 answer with a `content-length` body: status, head, JSON body.
pub async fn read_answer(stream: &mut tokio::net::TcpStream) -> (u16, String, Value) {
    read_next_answer(stream, &mut Vec::new()).await
}

/// Reads one answer from `stream`, starting with the bytes already in `buf`; what follows
/// that answer (the next pipelined answer's start) stays in `buf`.
pub async fn read_next_answer(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> (u16, String, Value) {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a whole answer: {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    buf.drain(..head_end + length);
    (status, head, body)
}

/// Asserts an error answer: its status, its `error` code, and the JSON shape of SPEC §3.
pub async fn assert_error(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

/// The real `chatd` binary, logging at info to a pipe.
pub fn chatd_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"));
    command.env("CHATD_LOG", "info").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    command
}

/// Spawns `command` and returns the child with its API's base URL, read from its
/// "listening" log line (so it may bind port 0).
pub fn start_process(command: std::process::Command) -> (Process, String) {
    let (child, base, _) = start_process_logged(command);
    (child, base)
}

/// [`start_process`], also handing back the log lines up to the "listening" one.
pub fn start_process_logged(command: std::process::Command) -> (Process, String, Vec<String>) {
    let (child, base, log, _) = start_process_tailed(command);
    (child, base, log)
}

/// [`start_process_logged`], also handing over every later log line as it comes.
pub fn start_process_tailed(
    mut command: std::process::Command,
) -> (Process, String, Vec<String>, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    // A `Process` from the start, so that a test failing below still kills the child.
    let mut child = Process(command.spawn().expect("chatd starts"));
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // Every line, as it comes, until the pipe ends: read as bytes, so that a line of
    // invalid UTF-8 cannot end the reading, and drained whether or not anyone still
    // listens, so that the child never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        while matches!(stderr.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_owned());
            line.clear();
        }
    });
    let deadline = std::time::Instant::now() + STARTUP_LIMIT;
    let mut log = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => panic!("no \"listening\" line from chatd ({e}); its log so far: {log:#?}"),
        };
        if let Some(rest) = line.split("api=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        log.push(line);
    };
    (child, format!("http://{addr}"), log, rx)
}

/// Longest a test waits for chatd to say where it listens (a debug build on a busy
/// machine, a large database to open).
const STARTUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// A chatd process of a test. Dropped while it still runs (a test that failed before
/// stopping it), it is killed and reaped, so that no server outlives its test.
#[derive(Debug)]
pub struct Process(std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The binary on a PostgreSQL database, API only, on a port of its choosing, rate limits off.
pub fn chatd_on_database(url: &str) -> std::process::Command {
    let mut command = chatd_api_only();
    command.args(["--database-url", url]);
    command
}

/// Starts the binary on a data directory: [`chatd_on`].
pub fn start_chatd(data_dir: &std::path::Path) -> (Process, String) {
    start_process(chatd_on(data_dir))
}

/// The binary on a data directory, API only, on a port of its choosing, with the rate
/// limits off (as `Config::ephemeral`: every request of a test comes from one address, and
/// a fast build of a test such as the jepsen one's final reads outran the per-IP default;
/// the limits have tests of their own). On PostgreSQL, on the database the directory names.
pub fn chatd_on(data_dir: &std::path::Path) -> std::process::Command {
    let mut command =
        if on_postgres() { chatd_on_database(&database_url(data_dir)) } else { chatd_api_only() };
    command.arg("--data-dir").arg(data_dir);
    command
}

/// The binary, API only, on a port of its choosing, with the rate limits off.
fn chatd_api_only() -> std::process::Command {
    let mut command = chatd_command();
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--creation-listen",
        "off",
        "--ip-rate",
        "0",
        "--token-rate",
        "0",
    ]);
    command
}
