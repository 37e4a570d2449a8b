//! Crash accounting in the style of Jepsen's queue checks: concurrent creates (chats and
//! messages) and edits against the real `chatd` binary, `kill -9` at random moments,
//! restart on the same data directory, many cycles. Every request is recorded with its
//! outcome: acknowledged (201/200), refused (a definite error answer: nothing written), or
//! unknown (the connection dropped: either fully applied or not at all). After the last
//! cycle a clean start is checked against that history: nothing acknowledged lost, nothing
//! stored twice or never sent, numbers dense, counts exact, the last acknowledged edit
//! visible, and every stored message found by search under its current body only.
//!
//! `JEPSEN_SEED` replays a run's choices (which request, which target, when to kill; thread
//! timing still varies); `JEPSEN_CYCLES` raises the number of kills (default 20).
//!
//! On PostgreSQL (the `api_postgres` binary) half the cycles, at random, stop PostgreSQL at
//! once instead (`pg_ctl stop -m immediate`, on a server of the test's own) and start it
//! again while chatd runs on; there a 503 `unavailable` is an unknown outcome, since a
//! connection lost during COMMIT leaves the client not knowing.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{follow_pages, on_postgres, start_chatd, use_database};

/// Concurrent clients per cycle.
const WORKERS: usize = 8;
/// Applications the history spreads over; chats and messages go to random ones.
const APPS: usize = 2;
/// The longest a cycle's load runs before the kill.
const MAX_KILL_AFTER_MS: u64 = 400;

/// SplitMix64: a small seeded generator, so that a seed replays a run's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes past the test harness's output capture, so that CI logs show the figures.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 201/200: it must be there.
    Acked,
    /// The connection dropped after the request may have been sent: all or nothing.
    Unknown,
    /// A definite error answer (e.g. 503): nothing of it may be there.
    Refused,
}

/// The answer to one request, as the history sees it.
enum Reply {
    Ok(Value),
    Unknown,
    Refused,
    /// The connection was refused: the process is gone and nothing was sent.
    NotSent,
}

/// A message: (application index, chat number, message number).
type MsgKey = (usize, i64, i64);

/// One message's bodies in the order they were sent: its create (acknowledged, or it would
/// have no number) then its edits. Only one worker edits a message, one edit at a time, so
/// the order is the order of application.
#[derive(Debug, Default)]
struct History {
    versions: Vec<(String, Outcome)>,
}

impl History {
    /// The bodies the message may show now: the last acknowledged one, or one sent after it
    /// whose outcome is unknown.
    fn allowed(&self) -> HashSet<&str> {
        let last = self.versions.iter().rposition(|(_, o)| *o == Outcome::Acked).unwrap_or(0);
        self.versions[last..]
            .iter()
            .enumerate()
            .filter(|(i, (_, o))| *i == 0 || *o == Outcome::Unknown)
            .map(|(_, (b, _))| b.as_str())
            .collect()
    }
}

/// Everything the clients were told, shared by the workers.
#[derive(Debug, Default)]
struct Model {
    tokens: Vec<String>,
    /// Acknowledged chats, in a list to pick targets from.
    chats: Vec<(usize, i64)>,
    /// Chat creates per application whose outcome is unknown.
    unknown_chats: Vec<usize>,
    messages: HashMap<MsgKey, History>,
    /// Message creates whose outcome is unknown, by body.
    unknown_messages: HashMap<String, (usize, i64)>,
    /// Bodies of refused message creates.
    refused_messages: HashSet<String>,
    /// The messages each worker may edit (its own acknowledged creates).
    owned: Vec<Vec<MsgKey>>,
    /// Numbers acknowledged twice, and answers no request should get.
    duplicated: usize,
    /// Acknowledged messages whose number was later acknowledged again, for another body.
    displaced: Vec<(MsgKey, History)>,
    errors: Vec<String>,
    next_uid: u64,
    acked_chat_creates: usize,
    acked_message_creates: usize,
    acked_edits: usize,
    unknown: usize,
    refused: usize,
}

impl Model {
    /// A body unique in the whole run, with a unique token to search it by.
    fn body(&mut self, kind: &str) -> String {
        self.next_uid += 1;
        format!("jepsen {kind} k{}q", self.next_uid)
    }
}

/// The unique search token inside a body.
fn token_of(body: &str) -> &str {
    body.rsplit(' ').next().unwrap()
}

async fn exchange(request: RequestBuilder, expected: StatusCode, what: &str, model: &Mutex<Model>) -> Reply {
    match request.send().await {
        Err(e) if e.is_connect() => Reply::NotSent,
        Err(e) if e.is_timeout() => {
            model.lock().unwrap().errors.push(format!("{what}: no answer in time"));
            Reply::Unknown
        }
        Err(_) => Reply::Unknown,
        Ok(r) if r.status() == expected => match r.json().await {
            Ok(v) => Reply::Ok(v),
            Err(_) => Reply::Unknown,
        },
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if status != StatusCode::SERVICE_UNAVAILABLE {
                model.lock().unwrap().errors.push(format!("{what}: {status} {text}"));
            }
            // On PostgreSQL a batch may have committed when its connection broke.
            let code = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned));
            if on_postgres() && code.as_deref() == Some("unavailable") {
                Reply::Unknown
            } else {
                Reply::Refused
            }
        }
    }
}

/// One client: random creates and edits until the process dies under it.
async fn worker(id: usize, mut rng: Rng, client: Client, base: String, model: Arc<Mutex<Model>>) {
    loop {
        let dice = rng.below(100);
        let reply = if dice < 10 {
            let (app, token) = {
                let m = model.lock().unwrap();
                let app = rng.below(APPS as u64) as usize;
                (app, m.tokens[app].clone())
            };
            let request = client.post(format!("{base}/applications/{token}/chats"));
            let reply = exchange(request, StatusCode::CREATED, "create chat", &model).await;
            let mut m = model.lock().unwrap();
            match &reply {
                Reply::Ok(v) => {
                    let number = v["number"].as_i64().unwrap();
                    if m.chats.contains(&(app, number)) {
                        m.duplicated += 1;
                    }
                    m.chats.push((app, number));
                    m.acked_chat_creates += 1;
                }
                Reply::Unknown => {
                    m.unknown_chats[app] += 1;
                    m.unknown += 1;
                }
                Reply::Refused => m.refused += 1,
                Reply::NotSent => {}
            }
            reply
        } else if dice < 70 || model.lock().unwrap().owned[id].is_empty() {
            let (app, chat, token, body) = {
                let mut m = model.lock().unwrap();
                let (app, chat) = m.chats[rng.below(m.chats.len() as u64) as usize];
                (app, chat, m.tokens[app].clone(), m.body("create"))
            };
            let url = format!("{base}/applications/{token}/chats/{chat}/messages");
            let request = client.post(url).json(&json!({ "body": body }));
            let reply = exchange(request, StatusCode::CREATED, "create message", &model).await;
            let mut m = model.lock().unwrap();
            match &reply {
                Reply::Ok(v) => {
                    let key = (app, chat, v["number"].as_i64().unwrap());
                    let history = History { versions: vec![(body, Outcome::Acked)] };
                    if let Some(displaced) = m.messages.insert(key, history) {
                        m.duplicated += 1;
                        m.displaced.push((key, displaced));
                    }
                    m.owned[id].push(key);
                    m.acked_message_creates += 1;
                }
                Reply::Unknown => {
                    m.unknown_messages.insert(body, (app, chat));
                    m.unknown += 1;
                }
                Reply::Refused => {
                    m.refused_messages.insert(body);
                    m.refused += 1;
                }
                Reply::NotSent => {}
            }
            reply
        } else {
            let (key, token, body) = {
                let mut m = model.lock().unwrap();
                let key = m.owned[id][rng.below(m.owned[id].len() as u64) as usize];
                (key, m.tokens[key.0].clone(), m.body("edit"))
            };
            let (_, chat, number) = key;
            let url = format!("{base}/applications/{token}/chats/{chat}/messages/{number}");
            let request = if rng.below(2) == 0 { client.put(url) } else { client.patch(url) };
            let reply =
                exchange(request.json(&json!({ "body": body })), StatusCode::OK, "edit", &model).await;
            let mut m = model.lock().unwrap();
            let outcome = match &reply {
                Reply::Ok(v) => {
                    if v["body"].as_str() != Some(body.as_str()) {
                        m.errors.push(format!("edit answered {v}, sent {body:?}"));
                    }
                    m.acked_edits += 1;
                    Some(Outcome::Acked)
                }
                Reply::Unknown => {
                    m.unknown += 1;
                    Some(Outcome::Unknown)
                }
                Reply::Refused => {
                    m.refused += 1;
                    Some(Outcome::Refused)
                }
                Reply::NotSent => None,
            };
            if let Some(outcome) = outcome {
                m.messages.get_mut(&key).unwrap().versions.push((body, outcome));
            }
            reply
        };
        if !matches!(reply, Reply::Ok(_) | Reply::Refused) {
            return;
        }
    }
}

/// Figures of the final check; every one but the volumes must be 0.
#[derive(Debug, Default)]
struct Findings {
    lost: usize,
    duplicated: usize,
    /// Stored rows nobody sent (or sent elsewhere, or refused).
    foreign: usize,
    gaps: usize,
    count_mismatches: usize,
    /// Messages whose body is not the last acknowledged edit nor a later unknown one.
    stale_edits: usize,
    unsearchable: usize,
    /// Searches that still find a message by a body it no longer has.
    stale_search: usize,
    /// Unknown-outcome requests found applied, and found not applied. An unknown edit
    /// followed by a later edit of the same message cannot be decided either way.
    unknown_applied: usize,
    unknown_absent: usize,
    stored_messages: usize,
    stored_chats: usize,
    problems: Vec<String>,
}

impl Findings {
    /// The figures that must all be 0, by name.
    fn violations(&self) -> [(&'static str, usize); 8] {
        [
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("foreign", self.foreign),
            ("gaps", self.gaps),
            ("count_mismatches", self.count_mismatches),
            ("stale_edits", self.stale_edits),
            ("unsearchable", self.unsearchable),
            ("stale_search", self.stale_search),
        ]
    }

    /// Keeps the first problems for the failure message (the counters count them all).
    fn flag(&mut self, problem: String) {
        if self.problems.len() < 20 {
            self.problems.push(problem);
        }
    }
}

/// Checks the restarted server against the history.
async fn check(client: &Client, base: &str, model: &Model) -> Findings {
    let mut f = Findings { duplicated: model.duplicated, ..Findings::default() };
    let mut seen_bodies: HashSet<String> = HashSet::new();
    let mut stored: HashMap<MsgKey, String> = HashMap::new();
    let mut stored_chats: HashSet<(usize, i64)> = HashSet::new();
    for (app, token) in model.tokens.iter().enumerate() {
        let chats = follow_pages(client, base, &format!("/applications/{token}/chats?limit=1000")).await;
        let numbers: Vec<i64> = chats.iter().map(|c| c["number"].as_i64().unwrap()).collect();
        if numbers != (1..=numbers.len() as i64).collect::<Vec<_>>() {
            f.gaps += 1;
            f.flag(format!("app {app}: chat numbers {numbers:?}"));
        }
        let a: Value =
            client.get(format!("{base}/applications/{token}")).send().await.unwrap().json().await.unwrap();
        if a["chats_count"].as_i64() != Some(chats.len() as i64) {
            f.count_mismatches += 1;
            f.flag(format!("app {app}: chats_count {} for {} chats", a["chats_count"], chats.len()));
        }
        let acked = model.chats.iter().filter(|(a, _)| *a == app).count();
        if chats.len() > acked + model.unknown_chats[app] {
            f.foreign += chats.len() - acked - model.unknown_chats[app];
            f.flag(format!(
                "app {app}: {} chats, {acked} acknowledged + {} unknown",
                chats.len(),
                model.unknown_chats[app]
            ));
        }
        f.unknown_applied += chats.len().saturating_sub(acked);
        f.unknown_absent += (acked + model.unknown_chats[app]).saturating_sub(chats.len());
        for c in &chats {
            let chat = c["number"].as_i64().unwrap();
            stored_chats.insert((app, chat));
            let path = format!("/applications/{token}/chats/{chat}/messages?limit=1000");
            let messages = follow_pages(client, base, &path).await;
            let numbers: Vec<i64> = messages.iter().map(|m| m["number"].as_i64().unwrap()).collect();
            if numbers != (1..=numbers.len() as i64).collect::<Vec<_>>() {
                f.gaps += 1;
                f.flag(format!("app {app} chat {chat}: message numbers are not 1..{}", numbers.len()));
            }
            if c["messages_count"].as_i64() != Some(messages.len() as i64) {
                f.count_mismatches += 1;
                f.flag(format!(
                    "app {app} chat {chat}: messages_count {} for {}",
                    c["messages_count"],
                    messages.len()
                ));
            }
            for m in messages {
                let (n, body) = (m["number"].as_i64().unwrap(), m["body"].as_str().unwrap().to_owned());
                if !seen_bodies.insert(body.clone()) {
                    f.duplicated += 1;
                    f.flag(format!("{body:?} stored twice"));
                }
                stored.insert((app, chat, n), body);
            }
        }
    }
    f.stored_chats = stored_chats.len();
    f.stored_messages = stored.len();
    for &(app, chat) in &model.chats {
        if !stored_chats.contains(&(app, chat)) {
            f.lost += 1;
            f.flag(format!("acknowledged chat {chat} of app {app} is missing"));
        }
    }
    let displaced = model.displaced.iter().map(|(k, h)| (k, h));
    for (key, history) in model.messages.iter().chain(displaced) {
        match stored.get(key) {
            None => {
                f.lost += 1;
                f.flag(format!("acknowledged message {key:?} is missing"));
            }
            Some(body) if history.allowed().contains(body.as_str()) => {}
            Some(body) if history.versions.iter().any(|(b, _)| b == body) => {
                f.stale_edits += 1;
                f.flag(format!("message {key:?} shows {body:?}; history {:?}", history.versions));
            }
            Some(body) => {
                f.lost += 1;
                f.flag(format!("acknowledged message {key:?} shows {body:?}, never sent to it"));
            }
        }
        let last = history.versions.last().unwrap();
        if history.versions.len() > 1 && last.1 == Outcome::Unknown {
            // Counted once per message: whether its last (unknown) edit took.
            if stored.get(key) == Some(&last.0) {
                f.unknown_applied += 1;
            } else {
                f.unknown_absent += 1;
            }
        }
    }
    for (key, body) in &stored {
        if model.messages.contains_key(key) {
            continue;
        }
        match model.unknown_messages.get(body) {
            Some(&(app, chat)) if (app, chat) == (key.0, key.1) => f.unknown_applied += 1,
            _ => {
                f.foreign += 1;
                let refused = model.refused_messages.contains(body);
                f.flag(format!("message {key:?} {body:?} was never sent there (refused: {refused})"));
            }
        }
    }
    f.unknown_absent += model.unknown_messages.keys().filter(|b| !seen_bodies.contains(*b)).count();

    // Search: every stored message by the token of its current body (the index catches up
    // by itself after the crashes; poll with a deadline), and by no body it no longer has.
    let deadline = Instant::now() + Duration::from_secs(60);
    let searches = stored.iter().map(|(&(app, chat, n), body)| {
        let token = &model.tokens[app];
        let url = format!("{base}/applications/{token}/chats/{chat}/messages/search");
        let superseded: Vec<String> = model
            .messages
            .get(&(app, chat, n))
            .map(|h| h.versions.iter().filter(|(b, _)| b != body).map(|(b, _)| b.clone()).collect())
            .unwrap_or_default();
        async move {
            let finds = |keyword: String| {
                let url = url.clone();
                async move {
                    let r = client.get(&url).query(&[("keyword", keyword.as_str()), ("limit", "1000")]);
                    let found: Vec<Value> = r.send().await.unwrap().json().await.unwrap();
                    found.iter().any(|m| m["number"].as_i64() == Some(n))
                }
            };
            let mut found = finds(token_of(body).to_owned()).await;
            while !found && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                found = finds(token_of(body).to_owned()).await;
            }
            let mut stale = 0;
            for old in &superseded {
                stale += usize::from(finds(token_of(old).to_owned()).await);
            }
            ((app, chat, n), found, stale)
        }
    });
    let results: Vec<_> = futures::stream::iter(searches).buffer_unordered(4).collect().await;
    for (key, found, stale) in results {
        if !found {
            f.unsearchable += 1;
            f.flag(format!("message {key:?} is not found by search"));
        }
        if stale > 0 {
            f.stale_search += 1;
            f.flag(format!("message {key:?} is still found by {stale} old bodies"));
        }
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jepsen_kill_9_cycles_lose_and_duplicate_nothing() {
    let seed = env_or("JEPSEN_SEED", std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64);
    let cycles = env_or("JEPSEN_CYCLES", 20usize);
    report(&format!("jepsen: seed={seed} cycles={cycles} (replay with JEPSEN_SEED={seed})"));
    let started = Instant::now();
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    // On PostgreSQL, a server of the test's own: some cycles stop it.
    let mut postgres = on_postgres().then(|| {
        let pg = chatd_pg_testing::TestPostgres::start().expect("a PostgreSQL of the test's own");
        use_database(dir.path(), &pg.fresh_database().unwrap());
        pg
    });
    let mut postgres_stops = 0;
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let model = Arc::new(Mutex::new(Model { owned: vec![Vec::new(); WORKERS], ..Model::default() }));

    // Arrange: the applications and a first chat in each, before any kill.
    let (mut child, mut base) = start_chatd(dir.path());
    for app in 0..APPS {
        let r = client.post(format!("{base}/applications")).json(&json!({"name": format!("jepsen {app}")}));
        let token = r.send().await.unwrap().json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = client.post(format!("{base}/applications/{token}/chats")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let mut m = model.lock().unwrap();
        m.tokens.push(token);
        m.chats.push((app, 1));
        m.unknown_chats.push(0);
        m.acked_chat_creates += 1;
    }

    let mut killed = false;
    for cycle in 1..=cycles {
        if killed {
            (child, base) = start_chatd(dir.path());
        }
        let before = model.lock().unwrap().acked_message_creates;
        let workers: Vec<_> = (0..WORKERS)
            .map(|id| {
                let worker_rng = Rng(rng.next());
                tokio::spawn(worker(id, worker_rng, client.clone(), base.clone(), model.clone()))
            })
            .collect();
        let kill_after = Duration::from_millis(rng.below(MAX_KILL_AFTER_MS + 1));
        tokio::time::sleep(kill_after).await;
        let fault = match postgres.as_mut() {
            Some(pg) if rng.below(2) == 0 => {
                pg.stop_immediately().unwrap();
                // The workers end at their first 503 (or lost connection) to the running chatd.
                for w in workers {
                    w.await.unwrap();
                }
                pg.start_again().unwrap();
                postgres_stops += 1;
                killed = false;
                "PostgreSQL stopped"
            }
            _ => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                for w in workers {
                    w.await.unwrap();
                }
                killed = true;
                "chatd killed"
            }
        };
        let acked = model.lock().unwrap().acked_message_creates - before;
        println!("cycle {cycle}: {fault} after {kill_after:?}; {acked} message creates acknowledged");
    }
    if !killed {
        // The last cycle stopped PostgreSQL and left this chatd running: end it first.
        child.kill().unwrap();
        child.wait().unwrap();
    }

    // A clean start on the same directory, checked against the history.
    let (mut child, base) = start_chatd(dir.path());
    let model = std::mem::take(&mut *model.lock().unwrap());
    let f = check(&client, &base, &model).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let violations = f.violations();
    let violations_text: Vec<String> = violations.iter().map(|(name, n)| format!("{name}={n}")).collect();
    report(&format!(
        "jepsen: seed={seed} cycles={cycles} postgres_stops={postgres_stops} acked_creates={} (chats={} messages={}) acked_edits={} \
         unknown={} (applied={} absent={} undecidable={}) refused={} stored_chats={} stored_messages={} \
         {} errors={} elapsed={:.1}s",
        model.acked_chat_creates + model.acked_message_creates,
        model.acked_chat_creates,
        model.acked_message_creates,
        model.acked_edits,
        model.unknown,
        f.unknown_applied,
        f.unknown_absent,
        model.unknown.saturating_sub(f.unknown_applied + f.unknown_absent),
        model.refused,
        f.stored_chats,
        f.stored_messages,
        violations_text.join(" "),
        model.errors.len(),
        started.elapsed().as_secs_f64(),
    ));
    assert!(model.errors.is_empty(), "unexpected answers: {:?}", model.errors);
    let none = violations.iter().all(|(_, n)| *n == 0);
    assert!(none && f.problems.is_empty(), "seed {seed}: {violations_text:?} {:#?}", f.problems);
    // The history must have exercised what it checks.
    assert!(model.acked_message_creates > 0 && model.acked_edits > 0 && model.unknown > 0, "{model:?}");
}
