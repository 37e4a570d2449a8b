//! `chatd import` end to end (SPEC §9): a real MariaDB loaded with the old system's schema and
//! data holding every irregularity it allowed, the real `chatd` binary importing it, and a
//! real chatd server answering over HTTP afterwards, in both modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chatd_import_mysql::RAILS_SCHEMA;
use chatd_mariadb_testing::TestMariaDb;
use chatd_pg_testing::TestPostgres;
use chatd_server::{Application, Config};
use reqwest::Client;
use serde_json::Value;
use tokio::sync::oneshot;

/// Where an import writes.
#[derive(Debug, Clone)]
enum Target {
    Embedded(std::path::PathBuf),
    Postgres(String),
}

impl Target {
    fn args(&self) -> Vec<String> {
        match self {
            Target::Embedded(dir) => vec!["--data-dir".into(), dir.display().to_string()],
            Target::Postgres(url) => vec!["--database-url".into(), url.clone()],
        }
    }

    fn config(&self, scratch: &Path) -> Config {
        match self {
            Target::Embedded(dir) => Config::ephemeral(dir),
            Target::Postgres(url) => {
                let mut config = Config::ephemeral(scratch);
                config.database_url = Some(url.clone());
                config
            }
        }
    }
}

/// A fresh target of each kind, with the temp dir that holds it.
fn targets() -> Vec<(Target, tempfile::TempDir)> {
    let embedded = tempfile::tempdir().unwrap();
    let postgres = TestPostgres::shared().fresh_database().expect("PostgreSQL for the scale-out target");
    vec![
        (Target::Embedded(embedded.path().join("data")), embedded),
        (Target::Postgres(postgres), tempfile::tempdir().unwrap()),
    ]
}

/// A fresh MariaDB database holding the old schema, then `sql`.
fn old_database(sql: &str) -> String {
    let maria = TestMariaDb::shared();
    let url = maria.fresh_database().expect("a MariaDB database");
    maria.execute(&url, RAILS_SCHEMA).expect("the old schema");
    maria.execute(&url, sql).expect("the old data");
    url
}

/// The old system's data with every irregularity its schema allowed. Expected outcome in
/// the comments (legacy ids; numbers as chatd serves them).
const IRREGULAR: &str = r"
SET FOREIGN_KEY_CHECKS = 0;
ALTER TABLE messages MODIFY body MEDIUMTEXT NULL, MODIFY number BIGINT NULL;
INSERT INTO applications (id, name, access_token, created_at, updated_at, chat_count) VALUES
  (1, 'Alpha', 'alphaToken123', '2019-11-11 19:14:51.589123', '2019-11-12 08:00:00.000000', 3),
  (2, NULL, NULL, '2019-11-11 19:15:00.000000', '2019-11-11 19:15:00.000000', NULL),
  (3, '  ', 'betaToken-_9', '2019-11-11 19:16:00.000000', '2019-11-11 19:16:00.000000', 1),
  (4, REPEAT('x', 100), 'has+plus/slash=', '2019-11-11 19:17:00.000000', '2019-11-11 19:17:00.000000', 0),
  (5, 'Quiet', 'quietToken', '2019-11-11 19:18:00.000000', '2019-11-11 19:18:00.000000', 0);
INSERT INTO chats (id, number, application_id, created_at, updated_at, message_count) VALUES
  (10, 1, 1, '2019-11-11 20:00:00.000000', '2019-11-11 20:00:00.000000', 5),
  (11, 1, 1, '2019-11-11 20:01:00.000000', '2019-11-11 20:01:00.000000', 1),
  (12, NULL, 1, '2019-11-11 20:02:00.000000', '2019-11-11 20:02:00.000000', NULL),
  (13, 3, 1, '2019-11-11 20:03:00.000000', '2019-11-11 20:03:00.000000', 1),
  (20, 1, 2, '2019-11-11 20:04:00.000000', '2019-11-11 20:04:00.000000', 1),
  (30, 1, 3, '2019-11-11 20:05:00.000000', '2019-11-11 20:05:00.000000', 1),
  (31, 0, 3, '2019-11-11 20:06:00.000000', '2019-11-11 20:06:00.000000', 0),
  (99, 1, 77, '2019-11-11 20:07:00.000000', '2019-11-11 20:07:00.000000', 1);
INSERT INTO messages (id, number, body, chat_id, created_at, updated_at) VALUES
  (100, 1, 'hello world', 10, '2019-11-11 21:00:00.001000', '2019-11-11 21:30:00.002000'),
  (101, 2, 'a searchable needle', 10, '2019-11-11 21:01:00.000000', '2019-11-11 21:01:00.000000'),
  (102, 2, 'duplicate two', 10, '2019-11-11 21:02:00.000000', '2019-11-11 21:02:00.000000'),
  (103, NULL, 'no number', 10, '2019-11-11 21:03:00.000000', '2019-11-11 21:03:00.000000'),
  (104, 5, NULL, 10, '2019-11-11 21:04:00.000000', '2019-11-11 21:04:00.000000'),
  (105, 6, '   ', 10, '2019-11-11 21:05:00.000000', '2019-11-11 21:05:00.000000'),
  (106, 1, 'in the duplicate chat', 11, '2019-11-11 21:06:00.000000', '2019-11-11 21:06:00.000000'),
  (107, 1, 'in the chat without a number', 12, '2019-11-11 21:07:00.000000', '2019-11-11 21:07:00.000000'),
  (108, 1, REPEAT('long ', 14000), 13, '2019-11-11 21:08:00.000000', '2019-11-11 21:08:00.000000'),
  (109, 1, 'émoji 🎉 ünïcode', 20, '2019-11-11 21:09:00.000000', '2019-11-11 21:09:00.000000'),
  (110, 1, 'nul\0inside', 30, '2019-11-11 21:10:00.000000', '2019-11-11 21:10:00.000000'),
  (111, 1, 'in a skipped chat', 99, '2019-11-11 21:11:00.000000', '2019-11-11 21:11:00.000000'),
  (112, 1, 'in no chat', 555, '2019-11-11 21:12:00.000000', '2019-11-11 21:12:00.000000'),
  (113, 1, 'another one', 10, '2019-11-11 21:13:00.000000', '2019-11-11 21:13:00.000000'),
  (114, 3000000000, 'too far', 10, '2019-11-11 21:14:00.000000', '2019-11-11 21:14:00.000000');
";

/// Every note line the import of [`IRREGULAR`] reports, new tokens aside (they are random).
const IRREGULAR_NOTES: &[&str] = &[
    "placeholder name for application 2",
    "placeholder name for application 3",
    "kept long name of application 4",
    "renumbered chat 11 of application 1: 1 -> 4",
    "renumbered chat 12 of application 1: none -> 5",
    "renumbered chat 31 of application 3: 0 -> 2",
    "skipped chat 99 of application 77: its application is not in the source or was skipped",
    "renumbered message 102 of chat 10: 2 -> 7",
    "renumbered message 103 of chat 10: none -> 8",
    "placeholder body for message 104 of chat 10",
    "placeholder body for message 105 of chat 10",
    "kept long body of message 108 of chat 13",
    "replaced NUL characters in the body of message 110 of chat 30",
    "skipped message 111 of chat 99: its chat is not in the source or was skipped",
    "skipped message 112 of chat 555: its chat is not in the source or was skipped",
    "renumbered message 113 of chat 10: 1 -> 9",
    "renumbered message 114 of chat 10: 3000000000 -> 10",
];

fn chatd(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatd")).args(args).stdin(Stdio::null()).output().expect("chatd runs")
}

/// `chatd import --from <from> <target> <extra>`; its stdout on success, panics otherwise.
fn import(from: &str, target: &Target, extra: &[&str]) -> String {
    let out = chatd(&import_args(from, target, extra));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "import failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn import_args(from: &str, target: &Target, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["import".to_owned(), "--from".to_owned(), from.to_owned()];
    args.extend(target.args());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// The import's failure: its stderr, which must be one line.
fn import_fails(from: &str, target: &Target, extra: &[&str]) -> String {
    let out = chatd(&import_args(from, target, extra));
    assert!(!out.status.success(), "import succeeded: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

/// The note lines of a report, new tokens apart: `(other lines, new token per legacy id)`.
fn notes(report: &str) -> (Vec<String>, Vec<(i64, String)>) {
    let mut lines = Vec::new();
    let mut tokens = Vec::new();
    for line in report.lines() {
        if let Some(rest) = line.strip_prefix("new token for application ") {
            let (id, token) = rest.split_once(": ").unwrap();
            tokens.push((id.parse().unwrap(), token.to_owned()));
        } else if ["renumbered ", "skipped ", "placeholder ", "kept long ", "replaced NUL"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            lines.push(line.to_owned());
        }
    }
    (lines, tokens)
}

/// The summary row of a table: `[in source, read, written, imported, renumbered, skipped]`.
fn summary_row(report: &str, table: &str) -> Vec<u64> {
    let line = report.lines().find(|l| l.split_whitespace().next() == Some(table)).unwrap();
    line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect()
}

/// A chatd server on the target while `f` runs.
async fn with_server<F, Fut>(target: &Target, f: F)
where
    F: FnOnce(Api) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let scratch = tempfile::tempdir().unwrap();
    let app =
        Application::build(target.config(scratch.path())).await.expect("chatd starts on the imported data");
    let api = Api { base: format!("http://{}", app.api_addr()), client: Client::new() };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    f(api).await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

struct Api {
    base: String,
    client: Client,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: &str) -> Value {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&serde_json::json!({ "body": body }))
            .send();
        let r = r.await.unwrap();
        assert_eq!(r.status(), 201, "POST {path}");
        r.json().await.unwrap()
    }

    /// `(number, body)` of a chat's messages.
    async fn messages(&self, token: &str, chat: i64) -> Vec<(i64, String)> {
        let listed = self.get(&format!("/applications/{token}/chats/{chat}/messages?limit=100")).await;
        listed.as_array().unwrap().iter().map(|m| (m["number"].as_i64().unwrap(), body(m))).collect()
    }

    /// `(number, messages_count)` of an application's chats.
    async fn chats(&self, token: &str) -> Vec<(i64, i64)> {
        let listed = self.get(&format!("/applications/{token}/chats?limit=100")).await;
        let chats = listed.as_array().unwrap().iter();
        chats.map(|c| (c["number"].as_i64().unwrap(), c["messages_count"].as_i64().unwrap())).collect()
    }

    async fn search(&self, token: &str, chat: i64, keyword: &str) -> Vec<i64> {
        let found =
            self.get(&format!("/applications/{token}/chats/{chat}/messages/search?keyword={keyword}")).await;
        found.as_array().unwrap().iter().map(|m| m["number"].as_i64().unwrap()).collect()
    }
}

fn body(m: &Value) -> String {
    m["body"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_irregular_row_follows_its_rule_and_chatd_serves_the_result_in_both_modes() {
    let from = old_database(IRREGULAR);
    for (target, _dir) in targets() {
        // A dry run reports what the import does, and writes nothing.
        let dry = import(&from, &target, &["--dry-run"]);
        assert!(dry.contains("(dry run: nothing was written)"), "{dry}");
        if let Target::Embedded(dir) = &target {
            assert!(!dir.exists(), "a dry run created {}", dir.display());
        }

        let report = import(&from, &target, &[]);
        let (lines, tokens) = notes(&report);
        assert_eq!(lines, IRREGULAR_NOTES, "{target:?}\n{report}");
        assert_eq!(notes(&dry).0, IRREGULAR_NOTES, "the dry run reports what the import did");
        assert_eq!(tokens.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [2, 4], "{report}");
        // [in source, read, written, imported, renumbered, skipped]
        assert_eq!(summary_row(&report, "applications"), [5, 5, 5, 5, 0, 0], "{report}");
        assert_eq!(summary_row(&report, "chats"), [8, 8, 7, 7, 3, 1], "{report}");
        assert_eq!(summary_row(&report, "messages"), [15, 15, 13, 13, 4, 2], "{report}");
        assert!(report.contains("new tokens: 2 applications"), "{report}");
        assert!(
            report.contains("placeholders for null or blank text: 2 application names, 2 message bodies")
        );
        assert!(
            report.contains("counters that disagreed with the rows (recomputed): 3 applications, 2 chats")
        );

        let (app2, app4) = (tokens[0].1.clone(), tokens[1].1.clone());
        with_server(&target, |api| async move {
            let alpha = api.get("/applications/alphaToken123").await;
            assert_eq!(alpha["name"], "Alpha");
            assert_eq!(alpha["chats_count"], 4);
            assert_eq!(alpha["created_at"], "2019-11-11T19:14:51.589Z");
            assert_eq!(alpha["updated_at"], "2019-11-12T08:00:00.000Z");
            assert_eq!(api.chats("alphaToken123").await, [(1, 8), (3, 1), (4, 1), (5, 1)]);
            let expected: Vec<(i64, String)> = [
                (1, "hello world"),
                (2, "a searchable needle"),
                (5, "(empty)"),
                (6, "(empty)"),
                (7, "duplicate two"),
                (8, "no number"),
                (9, "another one"),
                (10, "too far"),
            ]
            .into_iter()
            .map(|(n, b)| (n, b.to_owned()))
            .collect();
            assert_eq!(api.messages("alphaToken123", 1).await, expected);
            let first = api.get("/applications/alphaToken123/chats/1/messages/1").await;
            assert_eq!(first["created_at"], "2019-11-11T21:00:00.001Z");
            assert_eq!(first["updated_at"], "2019-11-11T21:30:00.002Z");
            assert_eq!(api.messages("alphaToken123", 4).await, [(1, "in the duplicate chat".to_owned())]);
            assert_eq!(
                api.messages("alphaToken123", 5).await,
                [(1, "in the chat without a number".to_owned())]
            );
            let long = api.messages("alphaToken123", 3).await;
            assert_eq!(long[0].1.len(), 70_000, "an over-long body is kept whole");

            // Imported bodies are searchable, and new rows go after the highest numbers.
            assert_eq!(api.search("alphaToken123", 1, "needle").await, [2]);
            assert_eq!(api.search(&app2, 1, "unicode").await, [1]);
            assert_eq!(api.post("/applications/alphaToken123/chats/1/messages", "after").await["number"], 11);
            assert_eq!(api.chats("alphaToken123").await[0], (1, 9));
            let chat = api.client.post(format!("{}/applications/alphaToken123/chats", api.base)).send();
            assert_eq!(chat.await.unwrap().json::<Value>().await.unwrap()["number"], 6);

            let unnamed = api.get(&format!("/applications/{app2}")).await;
            assert_eq!(
                (unnamed["name"].as_str(), unnamed["chats_count"].as_i64()),
                (Some("(unnamed)"), Some(1))
            );
            assert_eq!(api.messages(&app2, 1).await, [(1, "émoji 🎉 ünïcode".to_owned())]);
            assert_eq!(api.get("/applications/betaToken-_9").await["name"], "(unnamed)");
            assert_eq!(api.chats("betaToken-_9").await, [(1, 1), (2, 0)]);
            assert_eq!(api.messages("betaToken-_9", 1).await, [(1, "nul\u{FFFD}inside".to_owned())]);
            assert_eq!(api.get(&format!("/applications/{app4}")).await["name"], "x".repeat(100));
            assert_eq!(api.get("/applications/quietToken").await["chats_count"], 0);
        })
        .await;

        // Run again: nothing new is written, and the report is the same.
        let again = import(&from, &target, &[]);
        assert_eq!(summary_row(&again, "messages"), [15, 0, 0, 13, 4, 2], "{again}");
        assert_eq!(summary_row(&again, "chats"), [8, 0, 0, 7, 3, 1], "{again}");
        assert_eq!(notes(&again), (lines, tokens), "{again}");
    }
}

/// Old data large enough to stop an import midway: 3 applications of 10 chats, 6,000
/// messages (200 a chat); every 7th message has the number of the one before it in its
/// chat (the chat's first such one: 0), every 50th none.
const MANY: &str = r"
INSERT INTO applications (id, name, access_token, created_at, updated_at, chat_count)
  SELECT seq, CONCAT('app ', seq), CONCAT('manyToken', seq), '2020-01-01', '2020-01-01', 10 FROM seq_1_to_3;
INSERT INTO chats (id, number, application_id, created_at, updated_at, message_count)
  SELECT seq, (seq - 1) DIV 3 + 1, (seq - 1) MOD 3 + 1, '2020-01-02', '2020-01-02', 200 FROM seq_1_to_30;
INSERT INTO messages (id, number, body, chat_id, created_at, updated_at)
  SELECT seq,
         CASE WHEN seq MOD 50 = 0 THEN NULL WHEN seq MOD 7 = 0 THEN (seq - 1) DIV 30 ELSE (seq - 1) DIV 30 + 1 END,
         CONCAT('message ', seq, ' word', seq MOD 97), (seq - 1) MOD 30 + 1,
         TIMESTAMPADD(SECOND, seq, '2020-01-03'), TIMESTAMPADD(SECOND, seq, '2020-01-03')
  FROM seq_1_to_6000;
";

/// The target's import checkpoint of `step`, if any.
fn checkpoint(target: &Target, step: &str) -> Option<i64> {
    let sql = format!("SELECT after FROM import_checkpoints WHERE step = '{step}'");
    match target {
        Target::Embedded(dir) => {
            let path = dir.join(chatd_store_sqlite::DB_FILE);
            let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .ok()?;
            db.query_row(&sql, [], |r| r.get(0)).ok()
        }
        Target::Postgres(url) => {
            let out = TestPostgres::shared().psql(url, &sql).ok()?;
            out.trim().parse().ok()
        }
    }
}

/// Everything an import leaves, in one comparable text (generated tokens aside: there are none here).
fn dump(target: &Target) -> String {
    let sql = "SELECT a.token, a.name, a.chats_count, a.last_chat_number, a.created_at, a.updated_at, \
                      c.number, c.messages_count, c.last_message_number, c.created_at, \
                      m.number, m.body, m.created_at, m.updated_at \
               FROM applications a JOIN chats c ON c.application_id = a.id JOIN messages m ON m.chat_id = c.id \
               ORDER BY a.token, c.number, m.number";
    let notes = "SELECT tbl, legacy_id, kind, parent, old_number, new_number FROM import_notes \
                 ORDER BY tbl, legacy_id, kind";
    match target {
        Target::Embedded(dir) => {
            let db = rusqlite::Connection::open(dir.join(chatd_store_sqlite::DB_FILE)).unwrap();
            let mut text = String::new();
            for sql in [sql, notes] {
                let mut stmt = db.prepare(sql).unwrap();
                let n = stmt.column_count();
                let mut rows = stmt.query([]).unwrap();
                while let Some(row) = rows.next().unwrap() {
                    let cells: Vec<String> = (0..n)
                        .map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap()))
                        .collect();
                    text.push_str(&cells.join("|"));
                    text.push('\n');
                }
            }
            text
        }
        Target::Postgres(url) => {
            let pg = TestPostgres::shared();
            format!("{}{}", pg.psql(url, sql).unwrap(), pg.psql(url, notes).unwrap())
        }
    }
}

/// Starts an import and `kill -9`s it once `step` has a checkpoint (one batch committed).
fn import_killed_during(from: &str, target: &Target, step: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(import_args(from, target, &["--batch-rows", "50"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint(target, step).is_none() {
        assert!(child.try_wait().unwrap().is_none(), "the import ended before a batch of {step:?} committed");
        assert!(Instant::now() < deadline, "no batch of {step:?} within two minutes");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_killed_midway_and_run_again_equals_one_clean_run_in_both_modes() {
    let from = old_database(MANY);
    let clean = targets();
    let stopped = targets();
    for ((clean, _a), (stopped, _b)) in clean.into_iter().zip(stopped) {
        let report = import(&from, &clean, &["--batch-rows", "50"]);
        // 943 messages wait for the renumbering step (no number, 0, or a number taken).
        assert_eq!(summary_row(&report, "messages"), [6000, 6000, 6000, 6000, 943, 0], "{report}");

        import_killed_during(&from, &stopped, "messages");
        let last = checkpoint(&stopped, "messages").unwrap();
        assert!(last < 6000, "{stopped:?}: killed after the last batch ({last})");
        import_killed_during(&from, &stopped, "messages renumbered");
        let last = checkpoint(&stopped, "messages renumbered").unwrap();
        assert!(last < 6000, "{stopped:?}: killed after the renumbering ({last})");
        let resumed = import(&from, &stopped, &["--batch-rows", "50"]);
        assert_eq!(summary_row(&resumed, "messages")[3..], [6000, 943, 0], "{resumed}");

        assert_eq!(dump(&stopped), dump(&clean), "{stopped:?}");
        for target in [&clean, &stopped] {
            with_server(target, |api| async move {
                assert_eq!(api.search("manyToken1", 1, "word7").await.len(), 22, "{target:?}");
                assert_eq!(api.get("/applications/manyToken1/chats/1").await["messages_count"], 200);
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_holding_other_data_is_refused_unless_merge_and_colliding_tokens_stop_it() {
    let from = old_database(IRREGULAR);
    for (target, _dir) in targets() {
        // An application created through the API: the target holds other data.
        with_server(&target, |api| async move {
            let r = api.client.post(format!("{}/applications?name=mine", api.base)).send().await.unwrap();
            assert_eq!(r.status(), 201);
        })
        .await;
        let refused = import_fails(&from, &target, &[]);
        assert!(refused.contains("--merge"), "{refused}");
        // A dry run is refused alike, and one with --merge writes nothing.
        let dry = import_fails(&from, &target, &["--dry-run"]);
        assert!(dry.contains("--merge"), "{dry}");
        import(&from, &target, &["--dry-run", "--merge"]);
        assert_eq!(checkpoint(&target, "applications"), None, "{target:?}: a dry run wrote");
        let merged = import(&from, &target, &["--merge"]);
        assert_eq!(summary_row(&merged, "messages")[2], 13, "{merged}");

        // A second source with two of the same tokens: refused under --merge, naming them.
        let twin = old_database(
            "INSERT INTO applications (id, name, access_token, created_at, updated_at) VALUES \
             (1, 'a', 'alphaToken123', NOW(), NOW()), (2, 'b', 'freshToken', NOW(), NOW()), \
             (3, 'c', 'quietToken', NOW(), NOW());",
        );
        let taken = import_fails(&twin, &target, &["--merge"]);
        assert!(taken.contains("old ids: 1, 3"), "{taken}");
        let dry = import_fails(&twin, &target, &["--merge", "--dry-run"]);
        assert!(dry.contains("old ids: 1, 3"), "a dry run sees the taken tokens: {dry}");
        with_server(&target, |api| async move {
            let r = api.client.get(format!("{}/applications/freshToken", api.base)).send().await.unwrap();
            assert_eq!(r.status(), 404, "nothing of the refused import was written");
        })
        .await;
    }
}

#[test]
fn bad_sources_fail_on_one_line_naming_what_is_wrong_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Embedded(dir.path().join("data"));
    let url = TestMariaDb::shared().fresh_database().unwrap();
    let (base, _db) = url.rsplit_once('/').unwrap();
    let unreachable = import_fails("mysql://root:secret@127.0.0.1:1/old", &target, &[]);
    assert!(unreachable.contains("127.0.0.1:1"), "{unreachable}");
    let (scheme_user, host) = base.split_once('@').unwrap();
    let (scheme_user, _password) = scheme_user.rsplit_once(':').unwrap();
    let wrong = import_fails(&format!("{scheme_user}:wrong-password@{host}/x"), &target, &[]);
    assert!(!wrong.contains("wrong-password"), "{wrong}");
    let no_tables = import_fails(&url, &target, &[]);
    assert!(no_tables.contains("applications"), "{no_tables}");
    let other_types = old_database("ALTER TABLE messages MODIFY body INT NULL;");
    let typed = import_fails(&other_types, &target, &[]);
    assert!(typed.contains("body"), "{typed}");
    assert!(!dir.path().join("data").exists(), "a failed import wrote its target");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_import_refuses_a_directory_a_server_is_running_on() {
    let from = old_database(IRREGULAR);
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Embedded(dir.path().join("data"));
    let running = target.clone();
    with_server(&target, |api| async move {
        let refused = import_fails(&from, &running, &[]);
        assert!(refused.contains("in use by another process"), "{refused}");
        let r = api.client.get(format!("{}/applications/alphaToken123", api.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "nothing was imported");
    })
    .await;
}

#[test]
fn a_batch_the_target_refuses_stops_the_import_on_one_line_while_rows_are_still_being_read() {
    // Two applications with one token (the source's unique index dropped), then many more:
    // the first batch fails while the reader still has batches to hand over.
    let from = old_database(
        "ALTER TABLE applications DROP INDEX index_applications_on_access_token;
         INSERT INTO applications (id, name, access_token, created_at, updated_at)
           SELECT seq, 'app', IF(seq = 2, 'sameToken', CONCAT('token', seq)), NOW(), NOW() FROM seq_1_to_200;
         UPDATE applications SET access_token = 'sameToken' WHERE id = 1;",
    );
    for (target, _dir) in targets() {
        let failed = import_fails(&from, &target, &["--batch-rows", "10"]);
        assert!(failed.contains("token") && failed.contains('2'), "{target:?}: {failed}");
        assert_eq!(checkpoint(&target, "applications"), None, "{target:?}: the failed batch was written");
    }
}
