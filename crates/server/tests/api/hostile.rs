//! Hostile input through raw HTTP (issue 5): bytes no well-behaved client sends. Each case
//! is written on its own connection exactly as given, gets its documented 4xx, and nothing
//! it carried is stored.
//!
//! Requests so malformed that they are not HTTP (a raw non-ASCII byte in the request line,
//! conflicting lengths, an invalid chunk) are refused by hyper's parser before any route
//! runs: a bare 400 with no JSON body, the one exception to SPEC §3's JSON errors, listed
//! in docs/API.md. Cases of that kind expect no `error` code.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, read_answer, read_next_answer, spawn_app_with};

struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    /// The JSON `error` code, or `None` for hyper's bare answers.
    code: Option<&'static str>,
}

/// A request with `Host`, `Connection: close`, and (for a body) `Content-Length` added.
fn request(method: &str, target: &[u8], headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: chatd.test\r\nConnection: close\r\n");
    for h in headers {
        r.extend_from_slice(h.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method != "GET" {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

fn json_post(target: &str, body: &[u8]) -> Vec<u8> {
    request("POST", target.as_bytes(), &["Content-Type: application/json"], body)
}

fn form_post(target: &str, body: &[u8]) -> Vec<u8> {
    request("POST", target.as_bytes(), &["Content-Type: application/x-www-form-urlencoded"], body)
}

fn case(name: &'static str, request: Vec<u8>, status: u16, code: Option<&'static str>) -> Case {
    Case { name, request, status, code }
}

fn cases(t: &str) -> Vec<Case> {
    let msgs = format!("/applications/{t}/chats/1/messages");
    let get = |target: String| request("GET", target.as_bytes(), &[], b"");
    let deep = format!("{{\"body\": {}\"x\"{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let mib = "x".repeat(1024 * 1024);
    let bad = Some("bad_request");
    let invalid = Some("invalid_parameter");
    vec![
        // invalid UTF-8 in path, query and body
        case("%FF in the path", get(format!("/applications/{t}/chats/%FF")), 400, bad),
        case("%FF%FE as the token", get("/applications/%FF%FE/chats/1".into()), 400, bad),
        case("raw 0xFF byte in the path", request("GET", b"/applications/\xff/chats", &[], b""), 400, None),
        case("%FF in the query", get(format!("/applications/{t}/chats?limit=%FF")), 400, bad),
        case("%C0%AF overlong in a query key", get(format!("{msgs}?%C0%AF=1")), 400, bad),
        case("raw 0xFF inside a JSON string", json_post(&msgs, b"{\"body\": \"a\xffb\"}"), 400, bad),
        case("overlong UTF-8 in JSON", json_post(&msgs, b"{\"body\": \"\xc0\xaf\"}"), 400, bad),
        case("lone surrogate escape in JSON", json_post(&msgs, br#"{"body": "\ud800"}"#), 400, bad),
        case(
            "%FF in a form body",
            form_post(&msgs, b"body=%FF"),
            400,
            bad,
        ),
        // NUL bytes
        case("NUL as the token", get("/applications/%00/chats".into()), 404, Some("application_not_found")),
        case("NUL in a query parameter", request("POST", b"/applications?name=a%00b", &[], b""), 422, invalid),
        case("escaped NUL in a JSON body", json_post(&msgs, br#"{"body": "a\u0000b"}"#), 422, invalid),
        case("raw NUL byte in a JSON body", json_post(&msgs, b"{\"body\": \"a\0b\"}"), 400, bad),
        case(
            "NUL in a form body",
            form_post(&msgs, b"body=a%00b"),
            422,
            invalid,
        ),
        // numbers
        case("chat number past i64", get(format!("/applications/{t}/chats/9223372036854775808")), 400, bad),
        case("message number past i64", get(format!("{msgs}/99999999999999999999999")), 400, bad),
        case("negative chat number", get(format!("/applications/{t}/chats/-1")), 400, bad),
        case("zero chat number", get(format!("/applications/{t}/chats/0")), 400, bad),
        case("zero message number", get(format!("{msgs}/0")), 400, bad),
        case("leading + on a number", get(format!("/applications/{t}/chats/+1")), 400, bad),
        case("leading zeros on a number", get(format!("/applications/{t}/chats/01")), 400, bad),
        case("a number in exponent form", get(format!("{msgs}/1e3")), 400, bad),
        case("limit past i64", get(format!("{msgs}?limit=99999999999999999999")), 422, invalid),
        case("negative limit", get(format!("{msgs}?limit=-1")), 422, invalid),
        case("negative cursor", get(format!("{msgs}?after=-5")), 400, bad),
        case("negative zero cursor", get(format!("/applications/{t}/chats?before=-0")), 400, bad),
        case("leading zeros on a cursor", get(format!("{msgs}?after=00")), 400, bad),
        case("cursor past i64", get(format!("{msgs}?before=9223372036854775808")), 400, bad),
        case("negative search offset", get(format!("{msgs}/search?keyword=a&offset=-1")), 422, invalid),
        case("search offset past the depth", get(format!("{msgs}/search?keyword=a&offset=20000")), 422, invalid),
        // paths
        case("10,000-segment path", get("/a".repeat(10_000)), 404, Some("not_found")),
        case("10,000 segments after a route", get(format!("{msgs}/1{}", "/x".repeat(10_000))), 404, Some("not_found")),
        case("10,000-character token", get(format!("/applications/{}", "A".repeat(10_000))), 404, Some("application_not_found")),
        case("dot segments", get(format!("/applications/{t}/../../applications")), 404, Some("not_found")),
        case("unknown method", request("BREW", b"/applications", &[], b""), 405, Some("method_not_allowed")),
        // duplicate parameters
        case("duplicate query parameter", get(format!("{msgs}?limit=1&limit=2")), 400, bad),
        case("duplicate JSON key", json_post(&msgs, br#"{"body": "a", "body": "b"}"#), 400, bad),
        case(
            "duplicate form key",
            form_post(&msgs, b"body=a&body=b"),
            400,
            bad,
        ),
        // JSON of the wrong shape
        case("body as a number", json_post(&msgs, br#"{"body": 5}"#), 422, invalid),
        case("body as null", json_post(&msgs, br#"{"body": null}"#), 422, invalid),
        case("body as an object", json_post(&msgs, br#"{"body": {"text": "x"}}"#), 422, invalid),
        case("name as a boolean", json_post("/applications", br#"{"name": true}"#), 422, invalid),
        case("JSON string at the top", json_post(&msgs, br#""body""#), 400, bad),
        case("JSON array at the top", json_post(&msgs, br#"[{"body": "x"}]"#), 400, bad),
        case("truncated JSON", json_post(&msgs, br#"{"body": "x"#), 400, bad),
        case("JSON with trailing garbage", json_post(&msgs, br#"{"body": "x"} {}"#), 400, bad),
        case("JSON nested 10,000 deep", json_post(&msgs, deep.as_bytes()), 400, bad),
        case("empty JSON body", json_post(&msgs, b""), 422, invalid),
        case("1 MiB body string (request over 1 MiB)", json_post(&msgs, format!(r#"{{"body": "{mib}"}}"#).as_bytes()), 413, Some("payload_too_large")),
        case("900 KiB body string (message over 64 KiB)", json_post(&msgs, format!(r#"{{"body": "{}"}}"#, &mib[..900 * 1024]).as_bytes()), 413, Some("payload_too_large")),
        case("900 KiB name", json_post("/applications", format!(r#"{{"name": "{}"}}"#, &mib[..900 * 1024]).as_bytes()), 422, invalid),
        // content types
        case("text/plain body", request("POST", msgs.as_bytes(), &["Content-Type: text/plain"], b"body=x"), 415, Some("unsupported_media_type")),
        case("XML body", request("POST", msgs.as_bytes(), &["Content-Type: application/xml"], b"<body>x</body>"), 415, Some("unsupported_media_type")),
        // No Content-Type: the body is read as JSON when it looks like an object, else as a
        // form (curl's habit, docs/API.md); it is still checked like any other.
        case("no Content-Type, a blank body", request("POST", msgs.as_bytes(), &[], br#"{"body": " "}"#), 422, invalid),
        case("no Content-Type, bad form bytes", request("POST", msgs.as_bytes(), &[], b"body=%FF"), 400, bad),
        case("a form sent as JSON", json_post(&msgs, b"body=x"), 400, bad),
        // HTTP framing
        case(
            "Content-Length and Transfer-Encoding both",
            // RFC 9112 §6.3: chunked wins, the length is ignored, the connection closes after.
            request("POST", msgs.as_bytes(), &["Content-Type: application/json", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
            422,
            invalid,
        ),
        case(
            "two different Content-Lengths",
            request("POST", msgs.as_bytes(), &["Content-Type: application/json", "Content-Length: 3"], br#"{"body": "x"}"#),
            400,
            None,
        ),
        case(
            "a chunk size that is not hex",
            format!("POST {msgs} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
            400,
            bad,
        ),
        case("HTTP/1.0 with a bad body", format!("POST {msgs} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{{\"body\": \"\"}}").into_bytes(), 422, invalid),
    ]
}

/// What the store holds, as the API shows it.
async fn snapshot(app: &TestApp, token: &str) -> Value {
    let apps: Value = app.get("/applications").await.json().await.unwrap();
    let chats: Value = app.get(&format!("/applications/{token}/chats")).await.json().await.unwrap();
    serde_json::json!({"apps": apps, "chats": chats, "messages": app.all_messages(token, 1).await})
}

async fn send(app: &TestApp, bytes: &[u8]) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(app.api_addr).await.unwrap();
    // A refused request may be answered before all of it is written: ignore write errors.
    let _ = stream.write_all(bytes).await;
    tokio::time::timeout(Duration::from_secs(30), read_answer(&mut stream)).await.expect("an answer")
}

#[tokio::test]
async fn each_hostile_request_gets_its_documented_4xx_and_writes_nothing() {
    let app = spawn_app_with(|c| c.request_timeout = 2).await;
    let token = app.create_app("target").await;
    app.create_chat(&token).await;
    app.create_message(&token, 1, "original").await;
    let before = snapshot(&app, &token).await;

    let cases = cases(&token);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for c in &cases {
        let (status, head, body) = send(&app, &c.request).await;
        let code = body["error"].as_str();
        if status != c.status || code != c.code {
            wrong.push(format!(
                "{}: got {status} {code:?}, want {} {:?}\n{head}{body}",
                c.name, c.status, c.code
            ));
        }
        if c.code.is_some() && status == c.status {
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: {body}", c.name);
            assert!(head.contains("content-type: application/json"), "{}: {head}", c.name);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases answered otherwise:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert_eq!(snapshot(&app, &token).await, before, "a refused request changed the data");
}

#[tokio::test]
async fn a_chunked_body_that_never_ends_and_a_short_body_time_out_with_nothing_written() {
    let app = spawn_app_with(|c| c.request_timeout = 1).await;
    let token = app.create_app("target").await;
    app.create_chat(&token).await;
    let msgs = format!("/applications/{token}/chats/1/messages");
    let unfinished = [
        format!(
            "POST {msgs} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{{\"bo\r\n"
        ),
        format!(
            "POST {msgs} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"body\": \"x\"}}"
        ),
    ];
    for request in unfinished {
        let (status, _, body) = send(&app, request.as_bytes()).await;
        assert_eq!((status, body["error"].as_str()), (408, Some("request_timeout")), "{request}");
    }
    assert!(app.all_messages(&token, 1).await.is_empty());
}

#[tokio::test]
async fn http_1_0_is_served_and_its_connection_closed() {
    let app = spawn_app_with(|_| {}).await;
    let mut stream = TcpStream::connect(app.api_addr).await.unwrap();
    let body = r#"{"name": "from HTTP/1.0"}"#;
    let request = format!(
        "POST /applications HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // HTTP/1.0 without keep-alive: the server closes after one answer, so this ends.
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 201") || answer.starts_with("HTTP/1.1 201"), "{answer}");
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["name"], "from HTTP/1.0");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_a_bad_one_writes_nothing() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.create_app("pipelined").await;
    app.create_chat(&token).await;
    let msgs = format!("/applications/{token}/chats/1/messages");
    let post = |body: &str| {
        format!(
            "POST {msgs} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Four requests in one write: create, a refused create, create, then read the first.
    let pipelined = [
        post(r#"{"body": "first"}"#),
        post(r#"{"body": ""}"#),
        post(r#"{"body": "second"}"#),
        format!("GET {msgs}/1 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]
    .concat();
    let mut stream = TcpStream::connect(app.api_addr).await.unwrap();
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..4 {
        let read = read_next_answer(&mut stream, &mut buf);
        answers.push(tokio::time::timeout(Duration::from_secs(30), read).await.expect("an answer"));
    }
    let summary: Vec<_> = answers.iter().map(|(status, _, body)| (*status, body.clone())).collect();
    assert_eq!((summary[0].0, &summary[0].1["number"]), (201, &serde_json::json!(1)), "{summary:?}");
    assert_eq!(summary[1].0, 422, "{summary:?}");
    assert_eq!(summary[1].1["error"], "invalid_parameter", "{summary:?}");
    assert_eq!((summary[2].0, &summary[2].1["number"]), (201, &serde_json::json!(2)), "{summary:?}");
    assert_eq!((summary[3].0, &summary[3].1["body"]), (200, &serde_json::json!("first")), "{summary:?}");
    assert!(buf.is_empty(), "an answer nobody asked for: {:?}", String::from_utf8_lossy(&buf));
    let bodies: Vec<_> = app.all_messages(&token, 1).await.iter().map(|m| m["body"].clone()).collect();
    assert_eq!(bodies, ["first", "second"]);
}
