//! A small W3C WebDriver client for the browser tests: it starts Debian's `chromedriver` on a
//! free loopback port, opens one headless `chromium` session through it, and drives it over
//! HTTP with reqwest. Only what the tests use: navigation, elements, scripts, waiting on a
//! condition, the browser's console log, alerts and screenshots.
//!
//! Every call panics with the driver's error on failure, as a test wants; the few questions
//! whose "no" is an answer ([`Browser::try_find`], [`Browser::alert_text`]) return an
//! `Option` instead. Dropping a [`Browser`] ends its session (chromium quits) and kills
//! chromedriver, so a failing test leaves nothing running; both stay in the test's process
//! group, so that Ctrl-C stops them too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

/// Where Debian's packages put them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// What a test says when they are missing: the browser tests fail, they never skip.
const INSTALL: &str =
    "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)";
/// The W3C key under which an element reference travels in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless chromium, driven by its own chromedriver.
#[derive(Debug)]
pub struct Browser {
    session: Session,
    driver: Child,
    /// chromium's main process, killed should chromedriver not end the session.
    chromium: Option<rustix::process::Pid>,
    /// Console entries read so far: chromedriver hands each entry out once.
    log: Mutex<Vec<LogEntry>>,
    closed: bool,
}

/// A session's address and the HTTP client that talks to it; cheap to clone, so that each
/// [`Element`] carries one.
#[derive(Debug, Clone)]
struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    driver: String,
    id: String,
}

/// An element of the current page, found by a CSS selector.
#[derive(Debug, Clone)]
pub struct Element {
    session: Session,
    id: String,
}

/// One line of the browser's console (chromedriver's `browser` log).
#[derive(Debug, Clone, Deserialize)]
pub struct LogEntry {
    /// `SEVERE` (errors, failed loads, CORS refusals), `WARNING`, `INFO` or `DEBUG`.
    pub level: String,
    /// The text, prefixed by where it came from (`console-api 12:8 "…"`, a URL, …).
    pub message: String,
    /// `console-api`, `network`, `javascript`, `security`, …
    #[serde(default)]
    pub source: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl Browser {
    /// Starts chromedriver and a headless chromium (1280×900) with its console log kept.
    /// Fails (never skips) when Debian's `chromium` or `chromium-driver` is missing.
    pub async fn start() -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(Path::new(path).exists(), "{path} is missing: {INSTALL}");
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        // The port is free when asked; should another process take it before chromedriver
        // binds it, chromedriver exits and another port is tried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{CHROMEDRIVER} does not start ({e}): {INSTALL}"));
            let base = format!("http://127.0.0.1:{port}");
            if !ready(&http, &base, &mut driver).await {
                stop(&mut driver);
                continue;
            }
            let (id, chromium) = match new_session(&http, &base).await {
                Ok(session) => session,
                Err(e) => {
                    stop(&mut driver);
                    panic!("chromium does not start through chromedriver: {e}");
                }
            };
            let session = Session { http, driver: base, id };
            return Browser { session, driver, chromium, log: Mutex::new(Vec::new()), closed: false };
        }
        panic!("chromedriver did not come up on a free loopback port")
    }

    /// Loads `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.session.call(Method::POST, "/url", json!({ "url": url })).await;
    }

    /// Reloads the current page.
    pub async fn refresh(&self) {
        self.session.call(Method::POST, "/refresh", json!({})).await;
    }

    /// The URL of the current page.
    pub async fn url(&self) -> String {
        string(self.session.call(Method::GET, "/url", Value::Null).await)
    }

    /// The first element matching the CSS selector; panics when there is none.
    pub async fn find(&self, css: &str) -> Element {
        self.session.find("", css).await
    }

    /// The first element matching the CSS selector, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        self.session.try_find("", css).await
    }

    /// Every element matching the CSS selector, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.session.find_all("", css).await
    }

    /// Runs `js` as the body of a function (`return` gives the result) with `args` as
    /// `arguments`; an [`Element::to_arg`] arrives as the element. Answers the returned
    /// value as JSON (elements come back as references); panics when the script throws.
    pub async fn execute(&self, js: &str, args: &[Value]) -> Value {
        self.session.call(Method::POST, "/execute/sync", json!({ "script": js, "args": args })).await
    }

    /// Like [`execute`](Self::execute), but the script ends by calling its last argument
    /// (`arguments[arguments.length - 1]`) with the result, e.g. once a promise settles.
    pub async fn execute_async(&self, js: &str, args: &[Value]) -> Value {
        self.session.call(Method::POST, "/execute/async", json!({ "script": js, "args": args })).await
    }

    /// Evaluates the JavaScript expression `condition` every 50 ms until it is truthy, and
    /// answers its value. A condition that throws counts as not yet true. Panics after
    /// `timeout` with the condition and its last value or error.
    pub async fn wait_until(&self, condition: &str, timeout: Duration) -> Value {
        let js = format!("const v = ({condition}); return {{ ok: !!v, value: v === undefined ? null : v }};");
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self
                .session
                .try_call(Method::POST, "/execute/sync", json!({ "script": js, "args": [] }))
                .await
            {
                Ok(v) if v["ok"] == true => return v["value"].clone(),
                Ok(v) => format!("value {}", v["value"]),
                Err(e) => format!("error {e}"),
            };
            assert!(Instant::now() < deadline, "`{condition}` was not true within {timeout:?}; last: {last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every console entry of this browser so far (all pages, all levels).
    pub async fn console_log(&self) -> Vec<LogEntry> {
        let new = self.session.call(Method::POST, "/se/log", json!({ "type": "browser" })).await;
        let new: Vec<LogEntry> = serde_json::from_value(new).expect("chromedriver's log entries");
        let mut log = self.log.lock().unwrap();
        log.extend(new);
        log.clone()
    }

    /// The console entries of level `SEVERE` so far: script errors, failed loads, refused
    /// requests and `console.error` calls.
    pub async fn console_errors(&self) -> Vec<LogEntry> {
        self.console_log().await.into_iter().filter(|e| e.level == "SEVERE").collect()
    }

    /// The text of the open alert, confirm or prompt dialog, if one is open. The session
    /// leaves dialogs open (`unhandledPromptBehavior: ignore`), so one that fired stays
    /// visible here until [`dismiss_alert`](Self::dismiss_alert).
    pub async fn alert_text(&self) -> Option<String> {
        match self.session.try_call(Method::GET, "/alert/text", Value::Null).await {
            Ok(text) => Some(string(text)),
            Err(e) if e.error == "no such alert" => None,
            Err(e) => panic!("GET /alert/text: {e}"),
        }
    }

    /// Whether an alert, confirm or prompt dialog is open.
    pub async fn alert_open(&self) -> bool {
        self.alert_text().await.is_some()
    }

    /// Closes the open dialog as its Cancel button would.
    pub async fn dismiss_alert(&self) {
        self.session.call(Method::POST, "/alert/dismiss", json!({})).await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        png(self.session.call(Method::GET, "/screenshot", Value::Null).await)
    }

    /// Ends the session (chromium quits) and stops chromedriver. Dropping the browser does
    /// the same without waiting on the runtime.
    pub async fn close(mut self) {
        self.session.call(Method::DELETE, "", Value::Null).await;
        self.closed = true;
        stop(&mut self.driver);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Blocking, and without the runtime (a drop may run outside it): chromedriver quits
        // chromium and removes its profile directory.
        if !self.closed
            && delete_session(&self.session).is_err()
            && let Some(chromium) = self.chromium
        {
            let _ = rustix::process::kill_process(chromium, rustix::process::Signal::KILL);
        }
        stop(&mut self.driver);
    }
}

impl Element {
    /// Clicks the element's centre (scrolled into view first).
    pub async fn click(&self) {
        self.call(Method::POST, "/click", json!({})).await;
    }

    /// Types `text` into the element, as keystrokes (`\u{E007}` is Enter).
    pub async fn send_keys(&self, text: &str) {
        self.call(Method::POST, "/value", json!({ "text": text })).await;
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) {
        self.call(Method::POST, "/clear", json!({})).await;
    }

    /// The element's rendered text, as a person sees it.
    pub async fn text(&self) -> String {
        string(self.call(Method::GET, "/text", Value::Null).await)
    }

    /// An HTML attribute as written in the markup (the `value` attribute of an input is its
    /// initial value: what was typed is [`property`](Self::property) `value`); `None` when
    /// absent.
    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.call(Method::GET, &format!("/attribute/{name}"), Value::Null).await.as_str().map(str::to_owned)
    }

    /// A DOM property (`value`, `innerHTML`, `checked`, …) as JSON.
    pub async fn property(&self, name: &str) -> Value {
        self.call(Method::GET, &format!("/property/{name}"), Value::Null).await
    }

    /// Whether the element is displayed.
    pub async fn is_displayed(&self) -> bool {
        self.call(Method::GET, "/displayed", Value::Null).await == true
    }

    /// The first descendant matching the CSS selector; panics when there is none.
    pub async fn find(&self, css: &str) -> Element {
        self.session.find(&format!("/element/{}", self.id), css).await
    }

    /// Every descendant matching the CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.session.find_all(&format!("/element/{}", self.id), css).await
    }

    /// The element as an argument of [`Browser::execute`].
    pub fn to_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> Value {
        self.session.call(method, &format!("/element/{}{path}", self.id), body).await
    }
}

/// A WebDriver error: its code (`no such element`, `javascript error`, …) and message.
#[derive(Debug)]
struct DriverError {
    error: String,
    message: String,
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl Session {
    /// `method` on the session's `path`; answers the `value` or panics with the error.
    async fn call(&self, method: Method, path: &str, body: Value) -> Value {
        let what = format!("{method} /session/…{path}");
        self.try_call(method, path, body).await.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    async fn try_call(&self, method: Method, path: &str, body: Value) -> Result<Value, DriverError> {
        let url = format!("{}/session/{}{path}", self.driver, self.id);
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| DriverError {
            error: "unreachable".to_owned(),
            message: format!("chromedriver did not answer: {e}"),
        })?;
        value(response).await
    }

    async fn try_find(&self, scope: &str, css: &str) -> Option<Element> {
        let found = self.try_call(Method::POST, &format!("{scope}/element"), locator(css)).await;
        match found {
            Ok(reference) => Some(self.element(&reference)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding `{css}`: {e}"),
        }
    }

    async fn find(&self, scope: &str, css: &str) -> Element {
        let found = self.try_find(scope, css).await;
        found.unwrap_or_else(|| panic!("no element matches `{css}`"))
    }

    async fn find_all(&self, scope: &str, css: &str) -> Vec<Element> {
        let found = self.call(Method::POST, &format!("{scope}/elements"), locator(css)).await;
        found.as_array().expect("a list of elements").iter().map(|r| self.element(r)).collect()
    }

    fn element(&self, reference: &Value) -> Element {
        let id =
            reference[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("an element reference: {reference}"));
        Element { session: self.clone(), id: id.to_owned() }
    }
}

fn locator(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

/// A WebDriver answer's `value`, or its error.
async fn value(response: reqwest::Response) -> Result<Value, DriverError> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let mut answer: Value = serde_json::from_str(&text).map_err(|_| DriverError {
        error: format!("HTTP {status}"),
        message: text.chars().take(500).collect(),
    })?;
    let value = answer["value"].take();
    match value["error"].as_str() {
        Some(error) => {
            let message = value["message"].as_str().unwrap_or_default().to_owned();
            Err(DriverError { error: error.to_owned(), message })
        }
        None => Ok(value),
    }
}

/// Waits (at most 20 s) until chromedriver answers `/status` ready; false when it exited.
async fn ready(http: &reqwest::Client, base: &str, driver: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if driver.try_wait().unwrap().is_some() {
            return false;
        }
        if let Ok(response) = http.get(format!("{base}/status")).send().await
            && let Ok(status) = value(response).await
            && status["ready"] == true
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Opens the session: headless chromium, the browser log kept at every level, dialogs left
/// open for [`Browser::alert_text`] to see. Answers its id and chromium's process id.
async fn new_session(
    http: &reqwest::Client,
    base: &str,
) -> Result<(String, Option<rustix::process::Pid>), DriverError> {
    let capabilities = json!({
        "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}
    });
    let response = http.post(format!("{base}/session")).json(&capabilities).send().await.map_err(|e| {
        DriverError { error: "unreachable".to_owned(), message: format!("chromedriver did not answer: {e}") }
    })?;
    let session = value(response).await?;
    let chromium = session["capabilities"]["goog:processID"].as_i64().and_then(|p| i32::try_from(p).ok());
    Ok((string(session["sessionId"].clone()), chromium.and_then(rustix::process::Pid::from_raw)))
}

/// `DELETE /session/{id}` over a plain blocking socket, for `Drop`.
fn delete_session(session: &Session) -> std::io::Result<()> {
    let authority = session.driver.trim_start_matches("http://");
    let address: SocketAddr = authority.parse().map_err(std::io::Error::other)?;
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!(
        "DELETE /session/{} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        session.id
    );
    stream.write_all(request.as_bytes())?;
    // The answer comes once chromium has quit.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("the session did not end"))
    }
}

/// Kills chromedriver and reaps it.
fn stop(driver: &mut Child) {
    let _ = driver.kill();
    let _ = driver.wait();
}

fn string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => panic!("expected a string from chromedriver, got {other}"),
    }
}

fn png(value: Value) -> Vec<u8> {
    let png =
        base64::engine::general_purpose::STANDARD.decode(string(value)).expect("base64 from chromedriver");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a screenshot is a PNG");
    png
}
