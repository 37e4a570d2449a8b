//! CORS as a browser enforces it: a page served from another loopback port calls chatd with
//! `fetch` and follows a chat with `EventSource`. From the origin `--cors-origins` allows,
//! all of it works; from another, the browser refuses it all. What the page saw is read from
//! its `window.results`, not from headers.

use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use chatd_server::cors::CorsOrigins;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, spawn_app_with};
use crate::webdriver::Browser;

const WAIT: Duration = Duration::from_secs(10);

/// The page: on load it creates an application, reads it back, creates two chats and lists
/// them one per page (reading `Link`); `openStream` follows a chat; `call` makes one more
/// request. Each outcome, or the error `fetch` rejected with, lands in `window.results`.
const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>another origin</title><link rel="icon" href="data:,">
<script>
const API = "__API__";
const results = window.results = { steps: [], events: [], done: false };
async function call(name, path, init) {
  try {
    const r = await fetch(API + path, init);
    const body = await r.json();
    results.steps.push({ name, status: r.status, link: r.headers.get("Link") });
    return body;
  } catch (e) {
    results.steps.push({ name, error: e.name + ": " + e.message });
    return null;
  }
}
window.call = call;
window.openStream = (token, chat) => {
  const stream = new EventSource(`${API}/applications/${token}/chats/${chat}/messages/stream`);
  stream.onopen = () => { results.streamOpen = true; };
  stream.onmessage = (e) => results.events.push({ id: e.lastEventId, body: JSON.parse(e.data).body });
  stream.onerror = () => { results.streamError = { readyState: stream.readyState }; };
};
(async () => {
  const app = await call("create", "/applications", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": "page-" + location.port },
    body: JSON.stringify({ name: "from a page" }),
  });
  if (app) {
    results.token = app.access_token;
    const read = await call("read", `/applications/${app.access_token}`);
    results.name = read && read.name;
    await call("chat", `/applications/${app.access_token}/chats`, { method: "POST" });
    await call("chat", `/applications/${app.access_token}/chats`, { method: "POST" });
    await call("list", `/applications/${app.access_token}/chats?limit=1`);
  }
  results.done = true;
})();
</script>"#;

/// chatd allowing the origin of one loopback port, and the page served from that port and
/// from another: `(chatd, allowed page's URL, other page's URL)`.
async fn two_sites() -> (TestApp, String, String) {
    let allowed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let [allowed_url, other_url] = [&allowed, &other].map(|l| format!("http://{}", l.local_addr().unwrap()));
    let origins = CorsOrigins::List(vec![allowed_url.clone()]);
    let chatd = spawn_app_with(|c| c.cors_origins = Some(origins)).await;
    let page = PAGE.replace("__API__", &chatd.api);
    for listener in [allowed, other] {
        let site = Router::new().route("/", get(Html(page.clone())));
        tokio::spawn(async move { axum::serve(listener, site).await.unwrap() });
    }
    (chatd, format!("{allowed_url}/"), format!("{other_url}/"))
}

/// A browser on `page`, and the page's `window.results` once its first steps are done.
async fn visit(page: &str) -> (Browser, Value) {
    let browser = Browser::start().await;
    browser.goto(page).await;
    let results = browser.wait_until("window.results.done && window.results", WAIT).await;
    (browser, results)
}

/// What the page's steps came to: `(name, status or error)`.
fn steps(results: &Value) -> Vec<(String, String)> {
    let steps = results["steps"].as_array().unwrap().iter();
    let outcome =
        |s: &Value| s.get("status").map_or_else(|| s["error"].as_str().unwrap().to_owned(), Value::to_string);
    steps.map(|s| (s["name"].as_str().unwrap().to_owned(), outcome(s))).collect()
}

#[tokio::test]
async fn a_page_of_an_allowed_origin_calls_the_api_and_follows_a_chat_live() {
    let (chatd, page, _) = two_sites().await;
    let (browser, results) = visit(&page).await;
    let expected = [("create", "201"), ("read", "200"), ("chat", "201"), ("chat", "201"), ("list", "200")];
    let expected: Vec<_> = expected.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
    assert_eq!(steps(&results), expected, "{results}");
    assert_eq!(results["name"], "from a page");
    let token = results["token"].as_str().unwrap().to_owned();
    let link = results["steps"][4]["link"].as_str().expect("the page reads Link");
    assert!(link.contains("rel=\"next\"") && link.contains("after=1"), "{link}");

    // A message created through the API arrives on the page's stream.
    browser.execute("window.openStream(arguments[0], 2)", &[json!(token)]).await;
    browser.wait_until("window.results.streamOpen", WAIT).await;
    chatd.create_message(&token, 2, "live from elsewhere").await;
    let events = browser.wait_until("window.results.events.length > 0 && window.results.events", WAIT).await;
    assert_eq!(events, json!([{ "id": "1", "body": "live from elsewhere" }]));
    assert_eq!(browser.execute("return window.results.streamError || null", &[]).await, Value::Null);
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn a_page_of_another_origin_is_refused_by_the_browser() {
    let (chatd, _, page) = two_sites().await;

    // The create's preflight is refused, so the browser never sends the POST.
    let (browser, results) = visit(&page).await;
    assert_eq!(
        steps(&results),
        [("create".to_owned(), "TypeError: Failed to fetch".to_owned())],
        "{results}"
    );
    let listed = chatd.client.get(chatd.url("/applications")).send().await.unwrap();
    assert_eq!(listed.json::<Value>().await.unwrap(), json!([]), "nothing was created");

    // A simple GET is sent, but its answer is kept from the page.
    let token = chatd.create_app("made with curl").await;
    let chat = chatd.create_chat(&token).await;
    let read = "const done = arguments[arguments.length - 1]; window.call('read', arguments[0]).then(() => done(window.results))";
    let results = browser.execute_async(read, &[json!(format!("/applications/{token}"))]).await;
    assert_eq!(steps(&results)[1], ("read".to_owned(), "TypeError: Failed to fetch".to_owned()), "{results}");

    // The stream fails for good (CLOSED, no reconnecting), and a new message never shows.
    browser.execute("window.openStream(arguments[0], arguments[1])", &[json!(token), json!(chat)]).await;
    let failed = browser.wait_until("window.results.streamError", WAIT).await;
    assert_eq!(failed, json!({ "readyState": 2 }));
    chatd.create_message(&token, chat, "not for this page").await;
    let seen =
        browser.execute("return [window.results.streamOpen || false, window.results.events]", &[]).await;
    assert_eq!(seen, json!([false, []]));

    let blocked: Vec<_> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| e.message.contains("has been blocked by CORS policy"))
        .map(|e| e.message)
        .collect();
    for what in ["/applications'", &format!("/applications/{token}'"), "/messages/stream'"] {
        assert!(blocked.iter().any(|m| m.contains(what)), "the browser says it blocked {what}: {blocked:#?}");
    }
}
