//! `MySqlSource` against a real MariaDB (crates/mariadb-testing), a fresh database per test:
//! what it reads (`reads`) and how it fails (`failures`).

mod failures;
mod reads;

use chatd_core::import::{ImportError, LegacySource};
use chatd_import_mysql::{MySqlSource, RAILS_SCHEMA};
use chatd_mariadb_testing::TestMariaDb;
use futures::stream::{BoxStream, TryStreamExt as _};

/// A fresh database on `mariadb` holding the old system's schema, and then `sql`.
fn old_database(mariadb: &TestMariaDb, sql: &str) -> String {
    let url = mariadb.fresh_database().expect("a database");
    mariadb.execute(&url, RAILS_SCHEMA).expect("the Rails schema");
    mariadb.execute(&url, sql).expect("the rows");
    url
}

async fn connect(url: &str) -> MySqlSource {
    MySqlSource::connect(url).await.unwrap_or_else(|error| panic!("connected: {error}"))
}

/// Every item of a stream, failing at the first error.
async fn all<T>(stream: BoxStream<'_, Result<T, ImportError>>) -> Vec<T> {
    stream.try_collect().await.unwrap_or_else(|error| panic!("read: {error}"))
}

/// The message of a failed connect, checked to be one line without the server's password.
async fn connect_error(mariadb: &TestMariaDb, url: &str) -> String {
    let error = match MySqlSource::connect(url).await {
        Ok(source) => panic!("connected to {}", source.name()),
        Err(error) => error,
    };
    let ImportError::Source(message) = &error else { panic!("not a source error: {error:?}") };
    assert_eq!(*message, error.to_string());
    assert_one_line_without_password(mariadb, message);
    error.to_string()
}

fn assert_one_line_without_password(mariadb: &TestMariaDb, message: &str) {
    assert!(!message.contains('\n'), "more than one line: {message:?}");
    let password = mariadb.password().expect("the server has a password");
    assert!(!message.contains(&password), "the password is in {message:?}");
}

/// The database's name in a URL from `fresh_database`.
fn database_of(url: &str) -> &str {
    url.rsplit('/').next().expect("a database")
}

/// The `host:port` of a URL from `fresh_database`.
fn server_of(url: &str) -> &str {
    let after_user = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    after_user.split('/').next().expect("host:port")
}
