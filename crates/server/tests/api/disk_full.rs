//! A full disk: the data directory on a small tmpfs (mounting needs root; CI runs as root),
//! filled by a filler file while creates keep coming. Creates must answer 503 `unavailable`
//! (never 500, never hang), nothing may be corrupted or half-written, and once space is
//! freed chatd must carry on without a restart: creates succeed, numbering continues
//! densely, and the search index catches up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, chatd_on, spawn_app_in, start_process_tailed};

/// A tmpfs mounted on a fresh directory, unmounted on drop (even when the test fails).
struct Tmpfs {
    dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "6m"); `None`, said loudly, unless running as root.
    fn mount(size: &str) -> Option<Self> {
        if !is_root() {
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!! SKIPPED disk_full: mounting a tmpfs needs root; this run did NOT test a full disk !!!!!\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "chatd-disk-full"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs failed although running as root: {status}");
        Some(Tmpfs { dir: Some(dir) })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = self.dir.take().unwrap();
        let unmounted = Command::new("umount").arg(dir.path()).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file there (a failed test's server): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
        }
    }
}

/// Whether the effective user is root (from /proc, so no unsafe call is needed).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    euid == Some("0")
}

/// Writes zeros to `path` until the filesystem refuses more.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    written
}

/// A message body of about 4 KiB, with a unique token to search it by.
fn body(i: usize) -> String {
    format!("full k{i}q {}", "x".repeat(4000))
}

/// `PRAGMA integrity_check` of the database, from a connection of the test's own.
fn integrity(data: &Path) -> String {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let db = rusqlite::Connection::open_with_flags(data.join(chatd_store_sqlite::DB_FILE), flags).unwrap();
    db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

/// Checkpoints the whole WAL into the database from a connection of the test's own, so that
/// the next write transaction starts the WAL over (reusing the file's space).
fn restart_wal(data: &Path) {
    let db = rusqlite::Connection::open(data.join(chatd_store_sqlite::DB_FILE)).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let busy: i64 = db.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0)).unwrap();
    assert_eq!(busy, 0, "the checkpoint completed");
}

/// Posts a message; returns the response (a 30 s timeout turns a hang into a failure).
async fn post(client: &Client, app: &TestApp, token: &str, chat: i64, body: &str) -> reqwest::Response {
    let url = app.url(&format!("/applications/{token}/chats/{chat}/messages"));
    client.post(url).json(&json!({ "body": body })).send().await.expect("an answer, not a hang")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_creates_with_503_and_chatd_recovers_when_space_returns() {
    let Some(tmpfs) = Tmpfs::mount("6m") else { return };
    let data = tempfile::tempdir_in(tmpfs.path()).unwrap();
    let data_path: PathBuf = data.path().to_owned();
    let app = spawn_app_in(data, |_| {}).await;
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let token = app.create_app("full").await;
    let chat = app.create_chat(&token).await;
    let mut acked: Vec<(i64, String)> = Vec::new();
    for i in 0..100 {
        let b = body(i);
        acked.push((app.create_message(&token, chat, &b).await, b));
    }
    app.wait_indexed().await;
    // Checkpoint, so that the next commits reuse the WAL's space from its start, as they do
    // after any automatic checkpoint: SQLite then keeps committing on the full disk for a
    // while, when the search index can no longer write its segments.
    restart_wal(&data_path);

    // Act: fill the disk, then keep creating until the writes no longer fit.
    let filler = tmpfs.path().join("filler");
    let filled = fill(&filler);
    let before_full = acked.len();
    let mut refused: Vec<String> = Vec::new();
    for i in 100..2100 {
        let b = body(i);
        let r = post(&client, &app, &token, chat, &b).await;
        match r.status() {
            StatusCode::CREATED => {
                acked.push((r.json::<Value>().await.unwrap()["number"].as_i64().unwrap(), b));
            }
            _ => {
                assert!(r.headers().contains_key("retry-after"), "a 503 says when to retry");
                assert_error(r, 503, "unavailable").await;
                refused.push(b);
                if refused.len() == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused.len(), 5, "creates kept succeeding on a full disk ({} acknowledged)", acked.len());
    // (A create may still fit between refusals, in space a failed commit or the indexer freed.)
    let acked_while_full = acked.len() - before_full;
    assert!(acked_while_full > 0, "the WAL's reused space took no commit on the full disk");
    assert!(
        app.embedded().1.get() < app.embedded().0.committed().get(),
        "the index cannot have covered creates committed while the disk was full"
    );
    // Keep the disk full until the indexer has failed (and retried) a few times: each retry
    // must start from a usable writer.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.embedded().2.load(Ordering::Relaxed) < 3 {
        assert!(std::time::Instant::now() < deadline, "the indexer never tried the full disk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = client.get(app.url("/ready")).send().await.unwrap();
    assert_error(ready, 503, "unavailable").await;
    assert_eq!(app.search(&token, chat, "k1q").await.0, 200, "search answers while the disk is full");
    assert_eq!(integrity(&data_path), "ok", "the database after the disk filled");

    // Free the space: chatd carries on without a restart.
    std::fs::remove_file(&filler).unwrap();
    let ready = client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "ready once space is back");
    let before = acked.len() as i64;
    for i in 3000..3010 {
        let b = body(i);
        let r = post(&client, &app, &token, chat, &b).await;
        assert_eq!(r.status(), StatusCode::CREATED, "a create after space came back");
        acked.push((r.json::<Value>().await.unwrap()["number"].as_i64().unwrap(), b));
    }
    let numbers: Vec<i64> = acked[before as usize..].iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (before + 1..=before + 10).collect::<Vec<_>>(), "numbering continues densely");

    // Assert: exactly the acknowledged messages, dense, counted, whole; none of the refused.
    let stored = app.all_messages(&token, chat).await;
    let stored: Vec<(i64, String)> = stored
        .iter()
        .map(|m| (m["number"].as_i64().unwrap(), m["body"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(stored.len(), acked.len(), "stored vs acknowledged");
    assert!(stored == acked, "the stored messages are exactly the acknowledged ones, in order");
    let c: Value = app.get(&format!("/applications/{token}/chats/{chat}")).await.json().await.unwrap();
    assert_eq!(c["messages_count"].as_i64(), Some(acked.len() as i64));
    for b in &refused {
        assert!(!stored.iter().any(|(_, s)| s == b), "a refused create was stored");
    }
    // The index catches up by itself, including what it could not write while full.
    app.wait_indexed().await;
    for (n, b) in &acked {
        let keyword = b.split(' ').nth(1).unwrap();
        let found = app.search(&token, chat, keyword).await.1;
        let numbers: Vec<i64> =
            found.as_array().unwrap().iter().map(|m| m["number"].as_i64().unwrap()).collect();
        assert_eq!(numbers, [*n], "search {keyword}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "disk_full: filler={filled} B, acknowledged={} ({before_full} before the filler, \
         {acked_while_full} on the full disk, 10 after freeing it), refused=5, integrity ok",
        acked.len()
    );
    let data = app.stop().await;
    assert_eq!(integrity(&data_path), "ok", "the database after a clean stop");
    drop(data);
    drop(tmpfs);
}

/// The log of a refused write: the real binary, with request spans on, on a disk that
/// fills. The hidden detail of the 503 is logged, inside the request's span, which names
/// the matched route and never the raw path (paths carry tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_is_logged_with_its_detail_inside_the_request_span() {
    let Some(tmpfs) = Tmpfs::mount("6m") else { return };
    let mut command = chatd_on(&tmpfs.path().join("data"));
    command.env("CHATD_LOG", "info,chatd_server=debug");
    let (_process, base, _, log) = start_process_tailed(command);
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let created: Value =
        client.post(format!("{base}/applications?name=log")).send().await.unwrap().json().await.unwrap();
    let token = created["access_token"].as_str().unwrap().to_owned();
    let chats = format!("{base}/applications/{token}/chats");
    assert_eq!(client.post(&chats).send().await.unwrap().status(), StatusCode::CREATED);

    let filler = tmpfs.path().join("filler");
    fill(&filler);
    let refused = async {
        for i in 0..2000 {
            let r = client.post(format!("{chats}/1/messages")).json(&json!({ "body": body(i) })).send().await;
            let r = r.expect("an answer, not a hang");
            if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                return Some(r.json::<Value>().await.unwrap());
            }
        }
        None
    };
    let answer = refused.await.expect("the disk filled up without a 503");
    assert_eq!(answer["error"], "unavailable", "{answer}");

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = log.recv_timeout(left).expect("a log line for the refused write within 30 s");
        if line.contains("request refused: storage unavailable") {
            break line;
        }
        lines.push(line);
    };
    assert!(line.contains("disk is full"), "the detail is logged: {line}");
    assert!(
        line.contains(r#"route="/applications/{token}/chats/{chat}/messages""#),
        "inside the span: {line}"
    );
    assert!(line.contains("method=POST"), "{line}");
    lines.push(line);
    let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(&token)).collect();
    assert!(leaks.is_empty(), "the token stays out of the log: {leaks:?}");
    std::fs::remove_file(filler).unwrap();
}
