//! Applications: creation from every parameter source, shapes, renames, listing, tokens.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, follow_pages, spawn_app, spawn_app_with};

fn is_timestamp(v: &Value) -> bool {
    // 2019-11-11T19:14:51.589Z
    let s = v.as_str().unwrap_or("");
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[10] == b'T'
        && s.as_bytes()[19] == b'.'
        && s.chars().filter(char::is_ascii_digit).count() == 17
}

fn assert_application_shape(v: &Value, name: &str) {
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["access_token", "chat_count", "chats_count", "created_at", "name", "updated_at"]);
    assert_eq!(v["name"], name);
    assert_eq!(v["chats_count"], v["chat_count"]);
    assert!(is_timestamp(&v["created_at"]) && is_timestamp(&v["updated_at"]), "{v}");
}

#[tokio::test]
async fn create_from_query_string_like_the_old_readme() {
    let app = spawn_app().await;
    let r = app.client.post(app.url("/applications?name=app")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_application_shape(&body, "app");
    assert_eq!(body["chats_count"], 0);
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 22 && token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
}

#[tokio::test]
async fn create_from_json_and_form_bodies_and_the_body_wins() {
    let app = spawn_app().await;
    let r = app.post_json("/applications", json!({"name": "from json"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "from json");

    let r = app.client.post(app.url("/applications")).form(&[("name", "from form")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "from form");

    let r = app
        .client
        .post(app.url("/applications?name=query"))
        .json(&json!({"name": "body"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "body");
}

#[tokio::test]
async fn get_with_and_without_trailing_slash() {
    let app = spawn_app().await;
    let token = app.create_app("shop").await;
    for path in [format!("/applications/{token}"), format!("/applications/{token}/")] {
        let r = app.get(&path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_application_shape(&body, "shop");
        assert_eq!(body["access_token"], token.as_str());
    }
}

#[tokio::test]
async fn put_and_patch_rename_and_keep_the_rest() {
    let app = spawn_app().await;
    let token = app.create_app("old").await;
    app.create_chat(&token).await;
    let before: Value = app.get(&format!("/applications/{token}")).await.json().await.unwrap();

    let r =
        app.client.put(app.url(&format!("/applications/{token}"))).json(&json!({"name": "new"})).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let renamed: Value = r.json().await.unwrap();
    assert_application_shape(&renamed, "new");
    assert_eq!(renamed["chats_count"], 1);
    assert_eq!(renamed["created_at"], before["created_at"]);
    assert!(renamed["updated_at"].as_str() >= before["updated_at"].as_str());

    let r = app.client.patch(app.url(&format!("/applications/{token}?name=patched"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let fetched: Value = app.get(&format!("/applications/{token}")).await.json().await.unwrap();
    assert_eq!(fetched["name"], "patched");
}

#[tokio::test]
async fn tokens_are_distinct() {
    let app = spawn_app().await;
    let mut tokens = std::collections::HashSet::new();
    for i in 0..50 {
        assert!(tokens.insert(app.create_app(&format!("app {i}")).await));
    }
}

#[tokio::test]
async fn list_pages_through_every_application_in_both_orders() {
    let app = spawn_app().await;
    let mut tokens = Vec::new();
    for i in 0..7 {
        tokens.push(app.create_app(&format!("app {i}")).await);
    }
    let asc = follow_pages(&app.client, &app.api, "/applications?limit=3").await;
    let listed: Vec<&str> = asc.iter().map(|a| a["access_token"].as_str().unwrap()).collect();
    assert_eq!(listed, tokens.iter().map(String::as_str).collect::<Vec<_>>());

    let desc = follow_pages(&app.client, &app.api, "/applications?limit=2&order=desc").await;
    let listed: Vec<&str> = desc.iter().map(|a| a["access_token"].as_str().unwrap()).collect();
    assert_eq!(listed, tokens.iter().rev().map(String::as_str).collect::<Vec<_>>());

    let r = app.get(&format!("/applications?after={}", tokens[4])).await;
    assert!(r.headers().get("link").is_none());
    let rest: Vec<Value> = r.json().await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0]["access_token"], tokens[5].as_str());

    let r = app.get("/applications?after=NoSuchToken").await;
    assert_eq!(assert_error(r, 400, "bad_request").await["field"], "after");
    let r = app.get("/applications?before=NoSuchToken").await;
    assert_eq!(assert_error(r, 400, "bad_request").await["field"], "before");
}

#[tokio::test]
async fn an_admin_key_guards_the_list_of_applications() {
    let app = spawn_app_with(|c| c.admin_key = Some("s3cret-key".into())).await;
    app.create_app("guarded").await;
    let r = app.get("/applications").await;
    let r = assert_error(r, 401, "unauthorized").await;
    assert!(r.get("field").is_none());
    let r = app.client.get(app.url("/applications")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app.client.get(app.url("/applications")).bearer_auth("s3cret-key").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 1);
}

#[tokio::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    let r = app.get("/health").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    let r = app.get("/ready").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
}
