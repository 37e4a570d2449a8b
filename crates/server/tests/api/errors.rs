//! Every bad input of SPEC §3 gets its status and `error` code, and writes nothing.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error, spawn_app};

struct Case {
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(method: Method, path: &'static str, status: u16, code: &'static str) -> Case {
    Case { method, path, content_type: None, body: String::new(), status, code, field: None }
}

impl Case {
    fn json(mut self, body: impl Into<String>) -> Self {
        self.content_type = Some("application/json");
        self.body = body.into();
        self
    }
    fn typed(mut self, content_type: &'static str, body: impl Into<String>) -> Self {
        self.content_type = Some(content_type);
        self.body = body.into();
        self
    }
    fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }
}

fn cases() -> Vec<Case> {
    use Method as M;
    let form = "application/x-www-form-urlencoded";
    let msgs = "/applications/{t}/chats/1/messages";
    vec![
        // name
        case(M::POST, "/applications", 422, "invalid_parameter").field("name"),
        case(M::POST, "/applications", 422, "invalid_parameter").json(r#"{"name": "   "}"#).field("name"),
        case(M::POST, "/applications", 422, "invalid_parameter")
            .json(format!(r#"{{"name": "{}"}}"#, "n".repeat(81)))
            .field("name"),
        case(M::POST, "/applications", 422, "invalid_parameter").json(r#"{"name": 5}"#).field("name"),
        case(M::POST, "/applications", 422, "invalid_parameter")
            .json(r#"{"name": "a\u0000b"}"#)
            .field("name"),
        case(M::PUT, "/applications/{t}", 422, "invalid_parameter").json(r#"{"name": ""}"#).field("name"),
        // malformed bodies and types
        case(M::POST, "/applications", 400, "bad_request").json(r#"{"name":"#),
        case(M::POST, "/applications", 400, "bad_request").json(r#"["name"]"#),
        case(M::POST, "/applications", 400, "bad_request").typed(form, "name=%FF%FE"),
        case(M::POST, "/applications?name=a&name=b", 400, "bad_request"),
        case(M::POST, "/applications", 415, "unsupported_media_type").typed("text/plain", "name=x"),
        case(M::POST, msgs, 415, "unsupported_media_type").typed("multipart/form-data; boundary=x", "--x--"),
        // unknown things
        case(M::GET, "/applications/NoSuchToken", 404, "application_not_found"),
        case(M::GET, "/applications/not!a!token", 404, "application_not_found"),
        case(M::POST, "/applications/NoSuchToken/chats", 404, "application_not_found"),
        case(M::POST, "/applications/NoSuchToken/chats/1/messages", 404, "application_not_found")
            .json(r#"{"body":"x"}"#),
        case(M::GET, "/applications/{t}/chats/99", 404, "chat_not_found"),
        case(M::POST, "/applications/{t}/chats/99/messages", 404, "chat_not_found").json(r#"{"body":"x"}"#),
        case(M::GET, "/applications/{t}/chats/99/messages", 404, "chat_not_found"),
        case(M::GET, "/applications/{t}/chats/1/messages/5", 404, "message_not_found"),
        case(M::PUT, "/applications/{t}/chats/1/messages/5", 404, "message_not_found")
            .json(r#"{"body":"x"}"#),
        case(M::PUT, "/applications/NoSuchToken", 404, "application_not_found").json(r#"{"name":"x"}"#),
        case(M::GET, "/nope", 404, "not_found"),
        case(M::GET, "/applications/{t}/chats/1/messages/1/extra", 404, "not_found"),
        // numbers
        case(M::GET, "/applications/{t}/chats/abc", 400, "bad_request").field("chat_number"),
        case(M::GET, "/applications/{t}/chats/0", 400, "bad_request").field("chat_number"),
        case(M::GET, "/applications/{t}/chats/-1", 400, "bad_request").field("chat_number"),
        case(M::GET, "/applications/{t}/chats/+1", 400, "bad_request").field("chat_number"),
        case(M::GET, "/applications/{t}/chats/99999999999999999999", 400, "bad_request").field("chat_number"),
        case(M::POST, "/applications/{t}/chats/x/messages", 400, "bad_request")
            .json(r#"{"body":"x"}"#)
            .field("chat_number"),
        case(M::GET, "/applications/{t}/chats/1/messages/1.5", 400, "bad_request").field("message_number"),
        // bodies
        case(M::POST, msgs, 422, "invalid_parameter").field("body"),
        case(M::POST, msgs, 422, "invalid_parameter").json(r#"{"body": " \n\t "}"#).field("body"),
        case(M::POST, msgs, 422, "invalid_parameter").json(r#"{"body": ["x"]}"#).field("body"),
        case(M::POST, msgs, 422, "invalid_parameter").json(r#"{"body": "a\u0000b"}"#).field("body"),
        case(M::POST, msgs, 413, "payload_too_large")
            .json(format!(r#"{{"body": "{}"}}"#, "b".repeat(64 * 1024 + 1)))
            .field("body"),
        case(M::POST, msgs, 413, "payload_too_large")
            .json(format!(r#"{{"body": "{}"}}"#, "b".repeat(1024 * 1024 + 1))),
        case(M::PUT, "/applications/{t}/chats/1/messages/1", 422, "invalid_parameter")
            .json(r#"{"body": ""}"#)
            .field("body"),
        // methods
        case(M::DELETE, "/applications/{t}", 405, "method_not_allowed"),
        case(M::DELETE, "/applications/{t}/chats/1/messages/1", 405, "method_not_allowed"),
        case(M::PUT, "/applications/{t}/chats/1", 405, "method_not_allowed"),
        // list parameters
        case(M::GET, "/applications/{t}/chats?limit=0", 422, "invalid_parameter").field("limit"),
        case(M::GET, "/applications/{t}/chats?limit=1001", 422, "invalid_parameter").field("limit"),
        case(M::GET, "/applications/{t}/chats?limit=ten", 422, "invalid_parameter").field("limit"),
        case(M::GET, "/applications/{t}/chats/1/messages?order=sideways", 422, "invalid_parameter")
            .field("order"),
        case(M::GET, "/applications/{t}/chats/1/messages?after=x", 400, "bad_request").field("after"),
        case(M::GET, "/applications?before=not!a!token", 400, "bad_request").field("before"),
    ]
}

/// What the store holds, as the API shows it: compared before and after the bad inputs.
async fn snapshot(app: &TestApp, token: &str) -> Value {
    let apps: Value = app.get("/applications").await.json().await.unwrap();
    let chats: Value = app.get(&format!("/applications/{token}/chats")).await.json().await.unwrap();
    let messages = app.all_messages(token, 1).await;
    serde_json::json!({"apps": apps, "chats": chats, "messages": messages})
}

#[tokio::test]
async fn each_bad_input_gets_its_documented_error_and_writes_nothing() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    app.create_chat(&token).await;
    app.create_message(&token, 1, "original").await;
    let before = snapshot(&app, &token).await;

    let cases = cases();
    assert!(cases.len() >= 40);
    for c in cases {
        let path = c.path.replace("{t}", &token);
        let mut request = app.client.request(c.method.clone(), app.url(&path)).body(c.body.clone());
        if let Some(ct) = c.content_type {
            request = request.header("content-type", ct);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        assert_eq!(status, c.status, "{} {path}", c.method);
        let body = assert_error(r, c.status, c.code).await;
        assert_eq!(body["field"].as_str(), c.field, "{} {path}: {body}", c.method);
    }

    assert_eq!(snapshot(&app, &token).await, before, "a refused request changed the data");
}

#[tokio::test]
async fn invalid_utf8_in_the_path_is_a_json_400() {
    let app = spawn_app().await;
    let (status, body) =
        app.raw(b"GET /applications/%FF%FE/chats/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")), "{body}");
}
