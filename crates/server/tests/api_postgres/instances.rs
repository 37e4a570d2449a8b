//! Three `chatd` processes on one database (issue 22, item 6): numbers stay dense and unique
//! and counts exact when creates arrive through all three at once.

use std::collections::{BTreeMap, BTreeSet};

use chatd_pg_testing::TestPostgres;
use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Process, chatd_on_database, follow_pages, start_process};
use crate::streams::{Stream, numbers};

/// The JSON answer to a GET.
async fn get_json(client: &Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// `n` chatd processes on one fresh database, with their base URLs.
fn instances(n: usize) -> (Vec<Process>, Vec<String>) {
    let url = TestPostgres::shared().fresh_database().unwrap();
    (0..n).map(|_| start_process(chatd_on_database(&url))).unzip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_number_3000_messages_and_300_chats_densely() {
    let (_instances, bases) = instances(3);
    let client = Client::builder().pool_max_idle_per_host(128).build().unwrap();
    let r = client
        .post(format!("{}/applications", bases[0]))
        .json(&json!({"name": "three"}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    for chat in 1..=5 {
        let r = client.post(format!("{}/applications/{token}/chats", bases[chat % 3])).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    // 3,000 message creates over the 5 chats and 295 more chats, all at once (256 in
    // flight), round-robin over the three instances.
    let requests = (0..3295).map(|i| {
        let base = &bases[i % 3];
        let (path, body) = if i % 11 == 10 && i / 11 < 295 {
            (format!("/applications/{token}/chats"), None)
        } else {
            (
                format!("/applications/{token}/chats/{}/messages", i % 5 + 1),
                Some(json!({"body": format!("m{i}")})),
            )
        };
        let request = match &body {
            Some(b) => client.post(format!("{base}{path}")).json(b),
            None => client.post(format!("{base}{path}")),
        };
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED, "{path}");
            let v = r.json::<Value>().await.unwrap();
            (body.is_some().then(|| v["chat_number"].as_i64().unwrap()), v["number"].as_i64().unwrap())
        }
    });
    let answers: Vec<(Option<i64>, i64)> =
        futures::stream::iter(requests).buffer_unordered(256).collect().await;
    let mut messages: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    let mut chats: BTreeSet<i64> = (1..=5).collect();
    for (chat, n) in answers {
        let fresh = match chat {
            Some(c) => messages.entry(c).or_default().insert(n),
            None => chats.insert(n),
        };
        assert!(fresh, "number {n} acknowledged twice ({chat:?})");
    }
    assert_eq!(chats, (1..=300).collect::<BTreeSet<_>>(), "chat numbers dense and unique");
    assert_eq!(messages.values().map(BTreeSet::len).sum::<usize>(), 3000);
    for (chat, numbers) in &messages {
        let count = numbers.len() as i64;
        assert_eq!(numbers, &(1..=count).collect::<BTreeSet<_>>(), "chat {chat}: message numbers dense");
        // Read back through one instance (its writes came through all three).
        let base = &bases[*chat as usize % 3];
        let stored =
            follow_pages(&client, base, &format!("/applications/{token}/chats/{chat}/messages?limit=1000"))
                .await;
        assert_eq!(stored.len() as i64, count, "chat {chat}: every acknowledged message stored");
        let c = get_json(&client, format!("{base}/applications/{token}/chats/{chat}")).await;
        assert_eq!(c["messages_count"], count, "chat {chat}: the count is exact");
    }
    let a = get_json(&client, format!("{}/applications/{token}", bases[2])).await;
    assert_eq!(a["chats_count"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_instance_receives_what_every_instance_writes() {
    let url = TestPostgres::shared().fresh_database().unwrap();
    let instances: Vec<_> = (0..3).map(|_| start_process(chatd_on_database(&url))).collect();
    let bases: Vec<String> = instances.iter().map(|(_, base)| base.clone()).collect();
    let client = Client::new();
    let r = client
        .post(format!("{}/applications", bases[0]))
        .json(&json!({"name": "live"}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let r = client.post(format!("{}/applications/{token}/chats", bases[1])).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut on_a = Stream::try_open(&client, &bases[0], &token, 1, Some(0), None).await.ok().unwrap();
    let mut on_b = Stream::try_open(&client, &bases[1], &token, 1, Some(0), None).await.ok().unwrap();

    let creates = (0..90).map(|i| {
        let url = format!("{}/applications/{token}/chats/1/messages", bases[i % 3]);
        let request = client.post(url).json(&json!({"body": format!("via {}", i % 3)}));
        async move { assert_eq!(request.send().await.unwrap().status(), StatusCode::CREATED) }
    });
    let write = futures::stream::iter(creates).buffer_unordered(10).collect::<Vec<()>>();
    let (_, from_a, from_b) = tokio::join!(write, on_a.messages(90), on_b.messages(90));
    for events in [&from_a, &from_b] {
        assert_eq!(numbers(events), (1..=90).collect::<Vec<_>>());
        let via: BTreeSet<String> =
            events.iter().map(|e| e.json()["body"].as_str().unwrap().to_owned()).collect();
        assert_eq!(via.len(), 3, "messages written through all three instances arrive: {via:?}");
    }

    let url = format!("{}/applications/{token}/chats/1/messages/7", bases[2]);
    let r = client.put(url).json(&json!({"body": "edited on C"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let edit = on_a.next().await.unwrap();
    assert_eq!((edit.event.as_str(), edit.id), ("edit", None));
    assert_eq!(edit.json()["number"], 7);
    assert_eq!(edit.json()["body"], "edited on C");
}

/// SPEC §8 across instances: creates with one `Idempotency-Key` sent through two instances at
/// once create one resource, and every request gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_with_one_key_through_two_instances_create_one_resource() {
    let (_instances, bases) = instances(2);
    let client = Client::builder().pool_max_idle_per_host(64).build().unwrap();
    // 20 requests at once, alternating instances; every answer, in order.
    let twenty = |path: String, key: &'static str, body: Value| {
        let requests = (0..20).map(|i| {
            let request =
                client.post(format!("{}{path}", bases[i % 2])).header("Idempotency-Key", key).json(&body);
            async move {
                let r = request.send().await.unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            }
        });
        futures::future::join_all(requests)
    };
    let distinct = |answers: Vec<(StatusCode, Value)>| {
        assert!(answers.iter().all(|(s, _)| *s == StatusCode::CREATED), "{answers:?}");
        answers.into_iter().map(|(_, v)| v.to_string()).collect::<BTreeSet<_>>()
    };

    let apps = distinct(twenty("/applications".into(), "app", json!({"name": "once"})).await);
    assert_eq!(apps.len(), 1, "{apps:?}");
    let listed = get_json(&client, format!("{}/applications", bases[0])).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let token = listed[0]["access_token"].as_str().unwrap().to_owned();

    let chats = distinct(twenty(format!("/applications/{token}/chats"), "chat", json!({})).await);
    assert_eq!(chats, BTreeSet::from([json!({"number": 1, "access_token": token}).to_string()]));

    let path = format!("/applications/{token}/chats/1/messages");
    let messages = distinct(twenty(path.clone(), "message", json!({"body": "once"})).await);
    let expected = json!({"number": 1, "chat_number": 1, "access_token": token});
    assert_eq!(messages, BTreeSet::from([expected.to_string()]));
    assert_eq!(follow_pages(&client, &bases[1], &path).await.len(), 1);
    let chat = get_json(&client, format!("{}/applications/{token}/chats/1", bases[0])).await;
    assert_eq!(chat["messages_count"], 1);
}
