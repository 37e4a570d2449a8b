//! The console (`GET /`) in a real headless chromium against a real chatd: it loads without
//! a console error under its Content-Security-Policy, sends, receives live, resumes after a
//! restart with each message once, marks search matches, shows markup as text, keeps keys
//! out of the URL and storage; and the README's screenshot, `docs/console.png`, is taken here.

use std::time::Duration;

use chatd_server::Config;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{TestApp, spawn_app_in, spawn_app_with};
use crate::webdriver::Browser;

/// Where the README's screenshot goes.
const SCREENSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/console.png");

/// One console test at a time: two cores shared by a browser each would blur the timing
/// that the live-delivery check measures.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The most a message created through the API may take to show in an open chat.
const LIVE: Duration = Duration::from_secs(1);
/// Generous bounds for what does not measure latency (page loads, a reconnecting stream).
const SOON: Duration = Duration::from_secs(10);

/// The JavaScript expression: the numbers of the messages shown, in page order.
const SHOWN_NUMBERS: &str =
    "[...document.querySelectorAll('#messages li')].map(li => Number(li.dataset.number))";

/// A JavaScript string literal of `s`.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The expression that is true once message `number` shows with `body`, as text.
fn shows(number: i64, body: &str) -> String {
    format!(
        "document.querySelector('#messages li[data-number=\"{number}\"] .body')?.textContent === {}",
        js(body)
    )
}

/// A server with one application holding one chat of `bodies`: the server, token, chat.
async fn app_with_chat(bodies: &[&str]) -> (TestApp, String, i64) {
    let app = spawn_app_with(|_| {}).await;
    let token = app.create_app("browser").await;
    let chat = app.create_chat(&token).await;
    for body in bodies {
        app.create_message(&token, chat, body).await;
    }
    (app, token, chat)
}

/// Opens the console, enters `token`, opens chat `chat`, and waits until its stream is live.
async fn open_chat(browser: &Browser, app: &TestApp, token: &str, chat: i64) {
    browser.goto(&app.url("/")).await;
    browser.find("#token").await.send_keys(token).await;
    browser.find("#token-form button[type=submit]").await.click().await;
    let button = format!("#chats button[data-chat=\"{chat}\"]");
    browser.wait_until(&format!("document.querySelector('{button}')"), SOON).await;
    browser.find(&button).await.click().await;
    wait_live(browser).await;
}

async fn wait_live(browser: &Browser) {
    browser.wait_until("document.querySelector('#live').textContent === 'live'", SOON).await;
}

/// No SEVERE entry (script error, CSP violation, failed load) in the browser's log.
async fn assert_no_console_errors(browser: &Browser) {
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// The key, token and chat appear nowhere a browser keeps or shows them.
async fn assert_secrets_kept_in_memory(browser: &Browser, secrets: &[&str]) {
    let url = browser.url().await;
    let kept = browser
        .execute(
            "return [location.href, history.length, localStorage.length, sessionStorage.length, document.cookie]",
            &[],
        )
        .await;
    for secret in secrets {
        assert!(!url.contains(secret), "{url}");
        assert!(!kept[0].as_str().unwrap().contains(secret), "{kept}");
    }
    assert_eq!(kept[2], 0, "localStorage holds something");
    assert_eq!(kept[3], 0, "sessionStorage holds something");
    assert_eq!(kept[4], "", "a cookie was set");
}

#[tokio::test]
async fn the_console_sends_receives_live_marks_matches_and_shows_markup_as_text() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (app, token, chat) = app_with_chat(&["first, from before"]).await;
    let browser = Browser::start().await;

    // It loads and opens the chat with the message there before, and nothing went wrong
    // (CSP violations, script errors and failed loads are SEVERE entries).
    open_chat(&browser, &app, &token, chat).await;
    browser.wait_until(&shows(1, "first, from before"), SOON).await;
    assert_no_console_errors(&browser).await;

    // A message sent from the page shows in the list, and the box empties.
    browser.find("#body").await.send_keys("Rails stuff, sent from the page").await;
    browser.find("#send").await.click().await;
    browser.wait_until(&shows(2, "Rails stuff, sent from the page"), SOON).await;
    assert_eq!(browser.find("#body").await.property("value").await, "");
    assert_eq!(app.all_messages(&token, chat).await.len(), 2, "stored once");

    // A message created through the API (as curl would) shows live within a second.
    let number = app.create_message(&token, chat, "Go and rails, from curl").await;
    browser.wait_until(&shows(number, "Go and rails, from curl"), LIVE).await;

    // A body that looks like HTML is shown as those characters: no element, no alert.
    let markup = "<img src=x onerror=alert(1)>";
    let number = app.create_message(&token, chat, markup).await;
    browser.wait_until(&shows(number, markup), LIVE).await;
    let images = browser
        .execute("return document.querySelectorAll('#messages img, #messages [onerror]').length", &[])
        .await;
    assert_eq!(images, 0, "the body became markup");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!browser.alert_open().await, "an alert fired");

    // Search marks what matched, in the body as shown, whatever its case or accents.
    app.create_message(&token, chat, "Un café crème, Rails?").await;
    app.wait_indexed().await;
    search(&browser, "rails").await;
    let results = browser.wait_until("document.querySelectorAll('#results li').length === 3 && [...document.querySelectorAll('#results li')].map(li => [...li.querySelectorAll('mark')].map(m => m.textContent))", SOON).await;
    let mut marks: Vec<Value> = results.as_array().unwrap().clone();
    marks.sort_by_key(Value::to_string);
    assert_eq!(marks, [json!(["Rails"]), json!(["Rails"]), json!(["rails"])]);
    search(&browser, "CAFE \"crème, rails\"").await;
    let marks = browser
        .wait_until("document.querySelectorAll('#results li').length === 1 && [...document.querySelectorAll('#results mark')].map(m => m.textContent)", SOON)
        .await;
    assert_eq!(marks, json!(["café", "crème, Rails"]));
    let text = browser.find("#results li .body").await.text().await;
    assert_eq!(text, "Un café crème, Rails?", "the marked body reads as the body");

    // The search of markup marks it as text too.
    search(&browser, "onerror").await;
    browser
        .wait_until(
            "[...document.querySelectorAll('#results mark')].map(m => m.textContent).join() === 'onerror'",
            SOON,
        )
        .await;
    assert_eq!(browser.execute("return document.querySelectorAll('#results img').length", &[]).await, 0);

    assert!(!browser.alert_open().await, "an alert fired");
    // Each message once, in number order, however it arrived (sent, streamed, or both).
    let shown = browser.execute(&format!("return {SHOWN_NUMBERS}"), &[]).await;
    assert_eq!(shown, json!([1, 2, 3, 4, 5]));
    assert_secrets_kept_in_memory(&browser, &[&token]).await;
    assert_no_console_errors(&browser).await;
    browser.close().await;
}

async fn search(browser: &Browser, keyword: &str) {
    // Clear the previous results, so that waiting sees the new ones.
    browser.execute("document.querySelector('#results').replaceChildren()", &[]).await;
    let input = browser.find("#keyword").await;
    input.clear().await;
    input.send_keys(keyword).await;
    browser.find("#search-form button[type=submit]").await.click().await;
}

#[tokio::test]
async fn after_a_restart_the_console_resumes_and_shows_what_was_missed_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (app, token, chat) = app_with_chat(&["one", "two"]).await;
    let browser = Browser::start().await;
    open_chat(&browser, &app, &token, chat).await;
    browser.wait_until(&shows(2, "two"), SOON).await;

    // chatd stops (its streams end with a last `end` event); while the page cannot reach
    // it, another server on the same data directory stores three messages and stops.
    let addr = app.api_addr;
    let dir = app.stop().await;
    let meanwhile = spawn_app_in(dir, |_| {}).await;
    for body in ["three", "four", "five"] {
        meanwhile.create_message(&token, chat, body).await;
    }
    let dir = meanwhile.stop().await;
    browser.wait_until("document.querySelector('#live').textContent !== 'live'", SOON).await;

    // chatd starts again on the same port: the page reconnects by itself and shows the
    // messages it missed, then new ones live; each once, in order.
    let app = spawn_app_in(dir, |c: &mut Config| c.listen = addr).await;
    browser.wait_until(&shows(5, "five"), Duration::from_secs(20)).await;
    wait_live(&browser).await;
    app.create_message(&token, chat, "six").await;
    browser.wait_until(&shows(6, "six"), LIVE).await;
    let shown = browser.execute(&format!("return {SHOWN_NUMBERS}"), &[]).await;
    assert_eq!(shown, json!([1, 2, 3, 4, 5, 6]));
    let bodies = browser
        .execute("return [...document.querySelectorAll('#messages .body')].map(b => b.textContent)", &[])
        .await;
    assert_eq!(bodies, json!(["one", "two", "three", "four", "five", "six"]));
    browser.close().await;
}

#[tokio::test]
async fn the_readme_screenshot_shows_applications_chats_messages_and_a_search() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let admin_key = "console-admin-key";
    let app = spawn_app_with(|c| c.admin_key = Some(admin_key.to_owned())).await;
    let token = app.create_app("Acme support").await;
    app.create_app("Field service").await;
    let chat = app.create_chat(&token).await;
    for _ in 0..2 {
        let other = app.create_chat(&token).await;
        app.create_message(&token, other, "Hello!").await;
    }
    for body in [
        "Hi! The deploy to staging failed this morning.",
        "Which service? The Rails app or the Go workers?",
        "The Go workers: the queue name changed in the new config.",
        "Fixed the name and redeployed. Staging is green.",
        "Great, thanks! Deploy to production after lunch?",
    ] {
        app.create_message(&token, chat, body).await;
    }
    app.wait_indexed().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/")).await;

    // The admin key lists the applications; picking one opens it.
    browser.find("#admin-key").await.send_keys(admin_key).await;
    browser.find("#admin-form button[type=submit]").await.click().await;
    browser.wait_until("document.querySelectorAll('#apps li').length === 2", SOON).await;
    browser.find("#apps li:first-child button").await.click().await;
    browser.wait_until("document.querySelectorAll('#chats li').length === 3", SOON).await;
    browser.find(&format!("#chats button[data-chat=\"{chat}\"]")).await.click().await;
    wait_live(&browser).await;
    browser.wait_until(&shows(5, "Great, thanks! Deploy to production after lunch?"), SOON).await;
    browser.find("#body").await.send_keys("On it: deploying at 14:00.").await;
    browser.find("#send").await.click().await;
    browser.wait_until(&shows(6, "On it: deploying at 14:00."), SOON).await;
    app.wait_indexed().await;
    search(&browser, "deploy").await;
    browser.wait_until("document.querySelectorAll('#results mark').length === 4", SOON).await;
    // The count of the open chat follows its new message.
    browser
        .wait_until(&format!("document.querySelector('#chats button[data-chat=\"{chat}\"] .count').textContent === '6 messages'"), SOON)
        .await;
    assert_secrets_kept_in_memory(&browser, &[admin_key, &token]).await;
    assert_no_console_errors(&browser).await;

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(SCREENSHOT, png).unwrap();
    browser.close().await;
}

#[tokio::test]
async fn older_pages_follow_the_link_header_and_errors_show_the_api_message() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let bodies: Vec<String> = (1..=120).map(|n| format!("message {n}")).collect();
    let (app, token, chat) = app_with_chat(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let browser = Browser::start().await;

    // A token that names no application: the API's own message, and nothing opens.
    browser.goto(&app.url("/")).await;
    browser.find("#token").await.send_keys("NoSuchToken0000000000000").await;
    browser.find("#token-form button[type=submit]").await.click().await;
    let expected: Value = app.get("/applications/NoSuchToken0000000000000").await.json().await.unwrap();
    let shown = browser.wait_until("document.querySelector('#error:not([hidden])')?.textContent", SOON).await;
    assert_eq!(shown, expected["message"]);
    assert!(!browser.find("#chats-section").await.is_displayed().await);

    // The newest page first; each "Older messages" follows the list's Link rel="next".
    open_chat(&browser, &app, &token, chat).await;
    assert!(!browser.find("#error").await.is_displayed().await, "the error is cleared");
    let count = format!("{SHOWN_NUMBERS}.length");
    assert_eq!(browser.wait_until(&format!("{count} === 50 && {SHOWN_NUMBERS}[0]"), SOON).await, 71);
    browser.find("#older").await.click().await;
    assert_eq!(browser.wait_until(&format!("{count} === 100 && {SHOWN_NUMBERS}[0]"), SOON).await, 21);
    browser.find("#older").await.click().await;
    browser.wait_until(&format!("{count} === 120"), SOON).await;
    let shown = browser.execute(&format!("return {SHOWN_NUMBERS}"), &[]).await;
    assert_eq!(shown, json!((1..=120).collect::<Vec<_>>()), "each once, in order");
    assert!(!browser.find("#older").await.is_displayed().await, "no page is left");

    // A new chat from the page opens at once, empty.
    browser.find("#new-chat").await.click().await;
    browser.wait_until("document.querySelector('#chat-title').textContent === 'Chat 2'", SOON).await;
    wait_live(&browser).await;
    assert_eq!(browser.execute(&format!("return {count}"), &[]).await, 0);
    assert_eq!(app.create_chat(&token).await, 3, "the page created chat 2");
    browser.close().await;
}
