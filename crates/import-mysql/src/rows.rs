//! The queries that read the old tables, and their rows decoded into the legacy records.
//!
//! Times are computed by the server as microseconds since 1970-01-01 00:00:00 with
//! `TIMESTAMPDIFF`, then cut to milliseconds: for a `datetime` column (Rails' type, which
//! holds UTC without saying so) this is plain calendar arithmetic whatever the session's time
//! zone; for a `timestamp` column it depends on the session's time zone, which the source
//! sets to UTC. A time the server cannot compute (a zero date) reads as null.
//!
//! Integers are read whatever their width and sign: signed ones as `i64`, unsigned ones as
//! `u64` and then converted, so that a value above `i64::MAX` is an error, never a wrap.

use chatd_core::Timestamp;
use chatd_core::import::{LegacyApplication, LegacyChat, LegacyMessage, Table};
use sqlx::mysql::MySqlRow;
use sqlx::{Column as _, Row};

/// The milliseconds since the epoch of a `datetime`/`timestamp` column, named as the column.
macro_rules! millis {
    ($column:literal) => {
        concat!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', ", $column, ") DIV 1000 AS ", $column)
    };
}

/// `SELECT … FROM table` with the columns [`application`], [`chat`] and [`message`] decode:
/// the table's own, then the two times.
macro_rules! select {
    (applications) => {
        select!("id, name, access_token, chat_count", "applications")
    };
    (chats) => {
        select!("id, application_id, number, message_count", "chats")
    };
    (messages) => {
        select!("id, chat_id, number, body", "messages")
    };
    ($columns:literal, $table:literal) => {
        concat!(
            "SELECT ",
            $columns,
            ", ",
            millis!("created_at"),
            ", ",
            millis!("updated_at"),
            " FROM ",
            $table
        )
    };
}

/// Each table's rows above an id, in id order (streamed).
pub(crate) const APPLICATIONS_AFTER: &str = concat!(select!(applications), " WHERE id > ? ORDER BY id");
pub(crate) const CHATS_AFTER: &str = concat!(select!(chats), " WHERE id > ? ORDER BY id");
pub(crate) const MESSAGES_AFTER: &str = concat!(select!(messages), " WHERE id > ? ORDER BY id");

/// Chats and messages by id: followed by [`by_id`]'s condition.
pub(crate) const CHATS: &str = select!(chats);
pub(crate) const MESSAGES: &str = select!(messages);

/// The condition and order of a read of `ids` rows by primary key.
pub(crate) fn by_id(select: &str, ids: usize) -> String {
    let mut sql = String::with_capacity(select.len() + 40 + 2 * ids);
    sql.push_str(select);
    sql.push_str(" WHERE id IN (");
    for i in 0..ids {
        sql.push_str(if i == 0 { "?" } else { ",?" });
    }
    sql.push_str(") ORDER BY id");
    sql
}

/// The rows of `table` above an id.
pub(crate) fn count(table: Table) -> &'static str {
    match table {
        Table::Applications => "SELECT COUNT(*) FROM applications WHERE id > ?",
        Table::Chats => "SELECT COUNT(*) FROM chats WHERE id > ?",
        Table::Messages => "SELECT COUNT(*) FROM messages WHERE id > ?",
    }
}

/// A row of [`APPLICATIONS_AFTER`].
pub(crate) fn application(row: &MySqlRow) -> Result<LegacyApplication, String> {
    Ok(LegacyApplication {
        id: required(row, 0)?,
        name: text(row, 1)?,
        token: text(row, 2)?,
        chat_count: int(row, 3)?,
        created_at: time(row, 4)?,
        updated_at: time(row, 5)?,
    })
}

/// A row of [`CHATS`].
pub(crate) fn chat(row: &MySqlRow) -> Result<LegacyChat, String> {
    Ok(LegacyChat {
        id: required(row, 0)?,
        application_id: required(row, 1)?,
        number: int(row, 2)?,
        message_count: int(row, 3)?,
        created_at: time(row, 4)?,
        updated_at: time(row, 5)?,
    })
}

/// A row of [`MESSAGES`].
pub(crate) fn message(row: &MySqlRow) -> Result<LegacyMessage, String> {
    Ok(LegacyMessage {
        id: required(row, 0)?,
        chat_id: required(row, 1)?,
        number: int(row, 2)?,
        body: text(row, 3)?,
        created_at: time(row, 4)?,
        updated_at: time(row, 5)?,
    })
}

/// Column `index` as an integer that may be null, whatever its width and sign.
fn int(row: &MySqlRow, index: usize) -> Result<Option<i64>, String> {
    let signed = row.try_get::<Option<i64>, _>(index);
    let value = match signed {
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let unsigned: Option<u64> = row.try_get(index).map_err(|e| column_error(row, index, &e))?;
            unsigned.map(i64::try_from).transpose().map_err(|_| {
                format!(
                    "`{}` holds {}, above the largest integer chatd stores ({})",
                    name(row, index),
                    unsigned.unwrap_or(0),
                    i64::MAX
                )
            })?
        }
        other => other.map_err(|e| column_error(row, index, &e))?,
    };
    Ok(value)
}

/// Column `index` as an integer that must not be null (an id or a parent's id).
fn required(row: &MySqlRow, index: usize) -> Result<i64, String> {
    int(row, index)?.ok_or_else(|| format!("`{}` is null", name(row, index)))
}

/// Column `index` as text that may be null.
fn text(row: &MySqlRow, index: usize) -> Result<Option<String>, String> {
    row.try_get(index).map_err(|e| column_error(row, index, &e))
}

/// Column `index`, milliseconds since the epoch, as a time that may be null.
fn time(row: &MySqlRow, index: usize) -> Result<Option<Timestamp>, String> {
    Ok(int(row, index)?.map(Timestamp::from_millis))
}

fn name(row: &MySqlRow, index: usize) -> &str {
    row.columns().get(index).map_or("?", |column| column.name())
}

fn column_error(row: &MySqlRow, index: usize, error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::ColumnDecode { source, .. } => format!("`{}`: {source}", name(row, index)),
        other => format!("`{}`: {other}", name(row, index)),
    }
}
