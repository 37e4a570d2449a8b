//! `PgImportTarget` driven through the core's `ImportTarget` with hand-made batches, and
//! read back through `PgStore` as a server reads it.

use chatd_core::import::{
    Batch, ImportTarget, ImportedApplication, ImportedRow, Note, NoteKind, Step, Table, Written,
};
use chatd_core::search::{Keyword, SearchRequest};
use chatd_core::{AppToken, Catalog, Ingest, Page, Search, StoreError, Timestamp};
use chatd_store_postgres::PgImportTarget;

use super::{body, chat, database, store};

const SOURCE: &str = "old-db:3306/chat_system";

async fn target(url: &str) -> PgImportTarget {
    PgImportTarget::connect(url).await.expect("the import target connects and migrates")
}

/// A target that began importing `SOURCE` and wrote its application 1, `tok-one`.
async fn with_one_application(url: &str) -> PgImportTarget {
    let mut t = target(url).await;
    t.begin(SOURCE).await.expect("begun");
    let batch = Batch::Applications(vec![app(1, "tok-one", None)]);
    t.write(batch).await.expect("application 1 written");
    t
}

fn token(s: &str) -> AppToken {
    AppToken::parse(s).expect("a valid token")
}

fn app(legacy_id: i64, token_: &str, old_count: Option<i64>) -> ImportedApplication {
    ImportedApplication {
        legacy_id,
        token: token(token_),
        name: format!("app {legacy_id}"),
        created_at: Timestamp::from_millis(1_000 + legacy_id),
        updated_at: Timestamp::from_millis(2_000 + legacy_id),
        old_count,
        notes: Vec::new(),
    }
}

fn row(legacy_id: i64, parent: i64, number: Option<i64>, text: &str) -> ImportedRow {
    ImportedRow {
        legacy_id,
        parent,
        number,
        body: text.to_owned(),
        created_at: Timestamp::from_millis(10_000 + legacy_id),
        updated_at: Timestamp::from_millis(20_000 + legacy_id),
        old_count: None,
        notes: Vec::new(),
    }
}

fn rows(step: Step, rows: Vec<ImportedRow>) -> Batch {
    Batch::Rows { step, rows }
}

fn written(written: u64, deferred: u64, orphans: u64) -> Written {
    Written { written, deferred, orphans }
}

/// Every note, read `limit` at a time.
async fn all_notes(t: &mut PgImportTarget, limit: usize) -> Vec<Note> {
    let mut notes: Vec<Note> = Vec::new();
    loop {
        let page = t.notes(notes.last(), limit).await.expect("a page of notes");
        assert!(page.len() <= limit);
        if page.is_empty() {
            return notes;
        }
        notes.extend(page);
    }
}

#[tokio::test]
async fn applications_keep_their_tokens_names_and_times_and_a_taken_token_fails_its_batch() {
    let url = database();
    let mut t = target(&url).await;
    assert!(!t.begin(SOURCE).await.unwrap().foreign, "an empty database holds nothing foreign");
    let batch = Batch::Applications(vec![app(1, "tok-one", Some(0)), app(2, "tok_two", Some(0))]);
    assert_eq!(t.write(batch).await.unwrap(), written(2, 0, 0));

    let s = store(&url).await;
    let one = s.application(token("tok-one")).await.unwrap();
    assert_eq!((one.name.as_str(), one.chats_count), ("app 1", 0));
    assert_eq!((one.created_at.as_millis(), one.updated_at.as_millis()), (1_001, 2_001));
    let listed = s.applications(Page::default()).await.unwrap();
    let tokens: Vec<&str> = listed.items.iter().map(|a| a.token.as_str()).collect();
    assert_eq!(tokens, ["tok-one", "tok_two"], "listed in legacy id order");

    // Old id 4's token is its batch mate's, old id 3's is already in the target.
    let batch = Batch::Applications(vec![
        app(3, "tok-one", None),
        app(4, "tok-four", None),
        app(5, "tok-four", None),
    ]);
    let refused = t.write(batch).await;
    let line = match refused {
        Err(e @ StoreError::Internal(_)) => format!("{e}: {}", std::error::Error::source(&e).unwrap()),
        other => panic!("a taken token must fail the batch: {other:?}"),
    };
    assert!(line.contains("3, 5") && line.contains("taken"), "{line}");
    let missing = s.application(token("tok-four")).await;
    assert!(
        matches!(missing, Err(StoreError::ApplicationNotFound)),
        "nothing of the batch stays: {missing:?}"
    );
    assert_eq!(t.begin(SOURCE).await.unwrap().checkpoint(Step::Applications), 2, "the checkpoint stays");
    s.close().await;
}

/// In one application: two chats numbered 3, one with no number, one numbered 0, one
/// numbered 1, and one whose application is not in the source; then, in later batches, one
/// more numbered 3 (taken in the table), one numbered 7 (a gap), and one numbered 2 (below
/// the highest).
#[tokio::test]
async fn chats_whose_numbers_are_taken_or_missing_are_numbered_after_the_highest_in_legacy_id_order() {
    let url = database();
    let mut t = with_one_application(&url).await;
    let mut noted = row(12, 1, None, "");
    noted.notes = vec![NoteKind::Placeholder];
    let batch = rows(
        Step::Chats,
        vec![
            row(10, 1, Some(3), ""),
            row(11, 1, Some(3), ""),
            noted.clone(),
            row(13, 1, Some(0), ""),
            row(14, 1, Some(1), ""),
            row(15, 99, Some(1), ""),
        ],
    );
    assert_eq!(t.write(batch).await.unwrap(), written(2, 3, 1));
    let batch = rows(Step::Chats, vec![row(16, 1, Some(3), ""), row(17, 1, Some(7), "")]);
    assert_eq!(t.write(batch).await.unwrap(), written(1, 1, 0));
    let batch = rows(Step::Chats, vec![row(18, 1, Some(2), "")]);
    assert_eq!(t.write(batch).await.unwrap(), written(1, 0, 0));
    assert_eq!(t.deferred(Table::Chats, 0, 10).await.unwrap(), [11, 12, 13, 16]);
    assert_eq!(t.deferred(Table::Chats, 11, 2).await.unwrap(), [12, 13]);
    assert_eq!(t.deferred_count(Table::Chats, 12).await.unwrap(), 2);
    assert!(t.deferred(Table::Messages, 0, 10).await.unwrap().is_empty());

    // The renumbering step, in two batches as the run reads them.
    let batch = rows(Step::ChatsRenumbered, vec![row(11, 1, Some(3), ""), noted]);
    assert_eq!(t.write(batch).await.unwrap(), written(2, 0, 0));
    let batch = rows(Step::ChatsRenumbered, vec![row(13, 1, Some(0), ""), row(16, 1, Some(3), "")]);
    assert_eq!(t.write(batch).await.unwrap(), written(2, 0, 0));

    let s = store(&url).await;
    let listed = s.chats(token("tok-one"), Page::default()).await.unwrap();
    let chats: Vec<(i64, i64)> =
        listed.items.iter().map(|c| (c.number.get(), c.created_at.as_millis() - 10_000)).collect();
    assert_eq!(chats, [(1, 14), (2, 18), (3, 10), (7, 17), (8, 11), (9, 12), (10, 13), (11, 16)]);
    assert_eq!(s.application(token("tok-one")).await.unwrap().chats_count, 8);
    // A live create goes after the highest, and the count stays exact.
    assert_eq!(s.create_chat(token("tok-one"), None).await.unwrap().get(), 12);
    assert_eq!(s.application(token("tok-one")).await.unwrap().chats_count, 9);

    let notes = all_notes(&mut t, 3).await;
    let renumbered: Vec<_> = notes
        .iter()
        .filter(|n| n.kind == NoteKind::Renumbered)
        .map(|n| (n.legacy_id, n.parent, n.old_number, n.new_number))
        .collect();
    assert_eq!(
        renumbered,
        [
            (11, Some(1), Some(3), Some(8)),
            (12, Some(1), None, Some(9)),
            (13, Some(1), Some(0), Some(10)),
            (16, Some(1), Some(3), Some(11))
        ]
    );
    let orphans: Vec<(Table, i64, Option<i64>)> = notes
        .iter()
        .filter(|n| n.kind == NoteKind::Orphan)
        .map(|n| (n.table, n.legacy_id, n.parent))
        .collect();
    assert_eq!(orphans, [(Table::Chats, 15, Some(99))]);
    let tally = t.tally().await.unwrap();
    assert_eq!(tally.notes(Table::Chats, NoteKind::Placeholder), 1, "noted once, when written");
    assert_eq!(tally.imported(Table::Chats), 8);
    s.close().await;
}

#[tokio::test]
async fn messages_keep_their_numbers_gaps_bodies_and_times_and_are_found_by_search() {
    let url = database();
    let mut t = with_one_application(&url).await;
    t.write(rows(Step::Chats, vec![row(10, 1, Some(1), "")])).await.unwrap();
    let batch = rows(
        Step::Messages,
        vec![
            row(100, 10, Some(1), "hello world"),
            row(101, 10, Some(5), "Café au lait"),
            row(102, 10, Some(5), "duplicate number"),
            row(103, 77, Some(1), "orphan"),
        ],
    );
    assert_eq!(t.write(batch).await.unwrap(), written(2, 1, 1));
    assert_eq!(t.deferred(Table::Messages, 0, 10).await.unwrap(), [102]);
    let batch = rows(Step::MessagesRenumbered, vec![row(102, 10, Some(5), "duplicate number")]);
    assert_eq!(t.write(batch).await.unwrap(), written(1, 0, 0));

    let s = store(&url).await;
    let app = token("tok-one");
    let c = s.chat(app.clone(), chat(1)).await.unwrap();
    assert_eq!((c.messages_count, c.last_number), (3, 6));
    let live = s.create_message(app.clone(), chat(1), body("after the import"), None).await.unwrap();
    assert_eq!(live.get(), 7, "numbered after the highest, not after the count");
    let c = s.chat(app.clone(), chat(1)).await.unwrap();
    assert_eq!((c.messages_count, c.last_number), (4, 7));
    let listed = s.messages(app.clone(), chat(1), Page::default()).await.unwrap();
    let numbers: Vec<i64> = listed.items.iter().map(|m| m.number.get()).collect();
    assert_eq!(numbers, [1, 5, 6, 7]);
    let m = &listed.items[1];
    assert_eq!(
        (m.body.as_str(), m.created_at.as_millis(), m.updated_at.as_millis()),
        ("Café au lait", 10_101, 20_101)
    );

    let find = |raw: &str| SearchRequest { keyword: Keyword::parse(raw).unwrap(), limit: 10, offset: 0 };
    for (keyword, want) in [("cafe", vec![5]), ("duplicate", vec![6]), ("o", vec![7, 1])] {
        let hits = s.search(app.clone(), chat(1), find(keyword)).await.unwrap();
        assert_eq!(hits.iter().map(|m| m.number.get()).collect::<Vec<_>>(), want, "{keyword}");
    }
    assert!(s.search(app, chat(1), find("orphan")).await.unwrap().is_empty());
    s.close().await;
}

#[tokio::test]
async fn one_import_at_a_time_and_a_second_begin_goes_on_from_the_checkpoints() {
    let url = database();
    let mut t = target(&url).await;
    let fresh = t.begin(SOURCE).await.unwrap();
    assert_eq!((fresh.checkpoint(Step::Applications), fresh.foreign), (0, false));
    t.write(Batch::Applications(vec![app(1, "tok-one", None), app(2, "tok-two", None)])).await.unwrap();
    t.write(rows(Step::Chats, vec![row(10, 1, Some(1), ""), row(11, 2, None, "")])).await.unwrap();

    match PgImportTarget::connect(&url).await {
        Err(StoreError::Unavailable(why)) => assert_eq!(why, "another import is running on this database"),
        other => panic!("a second import must be refused: {other:?}"),
    }
    t.close().await.unwrap();

    let mut t = target(&url).await;
    let standing = t.begin(SOURCE).await.unwrap();
    assert_eq!(standing.checkpoint(Step::Applications), 2);
    assert_eq!(standing.checkpoint(Step::Chats), 11);
    assert_eq!(standing.checkpoint(Step::ChatsRenumbered), 0);
    assert!(!standing.foreign, "every application came from this source");
    // Another source sees its own (none), and this one's applications as foreign.
    let other = t.begin("elsewhere:3306/chat_system").await.unwrap();
    assert!(other.checkpoints.is_empty() && other.foreign, "{other:?}");
    assert_eq!(t.tally().await.unwrap().imported(Table::Applications), 0);
}

#[tokio::test]
async fn applications_created_live_are_foreign_and_their_tokens_taken() {
    let url = database();
    let s = store(&url).await;
    let mut t = target(&url).await;
    assert!(!t.begin(SOURCE).await.unwrap().foreign);
    let live = s.create_application(super::name("live"), None).await.unwrap().token;
    assert!(t.begin(SOURCE).await.unwrap().foreign);
    let other = AppToken::generate().unwrap();
    assert_eq!(t.tokens_taken(&[other.clone(), live.clone()]).await.unwrap(), [live]);
    assert!(t.tokens_taken(&[other]).await.unwrap().is_empty());
    s.close().await;
}

/// Application 1 has the two chats its old counter says, 2 a null counter, 3 a counter of
/// 5 and no chat; chat 10 has the one message its counter says, 11 a null counter.
#[tokio::test]
async fn tally_counts_rows_notes_and_wrong_counters_and_notes_page_in_key_order() {
    let url = database();
    let mut t = target(&url).await;
    t.begin(SOURCE).await.unwrap();
    let mut new_token = app(2, "tok-new", None);
    new_token.notes = vec![NoteKind::NewToken, NoteKind::Placeholder];
    let apps = vec![app(1, "tok-one", Some(2)), new_token, app(3, "tok-three", Some(5))];
    t.write(Batch::Applications(apps)).await.unwrap();
    let mut counted = row(10, 1, Some(1), "");
    counted.old_count = Some(1);
    t.write(rows(Step::Chats, vec![counted, row(11, 1, Some(2), "")])).await.unwrap();
    // Below the applications' legacy ids: notes are in table order first.
    let mut long = row(1, 10, Some(1), "long");
    long.notes = vec![NoteKind::KeptLong];
    t.write(rows(Step::Messages, vec![long, row(101, 99, Some(1), "orphan")])).await.unwrap();

    let tally = t.tally().await.unwrap();
    let imported: Vec<u64> = Table::ALL.iter().map(|&table| tally.imported(table)).collect();
    assert_eq!(imported, [3, 2, 1]);
    assert_eq!(tally.wrong_counters(Table::Applications), 2);
    assert_eq!(tally.wrong_counters(Table::Chats), 1);
    let notes: Vec<(Table, NoteKind, u64)> = tally.notes.clone();
    assert_eq!(
        notes,
        [
            (Table::Applications, NoteKind::NewToken, 1),
            (Table::Applications, NoteKind::Placeholder, 1),
            (Table::Messages, NoteKind::KeptLong, 1),
            (Table::Messages, NoteKind::Orphan, 1)
        ]
    );

    for limit in [1, 2, 10] {
        let notes = all_notes(&mut t, limit).await;
        let keys: Vec<(Table, i64, NoteKind, Option<&str>)> = notes
            .iter()
            .map(|n| (n.table, n.legacy_id, n.kind, n.token.as_ref().map(AppToken::as_str)))
            .collect();
        assert_eq!(
            keys,
            [
                (Table::Applications, 2, NoteKind::NewToken, Some("tok-new")),
                (Table::Applications, 2, NoteKind::Placeholder, None),
                (Table::Messages, 1, NoteKind::KeptLong, None),
                (Table::Messages, 101, NoteKind::Orphan, None)
            ],
            "limit {limit}"
        );
    }
}

/// An import beside a running server: live creates of chats and messages in the parents the
/// import writes under, while it writes its batches. Both lock parents in one order, so
/// neither waits in a cycle, and each number is given once with counts and last numbers
/// exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_beside_live_writes_keeps_numbers_and_counts_exact_and_never_deadlocks() {
    let url = database();
    let mut t = with_one_application(&url).await;
    t.write(rows(Step::Chats, vec![row(10, 1, Some(1), ""), row(11, 1, Some(2), "")])).await.unwrap();
    let s = std::sync::Arc::new(store(&url).await);

    // In waves, so that live batches keep coming while the import writes.
    let live = async {
        for wave in 0..30 {
            futures::future::join_all((0..10).map(|i| {
                let (s, i) = (s.clone(), wave * 10 + i);
                async move {
                    if i % 30 == 0 {
                        s.create_chat(token("tok-one"), None).await.unwrap();
                    }
                    let text = body(&format!("live {i}"));
                    s.create_message(token("tok-one"), chat(i % 2 + 1), text, None).await.unwrap()
                }
            }))
            .await;
        }
    };
    let import = async {
        let mut sent = std::collections::HashMap::new();
        for b in 0..20 {
            let batch: Vec<ImportedRow> = (0..10)
                .map(|k| row(1_000 + b * 10 + k, 10 + k % 2, Some(b * 5 + k), &format!("old {b} {k}")))
                .collect();
            sent.extend(batch.iter().map(|r| (r.legacy_id, r.clone())));
            t.write(rows(Step::Messages, batch)).await.unwrap();
            let batch = rows(Step::Chats, vec![row(100 + b, 1, Some(3 + b), "")]);
            t.write(batch).await.unwrap();
        }
        let deferred = t.deferred(Table::Messages, 0, 1_000).await.unwrap();
        let batch = deferred.iter().map(|id| sent[id].clone()).collect();
        t.write(rows(Step::MessagesRenumbered, batch)).await.unwrap();
        let deferred = t.deferred(Table::Chats, 0, 1_000).await.unwrap();
        let batch = deferred.iter().map(|&id| row(id, 1, Some(3 + id - 100), "")).collect();
        t.write(rows(Step::ChatsRenumbered, batch)).await.unwrap();
    };
    tokio::join!(live, import);
    let tally = t.tally().await.unwrap();
    assert_eq!((tally.imported(Table::Chats), tally.imported(Table::Messages)), (22, 200));
    t.close().await.unwrap();
    s.close().await;

    let pg = chatd_pg_testing::TestPostgres::shared();
    let off = pg
        .psql(
            &url,
            "SELECT (SELECT count(*) FROM chats c WHERE c.messages_count <> \
             (SELECT count(*) FROM messages m WHERE m.chat_id = c.id) OR c.last_message_number <> \
             (SELECT coalesce(max(number), 0) FROM messages m WHERE m.chat_id = c.id)) \
             + (SELECT count(*) FROM applications a WHERE a.chats_count <> \
             (SELECT count(*) FROM chats c WHERE c.application_id = a.id) OR a.last_chat_number <> \
             (SELECT max(number) FROM chats c WHERE c.application_id = a.id))",
        )
        .unwrap();
    assert_eq!(off.trim(), "0", "parents whose count or last number is not their rows'");
    let rows = pg.psql(&url, "SELECT count(*) FROM messages").unwrap();
    assert_eq!(rows.trim(), "500");
    let chats = pg.psql(&url, "SELECT count(*) FROM chats").unwrap();
    assert_eq!(chats.trim(), "32");
    let deadlocks =
        pg.psql(&url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").unwrap();
    assert_eq!(deadlocks.trim(), "0");
}
