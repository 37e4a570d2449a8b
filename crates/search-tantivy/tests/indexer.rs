//! The indexer against a real SQLite store: edits leave no stale entry, an index that is
//! ahead of its database, or of another schema, is rebuilt rather than trusted, and
//! candidates hold every match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::progress::Progress;
use chatd_core::search::{CandidateIndex, ChatKey, Keyword, MatchKind, MessageSource, Pass};
use chatd_core::{AppName, AppToken, ChatNumber, Ingest, MessageBody};
use chatd_search_tantivy::{Indexer, IndexerOptions, SearchIndex};
use chatd_store_sqlite::{Options, SqliteSource, SqliteStore};

struct Setup {
    store: SqliteStore,
    index: Arc<SearchIndex>,
    indexer: Option<Indexer>,
    indexed: Arc<Progress>,
    source: Arc<SqliteSource>,
}

fn start(dir: &Path) -> Setup {
    start_with(dir, IndexerOptions::default())
}

fn start_with(dir: &Path, options: IndexerOptions) -> Setup {
    let store = SqliteStore::open(&Options::new(dir)).unwrap();
    let index = Arc::new(SearchIndex::open(&dir.join("search")).unwrap());
    let source = Arc::new(SqliteSource::open(dir).unwrap());
    let indexed = Arc::new(Progress::default());
    let indexer =
        Indexer::spawn(index.clone(), source.clone(), store.committed(), indexed.clone(), options).unwrap();
    Setup { store, index, indexer: Some(indexer), indexed, source }
}

impl Setup {
    fn wait_indexed(&self) {
        let target = self.store.committed().get();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.indexed.get() < target {
            assert!(Instant::now() < deadline, "the indexer did not catch up");
            self.indexed.wait_beyond(self.indexed.get(), Duration::from_millis(50));
        }
    }

    fn candidates(&self, chat: ChatKey, keyword: &str) -> Vec<i64> {
        let keyword = Keyword::parse(keyword).unwrap();
        let mut found: Vec<i64> = self
            .index
            .candidates(chat, &keyword, Pass::Substrings)
            .unwrap()
            .iter()
            .map(|n| n.get())
            .collect();
        found.sort_unstable();
        found
    }

    async fn stop(mut self) {
        self.store.close().await;
        self.indexer.take().unwrap().close();
    }
}

/// A new application with one chat holding `texts` as messages 1, 2, ….
async fn chat_with(store: &SqliteStore, texts: &[&str]) -> (AppToken, ChatNumber) {
    let app = store.create_application(AppName::parse("t".into()).unwrap(), None).await.unwrap();
    let chat = store.create_chat(app.token.clone(), None).await.unwrap();
    for text in texts {
        store.create_message(app.token.clone(), chat, body(text), None).await.unwrap();
    }
    (app.token, chat)
}

fn body(s: &str) -> MessageBody {
    MessageBody::parse(s.into(), 1024).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_leaves_no_stale_entry_in_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let (token, chat) = chat_with(&s.store, &["original wording", "unrelated"]).await;
    s.wait_indexed();
    let key = s.source.chat_key(&token, chat).unwrap();
    assert_eq!(s.candidates(key, "original"), [1]);

    s.store.edit_message(token.clone(), chat, "1".parse().unwrap(), body("replacement text")).await.unwrap();
    s.wait_indexed();
    assert!(s.candidates(key, "original").is_empty(), "the old text is still indexed");
    assert_eq!(s.candidates(key, "replacement"), [1]);
    // "r" is in the old text too: a stale document would make message 1 a candidate twice.
    assert_eq!(s.candidates(key, "r"), [1, 2], "one document per message after an edit");
    s.stop().await;
}

/// A term is looked up by its grams at their offsets, not just by which grams it has: a
/// chat full of "haha" does not make every message a candidate for "hahaha", which would
/// all have to be read and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repetitive_term_is_looked_up_by_its_grams_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let (token, chat) = chat_with(&s.store, &["haha", "ha ha haha aha", "hahaha"]).await;
    s.wait_indexed();
    let key = s.source.chat_key(&token, chat).unwrap();
    assert_eq!(s.candidates(key, "hahaha"), [3]);
    assert_eq!(s.candidates(key, "haha"), [1, 2, 3]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_ahead_of_its_database_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    chat_with(&s.store, &["old one", "old two", "old three"]).await;
    s.wait_indexed();
    assert_eq!(s.index.indexed_seq().unwrap(), 3);
    s.stop().await;

    // The database goes back in time (a restored backup): only one message, sequence 1.
    for file in ["chatd.sqlite3", "chatd.sqlite3-wal", "chatd.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }
    let s = start(dir.path());
    let (token, chat) = chat_with(&s.store, &["new one"]).await;
    s.wait_indexed();
    let key = s.source.chat_key(&token, chat).unwrap();
    assert_eq!(s.candidates(key, "new"), [1], "the reused sequence 1 was indexed");
    assert!(s.candidates(key, "old").is_empty(), "documents of the old database survived");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_an_older_schema_is_recreated_and_rebuilt_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let (token, chat) = chat_with(&s.store, &["first", "ends in ab", "zz"]).await;
    s.wait_indexed();
    s.stop().await;

    // An index as chatd once wrote it (1- and 2-character grams in a field "short"),
    // claiming to cover every change.
    let search = dir.path().join("search");
    std::fs::remove_dir_all(&search).unwrap();
    std::fs::create_dir_all(&search).unwrap();
    let mut old = tantivy::schema::Schema::builder();
    old.add_i64_field("message", tantivy::schema::INDEXED);
    old.add_text_field("short", tantivy::schema::TEXT);
    let old = tantivy::Index::create_in_dir(&search, old.build()).unwrap();
    let mut writer: tantivy::IndexWriter = old.writer(15_000_000).unwrap();
    let mut prepared = writer.prepare_commit().unwrap();
    prepared.set_payload("3");
    prepared.commit().unwrap();
    drop((writer, old));

    let s = start(dir.path());
    s.wait_indexed();
    let key = s.source.chat_key(&token, chat).unwrap();
    // 2-character terms, at the end of a body and as a whole body, need the new grams.
    assert_eq!(s.candidates(key, "ab"), [2]);
    assert_eq!(s.candidates(key, "zz"), [3]);
    assert_eq!(s.candidates(key, "s"), [1, 2]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_recorded_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let (token, chat) = chat_with(&s.store, &["first"]).await;
    s.wait_indexed();
    s.stop().await;

    // Written while no indexer runs: the next start must pick it up from sequence 1.
    let store = SqliteStore::open(&Options::new(dir.path())).unwrap();
    store.create_message(token.clone(), chat, body("second"), None).await.unwrap();
    store.close().await;

    let s = start(dir.path());
    s.wait_indexed();
    let key = s.source.chat_key(&token, chat).unwrap();
    assert_eq!(s.candidates(key, "second"), [2]);
    assert_eq!(s.candidates(key, "first"), [1]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_edit_leaves_no_gap_the_indexer_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let (token, chat) = chat_with(&s.store, &["only"]).await;
    let missing = s.store.edit_message(token.clone(), chat, "999".parse().unwrap(), body("x")).await;
    assert!(matches!(missing, Err(chatd_core::StoreError::MessageNotFound)));
    // The rolled-back edit must not have published a sequence no row carries: the index
    // catches up with what was committed, and stopping does not wait for more.
    assert_eq!(s.store.committed().get(), 1);
    s.wait_indexed();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexer_keeps_retrying_when_its_directory_fails_and_catches_up_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), IndexerOptions::default());
    let failures = s.indexer.as_ref().unwrap().failures();
    let (token, chat) = chat_with(&s.store, &["before"]).await;
    s.wait_indexed();

    // The index's files vanish from under it (as a full or failing disk makes every write
    // fail): each catch-up fails, and so does taking a new writer, several times over.
    let (search, away) = (dir.path().join("search"), dir.path().join("search-away"));
    std::fs::rename(&search, &away).unwrap();
    s.store.create_message(token.clone(), chat, body("during"), None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while failures.load(std::sync::atomic::Ordering::Relaxed) < 3 {
        assert!(Instant::now() < deadline, "the indexer did not retry");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::rename(&away, &search).unwrap();
    s.store.create_message(token.clone(), chat, body("after"), None).await.unwrap();

    s.wait_indexed();
    let key = s.source.chat_key(&token, chat).unwrap();
    assert_eq!(s.candidates(key, "during"), [2]);
    assert_eq!(s.candidates(key, "after"), [3]);
    assert_eq!(s.candidates(key, "before"), [1]);
    s.stop().await;
}

/// Every message of `texts` (numbered from 1) that matches `keyword`, as the core decides.
fn matching(texts: &[String], keyword: &Keyword, pass: Pass) -> Vec<i64> {
    (1..=texts.len() as i64)
        .filter(|&n| match keyword.matches(&chatd_core::search::normalize(&texts[n as usize - 1])) {
            Some(MatchKind::WholeWords) => true,
            Some(MatchKind::InsideWords) => pass == Pass::Substrings,
            None => false,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_hold_every_match_across_segments_long_words_and_quoted_terms() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    // A word of 1,300 characters, and terms taken from inside it.
    let long: String = (0..1300).map(|i| char::from_u32(0x4E00 + i).unwrap()).collect();
    let texts: Vec<String> = vec![
        "Rails and Go, stuff".into(),
        "going to the café".into(),
        format!("{long} tail"),
        "c++ and go-kart 🎉".into(),
        format!("head {long}"),
        "GO".into(),
        // Normalises to "mhz" 100 times: terms of 300 characters from a keyword of 100.
        format!("pre {} post", "㎒".repeat(100)),
        // Rarer punctuation beside letters.
        "tilde~ {x}".into(),
    ];
    let app = s.store.create_application(AppName::parse("t".into()).unwrap(), None).await.unwrap();
    let chat = s.store.create_chat(app.token.clone(), None).await.unwrap();
    let decoy = s.store.create_chat(app.token.clone(), None).await.unwrap();
    for (i, text) in texts.iter().enumerate() {
        let message = MessageBody::parse(text.clone(), 64 * 1024).unwrap();
        s.store.create_message(app.token.clone(), chat, message, None).await.unwrap();
        s.store
            .create_message(app.token.clone(), decoy, body("rails go café c++ 🎉 tail head"), None)
            .await
            .unwrap();
        if i % 2 == 1 {
            // Index commits in between, so that the messages lie in several segments.
            s.wait_indexed();
        }
    }
    s.wait_indexed();
    let key = s.source.chat_key(&app.token, chat).unwrap();
    let inside_long: String = long.chars().skip(500).take(30).collect();
    let tail_of_long: String = long.chars().skip(1100).collect();
    let head_of_long: String = long.chars().take(240).collect();
    let keywords = [
        "go".to_owned(),
        "o".into(),
        // 1-character terms of punctuation, alone and with other terms.
        ",".into(),
        "~".into(),
        "{".into(),
        "+ c".into(),
        "o go".into(),
        "~ x".into(),
        "RAILS and".into(),
        "\"rails and go\"".into(),
        "\"s and g\"".into(),
        "cafe".into(),
        "c++".into(),
        "🎉".into(),
        "kart 🎉".into(),
        inside_long.clone(),
        format!("\"{tail_of_long} tail\""),
        format!("\"head {head_of_long}\""),
        long.chars().take(256).collect(),
        "㎒".repeat(100),
        format!("\"pre {}\"", "㎒".repeat(100)),
        format!("\"pre {} post\"", "㎒".repeat(100)),
        format!("\"{}\"", "mhz".repeat(80)),
        "absent".into(),
    ];
    for keyword in &keywords {
        let parsed = Keyword::parse(keyword).unwrap();
        for pass in [Pass::WholeWords, Pass::Substrings] {
            let mut found: Vec<i64> =
                s.index.candidates(key, &parsed, pass).unwrap().iter().map(|n| n.get()).collect();
            found.sort_unstable();
            let wanted = matching(&texts, &parsed, pass);
            assert!(
                wanted.iter().all(|n| found.contains(n)),
                "{keyword:?} {pass:?}: {found:?} misses some of {wanted:?}"
            );
            if pass == Pass::Substrings && parsed.terms().iter().all(|t| t.chars().count() <= 3) {
                // A term of at most 3 characters is looked up by exactly the grams that
                // make it up: the lookup is exact.
                assert_eq!(found, wanted, "{keyword:?}");
            }
        }
    }
    // Longer terms narrow too: only bodies holding all of a term's looked-up grams.
    assert_eq!(s.candidates(key, "\"rails and\""), [1]);
    assert_eq!(s.candidates(key, "kart 🎉"), [4]);
    assert_eq!(s.candidates(key, "\"and go-\""), [4], "its first gram is in message 1 too");
    assert_eq!(s.candidates(key, &inside_long), [3, 5]);
    // The data holds what the keywords are for.
    let parse = |k: &str| Keyword::parse(k).unwrap();
    assert_eq!(matching(&texts, &parse(&inside_long), Pass::Substrings), [3, 5]);
    let long_quoted = parse(&format!("\"pre {} post\"", "㎒".repeat(100)));
    assert_eq!(matching(&texts, &long_quoted, Pass::WholeWords), [7]);
    s.stop().await;
}
