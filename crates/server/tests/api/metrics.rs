//! `GET /metrics`: the Prometheus text format (every line checked by a parser of that
//! format), requests counted by route template and never by path, latency histograms that
//! count every request, the writer's commits, storage's sampled gauges, and the admin key.

use futures::future::join_all;
use prom_text_format_parser::{Metric, Sample, Scrape, Type, ValueType};
use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_error, on_postgres, spawn_app, spawn_app_with};

const MESSAGE_ROUTE: &str = "/applications/{token}/chats/{chat}/messages/{message}";

/// Scrapes `/metrics` with the admin key `key` (when given) and parses the answer with a
/// parser of the text format's grammar, which refuses any line or family that breaks it.
async fn scrape_with(app: &TestApp, key: Option<&str>) -> (String, Scrape) {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    let scrape = Scrape::parse(&text).unwrap_or_else(|e| panic!("the metrics do not parse: {e:?}\n{text}"));
    (text, scrape)
}

async fn scrape(app: &TestApp) -> (String, Scrape) {
    scrape_with(app, None).await
}

fn family<'a>(scrape: &'a Scrape, name: &str) -> Option<&'a Metric> {
    scrape.metrics.iter().find(|m| m.name == name)
}

/// The samples of family `name` of kind `kind` whose labels include `labels`.
fn samples<'a>(
    scrape: &'a Scrape,
    name: &str,
    kind: ValueType,
    labels: &[(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    let has = |s: &Sample, (k, v): &(&str, &str)| s.labels.iter().any(|l| l.key == *k && l.value == *v);
    let labels = labels.to_vec();
    family(scrape, name)
        .into_iter()
        .flat_map(|m| &m.samples)
        .filter(move |s| s.value.value_type == kind && labels.iter().all(|l| has(s, l)))
}

/// The value of the one sample of counter or gauge `name` whose labels include `labels`; 0
/// when there is none (a labelled counter appears with its first count).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = samples(scrape, name, ValueType::Sample, labels).collect();
    assert!(found.len() <= 1, "{name} {labels:?} names {} series", found.len());
    found.first().map_or(0.0, |s| s.value.value.as_f64())
}

/// A histogram's count and sum, after checking that its buckets never decrease and that
/// its `+Inf` bucket agrees with its count. (0, 0) when the series does not exist yet.
fn histogram(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> (f64, f64) {
    let Some(metric) = family(scrape, name) else { return (0.0, 0.0) };
    assert_eq!(metric.kind, Type::Histogram, "{name}");
    let one = |kind| {
        let found: Vec<_> = samples(scrape, name, kind, labels).collect();
        assert!(found.len() <= 1, "{name} {labels:?} names {} series", found.len());
        found.first().map_or(0.0, |s| s.value.value.as_f64())
    };
    let (count, sum) = (one(ValueType::Count), one(ValueType::Sum));
    let buckets: Vec<f64> =
        samples(scrape, name, ValueType::Sample, labels).map(|s| s.value.value.as_f64()).collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{name} {labels:?}: buckets {buckets:?}");
    let inf: Vec<_> =
        samples(scrape, name, ValueType::Sample, &[labels, &[("le", "+Inf")]].concat()).collect();
    assert_eq!(
        inf.len(),
        usize::from(count > 0.0 || !buckets.is_empty()),
        "{name} {labels:?}: one +Inf bucket"
    );
    if let Some(inf) = inf.first() {
        assert_eq!(inf.value.value.as_f64(), count, "{name} {labels:?}: the +Inf bucket is not the count");
    }
    (count, sum)
}

fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    histogram(scrape, name, labels).0
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status_and_each_is_timed() {
    let app = spawn_app().await;
    let token = app.create_app("counted").await;
    let chat = app.create_chat(&token).await;
    let message = app.create_message(&token, chat, "hello").await;
    let (_, before) = scrape(&app).await;

    // 7 reads of one application (one with a trailing slash, one with a query), 3 of a
    // message, 2 of a message that does not exist, 4 paths no route matches.
    for i in 0..7 {
        let path = match i {
            0 => format!("/applications/{token}/"),
            1 => format!("/applications/{token}?token={token}"),
            _ => format!("/applications/{token}"),
        };
        assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    }
    for _ in 0..3 {
        let r = app.get(&format!("/applications/{token}/chats/{chat}/messages/{message}")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    for _ in 0..2 {
        let r = app.get(&format!("/applications/{token}/chats/{chat}/messages/999")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    for _ in 0..4 {
        assert_eq!(app.get(&format!("/nowhere/{token}")).await.status(), StatusCode::NOT_FOUND);
    }
    let (text, after) = scrape(&app).await;

    let moved =
        |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let requests = "chatd_http_requests_total";
    let app_route = [("method", "GET"), ("route", "/applications/{token}")];
    assert_eq!(moved(requests, &[app_route[0], app_route[1], ("status", "200")]), 7.0);
    let message_route = [("method", "GET"), ("route", MESSAGE_ROUTE)];
    assert_eq!(moved(requests, &[message_route[0], message_route[1], ("status", "200")]), 3.0);
    assert_eq!(moved(requests, &[message_route[0], message_route[1], ("status", "404")]), 2.0);
    assert_eq!(moved(requests, &[("method", "GET"), ("route", "unmatched"), ("status", "404")]), 4.0);
    // The first scrape was answered before the second: counted once.
    assert_eq!(moved(requests, &[("route", "/metrics"), ("status", "200")]), 1.0);

    let latency = "chatd_http_request_duration_seconds";
    let timed = |labels: &[(&str, &str)]| {
        histogram_count(&after, latency, labels) - histogram_count(&before, latency, labels)
    };
    assert_eq!(timed(&app_route), 7.0);
    assert_eq!(timed(&message_route), 5.0);
    assert_eq!(timed(&[("method", "GET"), ("route", "unmatched")]), 4.0);
    let creates = [("method", "POST"), ("route", "/applications")];
    assert_eq!(histogram_count(&after, latency, &creates), value(&after, requests, &creates));

    assert!(!text.contains(&token), "a token reached the metrics:\n{text}");
    assert!(!text.contains("nowhere"), "a path no route matched reached the metrics:\n{text}");
}

#[tokio::test]
async fn commits_and_writes_move_with_creates() {
    let app = spawn_app().await;
    let token = app.create_app("written").await;
    let chat = app.create_chat(&token).await;
    let (_, before) = scrape(&app).await;

    // One at a time: each create is a commit of its own.
    for i in 0..5 {
        app.create_message(&token, chat, &format!("one {i}")).await;
    }
    // At once: as many writes, in as many commits or fewer.
    let bodies: Vec<String> = (0..20).map(|i| format!("many {i}")).collect();
    join_all(bodies.iter().map(|body| app.create_message(&token, chat, body))).await;
    let (_, after) = scrape(&app).await;

    let moved = |name: &str| value(&after, name, &[]) - value(&before, name, &[]);
    let commits = moved("chatd_writer_commits_total");
    assert_eq!(moved("chatd_writer_writes_total"), 25.0);
    assert!((6.0..=25.0).contains(&commits), "{commits} commits");
    let batches = |s: &Scrape| histogram_count(s, "chatd_writer_batch_writes", &[]);
    assert_eq!(batches(&after) - batches(&before), commits, "one batch size per commit");
    let (_, written) = histogram(&after, "chatd_writer_batch_writes", &[]);
    assert_eq!(written, value(&after, "chatd_writer_writes_total", &[]), "the sizes add up to the writes");
    let durations = |s: &Scrape| histogram_count(s, "chatd_writer_commit_duration_seconds", &[]);
    assert_eq!(durations(&after) - durations(&before), commits, "one duration per commit");
    assert!(histogram(&after, "chatd_writer_commit_duration_seconds", &[]).1 > 0.0);

    // Nothing is waiting for the writer once every create has its answer.
    assert_eq!(value(&after, "chatd_writer_queue_depth", &[]), 0.0);
    assert_eq!(family(&after, "chatd_streams_open").map(|m| m.kind), Some(Type::Gauge));
    if on_postgres() {
        let max = value(&after, "chatd_pool_connections_max", &[]);
        assert_eq!(max, 16.0, "4 × --read-connections");
        let (open, idle) = (
            value(&after, "chatd_pool_connections_open", &[]),
            value(&after, "chatd_pool_connections_idle", &[]),
        );
        assert!(idle <= open && open <= max && open >= 1.0, "open {open}, idle {idle}");
    } else {
        app.wait_indexed().await;
        let (_, indexed) = scrape(&app).await;
        assert_eq!(value(&indexed, "chatd_search_index_lag", &[]), 0.0);
        assert_eq!(
            family(&indexed, "chatd_search_index_failures_total").map(|m| m.kind),
            Some(Type::Counter)
        );
    }
}

#[tokio::test]
async fn an_admin_key_guards_the_metrics() {
    let app = spawn_app_with(|c| c.admin_key = Some("s3cret-key".into())).await;

    assert_error(app.get("/metrics").await, 401, "unauthorized").await;
    let r = app.client.get(app.url("/metrics")).bearer_auth("wrong").send().await.unwrap();
    assert_error(r, 401, "unauthorized").await;
    let (_, scraped) = scrape_with(&app, Some("s3cret-key")).await;

    // The refused scrapes were counted like any request.
    let refused = [("route", "/metrics"), ("status", "401")];
    assert_eq!(value(&scraped, "chatd_http_requests_total", &refused), 2.0);
}

#[tokio::test]
async fn the_creation_listener_counts_its_requests_but_does_not_serve_metrics() {
    let app = spawn_app().await;
    let token = app.create_app("creation").await;

    let r = app.client.post(format!("{}/applications/{token}/chats", app.creation)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.client.get(format!("{}/metrics", app.creation)).send().await.unwrap();
    assert_error(r, 404, "not_found").await;
    let (text, scraped) = scrape(&app).await;

    let created = [("method", "POST"), ("route", "/applications/{token}/chats"), ("status", "201")];
    assert_eq!(value(&scraped, "chatd_http_requests_total", &created), 1.0);
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(value(&scraped, "chatd_http_requests_total", &unmatched), 1.0);
    assert!(!text.contains(&token));
}
