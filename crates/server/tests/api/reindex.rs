//! `chatd reindex`, of the embedded mode: the search index rebuilt from the database.

use std::process::Command;

use reqwest::Client;
use serde_json::{Value, json};

use crate::helpers::start_chatd;
use crate::process::terminate;

#[tokio::test]
async fn reindex_rebuilds_the_index_and_refuses_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let reindex = |dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_chatd")).arg("reindex").arg("--data-dir").arg(dir).output().unwrap()
    };
    let (mut child, base) = start_chatd(dir.path());
    let client = Client::new();
    let r = client.post(format!("{base}/applications")).json(&json!({"name": "re"})).send().await.unwrap();
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    client.post(format!("{base}/applications/{token}/chats")).send().await.unwrap();
    for body in ["alpha one", "beta two", "alphabet"] {
        let url = format!("{base}/applications/{token}/chats/1/messages");
        assert_eq!(client.post(url).json(&json!({ "body": body })).send().await.unwrap().status(), 201);
    }

    let refused = reindex(dir.path());
    assert!(!refused.status.success(), "reindex must refuse while the server holds the index");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(terminate(&mut child).success());

    // Wipe the index files; the rebuild alone must then produce a complete index.
    std::fs::remove_dir_all(dir.path().join("search")).unwrap();
    let rebuilt = reindex(dir.path());
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    {
        use chatd_core::search::{CandidateIndex, Keyword, MessageSource, Pass};
        let index = chatd_search_tantivy::SearchIndex::open(&dir.path().join("search")).unwrap();
        assert_eq!(index.indexed_seq().unwrap(), 3, "the rebuilt index covers all three messages");
        let source = chatd_store_sqlite::SqliteSource::open(dir.path()).unwrap();
        let chat =
            source.chat_key(&chatd_core::AppToken::parse(&token).unwrap(), "1".parse().unwrap()).unwrap();
        let keyword = Keyword::parse("alpha").unwrap();
        let mut found: Vec<i64> =
            index.candidates(chat, &keyword, Pass::Substrings).unwrap().iter().map(|n| n.get()).collect();
        found.sort_unstable();
        assert_eq!(found, [1, 3]);
    }

    let (mut child, base) = start_chatd(dir.path());
    let url = format!("{base}/applications/{token}/chats/1/messages/search?keyword=alpha");
    let found: Vec<Value> = client.get(url).send().await.unwrap().json().await.unwrap();
    let numbers: Vec<i64> = found.iter().map(|m| m["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [1, 3], "whole word first, then the match inside a word");
    assert!(terminate(&mut child).success());
}
