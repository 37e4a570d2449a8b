//! Messages: the old README's curl flow, shapes, edits, lists.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_old_readme_flow_works_unchanged() {
    let app = spawn_app().await;
    // curl -X POST 'localhost:3000/applications?name=app'
    let r = app.client.post(app.url("/applications?name=app")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    // curl -X POST localhost:8080/applications/$TOKEN/chats
    let r = app.client.post(format!("{}/applications/{token}/chats", app.creation)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // curl -X POST localhost:8080/applications/$TOKEN/chats/1/messages --data '{"body": "Rails stuff"}'
    // (curl --data sends Content-Type: application/x-www-form-urlencoded)
    for body in [
        r#"{"body": "Rails stuff"}"#,
        r#"{"body": "Stuff with Rails and Go and stuff with some other stuff"}"#,
    ] {
        let r = app
            .client
            .post(format!("{}/applications/{token}/chats/1/messages", app.creation))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // curl localhost:3000/applications/$TOKEN/chats/1/messages
    let r = app.get(&format!("/applications/{token}/chats/1/messages")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let messages: Vec<Value> = r.json().await.unwrap();
    let bodies: Vec<&str> = messages.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["Rails stuff", "Stuff with Rails and Go and stuff with some other stuff"]);
    assert_eq!(messages[1]["number"], 2);
}

#[tokio::test]
async fn create_answers_number_chat_number_and_token_and_the_message_reads_back() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    app.create_chat(&token).await;
    let chat = app.create_chat(&token).await;
    let text = "héllo\nwörld 🎉 — 你好";
    let r =
        app.post_json(&format!("/applications/{token}/chats/{chat}/messages"), json!({"body": text})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"number": 1, "chat_number": 2, "access_token": token})
    );

    let r = app.get(&format!("/applications/{token}/chats/{chat}/messages/1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["body", "created_at", "number", "updated_at"]);
    assert_eq!(m["body"], text);
    assert_eq!(m["created_at"], m["updated_at"]);

    // Form bodies and query strings work too; the body wins over the query.
    let path = format!("/applications/{token}/chats/{chat}/messages?body=from+query");
    let r = app.client.post(app.url(&path)).form(&[("body", "from form")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.client.post(app.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let all = app.all_messages(&token, chat).await;
    let bodies: Vec<&str> = all.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, [text, "from form", "from query"]);
}

#[tokio::test]
async fn put_and_patch_edit_one_message_only() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "first").await;
    app.create_message(&token, chat, "second").await;
    let before: Value =
        app.get(&format!("/applications/{token}/chats/{chat}/messages/1")).await.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let path = format!("/applications/{token}/chats/{chat}/messages/1");
    let r = app.client.put(app.url(&path)).json(&json!({"body": "edited"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let edited: Value = r.json().await.unwrap();
    assert_eq!(edited["body"], "edited");
    assert_eq!(edited["number"], 1);
    assert_eq!(edited["created_at"], before["created_at"]);
    assert!(edited["updated_at"].as_str() > before["updated_at"].as_str(), "{edited} vs {before}");

    let r = app.client.patch(app.url(&format!("{path}/"))).form(&[("body", "patched")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let all = app.all_messages(&token, chat).await;
    let bodies: Vec<&str> = all.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["patched", "second"]);
    let c: Value = app.get(&format!("/applications/{token}/chats/{chat}")).await.json().await.unwrap();
    assert_eq!(c["messages_count"], 2, "an edit is not a new message");
}

#[tokio::test]
async fn a_long_chat_lists_page_by_page_in_both_orders() {
    let app = spawn_app().await;
    let token = app.create_app("app").await;
    let chat = app.create_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let mut pending = Vec::new();
    for i in 1..=250 {
        pending.push(app.post_json(&path, json!({"body": format!("m{i}")})));
    }
    for r in futures::future::join_all(pending).await {
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let base = format!("/applications/{token}/chats/{chat}/messages");
    let numbers = |v: &[Value]| v.iter().map(|m| m["number"].as_i64().unwrap()).collect::<Vec<_>>();

    let r = app.get(&base).await;
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 100, "the default page is 100");
    let asc = crate::helpers::follow_pages(&app.client, &app.api, &format!("{base}?limit=64")).await;
    assert_eq!(numbers(&asc), (1..=250).collect::<Vec<_>>());
    let desc =
        crate::helpers::follow_pages(&app.client, &app.api, &format!("{base}?order=desc&limit=100")).await;
    assert_eq!(numbers(&desc), (1..=250).rev().collect::<Vec<_>>());
    let r = app.get(&format!("{base}?before=4&order=desc")).await;
    assert_eq!(numbers(&r.json::<Vec<Value>>().await.unwrap()), [3, 2, 1]);

    // `after=0` is the first page, `before` past the last number bounds nothing, `before=0`
    // is an empty page.
    let from_zero =
        crate::helpers::follow_pages(&app.client, &app.api, &format!("{base}?after=0&limit=100")).await;
    assert_eq!(numbers(&from_zero), (1..=250).collect::<Vec<_>>());
    let r = app.get(&format!("{base}?after=0&before=251&order=desc&limit=3")).await;
    assert_eq!(numbers(&r.json::<Vec<Value>>().await.unwrap()), [250, 249, 248]);
    let r = app.get(&format!("{base}?before=100000&limit=2")).await;
    assert_eq!(numbers(&r.json::<Vec<Value>>().await.unwrap()), [1, 2]);
    let r = app.get(&format!("{base}?before=0")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Vec<Value>>().await.unwrap(), Vec::<Value>::new());
}
