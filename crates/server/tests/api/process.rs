//! The real binary as an operator runs it: `.env`, SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{chatd_command, start_chatd, start_process};

/// Sends SIGTERM and waits (bounded) for the exit status.
pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "chatd did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn configuration_comes_from_a_dot_env_file_and_sigterm_stops_cleanly() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        cwd.path().join(".env"),
        "CHATD_LISTEN=127.0.0.1:0\nCHATD_CREATION_LISTEN=off\nCHATD_DATA_DIR=from-dotenv\n",
    )
    .unwrap();
    let mut command = chatd_command();
    command.current_dir(cwd.path());
    let (mut child, base) = start_process(command);

    let client = Client::new();
    let r = client.post(format!("{base}/applications")).json(&json!({"name": "env"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();

    let status = terminate(&mut child);
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(cwd.path().join("from-dotenv").join("chatd.sqlite3").exists(), "the data dir came from .env");

    // The application is there after a restart on the same directory.
    let mut command = chatd_command();
    command.current_dir(cwd.path());
    let (mut child, base) = start_process(command);
    let r = client.get(format!("{base}/applications/{token}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(terminate(&mut child).success());
}

/// A test that fails before stopping its chatd leaves no server behind: the handle kills
/// and reaps it when dropped.
#[test]
fn a_chatd_whose_test_ends_without_stopping_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = start_chatd(dir.path());
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", child.id()));
    assert!(proc_dir.exists());
    drop(child);
    assert!(!proc_dir.exists(), "chatd still runs after its handle was dropped");
}
