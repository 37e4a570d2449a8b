//! `kill -9` of the real `chatd` binary during concurrent creates: every acknowledged
//! create survives with its number, and nothing is half-written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{follow_pages, start_chatd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_create() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_chatd(dir.path());
    let client = Client::new();
    let r = client.post(format!("{base}/applications")).json(&json!({"name": "crash"})).send().await.unwrap();
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let r = client.post(format!("{base}/applications/{token}/chats")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    // Writers create messages until the process dies under them.
    let acked: Arc<Mutex<HashMap<(i64, i64), String>>> = Arc::default();
    let sent: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..16 {
        let (client, base, token, acked, sent) =
            (client.clone(), base.clone(), token.clone(), acked.clone(), sent.clone());
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let chat = 1 + (w + i) % 3;
                let body = format!("w{w} i{i}");
                sent.lock().unwrap().insert(body.clone(), chat);
                let url = format!("{base}/applications/{token}/chats/{chat}/messages");
                let Ok(r) = client.post(url).json(&json!({ "body": body })).send().await else { break };
                if r.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(v) = r.json::<Value>().await else { break };
                let previous = acked.lock().unwrap().insert((chat, v["number"].as_i64().unwrap()), body);
                assert!(previous.is_none(), "a number was acknowledged twice");
            }
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 400 {
        assert!(std::time::Instant::now() < deadline, "the writers stopped before 400 creates");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let (mut child, base) = start_chatd(dir.path());
    let mut stored: HashMap<(i64, i64), String> = HashMap::new();
    for chat in 1..=3 {
        let path = format!("/applications/{token}/chats/{chat}/messages?limit=1000");
        let listed = follow_pages(&client, &base, &path).await;
        let numbers: Vec<i64> = listed.iter().map(|m| m["number"].as_i64().unwrap()).collect();
        assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>(), "chat {chat} is dense");
        let url = format!("{base}/applications/{token}/chats/{chat}");
        let c: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(c["messages_count"].as_i64(), Some(listed.len() as i64), "chat {chat} count");
        for m in listed {
            let body = m["body"].as_str().unwrap().to_owned();
            stored.insert((chat, m["number"].as_i64().unwrap()), body);
        }
    }
    let lost: Vec<_> = acked.iter().filter(|(key, body)| stored.get(*key) != Some(*body)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged creates lost: {lost:?}", lost.len(), acked.len());
    // Rows committed whose 201 the kill cut off must be whole creates we sent, to that chat,
    // each stored once.
    let sent = sent.lock().unwrap().clone();
    let mut bodies = std::collections::HashSet::new();
    for ((chat, n), body) in &stored {
        assert_eq!(sent.get(body), Some(chat), "chat {chat} message {n}: {body:?} was never sent there");
        assert!(bodies.insert(body), "{body:?} stored twice");
    }
    println!("kill -9: {} acknowledged, {} stored, 0 lost", acked.len(), stored.len());
    // Every acknowledged message is found by search, without a reindex: the index catches
    // up from the sequence its last commit recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for ((chat, n), body) in &acked {
        let url = format!("{base}/applications/{token}/chats/{chat}/messages/search");
        loop {
            let r = client.get(&url).query(&[("keyword", format!("\"{body}\"")), ("limit", "1000".into())]);
            let found: Vec<Value> = r.send().await.unwrap().json().await.unwrap();
            if found.iter().any(|m| m["number"].as_i64() == Some(*n)) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chat {chat} message {n} ({body}) is not searchable"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Numbering continues after the crash.
    let r = client
        .post(format!("{base}/applications/{token}/chats/1/messages"))
        .json(&json!({"body": "after"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    child.kill().unwrap();
    child.wait().unwrap();
}
