//! The benchmark's smoke mode runs every scenario for a moment and checks what it measures:
//! it proves the benchmark works; it asserts no speed.

use chatd_server::config::Synchronous;

#[test]
fn smoke_run_measures_every_figure_and_every_check_passes() {
    let report = chatd_bench::run(chatd_bench::Opts::smoke()).expect("the benchmark runs");
    assert!(report.checks_passed, "{}", report.markdown());
    for figure in [
        "create-message throughput",
        "create-message with an Idempotency-Key",
        "create-message with 20 stream subscribers",
        "create-to-delivered latency, 20 subscribers",
        "durable floor",
        "create-message latency, closed loop",
        "create-chat throughput",
        "create-message latency at half the max rate",
        "create-chat latency at the same offered rate",
        "GET one message",
        "GET one list page",
        "create-to-readable",
        "create-to-searchable lag",
        "rows per commit",
        "database / index size",
        "search latency",
        "create-message throughput with 3000 stored ÷ empty",
        "peak RSS",
    ] {
        assert!(
            report.rows.iter().any(|r| r.figure.starts_with(figure)),
            "missing {figure}:\n{}",
            report.markdown()
        );
    }
    assert_cpu_note(&report, "chatd and the load generator");
    assert_every_subscriber_got_every_message(&report);
}

/// The stream rows (`--streams`, 20 subscribers in the smoke run): each subscriber received
/// each message created in its chat, once (the benchmark's own check: in order), and the
/// latency has one sample per delivery.
fn assert_every_subscriber_got_every_message(report: &chatd_bench::Report) {
    for figure in ["create-message with 20 stream subscribers", "create-to-delivered latency, 20 subscribers"]
    {
        let row = report.rows.iter().find(|r| r.figure.starts_with(figure)).expect("the row");
        let after = |label: &str| -> u64 {
            let before = row.value.split(label).next().expect("the label");
            before.rsplit([' ', '(', ';']).find(|w| !w.is_empty()).expect(label).parse().expect(label)
        };
        let (followed, delivered) =
            (after(" of the creates in the followed chat"), after(" events delivered"));
        assert!(followed > 0, "{}", row.value);
        assert!(row.value.contains("); 0 of 20 subscribers ended"), "{}", row.value);
        assert_eq!(delivered, 20 * followed, "{}", row.value);
        if figure.starts_with("create-to-delivered") {
            assert_eq!(after(" deliveries"), delivered, "{}", row.value);
        }
    }
}

/// The note of what a create costs in CPU: five runs (chatd and the baseline, each at full
/// load and at the half rate, and the durable floor at full load), each a positive CPU time
/// and a share of the machine.
fn assert_cpu_note(report: &chatd_bench::Report, whose: &str) {
    let note = report
        .notes
        .iter()
        .find(|n| n.starts_with("CPU per create-message request"))
        .unwrap_or_else(|| panic!("no CPU note:\n{}", report.markdown()));
    assert!(note.contains(whose), "{note}");
    let costs: Vec<f64> =
        note.split(" µs").filter_map(|part| part.rsplit(' ').next()?.parse().ok()).collect();
    assert_eq!(costs.len(), 5, "{note}");
    assert!(costs.iter().all(|&us| us > 0.0), "{note}");
    let busy: Vec<f64> =
        note.split(" % busy").filter_map(|part| part.rsplit(' ').next()?.parse().ok()).collect();
    assert_eq!(busy.len(), 5, "{note}");
    assert!(busy.iter().all(|&b| b > 0.0 && b <= 100.0), "{note}");
}

/// `--url`: the same scenarios against a chatd the benchmark did not start, reached only
/// over HTTP (here one started in this test, on its own runtime and port); and the
/// `--timeline` of its half-rate runs.
#[test]
fn smoke_run_against_a_given_url_measures_over_http_and_skips_what_needs_chatd_s_insides() {
    let dir = tempfile::tempdir().unwrap();
    let chatd = chatd_bench::servers::start_chatd(dir.path(), &chatd_bench::Opts::smoke()).unwrap();
    let mut opts = chatd_bench::Opts::smoke();
    // An address where nothing listens first: the benchmark goes on to the next.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    opts.url = Some(chatd_bench::ServerUrl(vec![closed, chatd.addr]));
    opts.timeline = Some(dir.path().join("timeline.csv"));
    let seconds = opts.seconds;
    let before = chatd_bench::client::monotonic_now();
    let report = chatd_bench::run(opts).expect("the benchmark runs");
    let after = chatd_bench::client::monotonic_now();
    assert!(report.checks_passed, "{}", report.markdown());
    let has = |figure: &str| report.rows.iter().any(|r| r.figure.starts_with(figure));
    assert!(
        has("create-message throughput")
            && has("durable floor")
            && has("create-to-searchable lag")
            && has("create-to-delivered latency, 20 subscribers"),
        "{}",
        report.markdown()
    );
    assert!(!has("rows per commit") && !has("peak RSS") && !has("search latency"), "{}", report.markdown());
    assert!(
        report.notes.iter().any(|n| n.starts_with("chatd ran in another process")),
        "{}",
        report.markdown()
    );
    assert_cpu_note(&report, "the load generator; chatd runs in another process");
    // What the benchmark wrote went to that chatd: its database holds the messages.
    let stored = chatd.chatd.as_ref().unwrap().committed().get();
    assert!(stored > 100, "only {stored} changes reached the given chatd");
    chatd.stop();

    // The timeline: each half-rate run as consecutive 100 ms windows over the run's seconds,
    // stamped on the monotonic clock within the benchmark's run.
    let csv = std::fs::read_to_string(dir.path().join("timeline.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("run,start_s,requests,late,max_ms,client_wake_max_ms"));
    let mut runs = std::collections::BTreeMap::<String, Vec<(f64, u64, u64)>>::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 6, "{line}");
        let (late, max_ms): (u64, f64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        let requests: u64 = f[2].parse().unwrap();
        assert!(late <= requests && (late == 0 || max_ms >= 10.0), "{line}");
        // A request's latency counts from the same scheduled time as its late start.
        let wake_ms: f64 = f[5].parse().unwrap();
        assert!(wake_ms <= max_ms, "{line}");
        runs.entry(f[0].to_owned()).or_default().push((f[1].parse().unwrap(), requests, late));
    }
    assert_eq!(
        runs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["baseline-messages", "chatd-chats", "chatd-messages"],
        "{csv}"
    );
    for (run, windows) in &runs {
        assert_eq!(windows.len() as u64, seconds * 10, "{run}: one row per 100 ms\n{csv}");
        assert!(windows.iter().all(|w| w.1 > 0), "{run}: a window without requests\n{csv}");
        let first = windows[0].0;
        assert!(first >= before.as_secs_f64() && first <= after.as_secs_f64(), "{run} starts at {first}");
        for (i, w) in windows.iter().enumerate() {
            assert!((w.0 - first - 0.1 * i as f64).abs() < 0.0015, "{run}: window {i} at {}", w.0);
        }
    }
}

#[test]
fn url_option_takes_an_http_address() {
    use chatd_bench::ServerUrl;
    use clap::Parser;
    let parse = |url: &str| chatd_bench::Opts::try_parse_from(["chatd-bench", "--url", url]).map(|o| o.url);
    let v4: std::net::SocketAddr = "127.0.0.1:3000".parse().unwrap();
    assert_eq!(parse("http://127.0.0.1:3000/").unwrap(), Some(ServerUrl(vec![v4])));
    assert_eq!(parse("127.0.0.1:3000").unwrap(), Some(ServerUrl(vec![v4])));
    assert_eq!(parse("http://[::1]:3000").unwrap(), Some(ServerUrl(vec!["[::1]:3000".parse().unwrap()])));
    assert!(parse("http://localhost:3000").unwrap().is_some_and(|u| u.0.iter().all(|a| a.port() == 3000)));
    for bad in ["https://127.0.0.1:3000", "http://127.0.0.1:3000/applications", "http://127.0.0.1"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

/// The durable floor answers a create only once it is committed: after concurrent creates
/// over several connections, its database holds exactly the acknowledged messages, each
/// under the number it was answered with, numbered 1, 2, 3… per chat.
#[test]
fn the_durable_floor_stores_each_acknowledged_create_once_under_its_number() {
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        let dir = tempfile::tempdir().unwrap();
        let floor = chatd_bench::servers::start_floor(2, dir.path(), synchronous).unwrap();
        let mut acknowledged = post_creates_concurrently(floor.addr);
        floor.stop();
        acknowledged.sort();
        assert_eq!(acknowledged.len(), 400, "{synchronous:?}");
        for (token, chat) in CHATS {
            let numbers: Vec<i64> =
                acknowledged.iter().filter(|m| m.0 == token && m.1 == chat).map(|m| m.2).collect();
            let mut sorted = numbers.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (1..=numbers.len() as i64).collect::<Vec<_>>(),
                "{synchronous:?}: {token} chat {chat}"
            );
        }
        let mut stored: Vec<Created> =
            rusqlite::Connection::open(dir.path().join(chatd_bench::servers::FLOOR_DB))
                .unwrap()
                .prepare("SELECT token, chat, number, body FROM messages")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        stored.sort();
        assert_eq!(stored, acknowledged, "{synchronous:?}");
    }
}

/// A create as acknowledged: token, chat number, message number, body.
type Created = (String, i64, i64, String);

const CHATS: [(&str, i64); 3] = [("TokenA", 1), ("TokenA", 2), ("TokenB", 1)];

/// 400 creates over 16 connections at once, spread over `CHATS`; each must get a 201.
fn post_creates_concurrently(addr: std::net::SocketAddr) -> Vec<Created> {
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    client.block_on(async move {
        let mut tasks = Vec::new();
        for c in 0..16 {
            tasks.push(tokio::spawn(async move {
                let mut conn = chatd_bench::client::Conn::open(addr).await.expect("a connection");
                let mut answers = Vec::new();
                for i in 0..25 {
                    let (token, chat) = CHATS[(c + i) % CHATS.len()];
                    let body = format!("message {c}-{i}");
                    let path = format!("/applications/{token}/chats/{chat}/messages");
                    let json = serde_json::json!({ "body": body }).to_string();
                    let (status, answer) =
                        conn.send(hyper::Method::POST, &path, Some(&json)).await.expect("an answer");
                    assert_eq!(status, hyper::StatusCode::CREATED);
                    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
                    answers.push((
                        token.to_owned(),
                        chat,
                        answer["number"].as_i64().expect("a number"),
                        body,
                    ));
                }
                answers
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("the connection's task"));
        }
        all
    })
}

/// `--postgres`: chatd's scale-out mode on a throwaway PostgreSQL (a real one: without
/// PostgreSQL's programs the run fails, and so does this test), pgbench beside it, and search
/// in the big chat of the preloaded data.
#[test]
fn smoke_run_on_postgres_measures_the_scale_out_rows_and_every_create_succeeds() {
    let mut opts = chatd_bench::Opts::smoke();
    opts.postgres = true;
    let report = chatd_bench::run(opts).expect("the benchmark runs on PostgreSQL");
    assert!(report.checks_passed, "{}", report.markdown());
    let row = |figure: &str| report.rows.iter().find(|r| r.figure.starts_with(figure));
    for figure in [
        "create-message throughput",
        "pgbench: one transaction per create",
        "create-message throughput ÷ pgbench's",
        "create-message with an Idempotency-Key",
        "create-message with 20 stream subscribers",
        "create-to-delivered latency, 20 subscribers",
        "create-message latency, closed loop",
        "create-chat throughput",
        "create-message latency at half the max rate",
        "GET one message",
        "GET one list page",
        "create-to-readable",
        "create-to-searchable lag",
        "rows per commit",
        "PostgreSQL messages table / its indexes",
        "search latency, one chat of 300 among 3000 messages",
        "search, the most frequent word",
        "search, a 1-character fragment",
        "search, a 2-character fragment",
        "search, a 3-character fragment",
        "search, a quoted phrase",
        "search, two words",
        "search, an absent word",
        "peak RSS",
    ] {
        assert!(row(figure).is_some(), "missing {figure}:\n{}", report.markdown());
    }
    for embedded_only in ["durable floor", "database / index size", "create-message throughput with"] {
        assert!(row(embedded_only).is_none(), "{embedded_only}:\n{}", report.markdown());
    }
    let goal = |figure: &str| row(figure).map(|r| r.goal.as_str());
    assert_eq!(goal("create-message throughput ÷ pgbench's"), Some("≥ 3"));
    assert_eq!(goal("create-message latency at half the max rate"), Some("p99 ≤ 20 ms"));
    assert_eq!(goal("search, an absent word"), Some("p99 ≤ 50 ms"));
    assert_every_subscriber_got_every_message(&report);

    // The creates went through chatd's PostgreSQL writer, and pgbench committed its own.
    let numbers = |figure: &str| -> Vec<f64> {
        let value = &row(figure).expect("the row").value;
        value.split([' ', '(', ';']).filter_map(|w| w.parse().ok()).collect()
    };
    let writer = numbers("rows per commit");
    assert!(writer.len() >= 3 && writer[1] > 0.0 && writer[2] > 0.0, "{writer:?}");
    assert!(numbers("pgbench: one transaction per create")[0] > 0.0);
    assert!(numbers("create-message throughput ÷ pgbench's")[2] > 0.0);
}

#[test]
fn postgres_options_exclude_a_chatd_url_and_hide_a_password() {
    use clap::Parser;
    let parse = |args: &[&str]| chatd_bench::Opts::try_parse_from([&["chatd-bench"], args].concat());
    assert!(parse(&["--postgres", "--url", "127.0.0.1:3000"]).is_err());
    assert!(parse(&["--database-url", "postgres://u@h/db", "--url", "127.0.0.1:3000"]).is_err());
    assert!(parse(&["--postgres", "--database-url", "postgres://u@h/db"]).is_err());
    assert!(parse(&["--database-url", "mysql://u@h/db"]).is_err());
    let opts = parse(&["--database-url", "postgres://u:secret@h:5432/db"]).unwrap();
    assert_eq!(opts.database_url.as_ref().unwrap().0, "postgres://u:secret@h:5432/db");
    assert!(!format!("{opts:?}").contains("secret"), "{opts:?}");
    assert!(parse(&["--postgres"]).unwrap().postgres);
}

/// `--database-url`: each phase's database is created on the given server, reachable at the
/// URL handed out, and dropped at the end of the run.
#[test]
fn on_a_given_server_the_benchmark_creates_its_databases_and_drops_them() {
    let postgres = chatd_pg_testing::TestPostgres::start().expect("a PostgreSQL");
    let maintenance = postgres.url_of("postgres");
    let server = chatd_bench::postgres::Server::start(Some(&maintenance)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let urls = [server.fresh_database(&runtime).unwrap(), server.fresh_database(&runtime).unwrap()];
    let ours = || {
        let sql = format!(
            "SELECT datname FROM pg_database WHERE datname LIKE 'chatd_bench_{}_%'",
            std::process::id()
        );
        let mut names: Vec<String> =
            postgres.psql(&maintenance, &sql).unwrap().lines().map(str::to_owned).collect();
        names.sort();
        names
    };
    let names: Vec<String> = urls.iter().map(|u| u.rsplit('/').next().unwrap().to_owned()).collect();
    assert_eq!(ours(), names);
    for url in &urls {
        assert_eq!(
            postgres.psql(url, "SELECT current_database()").unwrap().trim(),
            url.rsplit('/').next().unwrap()
        );
    }
    server.drop_databases(&runtime).unwrap();
    assert!(ours().is_empty());
}
