//! The OpenAPI document: served at `/openapi.json`, equal to the copy checked in at the
//! repository's root, and naming only routes that exist. (`.ci/schemathesis.sh` checks that
//! the answers match it.)

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// The checked-in copy, read at run time so that regenerating it needs no rebuild.
const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");

#[tokio::test]
async fn the_served_document_is_the_checked_in_one() {
    let app = spawn_app().await;

    let r = app.get("/openapi.json").await;

    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served = r.text().await.unwrap();
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    if served != checked_in {
        let line = served.lines().zip(checked_in.lines()).position(|(a, b)| a != b);
        let at = line.map_or_else(|| "its end".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "openapi.json at the repository's root differs from the served document (first at {at}); \
             regenerate it with `cargo run -q --bin chatd -- openapi > openapi.json` and review the diff"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let app = spawn_app().await;
    let token = app.create_app("documented").await;
    let chat = app.create_chat(&token).await;
    let message = app.create_message(&token, chat, "hello").await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{paths:?}");

    let mut operations = 0;
    for (template, item) in paths {
        let path = template
            .replace("{token}", &token)
            .replace("{chat}", &chat.to_string())
            .replace("{message}", &message.to_string())
            .replace("/search", "/search?keyword=hello");
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = json!({ "name": "renamed", "body": "edited" });
            let r = app.client.request(method.clone(), app.url(&path)).json(&body).send().await.unwrap();
            let status = r.status();
            let answer: Value = if template.ends_with("/stream") {
                // A live stream never ends: its head is the answer.
                assert_eq!(r.headers()["content-type"], "text/event-stream");
                Value::Null
            } else {
                r.json().await.unwrap_or(Value::Null)
            };

            // A documented operation with valid input succeeds, with a status it documents.
            assert!(status.is_success(), "{method} {template}: {status} {answer}");
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(status.as_str()),
                "{method} {template}: {status} is not documented"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 18);
}
