//! Search (SPEC §5): exact substring semantics, ranking, scope, edits, hostile keywords,
//! and a property test against a brute-force filter.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const BODIES: &[&str] = &[
    "Rails stuff",                                             // 0
    "Stuff with Rails and Go and stuff with some other stuff", // 1
    "Café crème brûlée",                                       // 2
    "cafe au lait",                                            // 3
    "مَرْحَبًا بِالْعَالَم",                                           // 4 Arabic with tashkeel
    "مرحبا",                                                   // 5 and without
    "我们明天去北京吃烤鸭",                                    // 6
    "今日は東京で寿司を食べました",                            // 7
    "party time 🎉🎉 yes",                                     // 8
    "GOING going gone",                                        // 9
    "He said \"hello world\" twice",                           // 10
    "a*b?c:d(e)[f]\\g",                                        // 11
    "SELECT * FROM messages; DROP TABLE messages;--",          // 12
    "AND OR NOT",                                              // 13
    "x",                                                       // 14
    "Ünïcödé ÑAND",                                            // 15
    "ﬁnancial ＦＵＬＬＷＩＤＴＨ",                             // 16
];

/// (keyword, indexes into BODIES of every message it must find, and nothing else)
const CASES: &[(&str, &[usize])] = &[
    ("tuff", &[0, 1]),
    ("Go", &[1, 9]),
    ("rails STUFF", &[0, 1]),
    ("stuff rails", &[0, 1]),
    ("\"rails and go\"", &[1]),
    ("\"go and rails\"", &[]),
    ("\"rails stuff\"", &[0]),
    ("\"RAILS   stuff\"", &[0]),
    ("cafe", &[2, 3]),
    ("café", &[2, 3]),
    ("CRÈME", &[2]),
    ("creme brulee", &[2]),
    ("مرحبا", &[4, 5]),
    ("مَرْحَبًا", &[4, 5]),
    ("العالم", &[4]),
    ("北京", &[6]),
    ("烤鸭", &[6]),
    ("東京", &[7]),
    ("寿司を食べ", &[7]),
    ("🎉", &[8]),
    ("🎉🎉 party", &[8]),
    ("going", &[9]),
    ("gone going", &[9]),
    ("\"hello world\"", &[10]),
    ("\"hello", &[10]),
    ("a*b?c", &[11]),
    ("(e)[f]", &[11]),
    ("\\g", &[11]),
    ("DROP TABLE", &[12]),
    ("'; DROP", &[]),
    ("NOT", &[13]),
    ("AND", &[1, 13, 15]),
    ("unicode", &[15]),
    ("financial fullwidth", &[16]),
    ("x", &[14]),
    ("zzz", &[]),
    ("stuff zzz", &[]),
];

async fn chat_with(app: &TestApp, token: &str, bodies: &[&str]) -> i64 {
    let chat = app.create_chat(token).await;
    for body in bodies {
        app.create_message(token, chat, body).await;
    }
    chat
}

fn sorted(v: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

#[tokio::test]
async fn the_keyword_table() {
    let app = spawn_app().await;
    let token = app.create_app("search").await;
    let chat = chat_with(&app, &token, BODIES).await;
    app.wait_indexed().await;
    assert!(CASES.len() >= 30);
    for (keyword, expected) in CASES {
        let found = sorted(app.search_bodies(&token, chat, keyword).await);
        let expected = sorted(expected.iter().map(|&i| BODIES[i].to_owned()));
        assert_eq!(found, expected, "keyword {keyword:?}");
    }
}

#[tokio::test]
async fn the_old_readme_example_and_the_q_alias() {
    let app = spawn_app().await;
    let token = app.create_app("readme").await;
    let chat =
        chat_with(&app, &token, &["Rails stuff", "Stuff with Rails and Go and stuff with some other stuff"])
            .await;
    app.wait_indexed().await;
    assert_eq!(
        app.search_bodies(&token, chat, "Go").await,
        ["Stuff with Rails and Go and stuff with some other stuff"]
    );
    let url = app.url(&format!("/applications/{token}/chats/{chat}/messages/search/?q=rails"));
    let found: Vec<Value> = app.client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(found.len(), 2);
    let keys: BTreeSet<&str> = found[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["body", "created_at", "number", "updated_at"]));
}

#[tokio::test]
async fn whole_words_rank_first_then_newest_with_limit_and_offset() {
    let app = spawn_app().await;
    let token = app.create_app("rank").await;
    let chat = chat_with(&app, &token, &["going home", "go now", "undergo", "let's go", "no match"]).await;
    app.wait_indexed().await;
    assert_eq!(app.search_bodies(&token, chat, "go").await, ["let's go", "go now", "undergo", "going home"]);
    let url =
        app.url(&format!("/applications/{token}/chats/{chat}/messages/search?keyword=go&limit=2&offset=1"));
    let found: Vec<Value> = app.client.get(url).send().await.unwrap().json().await.unwrap();
    let numbers: Vec<i64> = found.iter().map(|m| m["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [2, 3]);
}

#[tokio::test]
async fn search_is_scoped_to_the_chat_of_the_path() {
    let app = spawn_app().await;
    let (a, b) = (app.create_app("a").await, app.create_app("b").await);
    let mine = chat_with(&app, &a, &["shared secret text"]).await;
    let sibling = chat_with(&app, &a, &["shared secret text", "only in sibling"]).await;
    let foreign = chat_with(&app, &b, &["shared secret text", "only in b"]).await;
    app.wait_indexed().await;
    let found = app.search(&a, mine, "secret").await.1;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["number"], 1);
    assert!(app.search_bodies(&a, mine, "sibling").await.is_empty());
    assert!(app.search_bodies(&a, mine, "only in b").await.is_empty());
    assert_eq!(app.search_bodies(&a, sibling, "secret").await.len(), 1);
    assert_eq!(app.search_bodies(&b, foreign, "secret").await.len(), 1);
    // Chat numbers are per application: b's chat 1 is not a's chat 1.
    assert_eq!(app.search(&b, mine, "sibling").await.1.as_array().map(Vec::len), Some(0));
    assert_eq!(app.search(&a, 99, "secret").await.0, 404);
    assert_eq!(app.search("NoSuchToken", 1, "secret").await.0, 404);
}

#[tokio::test]
async fn an_edit_replaces_the_old_text_in_search() {
    let app = spawn_app().await;
    let token = app.create_app("edit").await;
    let chat = chat_with(&app, &token, &["original wording"]).await;
    app.wait_indexed().await;
    assert_eq!(app.search_bodies(&token, chat, "original").await.len(), 1);
    let url = app.url(&format!("/applications/{token}/chats/{chat}/messages/1"));
    let r = app.client.put(url).json(&json!({"body": "replacement text"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Candidates are verified against the stored body, so the old text stops matching at once.
    assert!(app.search_bodies(&token, chat, "original").await.is_empty());
    app.wait_indexed().await;
    assert!(app.search_bodies(&token, chat, "original").await.is_empty());
    assert_eq!(app.search_bodies(&token, chat, "replacement").await, ["replacement text"]);
}

#[tokio::test]
async fn hostile_keywords_answer_200_or_422_never_5xx() {
    let app = spawn_app().await;
    let token = app.create_app("hostile").await;
    let chat = chat_with(&app, &token, BODIES).await;
    app.wait_indexed().await;
    let long = "a".repeat(256);
    let too_long = "a".repeat(257);
    let hostile = [
        "\"",
        "\"\"",
        "\"\"\"",
        "*",
        "?",
        ":",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "\\",
        "\\\\\"",
        "AND",
        "OR",
        "NOT",
        "a AND b OR NOT c",
        "title:foo",
        "*tuff*",
        "tu?f",
        "body:/.*/",
        "' OR 1=1 --",
        "\"; DROP TABLE messages; --",
        "%",
        "%25",
        "_",
        "\u{0}",
        "\u{1}\u{7}\u{1b}",
        "\u{202e}evil",
        "\u{fe0f}",
        "\u{064e}",
        "~!@#$%^&*()+=",
        &long,
        &too_long,
        "  ",
        "",
    ];
    for keyword in hostile {
        let (status, body) = app.search(&token, chat, keyword).await;
        assert!(status == 200 || status == 422, "keyword {keyword:?} got {status}: {body}");
        if status == 422 {
            assert_eq!(body["error"], "invalid_parameter");
            assert_eq!(body["field"], "keyword");
        }
    }
    assert_eq!(app.search(&token, chat, &too_long).await.0, 422);
    assert_eq!(app.search(&token, chat, "").await.0, 422);
    assert_eq!(app.search(&token, chat, &long).await.0, 200);
    let missing = app.url(&format!("/applications/{token}/chats/{chat}/messages/search"));
    assert_eq!(app.client.get(missing).send().await.unwrap().status(), 422);
    for bad in ["limit=0", "limit=1001", "offset=-1", "limit=ten", "offset=10000"] {
        let url = app.url(&format!("/applications/{token}/chats/{chat}/messages/search?keyword=a&{bad}"));
        assert_eq!(app.client.get(url).send().await.unwrap().status(), 422, "{bad}");
    }
}

/// The oracle: every whitespace-separated term (or the one quoted term, spaces included),
/// normalised, is a substring of the normalised body.
fn brute_force(bodies: &[String], keyword: &str) -> BTreeSet<i64> {
    use chatd_core::search::normalize;
    let terms: Vec<String> = match keyword.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
        Some(quoted) => vec![normalize(quoted)],
        None => keyword.split_whitespace().map(normalize).collect(),
    };
    // Message n is bodies[n - 1].
    (1..=bodies.len() as i64)
        .filter(|&n| terms.iter().all(|t| normalize(&bodies[n as usize - 1]).contains(t.as_str())))
        .collect()
}

fn body() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "é", "E", "ç", " ", "ab", "A "], 1..14)
        .prop_map(|parts| parts.concat())
        .prop_filter("not blank", |s| !s.trim().is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn search_equals_a_brute_force_substring_filter(
        bodies in proptest::collection::vec(body(), 1..12),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..6, 1usize..5), 6),
        random in proptest::collection::vec("[abéEç ]{1,4}", 3),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let app = spawn_app().await;
            let token = app.create_app("prop").await;
            let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
            let chat = chat_with(&app, &token, &refs).await;
            // A decoy chat with the same bodies must never leak into results.
            chat_with(&app, &token, &refs).await;
            app.wait_indexed().await;
            let mut keywords: Vec<String> = random.clone();
            for (which, start, len) in &cuts {
                let chars: Vec<char> = which.get(&bodies).chars().collect();
                let start = (*start).min(chars.len() - 1);
                let end = (start + len).min(chars.len());
                let cut: String = chars[start..end].iter().collect();
                if cut.trim().contains(' ') {
                    // The same text as one quoted term: its spaces must then match too.
                    keywords.push(format!("\"{cut}\""));
                }
                keywords.push(cut);
            }
            for keyword in keywords.iter().filter(|k| !k.trim().is_empty()) {
                let (status, found) = app.search(&token, chat, keyword).await;
                prop_assert_eq!(status, 200);
                let numbers: Vec<i64> = found.as_array().unwrap().iter().map(|m| m["number"].as_i64().unwrap()).collect();
                let unique: BTreeSet<i64> = numbers.iter().copied().collect();
                prop_assert_eq!(unique.len(), numbers.len(), "duplicates for {:?}", keyword);
                prop_assert_eq!(unique, brute_force(&bodies, keyword), "keyword {:?}", keyword);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn ranking_holds_across_many_verification_chunks() {
    let app = spawn_app().await;
    let token = app.create_app("many").await;
    let chat = app.create_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let creates = (1..=600).map(|n| {
        let body = if n % 2 == 0 { format!("x marks {n}") } else { format!("xylophone {n}") };
        app.post_json(&path, json!({ "body": body }))
    });
    for r in futures::future::join_all(creates).await {
        assert_eq!(r.status(), 201);
    }
    app.wait_indexed().await;
    // Numbers follow arrival order, so rank by what each stored body is.
    let all = app.all_messages(&token, chat).await;
    let whole = |m: &Value| m["body"].as_str().unwrap().starts_with("x marks");
    let mut expected: Vec<i64> =
        all.iter().filter(|m| whole(m)).map(|m| m["number"].as_i64().unwrap()).collect();
    let mut inside: Vec<i64> =
        all.iter().filter(|m| !whole(m)).map(|m| m["number"].as_i64().unwrap()).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    inside.sort_unstable_by(|a, b| b.cmp(a));
    expected.extend(inside);

    let url = app.url(&format!("{path}/search?keyword=x&limit=1000"));
    let found: Vec<Value> = app.client.get(url).send().await.unwrap().json().await.unwrap();
    let numbers: Vec<i64> = found.iter().map(|m| m["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, expected);
    let url = app.url(&format!("{path}/search?keyword=x&limit=100&offset=250"));
    let page: Vec<Value> = app.client.get(url).send().await.unwrap().json().await.unwrap();
    let numbers: Vec<i64> = page.iter().map(|m| m["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, expected[250..350]);
}
