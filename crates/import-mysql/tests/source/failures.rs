//! How the source fails: each case is one line that names what is wrong and holds no
//! password (checked by `connect_error`).

use std::net::TcpListener;

use chatd_core::import::LegacySource as _;
use chatd_mariadb_testing::TestMariaDb;

use super::{connect, connect_error, database_of, old_database, server_of};

#[tokio::test]
async fn an_unreachable_server_is_named_with_the_os_error() {
    let mariadb = TestMariaDb::shared();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let password = mariadb.password().expect("a password");

    let message = connect_error(mariadb, &format!("mysql://root:{password}@127.0.0.1:{port}/old")).await;

    assert!(
        message.starts_with(&format!("cannot reach the MySQL server at 127.0.0.1:{port}: ")),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
}

#[tokio::test]
async fn wrong_credentials_name_the_user_and_not_the_password() {
    let mariadb = TestMariaDb::shared();
    let url = old_database(mariadb, "");
    let database = database_of(&url);
    let password = mariadb.password().expect("a password");

    let wrong_password = connect_error(mariadb, &mariadb.url_as(database, "root", "wrong-secret-7")).await;
    let wrong_user = connect_error(mariadb, &mariadb.url_as(database, "nobody", &password)).await;

    let server = server_of(&url);
    assert_eq!(
        wrong_password,
        format!("the MySQL server at {server} refused the user `root`: wrong user name or password")
    );
    assert!(wrong_user.contains("`nobody`"), "{wrong_user}");
    assert!(!wrong_password.contains("wrong-secret-7"), "{wrong_password}");
}

#[tokio::test]
async fn an_unknown_database_or_none_is_named() {
    let mariadb = TestMariaDb::shared();
    let url = mariadb.url_of("no_such_database_here");

    let unknown = connect_error(mariadb, &url).await;
    let none = connect_error(mariadb, &mariadb.url_of("")).await;

    assert_eq!(
        unknown,
        format!("the MySQL server at {} has no database `no_such_database_here`", server_of(&url))
    );
    assert!(none.starts_with("the source URL names no database"), "{none}");
}

#[tokio::test]
async fn a_url_of_another_kind_is_refused_without_quoting_it() {
    let mariadb = TestMariaDb::shared();
    let password = mariadb.password().expect("a password");

    let postgres = connect_error(mariadb, &format!("postgres://root:{password}@127.0.0.1/old")).await;
    let bad_port = connect_error(mariadb, &format!("mysql://root:{password}@127.0.0.1:port/old")).await;

    assert_eq!(postgres, "the source is not a mysql:// URL");
    assert!(bad_port.starts_with("the source URL cannot be read"), "{bad_port}");
}

#[tokio::test]
async fn a_missing_table_is_named() {
    let mariadb = TestMariaDb::shared();
    let url = old_database(mariadb, "DROP TABLE messages");

    let message = connect_error(mariadb, &url).await;

    let database = database_of(&url);
    assert_eq!(message, format!("the database {database} has no table `messages`: is it the old system's?"));
}

#[tokio::test]
async fn a_missing_column_is_named() {
    let mariadb = TestMariaDb::shared();
    let url = old_database(mariadb, "ALTER TABLE chats DROP COLUMN message_count");

    let message = connect_error(mariadb, &url).await;

    let database = database_of(&url);
    assert_eq!(
        message,
        format!(
            "the table `chats` of the database {database} has no column `message_count`: is it the old system's?"
        )
    );
}

#[tokio::test]
async fn a_column_of_another_type_is_named_with_its_type() {
    let mariadb = TestMariaDb::shared();
    let cases = [
        ("ALTER TABLE messages MODIFY body int", "`messages`.`body` is int, expected a text type"),
        (
            "ALTER TABLE applications MODIFY chat_count varchar(10)",
            "`applications`.`chat_count` is varchar, expected an integer type",
        ),
        (
            "ALTER TABLE chats MODIFY updated_at date",
            "`chats`.`updated_at` is date, expected datetime or timestamp",
        ),
        (
            "ALTER TABLE applications MODIFY access_token varbinary(255)",
            "`applications`.`access_token` is varbinary, expected a text type",
        ),
    ];
    for (change, expected) in cases {
        let url = old_database(mariadb, change);
        assert_eq!(connect_error(mariadb, &url).await, expected, "after {change}");
    }
}

#[tokio::test]
async fn the_rails_schema_itself_is_accepted() {
    let mariadb = TestMariaDb::shared();
    let url = old_database(mariadb, "");

    let source = connect(&url).await;

    assert_eq!(source.name(), format!("{}/{}", server_of(&url), database_of(&url)));
}
