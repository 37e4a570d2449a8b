//! Numbers under real concurrent requests: unique, dense, counted; overload refuses cleanly.

use std::collections::HashMap;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

/// Checks that a chat holds exactly `acked` (number → body), numbered 1..k, counted k.
async fn assert_chat_exactly(app: &TestApp, token: &str, chat: i64, acked: &HashMap<i64, String>) {
    let stored = app.all_messages(token, chat).await;
    let numbers: Vec<i64> = stored.iter().map(|m| m["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, (1..=acked.len() as i64).collect::<Vec<_>>(), "chat {chat}: dense, no duplicates");
    for m in &stored {
        let n = m["number"].as_i64().unwrap();
        assert_eq!(m["body"].as_str(), acked.get(&n).map(String::as_str), "chat {chat} message {n}");
    }
    let c: Value = app.get(&format!("/applications/{token}/chats/{chat}")).await.json().await.unwrap();
    assert_eq!(c["messages_count"].as_i64(), Some(acked.len() as i64), "chat {chat} count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_message_creates_number_densely() {
    let app = spawn_app_with(|c| c.queue_capacity = 4096).await;
    let apps = [app.create_app("a").await, app.create_app("b").await];
    let chats: Vec<(usize, i64)> = vec![(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)];
    for &(a, _) in &chats {
        app.create_chat(&apps[a]).await;
    }

    let started = Instant::now();
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let (a, chat) = chats[i % chats.len()];
            let url = app.url(&format!("/applications/{}/chats/{chat}/messages", apps[a]));
            let body = format!("message {i}");
            let request = app.client.post(url).json(&json!({ "body": body }));
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["chat_number"].as_i64(), Some(chat));
                (a, chat, v["number"].as_i64().unwrap(), body)
            })
        })
        .collect();
    let mut acked: HashMap<(usize, i64), HashMap<i64, String>> = HashMap::new();
    for t in tasks {
        let (a, chat, n, body) = t.await.unwrap();
        let previous = acked.entry((a, chat)).or_default().insert(n, body);
        assert!(previous.is_none(), "number {n} acknowledged twice in chat {chat} of app {a}");
    }
    let elapsed = started.elapsed();

    for &(a, chat) in &chats {
        assert_eq!(acked[&(a, chat)].len(), 400);
        assert_chat_exactly(&app, &apps[a], chat, &acked[&(a, chat)]).await;
    }
    let stats = app.writer_stats();
    assert!(stats.largest_batch > 1, "under load one transaction must carry many creates: {stats:?}");
    println!(
        "2000 concurrent creates: {:.2?}; commits {}, largest batch {}, average {:.1} writes per commit",
        elapsed,
        stats.commits,
        stats.largest_batch,
        stats.average_batch()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_chat_creates_number_densely() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.create_app("busy").await;
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let request = app.client.post(app.url(&format!("/applications/{token}/chats")));
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                r.json::<Value>().await.unwrap()["number"].as_i64().unwrap()
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=300).collect::<Vec<_>>());
    let a: Value = app.get(&format!("/applications/{token}")).await.json().await.unwrap();
    assert_eq!(a["chats_count"], 300);
    let listed =
        crate::helpers::follow_pages(&app.client, &app.api, &format!("/applications/{token}/chats?limit=77"))
            .await;
    assert_eq!(listed.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_and_writes_nothing_half() {
    let app = spawn_app_with(|c| {
        c.queue_capacity = 1;
        c.max_batch = 1;
    })
    .await;
    let token = app.create_app("small queue").await;
    let chat = app.create_chat(&token).await;
    let url = app.url(&format!("/applications/{token}/chats/{chat}/messages"));
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let request = app.client.post(&url).json(&json!({ "body": format!("m{i}") }));
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                let status = r.status();
                let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let v: Value = r.json().await.unwrap();
                (status, retry_after, v, format!("m{i}"))
            })
        })
        .collect();
    let mut acked = HashMap::new();
    let mut refused = 0;
    for t in tasks {
        let (status, retry_after, v, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => {
                acked.insert(v["number"].as_i64().unwrap(), body);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(v["error"], "overloaded");
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(refused > 0, "a one-slot queue under 400 concurrent creates must refuse some");
    assert!(!acked.is_empty());
    assert_chat_exactly(&app, &token, chat, &acked).await;
}
