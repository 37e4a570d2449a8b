//! Restarts: data survives a graceful stop and numbering continues; a stop drains every
//! accepted write.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_in};

#[tokio::test]
async fn data_survives_a_restart_and_numbering_continues() {
    let app = spawn_app().await;
    let token = app.create_app("durable").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "before restart").await;
    let dir = app.stop().await;

    let app = spawn_app_in(dir, |_| {}).await;
    let a: Value = app.get(&format!("/applications/{token}")).await.json().await.unwrap();
    assert_eq!((a["name"].as_str(), a["chats_count"].as_i64()), (Some("durable"), Some(1)));
    assert_eq!(app.create_chat(&token).await, 2);
    assert_eq!(app.create_message(&token, chat, "after restart").await, 2);
    let bodies: Vec<Value> =
        app.all_messages(&token, chat).await.into_iter().map(|m| m["body"].clone()).collect();
    assert_eq!(bodies, [json!("before restart"), json!("after restart")]);
}

#[tokio::test]
async fn a_graceful_stop_commits_every_accepted_write() {
    let app = spawn_app().await;
    let token = app.create_app("drain").await;
    let chat = app.create_chat(&token).await;
    let path = app.url(&format!("/applications/{token}/chats/{chat}/messages"));
    let sends: Vec<_> = (0..300)
        .map(|i| {
            let request = app.client.post(&path).json(&json!({"body": format!("m{i}")}));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    // Stop once some writes are committed, while others are still arriving.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.writer_stats().jobs < 20 {
        assert!(std::time::Instant::now() < deadline, "no write got in");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let dir = app.stop().await;
    let mut acknowledged = Vec::new();
    for s in sends {
        // A request the stopped listener never took fails to connect; one it took must be
        // answered 201, never a 503 for a write dropped by the shutdown.
        if let Ok(r) = s.await.unwrap() {
            assert_eq!(r.status(), StatusCode::CREATED, "an accepted request was refused during shutdown");
            acknowledged.push(r.json::<Value>().await.unwrap()["number"].as_i64().unwrap());
        }
    }
    assert!(acknowledged.len() >= 20, "only {} requests got in before the stop", acknowledged.len());

    let app = spawn_app_in(dir, |_| {}).await;
    let stored: Vec<i64> =
        app.all_messages(&token, chat).await.iter().map(|m| m["number"].as_i64().unwrap()).collect();
    for n in &acknowledged {
        assert!(stored.contains(n), "acknowledged message {n} is missing after the stop");
    }
    assert_eq!(stored, (1..=stored.len() as i64).collect::<Vec<_>>(), "numbers are dense");
}
