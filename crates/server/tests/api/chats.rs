//! Chats: numbering, both listeners, shapes, counts, lists.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, follow_pages, spawn_app};

#[tokio::test]
async fn chats_are_numbered_from_one_on_either_port() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    let other = app.create_app("other").await;
    for (expected, base) in [(1, &app.api), (2, &app.creation), (3, &app.api)] {
        let r = app.client.post(format!("{base}/applications/{token}/chats")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, serde_json::json!({"number": expected, "access_token": token}));
    }
    // Numbering is per application.
    assert_eq!(app.create_chat(&other).await, 1);
    let a: Value = app.get(&format!("/applications/{token}")).await.json().await.unwrap();
    assert_eq!((a["chats_count"].as_i64(), a["chat_count"].as_i64()), (Some(3), Some(3)));
}

#[tokio::test]
async fn a_chat_has_the_documented_shape_and_counts() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    let n = app.create_chat(&token).await;
    app.create_message(&token, n, "one").await;
    app.create_message(&token, n, "two").await;
    let r = app.get(&format!("/applications/{token}/chats/{n}/")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let chat: Value = r.json().await.unwrap();
    let mut keys: Vec<&str> = chat.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "message_count", "messages_count", "number", "updated_at"]);
    assert_eq!(chat["number"], 1);
    assert_eq!(chat["messages_count"], 2);
    assert_eq!(chat["message_count"], 2);
}

#[tokio::test]
async fn the_creation_port_serves_only_creation_routes() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    let r = app.client.get(format!("{}/applications/{token}", app.creation)).send().await.unwrap();
    assert_error(r, 404, "not_found").await;
    let r = app.client.get(format!("{}/applications/{token}/chats", app.creation)).send().await.unwrap();
    assert_error(r, 405, "method_not_allowed").await;
    let r = app.client.post(format!("{}/applications", app.creation)).send().await.unwrap();
    assert_error(r, 404, "not_found").await;
}

#[tokio::test]
async fn lists_page_by_number_with_bounds_and_order() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    for _ in 0..12 {
        app.create_chat(&token).await;
    }
    let numbers = |v: &[Value]| v.iter().map(|c| c["number"].as_i64().unwrap()).collect::<Vec<_>>();
    let base = format!("/applications/{token}/chats");

    let all = follow_pages(&app.client, &app.api, &format!("{base}?limit=5")).await;
    assert_eq!(numbers(&all), (1..=12).collect::<Vec<_>>());
    let desc = follow_pages(&app.client, &app.api, &format!("{base}?limit=5&order=desc")).await;
    assert_eq!(numbers(&desc), (1..=12).rev().collect::<Vec<_>>());

    let r = app.get(&format!("{base}?after=3&before=9&limit=2")).await;
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, format!("<{base}?limit=2&order=asc&after=5&before=9>; rel=\"next\""));
    assert_eq!(numbers(&r.json::<Vec<Value>>().await.unwrap()), [4, 5]);
    let bounded = follow_pages(&app.client, &app.api, &format!("{base}?after=3&before=9&limit=2")).await;
    assert_eq!(numbers(&bounded), [4, 5, 6, 7, 8]);
    let bounded =
        follow_pages(&app.client, &app.api, &format!("{base}?after=3&before=9&order=desc&limit=4")).await;
    assert_eq!(numbers(&bounded), [8, 7, 6, 5, 4]);

    // Default limit is 100; an empty page is an empty array.
    let r = app.get(&format!("{base}?after=12")).await;
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Vec<Value>>().await.unwrap(), Vec::<Value>::new());

    // `after=0` is the first page; `before` past the last number bounds nothing; `before=0`
    // is an empty page.
    let r = app.get(&format!("{base}?after=0&limit=5")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, format!("<{base}?limit=5&order=asc&after=5>; rel=\"next\""));
    assert_eq!(numbers(&r.json::<Vec<Value>>().await.unwrap()), [1, 2, 3, 4, 5]);
    let from_zero = follow_pages(&app.client, &app.api, &format!("{base}?after=0&before=1000&limit=5")).await;
    assert_eq!(numbers(&from_zero), (1..=12).collect::<Vec<_>>());
    let r = app.get(&format!("{base}?before=9223372036854775807&order=desc&limit=2")).await;
    assert_eq!(numbers(&r.json::<Vec<Value>>().await.unwrap()), [12, 11]);
    for query in ["before=0", "before=0&order=desc", "after=0&before=0"] {
        let r = app.get(&format!("{base}?{query}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{query}");
        assert!(r.headers().get("link").is_none(), "{query}");
        assert_eq!(r.json::<Vec<Value>>().await.unwrap(), Vec::<Value>::new(), "{query}");
    }
}
