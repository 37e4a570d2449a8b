//! CORS (`--cors-origins`) over HTTP: preflights of every route and method, the headers of
//! real answers (errors included) for an allowed origin, nothing for any other origin or by
//! default, and a malformed origin refused at start. `tests/browser` shows the same in a
//! browser.

use std::collections::BTreeMap;

use chatd_server::config::Config;
use chatd_server::cors::CorsOrigins;
use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, chatd_command, spawn_app, spawn_app_with};

const ALLOWED: &str = "http://app.example.com:8000";
const OTHER: &str = "http://other.example.com:8000";

/// The `access-control-*` headers of an answer.
fn cors_headers(r: &Response) -> BTreeMap<String, String> {
    let headers = r.headers().iter().filter(|(name, _)| name.as_str().starts_with("access-control-"));
    headers.map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned())).collect()
}

/// A comma-separated header value as lowercase names.
fn names(value: &str) -> Vec<String> {
    value.split(',').map(|v| v.trim().to_ascii_lowercase()).collect()
}

fn allowing(origins: &str) -> impl FnOnce(&mut Config) {
    let origins: CorsOrigins = origins.parse().unwrap();
    move |c| c.cors_origins = Some(origins)
}

/// A browser's preflight: may `origin` send `method` to `url` with `headers`?
async fn preflight(app: &TestApp, url: &str, origin: &str, method: &str, headers: &str) -> Response {
    let mut request = app
        .client
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method);
    if !headers.is_empty() {
        request = request.header("access-control-request-headers", headers);
    }
    request.send().await.unwrap()
}

/// An application with a chat of two messages: its token.
async fn a_chat(app: &TestApp) -> String {
    let token = app.create_app("cors").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "one").await;
    app.create_message(&token, chat, "two").await;
    token
}

#[tokio::test]
async fn every_route_and_method_is_preflighted_for_an_allowed_origin_before_rate_limits() {
    // One request per second per IP: the preflights below would be refused were they limited.
    let app = spawn_app_with(|c| {
        allowing(&format!("{OTHER}, {ALLOWED}"))(c);
        c.ip_rate = 1;
        c.ip_burst = 1;
    })
    .await;
    let t = "someToken";
    let cases = [
        ("/applications", "GET", "authorization"),
        ("/applications", "POST", "content-type,idempotency-key"),
        (&format!("/applications/{t}") as &str, "PUT", "content-type"),
        (&format!("/applications/{t}"), "PATCH", "content-type"),
        (&format!("/applications/{t}/chats"), "POST", "idempotency-key"),
        (&format!("/applications/{t}/chats/1/messages"), "POST", "content-type,idempotency-key"),
        (&format!("/applications/{t}/chats/1/messages/search"), "GET", "authorization"),
        (&format!("/applications/{t}/chats/1/messages/stream"), "GET", "last-event-id"),
        (&format!("/applications/{t}/chats/1/messages/1"), "PATCH", "content-type"),
        (&format!("/applications/{t}/chats/1/messages/1/"), "PUT", "content-type"),
        ("/metrics", "GET", "authorization"),
    ];
    for (path, method, headers) in cases {
        let r = preflight(&app, &app.url(path), ALLOWED, method, headers).await;
        assert_eq!(r.status(), StatusCode::OK, "{method} {path}");
        let cors = cors_headers(&r);
        assert_eq!(cors["access-control-allow-origin"], ALLOWED, "{method} {path}: {cors:?}");
        assert!(
            names(&cors["access-control-allow-methods"]).contains(&method.to_ascii_lowercase()),
            "{cors:?}"
        );
        let allowed = names(&cors["access-control-allow-headers"]);
        assert!(headers.split(',').all(|h| allowed.iter().any(|a| a == h)), "{method} {path}: {cors:?}");
        assert!(cors["access-control-max-age"].parse::<u32>().unwrap() >= 600, "{cors:?}");
        assert!(!cors.contains_key("access-control-allow-credentials"), "no cookies: {cors:?}");
    }
    // The creation listener too.
    let creation = format!("{}/applications/{t}/chats/1/messages", app.creation);
    let r = preflight(&app, &creation, ALLOWED, "POST", "content-type,idempotency-key").await;
    assert_eq!(
        (r.status(), cors_headers(&r)["access-control-allow-origin"].as_str()),
        (StatusCode::OK, ALLOWED)
    );

    // The real requests are limited, and their 429 carries the headers a page needs to read
    // it and its `Retry-After`.
    let mut limited = None;
    for _ in 0..20 {
        let r = app.client.get(app.url("/applications")).header("origin", ALLOWED).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("the rate limit applies to real requests");
    assert!(limited.headers().contains_key("retry-after"));
    let cors = cors_headers(&limited);
    assert_eq!(cors["access-control-allow-origin"], ALLOWED, "{cors:?}");
    assert!(names(&cors["access-control-expose-headers"]).contains(&"retry-after".to_owned()), "{cors:?}");
}

#[tokio::test]
async fn answers_to_an_allowed_origin_carry_the_headers_and_expose_link_errors_included() {
    let app = spawn_app_with(allowing(ALLOWED)).await;
    let token = a_chat(&app).await;
    let origin_get = |path: &str| app.client.get(app.url(path)).header("origin", ALLOWED).send();

    // A page of a list, with its `Link` readable by the page's script.
    let r = origin_get(&format!("/applications/{token}/chats/1/messages?limit=1")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("link"));
    let cors = cors_headers(&r);
    assert_eq!(cors["access-control-allow-origin"], ALLOWED);
    let exposed = names(&cors["access-control-expose-headers"]);
    for name in ["link", "retry-after", "location"] {
        assert!(exposed.contains(&name.to_owned()), "{name} exposed: {cors:?}");
    }
    assert!(names(r.headers()["vary"].to_str().unwrap()).contains(&"origin".to_owned()));

    // A create on either listener.
    let path = format!("/applications/{token}/chats/1/messages");
    for base in [&app.api, &app.creation] {
        let r = app
            .client
            .post(format!("{base}{path}"))
            .header("origin", ALLOWED)
            .json(&json!({ "body": "three" }));
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(cors_headers(&r)["access-control-allow-origin"], ALLOWED, "{base}");
    }

    // Errors: no such route, no such application, a method the route lacks, a body too big.
    for (r, status) in [
        (origin_get("/nowhere").await.unwrap(), 404),
        (origin_get("/applications/noSuchToken/chats").await.unwrap(), 404),
        (app.client.delete(app.url("/applications")).header("origin", ALLOWED).send().await.unwrap(), 405),
        (
            app.client
                .post(app.url(&path))
                .header("origin", ALLOWED)
                .json(&json!({ "body": "x".repeat(2 * 1024 * 1024) }))
                .send()
                .await
                .unwrap(),
            413,
        ),
    ] {
        assert_eq!(r.status().as_u16(), status);
        let cors = cors_headers(&r);
        assert_eq!(cors["access-control-allow-origin"], ALLOWED, "{status}: {cors:?}");
        assert!(cors.contains_key("access-control-expose-headers"), "{status}: {cors:?}");
    }
}

#[tokio::test]
async fn another_origin_or_none_gets_no_cors_headers_and_the_same_answers() {
    let app = spawn_app_with(allowing(ALLOWED)).await;
    let token = a_chat(&app).await;
    let list = app.url(&format!("/applications/{token}/chats/1/messages?limit=1"));

    for origin in [Some(OTHER), Some("null"), Some("http://app.example.com"), None] {
        let mut request = app.client.get(&list);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{origin:?}");
        assert!(r.headers().contains_key("link"));
        assert_eq!(cors_headers(&r), BTreeMap::new(), "{origin:?}");
        // A cache must not hand this answer to an allowed page.
        assert!(names(r.headers()["vary"].to_str().unwrap()).contains(&"origin".to_owned()), "{origin:?}");
    }

    // Its preflight is not answered: the method is not allowed, as without CORS.
    let r = preflight(&app, &list, OTHER, "POST", "content-type").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(cors_headers(&r), BTreeMap::new());
    let r = app.client.get(app.url("/nowhere")).header("origin", OTHER).send().await.unwrap();
    assert_eq!((r.status(), cors_headers(&r)), (StatusCode::NOT_FOUND, BTreeMap::new()));
}

#[tokio::test]
async fn a_star_allows_every_origin() {
    let app = spawn_app_with(allowing("*")).await;
    let token = a_chat(&app).await;
    for origin in [ALLOWED, OTHER, "null"] {
        let r = preflight(&app, &app.url(&format!("/applications/{token}")), origin, "PATCH", "content-type")
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(cors_headers(&r)["access-control-allow-origin"], "*");
        let r = app.client.get(app.url(&format!("/applications/{token}"))).header("origin", origin).send();
        let r = r.await.unwrap();
        assert_eq!(
            (r.status(), cors_headers(&r)["access-control-allow-origin"].as_str()),
            (StatusCode::OK, "*")
        );
    }
}

#[tokio::test]
async fn cors_is_off_by_default_and_nothing_changes() {
    let app = spawn_app().await;
    let token = a_chat(&app).await;
    let url = app.url(&format!("/applications/{token}/chats/1/messages"));
    let r = preflight(&app, &url, ALLOWED, "POST", "content-type").await;
    assert_eq!((r.status(), cors_headers(&r)), (StatusCode::METHOD_NOT_ALLOWED, BTreeMap::new()));
    let r = app.client.get(&url).header("origin", ALLOWED).send().await.unwrap();
    assert_eq!((r.status(), cors_headers(&r)), (StatusCode::OK, BTreeMap::new()));
    assert!(!r.headers().contains_key("vary"), "no CORS, no Vary: {:?}", r.headers());
}

#[test]
fn a_malformed_origin_stops_chatd_at_start_with_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    for (origins, says) in [
        ("https://app.example.com/", "write https://app.example.com"),
        ("http://localhost:5173,localhost:3000", "expected scheme://host[:port]"),
    ] {
        let out = chatd_command()
            .env("CHATD_CORS_ORIGINS", origins)
            .args(["--listen", "127.0.0.1:0", "--creation-listen", "off", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{origins}: {stderr}");
        assert!(stderr.contains("--cors-origins") && stderr.contains(says), "{origins}: {stderr}");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was opened");
}
