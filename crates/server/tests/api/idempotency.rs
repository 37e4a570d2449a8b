//! `Idempotency-Key` on the three create routes (SPEC §8): a retry answers the first answer
//! and writes nothing, whatever happened in between (a rename, a `kill -9`); concurrent
//! requests with one key create one resource; keys are scoped to their application, refused
//! with other parameters or malformed, and expire.

use std::time::Duration;

use chatd_core::Ingest;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Storage, TestApp, assert_error, spawn_app, spawn_app_with, start_chatd};

/// POSTs `body` (JSON, or nothing) to `base` + `path` with `key` as `Idempotency-Key`;
/// returns the status and the JSON answer.
async fn post(
    client: &Client,
    base: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.post(format!("{base}{path}"));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str) -> Value {
    let r = app.get(path).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

fn messages_path(token: &str, chat: i64) -> String {
    format!("/applications/{token}/chats/{chat}/messages")
}

#[tokio::test]
async fn a_retried_create_answers_the_first_answer_and_writes_nothing() {
    let app = spawn_app().await;
    let c = &app.client;

    // An application, renamed after its create: the retry still answers the first answer.
    let first = post(c, &app.api, "/applications", Some("app-1"), Some(json!({"name": "first"}))).await;
    assert_eq!(first.0, 201, "{first:?}");
    let token = first.1["access_token"].as_str().unwrap().to_owned();
    let r =
        c.patch(app.url(&format!("/applications/{token}"))).json(&json!({"name": "renamed"})).send().await;
    assert_eq!(r.unwrap().status(), StatusCode::OK);
    let again = post(c, &app.api, "/applications", Some("app-1"), Some(json!({"name": "first"}))).await;
    assert_eq!(again, first);
    assert_eq!(get(&app, "/applications").await.as_array().unwrap().len(), 1, "one application");

    // A chat, retried on both listeners.
    let chats = format!("/applications/{token}/chats");
    let first = post(c, &app.api, &chats, Some("chat-1"), None).await;
    assert_eq!(first, (201, json!({"number": 1, "access_token": token})));
    assert_eq!(post(c, &app.api, &chats, Some("chat-1"), None).await, first);
    assert_eq!(post(c, &app.creation, &chats, Some("chat-1"), None).await, first);
    assert_eq!(get(&app, &format!("/applications/{token}")).await["chats_count"], 1);

    // A message, retried on both listeners, then a new key: the next number.
    let path = messages_path(&token, 1);
    let hello = Some(json!({"body": "hello"}));
    let first = post(c, &app.creation, &path, Some("message-1"), hello.clone()).await;
    assert_eq!(first, (201, json!({"number": 1, "chat_number": 1, "access_token": token})));
    assert_eq!(post(c, &app.api, &path, Some("message-1"), hello.clone()).await, first);
    assert_eq!(post(c, &app.creation, &path, Some("message-1"), hello.clone()).await, first);
    assert_eq!(get(&app, &format!("/applications/{token}/chats/1")).await["messages_count"], 1);
    assert_eq!(post(c, &app.api, &path, Some("message-2"), hello.clone()).await.1["number"], 2);
    assert_eq!(post(c, &app.api, &path, None, hello).await.1["number"], 3, "no key: a create each time");
    let bodies: Vec<Value> = app.all_messages(&token, 1).await.iter().map(|m| m["body"].clone()).collect();
    assert_eq!(bodies, ["hello", "hello", "hello"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_creates_with_one_key_create_one_resource() {
    let app = spawn_app().await;
    let token = app.create_app("concurrent").await;
    let chats = format!("/applications/{token}/chats");
    let path = messages_path(&token, 1);
    let send = |path: String, key: &'static str, body: Option<Value>| {
        let (client, base) = (app.client.clone(), app.api.clone());
        tokio::spawn(async move { post(&client, &base, &path, Some(key), body).await })
    };

    let chat_creates: Vec<_> = (0..20).map(|_| send(chats.clone(), "one chat", None)).collect();
    let mut answers = Vec::new();
    for create in chat_creates {
        answers.push(create.await.unwrap());
    }
    assert!(answers.iter().all(|a| *a == (201, json!({"number": 1, "access_token": token}))), "{answers:?}");
    assert_eq!(get(&app, &format!("/applications/{token}")).await["chats_count"], 1);

    let body = json!({"body": "once"});
    let message_creates: Vec<_> =
        (0..20).map(|_| send(path.clone(), "one message", Some(body.clone()))).collect();
    let mut answers = Vec::new();
    for create in message_creates {
        answers.push(create.await.unwrap());
    }
    let expected = (201, json!({"number": 1, "chat_number": 1, "access_token": token}));
    assert!(answers.iter().all(|a| *a == expected), "{answers:?}");
    assert_eq!(app.all_messages(&token, 1).await.len(), 1, "one message");
    assert_eq!(get(&app, &format!("/applications/{token}/chats/1")).await["messages_count"], 1);
}

#[tokio::test]
async fn a_key_is_scoped_to_its_application() {
    let app = spawn_app().await;
    let c = &app.client;
    let (a, b) = (app.create_app("a").await, app.create_app("b").await);
    for token in [&a, &b] {
        let chats = format!("/applications/{token}/chats");
        assert_eq!(post(c, &app.api, &chats, Some("k"), None).await.1["number"], 1);
        assert_eq!(post(c, &app.api, &chats, None, None).await.1["number"], 2);
    }
    // The same key, already used by each application for a chat, names nothing in another
    // scope: the applications' own.
    let created = post(c, &app.api, "/applications", Some("k"), Some(json!({"name": "c"}))).await;
    assert_eq!(created.0, 201, "{created:?}");
    // Messages: the same key and body in each application's chat 2 are two messages.
    for token in [&a, &b] {
        let m = post(c, &app.api, &messages_path(token, 2), Some("m"), Some(json!({"body": "x"}))).await;
        assert_eq!(m, (201, json!({"number": 1, "chat_number": 2, "access_token": token})));
    }
    assert_eq!(app.all_messages(&a, 2).await.len(), 1);
    assert_eq!(app.all_messages(&b, 2).await.len(), 1);
}

#[tokio::test]
async fn a_key_sent_again_with_other_parameters_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let c = &app.client;
    let named = |name: &str| Some(json!({"name": name}));
    assert_eq!(post(c, &app.api, "/applications", Some("k"), named("one")).await.0, 201);
    let r = c.post(app.url("/applications")).header("Idempotency-Key", "k").json(&json!({"name": "two"}));
    assert_error(r.send().await.unwrap(), 422, "idempotency_key_reused").await;
    assert_eq!(get(&app, "/applications").await.as_array().unwrap().len(), 1);

    let token = app.create_app("app").await;
    app.create_chat(&token).await;
    app.create_chat(&token).await;
    let body = |text: &str| json!({"body": text});
    assert_eq!(post(c, &app.api, &messages_path(&token, 1), Some("k"), Some(body("one"))).await.0, 201);
    let reuses = [
        (messages_path(&token, 1), Some(body("two"))),  // another body
        (messages_path(&token, 2), Some(body("one"))),  // another chat
        (format!("/applications/{token}/chats"), None), // another route of the application
    ];
    for (path, json) in reuses {
        let mut r = c.post(app.url(&path)).header("Idempotency-Key", "k");
        if let Some(json) = json {
            r = r.json(&json);
        }
        assert_error(r.send().await.unwrap(), 422, "idempotency_key_reused").await;
    }
    assert_eq!(get(&app, &format!("/applications/{token}")).await["chats_count"], 2);
    assert_eq!(app.all_messages(&token, 1).await.len(), 1);
    assert_eq!(app.all_messages(&token, 2).await.len(), 0);
}

#[tokio::test]
async fn malformed_keys_are_400_naming_the_header() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    app.create_chat(&token).await;
    let long = "k".repeat(256);
    let malformed: [&[u8]; 4] = [b"", long.as_bytes(), b"tab\there", "caf\u{e9}".as_bytes()];
    let paths =
        ["/applications".to_owned(), format!("/applications/{token}/chats"), messages_path(&token, 1)];
    for key in malformed {
        for path in &paths {
            let value = reqwest::header::HeaderValue::from_bytes(key).unwrap();
            let r = app.client.post(app.url(path)).header("Idempotency-Key", value);
            let r = r.json(&json!({"name": "n", "body": "b"})).send().await.unwrap();
            let answer = assert_error(r, 400, "bad_request").await;
            assert_eq!(answer["field"], "Idempotency-Key", "{key:?} {path}: {answer}");
        }
    }
    // The header given twice. (A control character such as DEL never reaches chatd's code:
    // the HTTP parser refuses the request head.)
    let path = messages_path(&token, 1);
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\
         Idempotency-Key: a\r\nIdempotency-Key: a\r\nconnection: close\r\n\r\n{{\"body\":\"b\"}}"
    );
    let (status, answer) = app.raw(request.as_bytes()).await;
    assert_eq!(
        (status, &answer["error"], &answer["field"]),
        (400, &json!("bad_request"), &json!("Idempotency-Key"))
    );
    assert_eq!(get(&app, "/applications").await.as_array().unwrap().len(), 1);
    assert_eq!(get(&app, &format!("/applications/{token}")).await["chats_count"], 1);
    assert_eq!(app.all_messages(&token, 1).await.len(), 0);
    // The longest key is fine.
    let longest = "k".repeat(255);
    assert_eq!(post(&app.client, &app.api, &path, Some(&longest), Some(json!({"body": "b"}))).await.0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_kill_9_and_a_restart_answers_the_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_chatd(dir.path());
    let c = Client::new();
    let app = post(&c, &base, "/applications", Some("a"), Some(json!({"name": "crash"}))).await;
    assert_eq!(app.0, 201, "{app:?}");
    let token = app.1["access_token"].as_str().unwrap().to_owned();
    let chats = format!("/applications/{token}/chats");
    let chat = post(&c, &base, &chats, Some("c"), None).await;
    let body = Some(json!({"body": "survives"}));
    let message = post(&c, &base, &messages_path(&token, 1), Some("m"), body.clone()).await;
    assert_eq!((chat.0, message.0), (201, 201));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (_child, base) = start_chatd(dir.path());
    assert_eq!(post(&c, &base, "/applications", Some("a"), Some(json!({"name": "crash"}))).await, app);
    assert_eq!(post(&c, &base, &chats, Some("c"), None).await, chat);
    assert_eq!(post(&c, &base, &messages_path(&token, 1), Some("m"), body).await, message);
    let listed: Value = c.get(format!("{base}/applications")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let chat: Value = c.get(format!("{base}{chats}/1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(chat["messages_count"], 1);
    let application: Value =
        c.get(format!("{base}/applications/{token}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(application["chats_count"], 1);
}

#[tokio::test]
async fn an_expired_key_is_not_honoured_and_is_swept() {
    const WINDOW: Duration = Duration::from_secs(2);
    let app = spawn_app_with(|config| config.idempotency_window = WINDOW).await;
    let c = &app.client;
    let token = app.create_app("expiry").await;
    app.create_chat(&token).await;
    let path = messages_path(&token, 1);
    let body = Some(json!({"body": "again"}));
    assert_eq!(post(c, &app.api, &path, Some("old"), body.clone()).await.1["number"], 1);
    tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;
    assert_eq!(post(c, &app.api, &path, Some("second"), body.clone()).await.1["number"], 2);

    // Expired, not yet swept: not honoured. The key now names the new create.
    assert_eq!(post(c, &app.api, &path, Some("old"), body.clone()).await.1["number"], 3);
    assert_eq!(post(c, &app.api, &path, Some("old"), body.clone()).await.1["number"], 3);
    tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;
    assert_eq!(post(c, &app.api, &path, Some("new"), body.clone()).await.1["number"], 4);

    // A sweep deletes the two expired keys and keeps the fresh one, which is honoured.
    let ingest: &dyn Ingest = match &app.storage {
        Storage::Embedded { store, .. } => store.as_ref(),
        Storage::Postgres(pg) => pg.as_ref(),
    };
    assert_eq!(ingest.sweep_idempotency_keys().await.unwrap(), 2);
    assert_eq!(ingest.sweep_idempotency_keys().await.unwrap(), 0);
    assert_eq!(post(c, &app.api, &path, Some("new"), body).await.1["number"], 4);
    assert_eq!(app.all_messages(&token, 1).await.len(), 4);
}
