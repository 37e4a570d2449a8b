//! The source of `chatd import` (SPEC §9): the old Rails system's MySQL or MariaDB
//! database, read as chatd's [`LegacySource`].
//!
//! [`MySqlSource::connect`] opens one connection, checks that the database holds the
//! columns the import reads (see `schema`), and starts a read-only transaction WITH
//! CONSISTENT SNAPSHOT: every count and every row of the import comes from the one moment
//! the transaction began, so rows that the old system writes meanwhile cannot make a count
//! disagree with its rows or a renumbering read a row the first pass did not see. Each table
//! is read by one streamed query in primary-key order (see `rows`), so memory stays flat
//! whatever the tables hold; while the importer writes a batch it stops reading, and the
//! server waits for it (the session's network timeouts are raised for that).
//!
//! Every failure is an [`ImportError::Source`] of one line that names what is wrong (the
//! server, the user, the database, the table or the column) and never the password.

#![forbid(unsafe_code)]

mod errors;
mod rows;
mod schema;

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use chatd_core::import::{ImportError, LegacyApplication, LegacyChat, LegacyMessage, LegacySource, Table};
use futures::stream::{BoxStream, StreamExt as _};
use sqlx::mysql::{MySqlConnectOptions, MySqlRow};
use sqlx::{ConnectOptions as _, Connection as _, MySqlConnection};

pub use schema::RAILS_SCHEMA;

use errors::{ConnectError, one_line};

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Raises the session's network timeouts: the server waits up to an hour for the importer
/// to read on while it writes a batch, and keeps the connection a day between statements.
/// The isolation level is the one a consistent snapshot needs.
const SESSION: [&str; 2] = [
    "SET SESSION net_write_timeout = 3600, SESSION net_read_timeout = 3600, SESSION wait_timeout = 86400",
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
];

/// The one snapshot all reads of an import come from.
const SNAPSHOT: &str = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";

/// Most ids in one by-id query (a prepared statement takes at most 65,535 parameters).
const IDS_PER_QUERY: usize = 10_000;

/// The old system's database, read in one snapshot over one connection.
#[derive(Debug)]
pub struct MySqlSource {
    conn: MySqlConnection,
    /// `host:port/database`: the source's name in the target and in messages.
    name: String,
}

impl MySqlSource {
    /// Connects to `url` (`mysql://user:password@host:port/database`, as sqlx's MySQL
    /// driver reads it), checks the old system's schema and starts the snapshot that every
    /// read of this source comes from. Each failure is one line naming what is wrong.
    pub async fn connect(url: &str) -> Result<Self, ImportError> {
        let password = errors::password_in(url);
        let scrub = |line: String| ImportError::Source(errors::scrub(&line, &password));
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(scrub("the source is not a mysql:// URL".to_owned()));
        }
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| scrub(format!("the source URL cannot be read: {}", one_line(&e))))?
            // Explicit, whatever sqlx's default: `timestamp` columns read as UTC.
            .timezone(Some("+00:00".to_owned()));
        let endpoint = errors::Endpoint::of(&options);
        let Some(database) = options.get_database().map(str::to_owned) else {
            return Err(scrub(format!(
                "the source URL names no database: add it after the server (mysql://…@{}/DATABASE)",
                endpoint.server
            )));
        };
        let name = format!("{}/{database}", endpoint.server);
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => {
                return Err(scrub(endpoint.connect_error(ConnectError::Sqlx(error), &database)));
            }
            Err(_) => {
                return Err(scrub(endpoint.connect_error(ConnectError::Timeout(CONNECT_TIMEOUT), &database)));
            }
        };
        let lost = |e: sqlx::Error| scrub(format!("preparing to read {name} failed: {}", one_line(&e)));
        for statement in SESSION {
            sqlx::raw_sql(statement).execute(&mut conn).await.map_err(lost)?;
        }
        if let Some(problem) = schema::problem_in(&mut conn, &database).await.map_err(lost)? {
            let _ = conn.close().await;
            return Err(scrub(problem));
        }
        sqlx::raw_sql(SNAPSHOT).execute(&mut conn).await.map_err(lost)?;
        Ok(MySqlSource { conn, name })
    }

    /// One streamed query of the rows above `after`, decoded by `decode`.
    fn stream<T: Send + 'static>(
        &mut self,
        table: Table,
        sql: &'static str,
        after: i64,
        decode: fn(&MySqlRow) -> Result<T, String>,
    ) -> BoxStream<'_, Result<T, ImportError>> {
        let name = &self.name;
        sqlx::query(sql)
            .bind(after)
            .fetch(&mut self.conn)
            .map(move |row| match row {
                Ok(row) => decode(&row).map_err(|e| bad_row(name, table, &row, &e)),
                Err(e) => Err(read_error(name, table, &e)),
            })
            .boxed()
    }

    /// The rows of `table` with these ids, in id order, decoded by `decode`.
    async fn by_id<T>(
        &mut self,
        table: Table,
        select: &'static str,
        ids: &[i64],
        decode: fn(&MySqlRow) -> Result<T, String>,
    ) -> Result<Vec<T>, ImportError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let sql = rows::by_id(select, chunk.len());
            let query = chunk.iter().fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |query, id| query.bind(*id));
            let rows = query.persistent(false).fetch_all(&mut self.conn).await;
            for row in rows.map_err(|e| read_error(&self.name, table, &e))? {
                found.push(decode(&row).map_err(|e| bad_row(&self.name, table, &row, &e))?);
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl LegacySource for MySqlSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn count(&mut self, table: Table, after: i64) -> Result<u64, ImportError> {
        let count: i64 = sqlx::query_scalar(rows::count(table))
            .bind(after)
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| read_error(&self.name, table, &e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn applications(&mut self, after: i64) -> BoxStream<'_, Result<LegacyApplication, ImportError>> {
        self.stream(Table::Applications, rows::APPLICATIONS_AFTER, after, rows::application)
    }

    fn chats(&mut self, after: i64) -> BoxStream<'_, Result<LegacyChat, ImportError>> {
        self.stream(Table::Chats, rows::CHATS_AFTER, after, rows::chat)
    }

    fn messages(&mut self, after: i64) -> BoxStream<'_, Result<LegacyMessage, ImportError>> {
        self.stream(Table::Messages, rows::MESSAGES_AFTER, after, rows::message)
    }

    async fn chats_by_id(&mut self, ids: &[i64]) -> Result<Vec<LegacyChat>, ImportError> {
        self.by_id(Table::Chats, rows::CHATS, ids, rows::chat).await
    }

    async fn messages_by_id(&mut self, ids: &[i64]) -> Result<Vec<LegacyMessage>, ImportError> {
        self.by_id(Table::Messages, rows::MESSAGES, ids, rows::message).await
    }
}

/// A read of `table` that failed (the server went away, a timeout, …), as one line.
fn read_error(source: &str, table: Table, error: &sqlx::Error) -> ImportError {
    ImportError::Source(format!("reading `{}` from {source} failed: {}", table.as_str(), one_line(error)))
}

/// A row that cannot be decoded, named by its id when it has one.
fn bad_row(source: &str, table: Table, row: &MySqlRow, problem: &str) -> ImportError {
    use sqlx::Row as _;
    let signed = row.try_get::<i64, _>(0).map(|id| id.to_string());
    let id =
        signed.or_else(|_| row.try_get::<u64, _>(0).map(|id| id.to_string())).unwrap_or_else(|_| "?".into());
    ImportError::Source(one_line(&format!("cannot read {} {id} of {source}: {problem}", table.singular())))
}
