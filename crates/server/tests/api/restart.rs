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
    // Let some requests in, then stop while others are still arriving.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let dir = app.stop().await;
    let mut acknowledged = Vec::new();
    for s in sends {
        if let Ok(r) = s.await.unwrap()
            && r.status() == StatusCode::CREATED
        {
            acknowledged.push(r.json::<Value>().await.unwrap()["number"].as_i64().unwrap());
        }
    }
    assert!(!acknowledged.is_empty(), "no request got in before the stop");

    let app = spawn_app_in(dir, |_| {}).await;
    let stored: Vec<i64> =
        app.all_messages(&token, chat).await.iter().map(|m| m["number"].as_i64().unwrap()).collect();
    for n in &acknowledged {
        assert!(stored.contains(n), "acknowledged message {n} is missing after the stop");
    }
    assert_eq!(stored, (1..=stored.len() as i64).collect::<Vec<_>>(), "numbers are dense");
}
