//! The PostgreSQL store against a real PostgreSQL: numbering under concurrency across
//! instances, the typed refusals, lists, search equal to the core's matcher, and the
//! import's target ([`import`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chatd_core::search::{Keyword, MatchKind, SearchRequest, normalize};
use chatd_core::{
    AppName, AppToken, Catalog, ChatNumber, IdempotencyKey, Ingest, Limit, MessageBody, MessageNumber,
    NumberBound, Order, Page, Search, StoreError,
};
use chatd_store_postgres::{Options, PgStore};

#[path = "store/import.rs"]
mod import;

async fn store(url: &str) -> PgStore {
    PgStore::connect(&Options::new(url)).await.expect("the store connects and migrates")
}

fn database() -> String {
    chatd_pg_testing::TestPostgres::shared().fresh_database().expect("a database for the test")
}

fn name(s: &str) -> AppName {
    AppName::parse(s.to_owned()).expect("a valid name")
}

fn body(s: &str) -> MessageBody {
    MessageBody::parse(s.to_owned(), MessageBody::DEFAULT_MAX_BYTES).expect("a valid body")
}

fn chat(n: i64) -> ChatNumber {
    ChatNumber::try_from(n).expect("a chat number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_migrate_once_and_number_densely_together() {
    let url = database();
    // Room in each queue for every request sent at once below.
    let options = Options { queue_capacity: 4096, ..Options::new(&url) };
    let stores: Vec<Arc<PgStore>> = futures::future::join_all((0..3).map(|_| PgStore::connect(&options)))
        .await
        .into_iter()
        .map(|s| Arc::new(s.expect("the store connects and migrates")))
        .collect();
    let app = stores[0].create_application(name("app"), None).await.unwrap().token;

    // Five chats first; then, at once, 295 more chats, 3,000 messages over the first five
    // and renames of the application, spread over the three instances: batches that lock
    // the application and batches that insert under it (whose foreign keys take a share
    // lock on its row) run side by side.
    for _ in 0..5 {
        stores[0].create_chat(app.clone(), None).await.unwrap();
    }
    let chats = futures::future::join_all((0..295).map(|i| {
        let (s, t) = (stores[i % 3].clone(), app.clone());
        async move {
            if i % 50 == 0 {
                s.rename_application(t.clone(), name(&format!("app {i}"))).await.unwrap();
            }
            s.create_chat(t, None).await.unwrap().get()
        }
    }));
    let messages = futures::future::join_all((0..3000).map(|i| {
        let (s, t) = (stores[i % 3].clone(), app.clone());
        let c = chat(i as i64 % 5 + 1);
        async move { (c.get(), s.create_message(t, c, body(&format!("m{i}")), None).await.unwrap().get()) }
    }));
    let (chats, messages) = tokio::join!(chats, messages);
    assert_eq!(chats.iter().copied().collect::<BTreeSet<_>>(), (6..=300).collect::<BTreeSet<_>>());
    let mut by_chat: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for (c, n) in messages {
        assert!(by_chat.entry(c).or_default().insert(n), "number {n} given twice in chat {c}");
    }
    for (c, numbers) in &by_chat {
        assert_eq!(numbers, &(1..=600).collect::<BTreeSet<_>>(), "chat {c}");
        assert_eq!(stores[1].chat(app.clone(), chat(*c)).await.unwrap().messages_count, 600);
    }
    assert_eq!(stores[2].application(app.clone()).await.unwrap().chats_count, 300);
    let commits: u64 = stores.iter().map(|s| s.writer_stats().commits).sum();
    let jobs: u64 = stores.iter().map(|s| s.writer_stats().jobs).sum();
    assert!(
        jobs >= 4 * commits,
        "under load a transaction carries many creates ({jobs} in {commits} commits)"
    );
    for s in &stores {
        s.close().await;
    }
    // The batches waited for each other's locks, never in a cycle (the counters are locked
    // FOR NO KEY UPDATE, which the inserts' foreign-key checks do not wait for). Closed
    // connections have flushed their statistics.
    let pg = chatd_pg_testing::TestPostgres::shared();
    let deadlocks =
        pg.psql(&url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").unwrap();
    assert_eq!(deadlocks.trim(), "0", "deadlocks between the instances' batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_refused_for_a_missing_parent_leaves_its_batch_mates_alone() {
    let s = Arc::new(store(&database()).await);
    let app = s.create_application(name("app"), None).await.unwrap().token;
    let unknown = AppToken::generate().unwrap();
    s.create_chat(app.clone(), None).await.unwrap();

    let (good, no_app, no_chat, no_message, edit) = tokio::join!(
        s.create_message(app.clone(), chat(1), body("kept"), None),
        s.create_chat(unknown.clone(), None),
        s.create_message(app.clone(), chat(9), body("lost"), None),
        s.edit_message(app.clone(), chat(1), MessageNumber::try_from(7).unwrap(), body("x")),
        s.rename_application(unknown.clone(), name("x")),
    );
    assert_eq!(good.unwrap().get(), 1);
    assert!(matches!(no_app, Err(StoreError::ApplicationNotFound)), "{no_app:?}");
    assert!(matches!(no_chat, Err(StoreError::ChatNotFound)), "{no_chat:?}");
    assert!(matches!(no_message, Err(StoreError::MessageNotFound)), "{no_message:?}");
    assert!(matches!(edit, Err(StoreError::ApplicationNotFound)), "{edit:?}");
    let m = s.create_message(unknown, chat(1), body("x"), None).await;
    assert!(matches!(m, Err(StoreError::ApplicationNotFound)), "{m:?}");

    let edited =
        s.edit_message(app.clone(), chat(1), MessageNumber::try_from(1).unwrap(), body("edited")).await;
    assert_eq!(edited.unwrap().body, "edited");
    let renamed = s.rename_application(app.clone(), name("renamed")).await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.chats_count), ("renamed", 1));
    assert_eq!(s.chat(app.clone(), chat(1)).await.unwrap().messages_count, 1);
    s.close().await;
}

/// A batch claims its keys with the numbers its creates get if none is a retry; a retry
/// earlier in the batch moves a later create of its chat down one, and its key with it.
#[tokio::test]
async fn a_retry_in_a_batch_leaves_the_keys_of_its_batch_mates_naming_their_numbers() {
    let s = store(&database()).await;
    let app = s.create_application(name("app"), None).await.unwrap().token;
    s.create_chat(app.clone(), None).await.unwrap();
    let key = |k: &str| Some(IdempotencyKey::parse(k.as_bytes()).unwrap());
    let first = s.create_message(app.clone(), chat(1), body("first"), key("a")).await.unwrap();
    assert_eq!(first.get(), 1);

    // On this one-thread runtime both jobs are queued before the writer runs: one batch.
    let (retry, second) = tokio::join!(
        s.create_message(app.clone(), chat(1), body("first"), key("a")),
        s.create_message(app.clone(), chat(1), body("second"), key("b")),
    );
    assert_eq!(s.writer_stats().largest_batch, 2, "the two shared a batch");
    assert_eq!((retry.unwrap().get(), second.unwrap().get()), (1, 2));
    let again = s.create_message(app.clone(), chat(1), body("second"), key("b")).await.unwrap();
    assert_eq!(again.get(), 2, "the key names the message its create got");
    assert_eq!(s.chat(app, chat(1)).await.unwrap().messages_count, 2);
    s.close().await;
}

/// An imported parent may have gaps in its numbers: its last number above its count. New
/// rows are numbered after the last number, and the count stays the number of rows.
#[tokio::test]
async fn new_rows_are_numbered_after_the_parents_last_number_with_exact_counts() {
    let url = database();
    let s = store(&url).await;
    let app = s.create_application(name("app"), None).await.unwrap().token;
    s.create_chat(app.clone(), None).await.unwrap();
    for b in ["one", "two"] {
        s.create_message(app.clone(), chat(1), body(b), None).await.unwrap();
    }
    // As an import leaves them: chats 1 and 4 of the application, messages 1, 2 and 7 of
    // the chat, with the missing numbers lost.
    chatd_pg_testing::TestPostgres::shared()
        .psql(&url, "UPDATE applications SET last_chat_number = 4; UPDATE chats SET last_message_number = 7")
        .unwrap();

    let (m, c) = tokio::join!(
        s.create_message(app.clone(), chat(1), body("three"), None),
        s.create_chat(app.clone(), None)
    );
    assert_eq!((m.unwrap().get(), c.unwrap().get()), (8, 5));
    let m = s.create_message(app.clone(), chat(1), body("four"), None).await.unwrap();
    assert_eq!(m.get(), 9);
    let c = s.create_chat(app.clone(), None).await.unwrap();
    assert_eq!(c.get(), 6);

    let read = s.chat(app.clone(), chat(1)).await.unwrap();
    assert_eq!((read.messages_count, read.last_number), (4, 9));
    assert_eq!(s.application(app.clone()).await.unwrap().chats_count, 3);
    let listed = s.chats(app.clone(), Page::default()).await.unwrap();
    let chats: Vec<(i64, i64)> = listed.items.iter().map(|c| (c.number.get(), c.last_number)).collect();
    assert_eq!(chats, [(1, 9), (5, 0), (6, 0)]);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_an_older_chatd_counted_without_a_last_number_are_numbered_after_too() {
    let url = database();
    let s = store(&url).await;
    let app = s.create_application(name("app"), None).await.unwrap().token;
    s.create_chat(app.clone(), None).await.unwrap();
    s.create_message(app.clone(), chat(1), body("one"), None).await.unwrap();
    // As an instance of the chatd before migration 0003 leaves them during an upgrade: it
    // moved only the counts (chat 2 and message 2 exist, the last numbers say 1).
    chatd_pg_testing::TestPostgres::shared()
        .psql(
            &url,
            "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
             SELECT application_id, 2, 0, 0, 0 FROM chats; \
             UPDATE applications SET chats_count = 2; \
             INSERT INTO messages (application_id, chat_id, number, body, body_norm, created_at, updated_at) \
             SELECT application_id, id, 2, 'two', 'two', 0, 0 FROM chats WHERE number = 1; \
             UPDATE chats SET messages_count = 2 WHERE number = 1",
        )
        .unwrap();
    assert_eq!(s.chat(app.clone(), chat(1)).await.unwrap().last_number, 2);
    assert_eq!(s.create_message(app.clone(), chat(1), body("three"), None).await.unwrap().get(), 3);
    assert_eq!(s.create_chat(app.clone(), None).await.unwrap().get(), 3);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_by_number_in_both_orders_with_zero_and_far_bounds() {
    let s = store(&database()).await;
    let app = s.create_application(name("app"), None).await.unwrap().token;
    s.create_chat(app.clone(), None).await.unwrap();
    for i in 1..=12 {
        s.create_message(app.clone(), chat(1), body(&format!("m{i}")), None).await.unwrap();
    }
    let page = |after: Option<i64>, before: Option<i64>, order, limit| Page {
        limit: Limit::new(limit).unwrap(),
        after: after.map(|n| n.to_string().parse::<NumberBound>().unwrap()),
        before: before.map(|n| n.to_string().parse::<NumberBound>().unwrap()),
        order,
    };
    let numbers = |l: &chatd_core::Listed<chatd_core::Message>| {
        l.items.iter().map(|m| m.number.get()).collect::<Vec<_>>()
    };
    let l = s.messages(app.clone(), chat(1), page(Some(0), None, Order::Asc, 5)).await.unwrap();
    assert_eq!((numbers(&l), l.more), (vec![1, 2, 3, 4, 5], true));
    let l = s.messages(app.clone(), chat(1), page(Some(3), Some(9), Order::Desc, 10)).await.unwrap();
    assert_eq!((numbers(&l), l.more), (vec![8, 7, 6, 5, 4], false));
    let l = s.messages(app.clone(), chat(1), page(None, Some(i64::MAX), Order::Desc, 2)).await.unwrap();
    assert_eq!(numbers(&l), vec![12, 11]);
    let l = s.messages(app.clone(), chat(1), page(None, Some(0), Order::Asc, 5)).await.unwrap();
    assert!(l.items.is_empty() && !l.more);
    let chats = s.chats(app.clone(), page(Some(0), None, Order::Asc, 5)).await.unwrap();
    assert_eq!(chats.items.len(), 1);
    let missing = s.messages(app.clone(), chat(2), Page::default()).await;
    assert!(matches!(missing, Err(StoreError::ChatNotFound)), "{missing:?}");
    s.close().await;
}

/// The chat's matches by the core's own matcher: whole-word matches first, then matches
/// inside words, each newest first (what the embedded mode answers).
fn expected(bodies: &[&str], keyword: &Keyword) -> Vec<i64> {
    let mut whole = Vec::new();
    let mut inside = Vec::new();
    for (i, b) in bodies.iter().enumerate().rev() {
        match keyword.matches(&normalize(b)) {
            Some(MatchKind::WholeWords) => whole.push(i as i64 + 1),
            Some(MatchKind::InsideWords) => inside.push(i as i64 + 1),
            None => {}
        }
    }
    whole.extend(inside);
    whole
}

/// Each page (`(limit, offset)`) of the search of each keyword in chat 1, whose messages
/// are `bodies` in number order, is the core matcher's.
async fn assert_pages_are_the_matchers(
    s: &PgStore,
    app: &AppToken,
    bodies: &[&str],
    keywords: &[&str],
    pages: &[(usize, usize)],
) {
    for raw in keywords {
        let keyword = Keyword::parse(raw).expect("a valid keyword");
        let want = expected(bodies, &keyword);
        for &(limit, offset) in pages {
            let request = SearchRequest { keyword: keyword.clone(), limit, offset };
            let got = s.search(app.clone(), chat(1), request).await.expect("search answers");
            let got: Vec<i64> = got.iter().map(|m| m.number.get()).collect();
            let want: Vec<i64> = want.iter().copied().skip(offset).take(limit).collect();
            assert_eq!(got, want, "{raw:?} limit {limit} offset {offset}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_answers_what_the_core_matcher_answers_and_stays_in_its_chat() {
    let s = store(&database()).await;
    let app = s.create_application(name("app"), None).await.unwrap().token;
    s.create_chat(app.clone(), None).await.unwrap();
    s.create_chat(app.clone(), None).await.unwrap();
    let bodies = [
        "Rails stuff",
        "stuffing the turkey",
        "CAFÉ au lait",
        "cafe",
        "100% sure",
        "100 percent",
        "a_b and a-b",
        "ab",
        "😀 emoji 😀",
        "under_score",
        "back\\slash",
        "zz top",
        "pizza",
        "a",
        "the quick brown fox",
        "quick",
        "Straße",
        "strasse",
        "  spaced   out  ",
        "x%y",
    ];
    for b in bodies {
        s.create_message(app.clone(), chat(1), body(b), None).await.unwrap();
        // The other chat holds every body too: none of its rows may be answered.
        s.create_message(app.clone(), chat(2), body(&format!("{b} {b}")), None).await.unwrap();
    }
    let keywords = [
        "stuff",
        "tuff",
        "café",
        "CAFE",
        "100%",
        "%",
        "_",
        "a_b",
        "a",
        "ab",
        "😀",
        "zz",
        "z",
        "\\",
        "quick fox",
        "\"quick brown\"",
        "straße",
        "spaced out",
        "x%y",
        "nothing",
        "e",
        "a\u{0}",
    ];
    assert_pages_are_the_matchers(&s, &app, &bodies, &keywords, &[(50, 0), (2, 0), (2, 1), (3, 4)]).await;
    // An edit is searchable by its new text, and no longer by its old one, at once.
    let n = MessageNumber::try_from(1).unwrap();
    s.edit_message(app.clone(), chat(1), n, body("replaced words")).await.unwrap();
    let find = |raw: &str| SearchRequest { keyword: Keyword::parse(raw).unwrap(), limit: 50, offset: 0 };
    let hits = s.search(app.clone(), chat(1), find("replaced")).await.unwrap();
    assert_eq!(hits.iter().map(|m| m.number.get()).collect::<Vec<_>>(), vec![1]);
    let hits = s.search(app.clone(), chat(1), find("rails")).await.unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    let missing = s.search(app, chat(3), find("x")).await;
    assert!(matches!(missing, Err(StoreError::ChatNotFound)), "{missing:?}");
    s.close().await;
}

/// In a chat longer than search's first look at its newest messages, with whole-word
/// matches both among the newest and below them, every page is the core matcher's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_past_the_newest_messages_answers_what_the_core_matcher_answers() {
    const MESSAGES: usize = 3000;
    let url = database();
    let s = store(&url).await;
    let app = s.create_application(name("app"), None).await.unwrap().token;
    s.create_chat(app.clone(), None).await.unwrap();
    let body = |n: usize| match (n % 7, n % 3) {
        (0, _) => format!("x marks {n}"),
        (_, 0) => format!("xylophone {n}"),
        _ => format!("other {n}"),
    };
    let bodies: Vec<String> = (1..=MESSAGES).map(body).collect();
    chatd_pg_testing::TestPostgres::shared()
        .psql(
            &url,
            &format!(
                "UPDATE chats SET messages_count = {MESSAGES}; \
                 INSERT INTO messages (application_id, chat_id, number, body, body_norm, created_at, updated_at) \
                 SELECT c.application_id, c.id, n, b, b, 0, 0 FROM chats c, generate_series(1, {MESSAGES}) AS n, \
                 LATERAL (SELECT CASE WHEN n % 7 = 0 THEN 'x marks ' || n WHEN n % 3 = 0 THEN 'xylophone ' || n \
                 ELSE 'other ' || n END AS b) AS body; ANALYZE"
            ),
        )
        .unwrap();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let keywords = ["x", "marks", "\"x marks\"", "x 7", "xylophone", "nothing"];
    let pages = [(50, 0), (1000, 0), (100, 250), (1000, 1000)];
    assert_pages_are_the_matchers(&s, &app, &bodies, &keywords, &pages).await;
    s.close().await;
}

/// Terms the trigram index cannot serve (under three characters, emoji, punctuation) are
/// answered from the chat's own rows through its primary key, never by reading every
/// message; a longer term absent from a big chat is found absent through the trigram
/// index, not by reading the chat. Checked on PostgreSQL's plans, with chatd's session settings,
/// for the statements search runs, planned as search has them planned: for their values
/// (unnamed statements, never a cached generic plan); over 300 chats of 200 messages, and
/// over 2 chats of 20,000 (where, without the settings, reading the whole table is
/// estimated cheaper).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keyword_makes_search_read_every_message() {
    let settings: String =
        chatd_store_postgres::SESSION_SETTINGS.iter().map(|(k, v)| format!("SET {k} = '{v}'; ")).collect();
    let statement = chatd_store_postgres::SEARCH_CANDIDATES;
    let whole_words = chatd_store_postgres::WHOLE_WORD_CANDIDATES;
    let newest_words = chatd_store_postgres::NEWEST_WHOLE_WORD_CANDIDATES;
    for (chats, per_chat) in [(300, 200), (2, 20_000)] {
        let url = database();
        let s = store(&url).await;
        s.create_application(name("app"), None).await.unwrap();
        s.close().await;
        let pg = chatd_pg_testing::TestPostgres::shared();
        pg.psql(
            &url,
            &format!(
                "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
                 SELECT a.id, n, {per_chat}, 0, 0 FROM applications a, generate_series(1, {chats}) AS n; \
                 INSERT INTO messages (application_id, chat_id, number, body, body_norm, created_at, updated_at) \
                 SELECT c.application_id, c.id, n, 'body ' || n, 'body ' || n, 0, 0 \
                 FROM chats c, generate_series(1, {per_chat}) AS n; ANALYZE"
            ),
        )
        .unwrap();
        for term in ["ab", "a", "😀", "%", "_", "quick", "body 1"] {
            let pattern = format!("%{}%", term.replace('%', "\\%").replace('_', "\\_"));
            let mode = "force_custom_plan";
            let plan = pg
                .psql(
                    &url,
                    &format!(
                        "{settings} SET plan_cache_mode = {mode}; \
                         PREPARE search(bigint, bigint, text[], bigint, text) AS {statement}; \
                         EXPLAIN EXECUTE search({chats}, 9223372036854775807, ARRAY['{pattern}'], 256, '{pattern}')"
                    ),
                )
                .unwrap();
            let at = format!("{term:?}, {mode}, {chats} chats");
            assert!(!plan.contains("Seq Scan on messages"), "{at}: reads every message:\n{plan}");
            let words = pg
                .psql(
                    &url,
                    &format!(
                        "{settings} SET plan_cache_mode = {mode}; \
                         PREPARE words(bigint, bigint, text[], bigint, text[]) AS {whole_words}; \
                         EXPLAIN EXECUTE words({chats}, 9223372036854775807, ARRAY['{pattern}'], 256, ARRAY['body'])"
                    ),
                )
                .unwrap();
            assert!(
                !words.contains("Seq Scan on messages"),
                "{at}: the word pass reads every message:\n{words}"
            );
            let newest = pg
                .psql(
                    &url,
                    &format!(
                        "{settings} SET plan_cache_mode = {mode}; \
                         PREPARE newest(bigint, bigint, text[], text[]) AS {newest_words}; \
                         EXPLAIN EXECUTE newest({chats}, 1024, ARRAY['{pattern}'], ARRAY['body'])"
                    ),
                )
                .unwrap();
            assert!(
                newest.contains("messages_pkey") && !newest.contains("Seq Scan on messages"),
                "{at}: the word pass's first look reads more than the chat's messages:\n{newest}"
            );
            if term.chars().count() < 3 {
                // The trigram index holds nothing for such a term: reading it would
                // be reading all of it.
                assert!(plan.contains("messages_pkey"), "{at}: the chat's rows:\n{plan}");
                assert!(!plan.contains("messages_body_norm_trgm"), "{at}: the whole trigram index:\n{plan}");
            }
            if term == "quick" && per_chat > 1000 {
                assert!(plan.contains("messages_body_norm_trgm"), "{at}: the trigram index:\n{plan}");
            }
        }
    }
}
