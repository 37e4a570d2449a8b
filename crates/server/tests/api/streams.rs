//! Live streams (SPEC §8): `GET …/messages/stream` as server-sent events, read over real
//! connections while other requests write.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, assert_error, chatd_on, spawn_app, spawn_app_with, start_process};

/// Streams that read nothing, in the memory test.
const STUCK: usize = 20;

/// How long a test waits for an event that should come.
const PATIENCE: Duration = Duration::from_secs(30);

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SseEvent {
    pub id: Option<i64>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }
}

/// A stream being read: the response and what has arrived of it.
pub(crate) struct Stream {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines seen so far.
    comments: usize,
}

impl Stream {
    /// Opens the chat's stream; `after` as `?after`, `last_event_id` as the header.
    async fn open(
        app: &TestApp,
        token: &str,
        chat: i64,
        after: Option<i64>,
        last_event_id: Option<i64>,
    ) -> Self {
        Self::try_open(&app.client, &app.api, token, chat, after, last_event_id).await.unwrap()
    }

    pub(crate) async fn try_open(
        client: &Client,
        base: &str,
        token: &str,
        chat: i64,
        after: Option<i64>,
        last_event_id: Option<i64>,
    ) -> Result<Self, reqwest::Response> {
        let mut url = format!("{base}/applications/{token}/chats/{chat}/messages/stream");
        if let Some(after) = after {
            url.push_str(&format!("?after={after}"));
        }
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        if response.status() != StatusCode::OK {
            return Err(response);
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Ok(Stream { response, buffer: String::new(), comments: 0 })
    }

    /// The next event, or `None` when the stream ended. Panics after [`PATIENCE`].
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(PATIENCE, self.next_event()).await.expect("an event within the patience")
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { id: None, event: "message".into(), data: String::new() };
                let mut fields = false;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    fields = true;
                    match name {
                        "id" => event.id = Some(value.parse().unwrap()),
                        "event" => event.event = value.to_owned(),
                        "data" => event.data.push_str(value),
                        _ => {}
                    }
                }
                if fields {
                    return Some(event);
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Events until `count` `message` events have come (others included, in order).
    pub(crate) async fn messages(&mut self, count: usize) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut seen = 0;
        while seen < count {
            let event = self.next().await.unwrap_or_else(|| panic!("the stream ended after {events:?}"));
            seen += usize::from(event.event == "message");
            events.push(event);
        }
        events
    }
}

/// The numbers of the `message` events.
pub(crate) fn numbers(events: &[SseEvent]) -> Vec<i64> {
    events.iter().filter(|e| e.event == "message").map(|e| e.id.unwrap()).collect()
}

async fn app_with_chat() -> (TestApp, String) {
    let app = spawn_app().await;
    let token = app.create_app("streams").await;
    assert_eq!(app.create_chat(&token).await, 1);
    (app, token)
}

/// Creates `count` messages in `chat` with `parallel` requests at a time.
async fn create_messages(app: &TestApp, token: &str, chat: i64, count: usize, parallel: usize) {
    let per_task = count.div_ceil(parallel);
    let tasks = (0..parallel).map(|t| async move {
        for i in 0..per_task {
            if t * per_task + i < count {
                app.create_message(token, chat, &format!("body {t} {i}")).await;
            }
        }
    });
    join_all(tasks).await;
}

#[tokio::test]
async fn fifty_subscribers_each_receive_two_hundred_messages_in_number_order_once() {
    let (app, token) = app_with_chat().await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        streams.push(Stream::open(&app, &token, 1, None, None).await);
    }

    let (_, received) = tokio::join!(
        create_messages(&app, &token, 1, 200, 20),
        join_all(streams.iter_mut().map(|s| s.messages(200)))
    );

    let stored: Vec<Value> = app.all_messages(&token, 1).await;
    for events in received {
        assert_eq!(numbers(&events), (1..=200).collect::<Vec<_>>());
        for (event, message) in events.iter().zip(&stored) {
            assert_eq!(event.json(), *message, "an event's data is the message as GET shows it");
        }
    }
}

#[tokio::test]
async fn a_subscriber_that_reconnects_with_last_event_id_gets_the_rest_with_no_gap_and_no_duplicate() {
    let (app, token) = app_with_chat().await;
    let mut first = Stream::open(&app, &token, 1, Some(0), None).await;

    let reconnecting = async {
        let before = first.messages(50).await;
        assert_eq!(numbers(&before), (1..=50).collect::<Vec<_>>());
        drop(first);
        // Creates go on while it is away and while it catches up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut again = Stream::open(&app, &token, 1, Some(7), Some(50)).await;
        again.messages(250).await
    };
    let (_, after) = tokio::join!(create_messages(&app, &token, 1, 300, 4), reconnecting);

    assert_eq!(numbers(&after), (51..=300).collect::<Vec<_>>(), "Last-Event-ID wins over ?after");
}

#[tokio::test]
async fn after_sends_the_stored_messages_above_it_first_then_the_live_ones() {
    let (app, token) = app_with_chat().await;
    for n in 1..=5 {
        app.create_message(&token, 1, &format!("old {n}")).await;
    }
    let mut stream = Stream::open(&app, &token, 1, Some(2), None).await;
    let backlog = stream.messages(3).await;
    assert_eq!(numbers(&backlog), [3, 4, 5]);
    assert_eq!(backlog[0].json()["body"], "old 3");

    app.create_message(&token, 1, "new").await;
    let live = stream.messages(1).await;
    assert_eq!(numbers(&live), [6]);
    assert_eq!(live[0].json()["body"], "new");
}

#[tokio::test]
async fn a_position_beyond_the_newest_message_starts_at_the_newest() {
    let (app, token) = app_with_chat().await;
    app.create_message(&token, 1, "one").await;
    let mut stream = Stream::open(&app, &token, 1, None, Some(40)).await;
    app.create_message(&token, 1, "two").await;
    assert_eq!(numbers(&stream.messages(1).await), [2]);
}

#[tokio::test]
async fn without_a_position_only_new_messages_come() {
    let (app, token) = app_with_chat().await;
    app.create_message(&token, 1, "before").await;
    let mut stream = Stream::open(&app, &token, 1, None, None).await;
    app.create_message(&token, 1, "after").await;
    let events = stream.messages(1).await;
    assert_eq!(numbers(&events), [2]);
}

#[tokio::test]
async fn edits_arrive_as_edit_events_with_the_new_body() {
    let (app, token) = app_with_chat().await;
    let mut stream = Stream::open(&app, &token, 1, Some(0), None).await;
    app.create_message(&token, 1, "first").await;
    app.create_message(&token, 1, "second").await;
    let r = app
        .client
        .put(app.url(&format!("/applications/{token}/chats/1/messages/1")))
        .json(&serde_json::json!({"body": "first, edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let events = stream.messages(2).await;
    assert_eq!(numbers(&events), [1, 2]);
    let edit = stream.next().await.unwrap();
    assert_eq!(edit.event, "edit");
    assert_eq!(edit.id, None, "an edit does not move the position a client resumes from");
    assert_eq!(edit.json()["body"], "first, edited");
    assert_eq!(edit.json()["number"], 1);
}

#[tokio::test]
async fn a_stream_of_one_chat_receives_nothing_of_another() {
    let (app, token) = app_with_chat().await;
    assert_eq!(app.create_chat(&token).await, 2);
    let mut stream = Stream::open(&app, &token, 1, Some(0), None).await;
    app.create_message(&token, 2, "elsewhere").await;
    app.create_message(&token, 1, "here").await;
    let events = stream.messages(1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].json()["body"], "here");
}

#[tokio::test]
async fn an_unknown_token_or_chat_is_404_and_a_bad_position_is_400() {
    let (app, token) = app_with_chat().await;
    let stream = |path: String| app.client.get(app.url(&path)).send();
    let r = stream(format!("/applications/{}/chats/1/messages/stream", "x".repeat(32))).await.unwrap();
    assert_error(r, 404, "application_not_found").await;
    let r = stream(format!("/applications/{token}/chats/2/messages/stream")).await.unwrap();
    assert_error(r, 404, "chat_not_found").await;
    let r = stream(format!("/applications/{token}/chats/1/messages/stream?after=-1")).await.unwrap();
    assert_eq!(assert_error(r, 400, "bad_request").await["field"], "after");
    for bad in ["x", "-1", "01", ""] {
        let r = app
            .client
            .get(app.url(&format!("/applications/{token}/chats/1/messages/stream")))
            .header("Last-Event-ID", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(assert_error(r, 400, "bad_request").await["field"], "Last-Event-ID", "{bad:?}");
    }
}

#[tokio::test]
async fn streams_beyond_the_limit_get_503_overloaded_and_a_closed_one_frees_its_slot() {
    let app = spawn_app_with(|c| c.max_streams = Some(2)).await;
    let token = app.create_app("limited").await;
    app.create_chat(&token).await;
    let one = Stream::open(&app, &token, 1, None, None).await;
    let _two = Stream::open(&app, &token, 1, None, None).await;

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "chatd_streams_open 2"), "{metrics}");
    let refused = Stream::try_open(&app.client, &app.api, &token, 1, None, None).await.err().unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, 503, "overloaded").await;

    drop(one);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match Stream::try_open(&app.client, &app.api, &token, 1, None, None).await {
            Ok(_) => break,
            Err(r) => assert_eq!(r.status(), 503),
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_stream_gets_a_comment_within_fifteen_seconds() {
    let (app, token) = app_with_chat().await;
    let mut stream = Stream::open(&app, &token, 1, None, None).await;
    let started = tokio::time::Instant::now();
    // A comment alone is no event, so `next` would not return it: read the raw chunks.
    let comment = async {
        while stream.comments == 0 {
            match stream.response.chunk().await.unwrap() {
                Some(chunk) => {
                    stream.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
                    stream.comments += stream.buffer.lines().filter(|l| l.starts_with(':')).count();
                }
                None => panic!("the stream ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), comment).await.expect("a comment line");
    assert!(started.elapsed() >= Duration::from_secs(14), "no comment is sent while events could be");
}

#[tokio::test]
async fn shutting_down_ends_streams_with_an_end_event_naming_the_last_message() {
    let (app, token) = app_with_chat().await;
    let mut stream = Stream::open(&app, &token, 1, Some(0), None).await;
    app.create_message(&token, 1, "one").await;
    assert_eq!(numbers(&stream.messages(1).await), [1]);

    let stopping = tokio::spawn(app.stop());
    let end = stream.next().await.expect("an end event");
    assert_eq!(end.event, "end");
    assert_eq!(end.json()["reason"], "shutdown");
    assert_eq!(end.id, Some(1), "the end event carries the position, for EventSource");
    assert_eq!(end.json()["last_event_id"], 1);
    assert_eq!(stream.next().await, None, "nothing follows the end event");
    tokio::time::timeout(PATIENCE, stopping).await.expect("shutdown does not wait for streams").unwrap();
}

/// A client that stops reading: its stream falls behind and, once it reads again, gets an
/// `end` event naming the last message it has; resuming from there gives the rest.
#[tokio::test]
async fn a_subscriber_that_falls_behind_is_ended_and_resumes_without_a_gap() {
    let (app, token) = app_with_chat().await;
    let mut slow = Stream::open(&app, &token, 1, Some(0), None).await;
    // Far more than the socket buffers and the chat's event buffer hold together.
    let body = "x".repeat(8 * 1024);
    let total = 5000;
    let tasks = (0..8).map(|_| async {
        for _ in 0..total / 8 {
            app.create_message(&token, 1, &body).await;
        }
    });
    join_all(tasks).await;

    let mut events = Vec::new();
    let end = loop {
        let event = slow.next().await.expect("an end event before the stream closes");
        if event.event == "end" {
            break event;
        }
        events.push(event);
    };
    assert_eq!(end.json()["reason"], "lagged");
    let got = numbers(&events);
    assert!(got.len() < total, "the stream was ended before sending everything");
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>());
    assert_eq!(end.json()["last_event_id"], got.len());

    let mut resumed = Stream::open(&app, &token, 1, None, Some(got.len() as i64)).await;
    let rest = resumed.messages(total - got.len()).await;
    assert_eq!(numbers(&rest), (got.len() as i64 + 1..=total as i64).collect::<Vec<_>>());
}

/// The memory of a real chatd process while clients hold streams open and read nothing:
/// what they did not read is not kept for each of them (the chat's last events are kept
/// once for all, and the lag test shows that is bounded too), and their connections are
/// closed.
#[tokio::test]
async fn a_stream_that_is_never_read_is_closed_and_chatd_does_not_keep_what_it_did_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = chatd_on(dir.path());
    command.args(["--request-timeout", "3"]);
    let (process, base) = start_process(command);
    let client = Client::new();
    let token = client
        .post(format!("{base}/applications"))
        .json(&serde_json::json!({"name": "stuck"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    client.post(format!("{base}/applications/{token}/chats")).send().await.unwrap();
    let body = "y".repeat(4096);
    let write = |count: usize| {
        let (client, base, token, body) = (&client, &base, &token, &body);
        join_all((0..8).map(move |_| async move {
            for _ in 0..count / 8 {
                let url = format!("{base}/applications/{token}/chats/1/messages");
                let r = client.post(url).json(&serde_json::json!({"body": body})).send().await.unwrap();
                assert_eq!(r.status(), 201);
            }
        }))
    };
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", process.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    // The same writes with nobody following first, so that caches have grown to their size.
    let volume = 12_000;
    write(volume).await;
    let settled = rss();

    // Clients that send their request and then read nothing, each left with every byte of
    // the next writes unread.
    let addr = base.trim_start_matches("http://");
    let request =
        format!("GET /applications/{token}/chats/1/messages/stream HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut stuck = Vec::new();
    for _ in 0..STUCK {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(request.as_bytes()).await.unwrap();
        stuck.push(client);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    write(volume).await;
    let unread = STUCK as u64 * volume as u64 * 4096;
    let grown = rss().saturating_sub(settled);
    assert!(
        grown < unread / 8,
        "chatd grew by {grown} bytes while {STUCK} streams left {unread} bytes unread (RSS {settled} before)"
    );

    // Each is cut off after the write-stall timeout: reading now finds what the socket
    // buffers held, then the end.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for mut client in stuck {
        let mut sink = vec![0u8; 1 << 16];
        let mut read = 0u64;
        let drained = tokio::time::timeout(PATIENCE, async {
            loop {
                match client.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n as u64,
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "chatd closed the stalled stream");
        assert!(read < unread / STUCK as u64 / 2, "the stream was cut off, not delivered: {read} bytes");
    }
    drop(process);
}

#[tokio::test]
async fn every_subscriber_of_many_chats_gets_exactly_its_chats_messages() {
    let (app, token) = app_with_chat().await;
    for chat in 2..=5 {
        assert_eq!(app.create_chat(&token).await, chat);
    }
    let mut streams = Vec::new();
    for chat in 1..=5 {
        for _ in 0..4 {
            streams.push((chat, Stream::open(&app, &token, chat, Some(0), None).await));
        }
    }
    let writes = (1..=5).map(|chat| create_messages(&app, &token, chat, 40, 4));
    let reads = streams.iter_mut().map(|(chat, s)| async move { (*chat, s.messages(40).await) });
    let (_, received) = tokio::join!(join_all(writes), join_all(reads));
    for (chat, events) in received {
        assert_eq!(numbers(&events), (1..=40).collect::<Vec<_>>(), "chat {chat}");
        let bodies: HashSet<String> =
            events.iter().map(|e| e.json()["body"].as_str().unwrap().to_owned()).collect();
        assert_eq!(bodies.len(), 40, "chat {chat}: 40 different messages");
    }
}
