//! The limits of SPEC §6, each on by default and each configurable: request time, header
//! time, open connections, per-IP and per-token rates; and the admin key's warning.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_error, chatd_command, read_answer, spawn_app_with, start_process_logged};

/// Waits for the server to close `stream`, with a deadline far above the configured limit.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")).map(str::trim)
}

#[test]
fn every_limit_is_on_by_default() {
    use clap::Parser;
    let cli = chatd_server::Cli::parse_from(["chatd"]);
    let chatd_server::config::Command::Serve(c) = cli.into_command() else { panic!("serve") };
    assert_eq!(c.max_request_bytes, 1024 * 1024);
    assert_eq!(c.max_message_bytes, 64 * 1024);
    assert!(c.request_timeout > 0 && c.header_timeout > 0 && c.max_connections > 0);
    assert!(c.ip_rate > 0 && c.ip_burst > 0, "per-IP rate limit off by default");
    assert!(c.token_rate > 0 && c.token_burst > 0, "per-token rate limit off by default");
}

#[tokio::test]
async fn a_request_body_that_never_ends_is_cut_off_and_writes_nothing() {
    let app = spawn_app_with(|c| c.request_timeout = 1).await;
    let token = app.create_app("slow").await;
    app.create_chat(&token).await;

    let mut stream = TcpStream::connect(app.api_addr).await.unwrap();
    let head = format!(
        "POST /applications/{token}/chats/1/messages HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"bod\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // … and the rest never comes.
    let (status, head, body) = read_answer(&mut stream).await;
    assert_eq!((status, body["error"].as_str()), (408, Some("request_timeout")), "{head}{body}");
    assert!(app.all_messages(&token, 1).await.is_empty());
}

#[tokio::test]
async fn half_a_request_line_is_cut_off_at_the_header_timeout() {
    let app = spawn_app_with(|c| c.header_timeout = 1).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(app.api_addr).await.unwrap();
    stream.write_all(b"GET /applica").await.unwrap();
    assert!(closed_by_server(&mut stream).await, "a half-sent request line kept its connection");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the limit");

    // A whole request on a fresh connection is served as usual.
    let r = app.get("/health").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_a_freed_slot_serves_again() {
    let app = spawn_app_with(|c| c.max_connections = 2).await;
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(app.api_addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        assert_eq!(read_answer(&mut stream).await.0, 200);
        held.push(stream);
    }

    let mut third = TcpStream::connect(app.api_addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let (status, head, body) = read_answer(&mut third).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("overloaded")), "{head}{body}");
    assert_eq!(header(&head, "retry-after"), Some("1"));
    assert!(closed_by_server(&mut third).await, "a refused connection stayed open");

    // The held connections still work; closing one frees its slot.
    held[0].write_all(request).await.unwrap();
    assert_eq!(read_answer(&mut held[0]).await.0, 200);
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(app.api_addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        if read_answer(&mut stream).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the closed connection's slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_client_ip_over_its_rate_gets_429_with_retry_after_and_writes_nothing() {
    let app = spawn_app_with(|c| {
        c.ip_rate = 1;
        c.ip_burst = 3;
    })
    .await;
    let token = app.create_app("limited").await; // 1
    app.create_chat(&token).await; // 2
    app.create_message(&token, 1, "allowed").await; // 3
    let path = format!("/applications/{token}/chats/1/messages");
    let r = app.post_json(&path, json!({"body": "refused"})).await;
    assert_eq!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap(), 1);
    assert_error(r, 429, "rate_limited").await;
    // Health checks are never limited: a load balancer's probes must get through.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);

    // After the wait it was told, the client is served again, and only "allowed" was stored.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let bodies: Vec<String> =
        app.all_messages(&token, 1).await.iter().map(|m| m["body"].as_str().unwrap().to_owned()).collect();
    assert_eq!(bodies, ["allowed"]);
}

#[tokio::test]
async fn one_token_over_its_rate_gets_429_while_other_tokens_go_on() {
    let app = spawn_app_with(|c| {
        c.token_rate = 1;
        c.token_burst = 2;
    })
    .await;
    let busy = app.create_app("busy").await;
    let quiet = app.create_app("quiet").await;
    app.create_chat(&busy).await; // busy: 1
    app.create_chat(&busy).await; // busy: 2
    let r = app.client.post(app.url(&format!("/applications/{busy}/chats"))).send().await.unwrap();
    assert_eq!(r.headers()["retry-after"].to_str().unwrap(), "1");
    assert_error(r, 429, "rate_limited").await;
    // The same client, another application: its own budget.
    assert_eq!(app.create_chat(&quiet).await, 1);
    // A well-formed token that does not exist gets its own budget and the usual 404, and
    // routes without a token still answer.
    let r = app.get("/applications/AAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_error(r, 404, "application_not_found").await;
    assert_eq!(app.get("/applications").await.status(), StatusCode::OK);

    // Two seconds refill busy's bucket (burst 2): one for the list, one for the create.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let chats: Vec<Value> = app.get(&format!("/applications/{busy}/chats")).await.json().await.unwrap();
    assert_eq!(chats.len(), 2, "the refused create wrote a chat");
    // The creation port shares the budget: one bucket per token, whatever the port.
    let creation = format!("{}/applications/{busy}/chats", app.creation);
    assert_eq!(app.client.post(&creation).send().await.unwrap().status(), StatusCode::CREATED);
    let r = app.client.post(&creation).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_binary_warns_at_start_when_no_admin_key_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let start = |key: Option<&str>| {
        let mut command = chatd_command();
        command.args(["--listen", "127.0.0.1:0", "--creation-listen", "off", "--data-dir"]).arg(dir.path());
        if let Some(key) = key {
            command.env("CHATD_ADMIN_KEY", key);
        }
        start_process_logged(command)
    };
    for key in [None, Some("a-key-of-the-operator")] {
        let (mut child, base, log) = start(key);
        let warned = log.iter().any(|l| l.contains("WARN") && l.contains("no admin key"));
        assert_eq!(warned, key.is_none(), "key {key:?}; log: {log:#?}");
        let status = reqwest::get(format!("{base}/applications")).await.unwrap().status();
        let expected = if key.is_none() { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
        assert_eq!(status, expected);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
