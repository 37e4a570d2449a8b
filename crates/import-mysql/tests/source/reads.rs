//! What the source reads: rows in id order with their nulls, `after`, by id, counts, exact
//! milliseconds whatever the server's time zone, long and 4-byte UTF-8 text, integers of
//! every width and sign, and one snapshot for the whole import.

use chatd_core::Timestamp;
use chatd_core::import::{LegacyApplication, LegacyChat, LegacyMessage, LegacySource, Table};
use chatd_mariadb_testing::{MYSQL_URL_ENV, TestMariaDb};
use futures::StreamExt as _;

use super::{all, assert_one_line_without_password, connect, database_of, old_database, server_of};

/// Rows inserted out of id order, with every column that may be null null somewhere, and
/// times at the edges of milliseconds.
const ROWS: &str = "
INSERT INTO applications (id, name, access_token, created_at, updated_at, chat_count) VALUES
  (5, 'five', 'tok5', '2021-06-30 23:59:59.999999', '2021-07-01 00:00:00', 0),
  (1, 'one', 'tok1', '2020-01-02 03:04:05.678999', '2020-01-02 03:04:06.000001', 2),
  (2, NULL, NULL, '1970-01-01 00:00:00.001', '2038-01-19 03:14:08.123456', NULL);
INSERT INTO chats (id, number, application_id, created_at, updated_at, message_count) VALUES
  (12, 1, 2, '2022-02-03 04:05:06.789', '2022-02-03 04:05:07.5', 0),
  (10, 1, 1, '2022-02-03 04:05:06.789', '2022-02-03 04:05:07.5', 3),
  (11, NULL, 1, '2022-02-03 04:05:06.789', '2022-02-03 04:05:07.5', NULL);
INSERT INTO messages (id, number, body, chat_id, created_at, updated_at) VALUES
  (103, 1, 'crab 🦀', 11, '2022-02-03 04:05:06.789', '2022-02-03 04:05:07.5'),
  (100, 1, 'hello', 10, '2022-02-03 04:05:06.789', '2022-02-03 04:05:07.5'),
  (101, NULL, NULL, 10, '2022-02-03 04:05:06.789', '2022-02-03 04:05:07.5'),
  (102, 1, 'same number', 10, '2022-02-03 04:05:06.789', '2022-02-03 04:05:07.5');
";

/// `2022-02-03 04:05:06.789` and `2022-02-03 04:05:07.5` UTC.
const CREATED: i64 = 1_643_861_106_789;
const UPDATED: i64 = 1_643_861_107_500;

fn at(ms: i64) -> Option<Timestamp> {
    Some(Timestamp::from_millis(ms))
}

fn applications() -> Vec<LegacyApplication> {
    let app =
        |id, name: Option<&str>, token: Option<&str>, chat_count, created_at, updated_at| LegacyApplication {
            id,
            name: name.map(str::to_owned),
            token: token.map(str::to_owned),
            chat_count,
            created_at: at(created_at),
            updated_at: at(updated_at),
        };
    vec![
        app(1, Some("one"), Some("tok1"), Some(2), 1_577_934_245_678, 1_577_934_246_000),
        app(2, None, None, None, 1, 2_147_483_648_123),
        app(5, Some("five"), Some("tok5"), Some(0), 1_625_097_599_999, 1_625_097_600_000),
    ]
}

fn chats() -> Vec<LegacyChat> {
    let chat = |id, application_id, number, message_count| LegacyChat {
        id,
        application_id,
        number,
        message_count,
        created_at: at(CREATED),
        updated_at: at(UPDATED),
    };
    vec![chat(10, 1, Some(1), Some(3)), chat(11, 1, None, None), chat(12, 2, Some(1), Some(0))]
}

fn messages() -> Vec<LegacyMessage> {
    let message = |id, chat_id, number, body: Option<&str>| LegacyMessage {
        id,
        chat_id,
        number,
        body: body.map(str::to_owned),
        created_at: at(CREATED),
        updated_at: at(UPDATED),
    };
    vec![
        message(100, 10, Some(1), Some("hello")),
        message(101, 10, None, None),
        message(102, 10, Some(1), Some("same number")),
        message(103, 11, Some(1), Some("crab 🦀")),
    ]
}

#[tokio::test]
async fn rows_come_in_id_order_with_their_nulls() {
    let mariadb = TestMariaDb::shared();
    let url = old_database(mariadb, ROWS);
    let mut source = connect(&url).await;

    assert_eq!(all(source.applications(0)).await, applications());
    assert_eq!(all(source.chats(0)).await, chats());
    assert_eq!(all(source.messages(0)).await, messages());
    assert_eq!(source.name(), format!("{}/{}", server_of(&url), database_of(&url)));
}

#[tokio::test]
async fn after_skips_and_counts_agree() {
    let mariadb = TestMariaDb::shared();
    let url = old_database(mariadb, ROWS);
    let mut source = connect(&url).await;

    assert_eq!(all(source.applications(1)).await, applications()[1..]);
    assert_eq!(all(source.chats(11)).await, chats()[2..]);
    assert_eq!(all(source.messages(101)).await, messages()[2..]);
    assert!(all(source.messages(103)).await.is_empty());
    // A stream left after its first row does not stop the reads that follow.
    let first = source.messages(0).next().await.expect("a row").expect("readable");
    assert_eq!(first, messages()[0]);
    let counts = [
        (Table::Applications, 0, 3),
        (Table::Applications, 2, 1),
        (Table::Chats, 0, 3),
        (Table::Chats, 12, 0),
        (Table::Messages, 0, 4),
        (Table::Messages, 101, 2),
    ];
    for (table, after, expected) in counts {
        assert_eq!(source.count(table, after).await.expect("counted"), expected, "{table:?} after {after}");
    }
}

#[tokio::test]
async fn reads_by_id_come_in_id_order_and_skip_ids_not_there() {
    let mariadb = TestMariaDb::shared();
    let url = old_database(mariadb, ROWS);
    let mut source = connect(&url).await;

    let chats_read = source.chats_by_id(&[12, 10, 999]).await.expect("chats");
    assert_eq!(chats_read, [chats()[0].clone(), chats()[2].clone()]);
    let messages_read = source.messages_by_id(&[103, 101, 101]).await.expect("messages");
    assert_eq!(messages_read, [messages()[1].clone(), messages()[3].clone()]);
    assert!(source.messages_by_id(&[]).await.expect("none").is_empty());
    // More ids than one query takes: every row still comes, once, in order.
    let many: Vec<i64> = (0..25_000).rev().collect();
    let ids: Vec<i64> = source.messages_by_id(&many).await.expect("messages").iter().map(|m| m.id).collect();
    assert_eq!(ids, [100, 101, 102, 103]);
}

#[tokio::test]
async fn a_long_body_and_4_byte_characters_come_back_intact() {
    let mariadb = TestMariaDb::shared();
    let body = format!("🦀{}🦀", "x".repeat(69_992));
    assert_eq!(body.len(), 70_000);
    let url = old_database(
        mariadb,
        &format!(
            "ALTER TABLE messages MODIFY body MEDIUMTEXT;
             INSERT INTO applications VALUES (1, '🦀 crabs', 'tok', NOW(6), NOW(6), 1);
             INSERT INTO chats VALUES (1, 1, 1, NOW(6), NOW(6), 1);
             INSERT INTO messages VALUES (1, 1, '{body}', 1, NOW(6), NOW(6));"
        ),
    );
    let mut source = connect(&url).await;

    let streamed = all(source.messages(0)).await;
    let by_id = source.messages_by_id(&[1]).await.expect("by id");
    let apps = all(source.applications(0)).await;

    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0].body.as_deref(), Some(body.as_str()));
    assert_eq!(by_id, streamed);
    assert_eq!(apps[0].name.as_deref(), Some("🦀 crabs"));
}

#[tokio::test]
async fn integers_of_every_width_and_sign_read_as_i64_and_too_large_ones_fail() {
    let mariadb = TestMariaDb::shared();
    let url = mariadb.fresh_database().expect("a database");
    let schema = "
        CREATE TABLE applications (id int unsigned PRIMARY KEY, name char(10), access_token tinytext,
          created_at timestamp(6) NULL DEFAULT NULL, updated_at datetime NULL, chat_count tinyint unsigned);
        CREATE TABLE chats (id bigint unsigned PRIMARY KEY, number smallint, application_id mediumint unsigned NOT NULL,
          created_at datetime(6), updated_at datetime(6), message_count int unsigned);
        CREATE TABLE messages (id bigint unsigned PRIMARY KEY, number tinyint, body longtext, chat_id int NOT NULL,
          created_at datetime(3), updated_at datetime);
        INSERT INTO applications VALUES (4294967295, 'max', NULL, NULL, NULL, 255);
        INSERT INTO chats VALUES (9223372036854775807, -32768, 16777215, NULL, NULL, 4294967295);
        INSERT INTO messages VALUES (9, -128, '', 1, '2022-02-03 04:05:06.789', '2022-02-03 04:05:07'),
          (9223372036854775808, 1, 'too large', 1, NULL, NULL);";
    mariadb.execute(&url, schema).expect("the schema");
    let mut source = connect(&url).await;

    let apps = all(source.applications(0)).await;
    let chats = all(source.chats(0)).await;
    let mut messages = source.messages(0);
    let first = messages.next().await.expect("a row").expect("readable");
    let second = messages.next().await.expect("a row").expect_err("above i64::MAX");
    drop(messages);

    let app = LegacyApplication {
        id: 4_294_967_295,
        name: Some("max".to_owned()),
        token: None,
        chat_count: Some(255),
        created_at: None,
        updated_at: None,
    };
    assert_eq!(apps, [app]);
    let chat = LegacyChat {
        id: i64::MAX,
        application_id: 16_777_215,
        number: Some(-32_768),
        message_count: Some(4_294_967_295),
        created_at: None,
        updated_at: None,
    };
    assert_eq!(chats, [chat]);
    assert_eq!((first.id, first.number, first.body.as_deref()), (9, Some(-128), Some("")));
    assert_eq!((first.created_at, first.updated_at), (at(CREATED), at(1_643_861_107_000)));
    let message = second.to_string();
    assert!(message.starts_with("cannot read message 9223372036854775808 of "), "{message}");
    assert!(message.contains("`id` holds 9223372036854775808"), "{message}");
    assert_one_line_without_password(mariadb, &message);
}

#[tokio::test]
async fn the_whole_import_reads_one_snapshot() {
    let mariadb = TestMariaDb::shared();
    let url = old_database(mariadb, ROWS);
    let mut source = connect(&url).await;
    assert_eq!(source.count(Table::Messages, 0).await.expect("counted"), 4);

    let later = "INSERT INTO messages VALUES (104, 2, 'later', 10, NOW(6), NOW(6));
                 UPDATE messages SET body = 'edited' WHERE id = 100; DELETE FROM messages WHERE id = 103;";
    mariadb.execute(&url, later).expect("the old system writes on");

    assert_eq!(source.count(Table::Messages, 0).await.expect("counted"), 4);
    assert_eq!(all(source.messages(0)).await, messages());
    assert_eq!(
        source.messages_by_id(&[100, 103, 104]).await.expect("by id"),
        [messages()[0].clone(), messages()[3].clone()]
    );
    let mut fresh = connect(&url).await;
    assert_eq!(fresh.count(Table::Messages, 0).await.expect("counted"), 4);
    let ids: Vec<i64> = all(fresh.messages(0)).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, [100, 101, 102, 104]);
}

/// Times read exactly whatever the server's time zone, from `datetime` (as Rails writes it)
/// and from `timestamp` (written, as Rails does, in a UTC session); then the server dies
/// under an open source, which fails on one line naming it.
#[tokio::test]
async fn times_are_exact_milliseconds_whatever_the_servers_time_zone() {
    let mut mariadb = TestMariaDb::start().expect("a server of this test's own");
    let owned = std::env::var(MYSQL_URL_ENV).map_or(true, |url| url.is_empty());
    if owned {
        mariadb.execute(&mariadb.url_of(""), "SET GLOBAL time_zone = '+05:30'").expect("a zone not UTC");
    } else {
        eprintln!("{MYSQL_URL_ENV} is set: the server's time zone is left as it is");
    }
    let url = old_database(
        &mariadb,
        &format!(
            "ALTER TABLE messages MODIFY created_at timestamp(6) NULL DEFAULT NULL;
             SET time_zone = '+00:00';
             {ROWS}"
        ),
    );
    if owned {
        let zone = mariadb.execute(&url, "SELECT @@global.time_zone, @@session.time_zone").expect("the zone");
        assert_eq!(zone, "+05:30\t+05:30\n");
    }
    let mut source = connect(&url).await;

    assert_eq!(all(source.applications(0)).await, applications());
    assert_eq!(all(source.messages(0)).await, messages());
    assert_eq!(source.messages_by_id(&[100]).await.expect("by id"), messages()[..1]);

    if owned {
        mariadb.kill().expect("killed");
        let error = source.count(Table::Chats, 0).await.expect_err("the server is gone").to_string();
        assert!(error.contains(&format!("{}/{}", server_of(&url), database_of(&url))), "{error}");
        assert!(error.contains("`chats`"), "{error}");
        assert_one_line_without_password(&mariadb, &error);
    }
}
