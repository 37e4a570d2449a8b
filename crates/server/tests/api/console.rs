//! The console's files over HTTP: the page, its script and stylesheet with their types and
//! security headers, revalidation, and where the console is absent (`--console off`, the
//! creation listener). What the page does runs in a real browser: `tests/browser/`.

use chatd_server::config::Console;
use reqwest::{StatusCode, header};

use crate::helpers::{assert_error, chatd_on, spawn_app, spawn_app_with, start_process};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// GETs `path`, checks the headers every console file carries, and returns its body.
async fn console_file(base: &str, path: &str, content_type: &str) -> String {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let h = r.headers();
    assert_eq!(h[header::CONTENT_TYPE], content_type, "{path}");
    assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{path}");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache", "{path}");
    assert!(h.contains_key(header::ETAG), "{path}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn the_page_is_html_under_a_strict_content_security_policy_with_nothing_inline() {
    let app = spawn_app().await;

    let page = console_file(&app.api, "/", "text/html; charset=utf-8").await;

    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.contains(r#"<script src="/console.js" defer></script>"#), "{page}");
    assert!(page.contains(r#"<link rel="stylesheet" href="/console.css">"#), "{page}");
    // The policy forbids inline code and style: the page must have none to work.
    assert_eq!(page.matches("<script").count(), 1, "one script, by URL");
    assert!(!page.contains("<style"), "no inline stylesheet");
    assert!(!page.contains(" style="), "no style attribute");
    let handler = page.split(" on").skip(1).find(|rest| {
        let name = rest.chars().take_while(char::is_ascii_alphabetic).count();
        name > 0 && rest[name..].starts_with('=')
    });
    assert!(handler.is_none(), "no inline event handler: on{}", handler.unwrap_or_default());
    // Nothing from elsewhere.
    assert!(!page.contains("http:") && !page.contains("https:") && !page.contains("//"), "{page}");
}

#[tokio::test]
async fn the_script_and_stylesheet_are_served_with_their_types() {
    let app = spawn_app().await;

    let script = console_file(&app.api, "/console.js", "text/javascript; charset=utf-8").await;
    let style = console_file(&app.api, "/console.css", "text/css; charset=utf-8").await;

    assert!(script.contains("new EventSource("), "the script follows chats live");
    assert!(style.contains("mark"), "the stylesheet styles search marks");
    // What must never be in the script: markup built from strings, storage of the key or
    // token, the log, code from strings, and navigation (the token would land in history).
    for banned in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "localStorage",
        "sessionStorage",
        "indexedDB",
        "document.cookie",
        "console.",
        "eval(",
        "new Function",
        "location.href =",
        "location.hash",
        "history.",
        "http:",
        "https:",
    ] {
        assert!(!script.contains(banned), "the script uses {banned}");
    }
}

#[tokio::test]
async fn a_browser_revalidates_and_gets_304_while_the_page_is_unchanged() {
    let app = spawn_app().await;
    let first = app.get("/").await;
    let etag = first.headers()[header::ETAG].clone();
    assert!(etag.to_str().unwrap().contains(env!("CARGO_PKG_VERSION")), "{etag:?}");

    let again =
        app.client.get(app.url("/")).header(header::IF_NONE_MATCH, etag.clone()).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], etag);
    assert_eq!(again.headers()[header::CACHE_CONTROL], "no-cache");

    // Another version's tag (or the script's) gets the whole page.
    let other =
        app.client.get(app.url("/")).header(header::IF_NONE_MATCH, "\"0.0.0-0\"").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    let script = app.get("/console.js").await;
    assert_ne!(script.headers()[header::ETAG], etag, "each file has its own tag");
}

#[tokio::test]
async fn console_off_removes_the_page_and_its_files() {
    let app = spawn_app_with(|c| c.console = Console::Off).await;

    for path in ["/", "/console.js", "/console.css"] {
        assert_error(app.get(path).await, 404, "not_found").await;
    }
    // The API is unchanged.
    app.create_app("still here").await;
}

#[tokio::test]
async fn the_creation_listener_has_no_console() {
    let app = spawn_app().await;

    for path in ["/", "/console.js"] {
        let r = app.client.get(format!("{}{path}", app.creation)).send().await.unwrap();
        assert_error(r, 404, "not_found").await;
    }
}

#[tokio::test]
async fn the_binary_takes_console_off_from_the_environment_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = chatd_on(dir.path());
    command.env("CHATD_CONSOLE", "off");
    let (mut child, base) = start_process(command);
    let r = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    child.kill().unwrap();
    child.wait().unwrap();

    let parse = |args: &[&str]| {
        let cli = <chatd_server::Cli as clap::Parser>::try_parse_from(args).unwrap();
        let chatd_server::config::Command::Serve(config) = cli.into_command() else { unreachable!() };
        config.console
    };
    assert_eq!(parse(&["chatd"]), Console::On);
    assert_eq!(parse(&["chatd", "--console", "off"]), Console::Off);
    assert_eq!(parse(&["chatd", "serve", "--console", "on"]), Console::On);
}
