//! Faults of the scale-out mode (issue 22, item 5): PostgreSQL stopped at once under load and
//! started again, and `kill -9` of one of two instances.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatd_pg_testing::TestPostgres;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, chatd_on_database, follow_pages, spawn_app_with, start_process};
use crate::streams::{Stream, numbers};

/// Acknowledged creates: (chat, number) → body.
type Acked = Arc<Mutex<BTreeMap<(i64, i64), String>>>;

/// Every acknowledged message is stored under its number with its body, and each chat's
/// numbers run 1..=count with no gap, count exact.
async fn assert_stored(
    client: &Client,
    base: &str,
    token: &str,
    chats: i64,
    acked: &BTreeMap<(i64, i64), String>,
) {
    for chat in 1..=chats {
        let stored =
            follow_pages(client, base, &format!("/applications/{token}/chats/{chat}/messages?limit=1000"))
                .await;
        let numbers: Vec<i64> = stored.iter().map(|m| m["number"].as_i64().unwrap()).collect();
        assert_eq!(
            numbers,
            (1..=numbers.len() as i64).collect::<Vec<_>>(),
            "chat {chat}: numbers dense from 1"
        );
        let by_number: BTreeMap<i64, &str> =
            stored.iter().map(|m| (m["number"].as_i64().unwrap(), m["body"].as_str().unwrap())).collect();
        for ((c, n), body) in acked.range((chat, 0)..=(chat, i64::MAX)) {
            assert_eq!(by_number.get(n).copied(), Some(body.as_str()), "acknowledged {c}/{n} is stored");
        }
        let count = client.get(format!("{base}/applications/{token}/chats/{chat}")).send().await.unwrap();
        let count = count.json::<Value>().await.unwrap()["messages_count"].as_i64().unwrap();
        assert_eq!(count, numbers.len() as i64, "chat {chat}: the count is exact");
    }
}

/// Writers that create messages in chats 1..=chats until `stop`, recording every 201 and
/// checking that every other answer is a JSON 503 `unavailable` with `Retry-After`.
fn writers(
    app: &TestApp,
    token: &str,
    chats: i64,
    acked: &Acked,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..8)
        .map(|w| {
            let (client, base, token, acked, stop) =
                (app.client.clone(), app.api.clone(), token.to_owned(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let chat = 1 + (w + i) % chats;
                    let body = format!("w{w} i{i}");
                    let url = format!("{base}/applications/{token}/chats/{chat}/messages");
                    let started = Instant::now();
                    let r = client.post(url).json(&json!({ "body": body })).send().await.unwrap();
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "an answer within the request timeout"
                    );
                    match r.status() {
                        StatusCode::CREATED => {
                            let n = r.json::<Value>().await.unwrap()["number"].as_i64().unwrap();
                            let previous = acked.lock().unwrap().insert((chat, n), body);
                            assert!(previous.is_none(), "{chat}/{n} acknowledged twice");
                        }
                        StatusCode::SERVICE_UNAVAILABLE => {
                            assert!(r.headers().contains_key("retry-after"), "a 503 says when to retry");
                            let e = r.json::<Value>().await.unwrap();
                            assert_eq!(e["error"], "unavailable", "{e}");
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => panic!("a create answered {other}: {}", r.text().await.unwrap_or_default()),
                    }
                }
                refused
            })
        })
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_answers_503_and_the_same_instance_serves_again() {
    // A server of this test's own: it is stopped and started again.
    let mut pg = TestPostgres::start().expect("a PostgreSQL of the test's own (not CHATD_TEST_DATABASE_URL)");
    let url = pg.fresh_database().unwrap();
    let app = spawn_app_with(|c| c.database_url = Some(url)).await;
    let token = app.create_app("faults").await;
    for _ in 0..3 {
        app.create_chat(&token).await;
    }
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = writers(&app, &token, 3, &acked, &stop);
    wait_for("200 creates", Duration::from_secs(60), async || acked.lock().unwrap().len() >= 200).await;

    pg.stop_immediately().unwrap();
    let at_stop = acked.lock().unwrap().len();
    // While it is down: reads and readiness answer 503 too, never 500.
    let r = app.get(&format!("/applications/{token}/chats/1/messages/1")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "a read while PostgreSQL is down");
    let r = app.get("/ready").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "/ready while PostgreSQL is down");
    let r = app.get(&format!("/applications/{token}/chats/1/messages/search?keyword=w1")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "a search while PostgreSQL is down");
    // Creates in flight at the stop may have been acknowledged; none after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let while_down = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(acked.lock().unwrap().len(), while_down, "no create is acknowledged while PostgreSQL is down");

    pg.start_again().unwrap();
    wait_for("/ready answering 200", Duration::from_secs(60), async || {
        app.get("/ready").await.status() == StatusCode::OK
    })
    .await;
    wait_for("creates acknowledged again", Duration::from_secs(60), async || {
        acked.lock().unwrap().len() >= while_down + 100
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut refused = 0;
    for w in workers {
        refused += w.await.unwrap();
    }
    assert!(refused > 0, "the writers met the outage");
    assert!(at_stop >= 200);
    let acked = acked.lock().unwrap().clone();
    assert_stored(&app.client, &app.api, &token, 3, &acked).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_instance_leaves_the_other_serving_and_loses_no_acknowledged_create() {
    let url = TestPostgres::shared().fresh_database().unwrap();
    let start = || start_process(chatd_on_database(&url));
    let (mut a, base_a) = start();
    let (_b, base_b) = start();
    let client = Client::new();
    let r = client.post(format!("{base_a}/applications")).json(&json!({"name": "two"})).send().await.unwrap();
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let r = client.post(format!("{base_b}/applications/{token}/chats")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    // Writers on both instances, over the same two chats.
    let acked: Acked = Arc::default();
    let mut workers = Vec::new();
    for w in 0..12 {
        let base = if w % 2 == 0 { base_a.clone() } else { base_b.clone() };
        let (client, token, acked) = (client.clone(), token.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            let on_b = w % 2 == 1;
            for i in 0..if on_b { 150 } else { i64::MAX } {
                let chat = 1 + (w + i) % 2;
                let body = format!("w{w} i{i}");
                let url = format!("{base}/applications/{token}/chats/{chat}/messages");
                let r = client.post(url).json(&json!({ "body": body })).send().await;
                // A's connections break when it is killed; B's never do.
                let Ok(r) = r else {
                    assert!(!on_b, "a request to the surviving instance failed");
                    break;
                };
                if !on_b && r.status() != StatusCode::CREATED {
                    break;
                }
                assert_eq!(r.status(), StatusCode::CREATED, "the surviving instance answered");
                let Ok(v) = r.json::<Value>().await else {
                    assert!(!on_b, "an answer of the surviving instance was cut");
                    break;
                };
                let previous = acked.lock().unwrap().insert((chat, v["number"].as_i64().unwrap()), body);
                assert!(previous.is_none(), "a number was acknowledged twice");
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "the writers stopped before 300 creates");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300 + 6 * 100, "B's writers finished their creates after A died");
    assert_stored(&client, &base_b, &token, 2, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_open_when_postgres_stops_ends_and_resumes_without_a_gap_once_it_is_back() {
    let mut pg = TestPostgres::start().expect("a PostgreSQL of the test's own (not CHATD_TEST_DATABASE_URL)");
    let url = pg.fresh_database().unwrap();
    let app = spawn_app_with(|c| c.database_url = Some(url)).await;
    let token = app.create_app("streams").await;
    app.create_chat(&token).await;
    for n in 1..=5 {
        app.create_message(&token, 1, &format!("before {n}")).await;
    }
    let open =
        async |last: Option<i64>| Stream::try_open(&app.client, &app.api, &token, 1, Some(0), last).await;
    let mut stream = open(None).await.ok().unwrap();
    assert_eq!(numbers(&stream.messages(5).await), [1, 2, 3, 4, 5]);

    pg.stop_immediately().unwrap();
    // The instance can no longer vouch for its events: the stream ends, naming where to
    // resume, and no new one starts while PostgreSQL is away.
    let end = stream.next().await.expect("an end event");
    assert_eq!(end.event, "end");
    assert_eq!(end.json()["last_event_id"], 5);
    assert_eq!(end.id, Some(5));
    assert_eq!(stream.next().await, None);
    let refused = open(Some(5)).await.err().expect("no stream while PostgreSQL is down");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    pg.start_again().unwrap();
    wait_for("/ready answering 200", Duration::from_secs(60), async || {
        app.get("/ready").await.status() == StatusCode::OK
    })
    .await;
    for n in 6..=8 {
        app.create_message(&token, 1, &format!("while away {n}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut resumed = loop {
        match open(Some(5)).await {
            Ok(stream) => break stream,
            Err(r) => assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE),
        }
        assert!(Instant::now() < deadline, "streams never started again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(numbers(&resumed.messages(3).await), [6, 7, 8]);
    app.create_message(&token, 1, "live again").await;
    let live = resumed.messages(1).await;
    assert_eq!(numbers(&live), [9]);
    assert_eq!(live[0].json()["body"], "live again");
    app.stop().await;
}
