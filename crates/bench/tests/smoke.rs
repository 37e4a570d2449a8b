//! The benchmark's smoke mode runs every scenario for a moment and checks what it measures:
//! it proves the benchmark works; it asserts no speed.

#[test]
fn smoke_run_measures_every_figure_and_every_check_passes() {
    let report = chatd_bench::run(chatd_bench::Opts::smoke()).expect("the benchmark runs");
    assert!(report.checks_passed, "{}", report.markdown());
    for figure in ["create-message throughput", "create-to-searchable lag", "search latency", "peak RSS"] {
        assert!(
            report.rows.iter().any(|r| r.figure.starts_with(figure)),
            "missing {figure}:\n{}",
            report.markdown()
        );
    }
}

/// `--url`: the same scenarios against a chatd the benchmark did not start, reached only
/// over HTTP (here one started in this test, on its own runtime and port).
#[test]
fn smoke_run_against_a_given_url_measures_over_http_and_skips_what_needs_chatd_s_insides() {
    let dir = tempfile::tempdir().unwrap();
    let chatd = chatd_bench::servers::start_chatd(dir.path(), &chatd_bench::Opts::smoke()).unwrap();
    let mut opts = chatd_bench::Opts::smoke();
    opts.url = Some(chatd.addr);
    opts.timeline = Some(dir.path().join("timeline.csv"));
    let report = chatd_bench::run(opts).expect("the benchmark runs");
    assert!(report.checks_passed, "{}", report.markdown());
    let has = |figure: &str| report.rows.iter().any(|r| r.figure.starts_with(figure));
    assert!(has("create-message throughput") && has("create-to-searchable lag"), "{}", report.markdown());
    assert!(!has("rows per commit") && !has("peak RSS") && !has("search latency"), "{}", report.markdown());
    assert!(
        report.notes.iter().any(|n| n.starts_with("chatd ran in another process")),
        "{}",
        report.markdown()
    );
    // What the benchmark wrote went to that chatd: its database holds the messages.
    let stored = chatd.chatd.as_ref().unwrap().0.committed().get();
    assert!(stored > 100, "only {stored} changes reached the given chatd");
    // The timeline: every half-rate run, window by window, as many requests as were measured.
    let csv = std::fs::read_to_string(dir.path().join("timeline.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("run,start_s,requests,late,max_ms"));
    let mut requests = std::collections::HashMap::<String, u64>::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "{line}");
        assert!(f[1].parse::<f64>().unwrap() > 0.0 && f[4].parse::<f64>().is_ok(), "{line}");
        *requests.entry(f[0].to_owned()).or_default() += f[2].parse::<u64>().unwrap();
    }
    for run in ["chatd-messages", "chatd-chats", "baseline-messages"] {
        assert!(requests.get(run).is_some_and(|&n| n > 0), "no {run} windows in\n{csv}");
    }
    chatd.stop();
}

#[test]
fn url_option_takes_an_http_address() {
    use clap::Parser;
    let opts = chatd_bench::Opts::try_parse_from(["chatd-bench", "--url", "http://127.0.0.1:3000/"]).unwrap();
    assert_eq!(opts.url, Some("127.0.0.1:3000".parse().unwrap()));
    let bare = chatd_bench::Opts::try_parse_from(["chatd-bench", "--url", "127.0.0.1:3000"]).unwrap();
    assert_eq!(bare.url, opts.url);
    for bad in ["https://127.0.0.1:3000", "http://127.0.0.1:3000/applications", "http://127.0.0.1"] {
        assert!(chatd_bench::Opts::try_parse_from(["chatd-bench", "--url", bad]).is_err(), "{bad}");
    }
}
