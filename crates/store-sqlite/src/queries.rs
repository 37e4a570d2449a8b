//! The SQL of the store. Write functions run on the writer thread inside its batch
//! transaction; read functions run on a read-only connection. Every lookup and list is
//! served by an index (see `schema.rs`); none scans a table or counts rows.

use std::time::Duration;

use chatd_core::error::StoreResult;
use chatd_core::feed::EventKind;
use chatd_core::search::{Change, ChatKey};
use chatd_core::{
    AppName, AppToken, Application, Chat, ChatNumber, Idempotent, Listed, Message, MessageBody,
    MessageNumber, NumberBound, Page, StoreError, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::connection::map_err;
use crate::writer::WriteCtx;

/// A page query in both directions, indexed by `Order as usize`.
macro_rules! ordered_pair {
    ($sql:literal) => {
        [concat!($sql, " ASC LIMIT ?4"), concat!($sql, " DESC LIMIT ?4")]
    };
}

// ---------------------------------------------------------------- statements

const LIST_APPLICATIONS: [&str; 2] = ordered_pair!(
    "SELECT token, name, chats_count, created_at, updated_at FROM applications \
    WHERE ?1 = ?1 AND id BETWEEN ?2 AND ?3 ORDER BY id"
);
const LIST_CHATS: [&str; 2] = ordered_pair!(
    "SELECT number, messages_count, created_at, updated_at, last_message_number FROM chats \
    WHERE application_id = ?1 AND number BETWEEN ?2 AND ?3 ORDER BY number"
);
const LIST_MESSAGES: [&str; 2] = ordered_pair!(
    "SELECT number, body, created_at, updated_at FROM messages \
    WHERE chat_id = ?1 AND number BETWEEN ?2 AND ?3 ORDER BY number"
);
const APPLICATION_ID: &str = "SELECT id FROM applications WHERE token = ?1";
const CHAT_ROW: &str = "SELECT c.id, c.last_message_number, a.id FROM applications a \
    JOIN chats c ON c.application_id = a.id AND c.number = ?2 WHERE a.token = ?1";
const INSERT_APPLICATION: &str =
    "INSERT INTO applications (token, name, chats_count, created_at, updated_at) VALUES (?1, ?2, 0, ?3, ?3)";
const RENAME_APPLICATION: &str =
    "UPDATE applications SET name = ?2, updated_at = ?3 WHERE token = ?1 RETURNING chats_count, created_at";
const APPLICATION_FOR_CHAT: &str = "SELECT id, last_chat_number FROM applications WHERE token = ?1";
const INSERT_CHAT: &str = "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) VALUES (?1, ?2, 0, ?3, ?3)";
const BUMP_CHATS_COUNT: &str =
    "UPDATE applications SET chats_count = chats_count + 1, last_chat_number = ?2 WHERE id = ?1";
const INSERT_MESSAGE: &str = "INSERT INTO messages (chat_id, number, body, created_at, updated_at, change_seq, created_seq) \
    VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?5)";
const BUMP_MESSAGES_COUNT: &str =
    "UPDATE chats SET messages_count = messages_count + 1, last_message_number = ?2 WHERE id = ?1";
const LAST_CHAT_NUMBER: &str = "SELECT last_chat_number FROM applications WHERE id = ?1";
const LAST_MESSAGE_NUMBER: &str = "SELECT last_message_number FROM chats WHERE id = ?1";
const UPDATE_MESSAGE: &str = "UPDATE messages SET body = ?3, updated_at = ?4, change_seq = ?5 \
    WHERE chat_id = ?1 AND number = ?2 RETURNING created_at";
const FIND_KEY: &str = "SELECT fingerprint, resource, token, name, created_at FROM idempotency_keys \
    WHERE scope = ?1 AND key = ?2 AND created_at >= ?3";
// Replaces an expired key of the same name, which `FIND_KEY` no longer sees.
const STORE_KEY: &str = "INSERT OR REPLACE INTO idempotency_keys \
    (scope, key, fingerprint, created_at, resource, token, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const SWEEP_KEYS: &str = "DELETE FROM idempotency_keys WHERE (scope, key) IN \
    (SELECT scope, key FROM idempotency_keys WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)";
const GET_APPLICATION: &str =
    "SELECT token, name, chats_count, created_at, updated_at FROM applications WHERE token = ?1";
const GET_CHAT: &str = "SELECT c.number, c.messages_count, c.created_at, c.updated_at, c.last_message_number \
    FROM applications a \
    JOIN chats c ON c.application_id = a.id AND c.number = ?2 WHERE a.token = ?1";
const MESSAGES_BY_NUMBERS: &str = "SELECT number, body, created_at, updated_at FROM messages \
    WHERE chat_id = ?1 AND number IN (SELECT value FROM json_each(?2))";
const CHANGES_AFTER: &str = "SELECT change_seq, id, chat_id, number, body, change_seq <> created_seq FROM messages \
    WHERE change_seq > ?1 ORDER BY change_seq LIMIT ?2";
const LAST_SEQ: &str = "SELECT coalesce(max(change_seq), 0) FROM messages";
const GET_MESSAGE: &str = "SELECT m.number, m.body, m.created_at, m.updated_at FROM applications a \
    JOIN chats c ON c.application_id = a.id AND c.number = ?2 \
    JOIN messages m ON m.chat_id = c.id AND m.number = ?3 WHERE a.token = ?1";

/// `?` for rusqlite results inside functions that return [`StoreResult`].
trait Db<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> StoreResult<T> {
        self.map_err(map_err)
    }
}

/// Reads a positive number column into its domain type.
fn number<N: TryFrom<i64>>(row: &Row<'_>, idx: usize) -> rusqlite::Result<N> {
    let n: i64 = row.get(idx)?;
    N::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, n))
}

fn time(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    row.get(idx).map(Timestamp::from_millis)
}

// ---------------------------------------------------------------- lookups shared by both sides

fn application_id(db: &Connection, token: &AppToken) -> StoreResult<i64> {
    db.prepare_cached(APPLICATION_ID)
        .and_then(|mut s| s.query_row([token.as_str()], |r| r.get(0)).optional())
        .db()?
        .ok_or(StoreError::ApplicationNotFound)
}

/// The chat's row id, message count and application's row id, or which of application and
/// chat is missing.
fn chat_row(db: &Connection, token: &AppToken, chat: ChatNumber) -> StoreResult<(i64, i64, i64)> {
    let found = db
        .prepare_cached(CHAT_ROW)
        .and_then(|mut s| {
            s.query_row(params![token.as_str(), chat.get()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .db()?;
    match found {
        Some(row) => Ok(row),
        None => application_id(db, token).and(Err(StoreError::ChatNotFound)),
    }
}

// ---------------------------------------------------------------- idempotency keys (writer thread)

/// The scope of the keys of application creates; applications' row ids start at 1.
const APPLICATIONS_SCOPE: i64 = 0;

/// A create's `Idempotency-Key`, with how long keys are honoured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryKey<'a> {
    pub key: &'a Idempotent,
    pub window: Duration,
}

/// Keys stored before this instant (in milliseconds) are expired in the batch of `ctx`.
fn cutoff(ctx: &WriteCtx, window: Duration) -> i64 {
    let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    ctx.now.as_millis().saturating_sub(window)
}

/// What an honoured key names: the number it created, or the token and name of the
/// application it created; and when.
#[derive(Debug)]
struct Remembered {
    resource: i64,
    token: Option<String>,
    name: Option<String>,
    created_at: Timestamp,
}

/// What a create stores with its key: the number it created, or its application.
#[derive(Debug, Clone, Copy)]
enum Created<'a> {
    Number(i64),
    Application(&'a AppToken, &'a AppName),
}

/// What `key` names in `scope`, when it is honoured (younger than its window) and came with
/// the same parameters; `IdempotencyKeyReused` when it came with others. Writes nothing.
fn remembered(
    db: &Connection,
    ctx: &WriteCtx,
    scope: i64,
    key: RetryKey<'_>,
) -> StoreResult<Option<Remembered>> {
    let cutoff = cutoff(ctx, key.window);
    let key = key.key;
    let found = db
        .prepare_cached(FIND_KEY)
        .and_then(|mut s| {
            s.query_row(params![scope, key.key.as_str(), cutoff], |r| {
                let fingerprint: Vec<u8> = r.get(0)?;
                let remembered = Remembered {
                    resource: r.get(1)?,
                    token: r.get(2)?,
                    name: r.get(3)?,
                    created_at: time(r, 4)?,
                };
                Ok((fingerprint, remembered))
            })
            .optional()
        })
        .db()?;
    match found {
        None => Ok(None),
        Some((fingerprint, remembered)) if key.fingerprint.matches(&fingerprint) => Ok(Some(remembered)),
        Some(_) => Err(StoreError::IdempotencyKeyReused),
    }
}

/// Stores `key` as naming what it `created`, in the transaction that created it.
fn remember(
    db: &Connection,
    ctx: &WriteCtx,
    scope: i64,
    key: RetryKey<'_>,
    created: Created<'_>,
) -> StoreResult<()> {
    let RetryKey { key, .. } = key;
    let (resource, token, name) = match created {
        Created::Number(n) => (n, None, None),
        Created::Application(token, name) => (0, Some(token.as_str()), Some(name.as_str())),
    };
    let (fingerprint, now) = (key.fingerprint.as_bytes(), ctx.now.as_millis());
    let row = params![scope, key.key.as_str(), fingerprint, now, resource, token, name];
    db.prepare_cached(STORE_KEY).and_then(|mut s| s.execute(row)).db().map(drop)
}

/// Deletes up to `limit` keys older than `window`, oldest first; returns how many.
pub(crate) fn sweep_keys(
    db: &Connection,
    ctx: &WriteCtx,
    window: Duration,
    limit: usize,
) -> StoreResult<usize> {
    let cutoff = cutoff(ctx, window);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.prepare_cached(SWEEP_KEYS).and_then(|mut s| s.execute(params![cutoff, limit])).db()
}

// ---------------------------------------------------------------- writes (writer thread)

pub(crate) fn insert_application(
    db: &Connection,
    ctx: &mut WriteCtx,
    token: AppToken,
    name: AppName,
    key: Option<RetryKey<'_>>,
) -> StoreResult<Application> {
    if let Some(key) = key
        && let Some(first) = remembered(db, ctx, APPLICATIONS_SCOPE, key)?
    {
        // The first answer: the name it was created with, no chats, never updated.
        let bad = || StoreError::internal("a stored idempotency key does not fit its create");
        return Ok(Application {
            token: first.token.as_deref().and_then(AppToken::parse).ok_or_else(bad)?,
            name: first.name.ok_or_else(bad)?,
            chats_count: 0,
            created_at: first.created_at,
            updated_at: first.created_at,
        });
    }
    let now = ctx.now;
    db.prepare_cached(INSERT_APPLICATION)
        .and_then(|mut s| s.execute(params![token.as_str(), name.as_str(), now.as_millis()]))
        .db()?;
    if let Some(key) = key {
        remember(db, ctx, APPLICATIONS_SCOPE, key, Created::Application(&token, &name))?;
    }
    Ok(Application { token, name: name.into_inner(), chats_count: 0, created_at: now, updated_at: now })
}

pub(crate) fn rename_application(
    db: &Connection,
    ctx: &mut WriteCtx,
    token: &AppToken,
    name: &AppName,
) -> StoreResult<Application> {
    let now = ctx.now;
    db.prepare_cached(RENAME_APPLICATION)
        .and_then(|mut s| {
            s.query_row(params![token.as_str(), name.as_str(), now.as_millis()], |r| {
                Ok(Application {
                    token: token.clone(),
                    name: name.as_str().to_owned(),
                    chats_count: r.get(0)?,
                    created_at: time(r, 1)?,
                    updated_at: now,
                })
            })
            .optional()
        })
        .db()?
        .ok_or(StoreError::ApplicationNotFound)
}

pub(crate) fn insert_chat(
    db: &Connection,
    ctx: &mut WriteCtx,
    token: &AppToken,
    key: Option<RetryKey<'_>>,
) -> StoreResult<ChatNumber> {
    let (app_id, last): (i64, i64) = db
        .prepare_cached(APPLICATION_FOR_CHAT)
        .and_then(|mut s| s.query_row([token.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .db()?
        .ok_or(StoreError::ApplicationNotFound)?;
    once(db, ctx, app_id, key, |db, ctx| append_chat(db, ctx, app_id, last).map(|(number, _)| number))
}

/// Runs `create` unless `key` names an earlier create in the application `app_id`, whose
/// number it answers then; stores the key with what `create` made.
fn once<N>(
    db: &Connection,
    ctx: &mut WriteCtx,
    app_id: i64,
    key: Option<RetryKey<'_>>,
    create: impl FnOnce(&Connection, &mut WriteCtx) -> StoreResult<N>,
) -> StoreResult<N>
where
    N: TryFrom<i64> + Copy + Into<i64>,
    N::Error: std::error::Error + Send + Sync + 'static,
{
    let Some(key) = key else { return create(db, ctx) };
    if let Some(first) = remembered(db, ctx, app_id, key)? {
        return N::try_from(first.resource).map_err(StoreError::internal);
    }
    let number = create(db, ctx)?;
    remember(db, ctx, app_id, key, Created::Number(number.into()))?;
    Ok(number)
}

/// Adds chat number `last + 1` to the application whose row id is `app_id` and whose highest
/// chat number, read in this transaction, is `last`; counts it and makes it the highest.
/// Returns the new chat's number and row id. The writer and the bulk loader both number
/// chats here.
pub(crate) fn append_chat(
    db: &Connection,
    ctx: &mut WriteCtx,
    app_id: i64,
    last: i64,
) -> StoreResult<(ChatNumber, i64)> {
    let number = last + 1;
    let now = ctx.now.as_millis();
    db.prepare_cached(INSERT_CHAT).and_then(|mut s| s.execute(params![app_id, number, now])).db()?;
    let id = db.last_insert_rowid();
    db.prepare_cached(BUMP_CHATS_COUNT).and_then(|mut s| s.execute(params![app_id, number])).db()?;
    Ok((ChatNumber::try_from(number).map_err(StoreError::internal)?, id))
}

pub(crate) fn insert_message(
    db: &Connection,
    ctx: &mut WriteCtx,
    token: &AppToken,
    chat: ChatNumber,
    body: &MessageBody,
    key: Option<RetryKey<'_>>,
) -> StoreResult<MessageNumber> {
    let (chat_id, last, app_id) = chat_row(db, token, chat)?;
    once(db, ctx, app_id, key, |db, ctx| append_message(db, ctx, chat_id, last, body))
}

/// Adds message number `last + 1` to the chat whose row id is `chat_id` and whose highest
/// message number, read in this transaction, is `last`, stamped with the next change
/// sequence; counts it and makes it the highest. The writer and the bulk loader both number
/// messages here.
pub(crate) fn append_message(
    db: &Connection,
    ctx: &mut WriteCtx,
    chat_id: i64,
    last: i64,
    body: &MessageBody,
) -> StoreResult<MessageNumber> {
    let number = last + 1;
    let now = ctx.now.as_millis();
    let seq = ctx.next_seq();
    db.prepare_cached(INSERT_MESSAGE)
        .and_then(|mut s| s.execute(params![chat_id, number, body.as_str(), now, seq]))
        .db()?;
    db.prepare_cached(BUMP_MESSAGES_COUNT).and_then(|mut s| s.execute(params![chat_id, number])).db()?;
    let number = MessageNumber::try_from(number).map_err(StoreError::internal)?;
    let at = ctx.now;
    ctx.event(chat_id, EventKind::Message, || Message {
        number,
        body: body.as_str().to_owned(),
        created_at: at,
        updated_at: at,
    });
    Ok(number)
}

pub(crate) fn update_message(
    db: &Connection,
    ctx: &mut WriteCtx,
    token: &AppToken,
    chat: ChatNumber,
    number: MessageNumber,
    body: &MessageBody,
) -> StoreResult<Message> {
    let (chat_id, ..) = chat_row(db, token, chat)?;
    let now = ctx.now;
    let seq = ctx.next_seq();
    let message = db
        .prepare_cached(UPDATE_MESSAGE)
        .and_then(|mut s| {
            s.query_row(params![chat_id, number.get(), body.as_str(), now.as_millis(), seq], |r| {
                Ok(Message {
                    number,
                    body: body.as_str().to_owned(),
                    created_at: time(r, 0)?,
                    updated_at: now,
                })
            })
            .optional()
        })
        .db()?
        .ok_or(StoreError::MessageNotFound)?;
    ctx.event(chat_id, EventKind::Edit, || message.clone());
    Ok(message)
}

/// A write that changes nothing but still makes the commit write a page: rewrites the file
/// header's `application_id` (unused by chatd) with its own value. Tells `/ready` whether a
/// commit fits on the disk now.
pub(crate) fn probe_write(db: &Connection) -> StoreResult<()> {
    let id: i64 = db.query_row("PRAGMA application_id", [], |r| r.get(0)).db()?;
    db.execute_batch(&format!("PRAGMA application_id = {id}")).db()
}

// ---------------------------------------------------------------- highest numbers by row id (bulk loader)

/// The highest chat number of the application whose row id is `app_id`.
pub(crate) fn last_chat_number(db: &Connection, app_id: i64) -> StoreResult<i64> {
    by_id(db, LAST_CHAT_NUMBER, app_id)?.ok_or(StoreError::ApplicationNotFound)
}

/// The highest message number of the chat whose row id is `chat_id`.
pub(crate) fn last_message_number(db: &Connection, chat_id: i64) -> StoreResult<i64> {
    by_id(db, LAST_MESSAGE_NUMBER, chat_id)?.ok_or(StoreError::ChatNotFound)
}

fn by_id(db: &Connection, sql: &str, id: i64) -> StoreResult<Option<i64>> {
    db.prepare_cached(sql).and_then(|mut s| s.query_row([id], |r| r.get(0)).optional()).db()
}

// ---------------------------------------------------------------- search source and feed

pub(crate) fn chat_key(db: &Connection, token: &AppToken, chat: ChatNumber) -> StoreResult<ChatKey> {
    chat_row(db, token, chat).map(|(id, ..)| ChatKey(id))
}

pub(crate) fn messages_by_numbers(
    db: &Connection,
    chat: ChatKey,
    numbers: &[MessageNumber],
) -> StoreResult<Vec<Message>> {
    let list = numbers.iter().map(|n| n.get().to_string()).collect::<Vec<_>>().join(",");
    db.prepare_cached(MESSAGES_BY_NUMBERS)
        .and_then(|mut s| s.query_map(params![chat.0, format!("[{list}]")], message_from_row)?.collect())
        .db()
}

pub(crate) fn changes_after(db: &Connection, after: i64, limit: usize) -> StoreResult<Vec<Change>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.prepare_cached(CHANGES_AFTER)
        .and_then(|mut s| {
            s.query_map(params![after, limit], |r| {
                Ok(Change {
                    seq: r.get(0)?,
                    message: r.get(1)?,
                    chat: ChatKey(r.get(2)?),
                    number: number(r, 3)?,
                    body: r.get(4)?,
                    replaces: r.get(5)?,
                })
            })?
            .collect()
        })
        .db()
}

pub(crate) fn last_seq(db: &Connection) -> StoreResult<i64> {
    db.prepare_cached(LAST_SEQ).and_then(|mut s| s.query_row([], |r| r.get(0))).db()
}

// ---------------------------------------------------------------- reads (reader pool)

fn application_from_row(r: &Row<'_>) -> rusqlite::Result<Application> {
    let token: String = r.get(0)?;
    Ok(Application {
        token: AppToken::parse(&token).ok_or(rusqlite::Error::InvalidColumnType(
            0,
            "token".into(),
            rusqlite::types::Type::Text,
        ))?,
        name: r.get(1)?,
        chats_count: r.get(2)?,
        created_at: time(r, 3)?,
        updated_at: time(r, 4)?,
    })
}

fn chat_from_row(r: &Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        number: number(r, 0)?,
        messages_count: r.get(1)?,
        last_number: r.get(4)?,
        created_at: time(r, 2)?,
        updated_at: time(r, 3)?,
    })
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message { number: number(r, 0)?, body: r.get(1)?, created_at: time(r, 2)?, updated_at: time(r, 3)? })
}

/// The exclusive bounds of a page as an inclusive range of keys.
fn key_range(after: Option<i64>, before: Option<i64>) -> (i64, i64) {
    (after.map_or(i64::MIN, |a| a.saturating_add(1)), before.map_or(i64::MAX, |b| b.saturating_sub(1)))
}

/// Runs a page query (`?1` parent id, `?2`..`?3` inclusive key range, `?4` row limit) and
/// reads one row more than asked, to know whether another page exists.
fn page<T>(
    db: &Connection,
    sql: &str,
    parent: i64,
    (low, high): (i64, i64),
    limit: u32,
    read: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Listed<T>> {
    let limit_rows = limit;
    let limit = limit as usize;
    let mut items = db
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params![parent, low, high, i64::from(limit_rows) + 1], read)?
                .collect::<rusqlite::Result<Vec<T>>>()
        })
        .db()?;
    let more = items.len() > limit;
    items.truncate(limit);
    Ok(Listed { items, more })
}

pub(crate) fn application(db: &Connection, token: &AppToken) -> StoreResult<Application> {
    db.prepare_cached(GET_APPLICATION)
        .and_then(|mut s| s.query_row([token.as_str()], application_from_row).optional())
        .db()?
        .ok_or(StoreError::ApplicationNotFound)
}

pub(crate) fn applications(db: &Connection, page_req: &Page<AppToken>) -> StoreResult<Listed<Application>> {
    let cursor = |t: &Option<AppToken>, field: &'static str| -> StoreResult<Option<i64>> {
        match t {
            None => Ok(None),
            Some(t) => match application_id(db, t) {
                Err(StoreError::ApplicationNotFound) => Err(StoreError::BadCursor(field)),
                other => other.map(Some),
            },
        }
    };
    let range = key_range(cursor(&page_req.after, "after")?, cursor(&page_req.before, "before")?);
    let sql = LIST_APPLICATIONS[page_req.order as usize];
    page(db, sql, 0, range, page_req.limit.get(), application_from_row)
}

pub(crate) fn chat(db: &Connection, token: &AppToken, chat: ChatNumber) -> StoreResult<Chat> {
    let found = db
        .prepare_cached(GET_CHAT)
        .and_then(|mut s| s.query_row(params![token.as_str(), chat.get()], chat_from_row).optional())
        .db()?;
    match found {
        Some(c) => Ok(c),
        None => application_id(db, token).and(Err(StoreError::ChatNotFound)),
    }
}

pub(crate) fn chats(
    db: &Connection,
    token: &AppToken,
    page_req: &Page<NumberBound>,
) -> StoreResult<Listed<Chat>> {
    let app_id = application_id(db, token)?;
    let range = key_range(page_req.after.map(NumberBound::get), page_req.before.map(NumberBound::get));
    let sql = LIST_CHATS[page_req.order as usize];
    page(db, sql, app_id, range, page_req.limit.get(), chat_from_row)
}

pub(crate) fn message(
    db: &Connection,
    token: &AppToken,
    chat: ChatNumber,
    number: MessageNumber,
) -> StoreResult<Message> {
    let found = db
        .prepare_cached(GET_MESSAGE)
        .and_then(|mut s| {
            s.query_row(params![token.as_str(), chat.get(), number.get()], message_from_row).optional()
        })
        .db()?;
    match found {
        Some(m) => Ok(m),
        None => chat_row(db, token, chat).and(Err(StoreError::MessageNotFound)),
    }
}

pub(crate) fn messages(
    db: &Connection,
    token: &AppToken,
    chat: ChatNumber,
    page_req: &Page<NumberBound>,
) -> StoreResult<Listed<Message>> {
    let (chat_id, ..) = chat_row(db, token, chat)?;
    let range = key_range(page_req.after.map(NumberBound::get), page_req.before.map(NumberBound::get));
    let sql = LIST_MESSAGES[page_req.order as usize];
    page(db, sql, chat_id, range, page_req.limit.get(), message_from_row)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement on a request path (and the index feed) is answered through an index:
    /// no table scan and no sort of a whole result (SQLite's plan says "SCAN" or "TEMP B-TREE").
    #[test]
    fn every_statement_uses_an_index_and_no_sort() {
        let mut db = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut db).unwrap();
        let mut statements = vec![
            APPLICATION_ID,
            CHAT_ROW,
            INSERT_APPLICATION,
            RENAME_APPLICATION,
            APPLICATION_FOR_CHAT,
            INSERT_CHAT,
            BUMP_CHATS_COUNT,
            INSERT_MESSAGE,
            BUMP_MESSAGES_COUNT,
            LAST_CHAT_NUMBER,
            LAST_MESSAGE_NUMBER,
            UPDATE_MESSAGE,
            GET_APPLICATION,
            GET_CHAT,
            GET_MESSAGE,
            MESSAGES_BY_NUMBERS,
            CHANGES_AFTER,
            LAST_SEQ,
            FIND_KEY,
            STORE_KEY,
            SWEEP_KEYS,
        ];
        statements.extend(LIST_APPLICATIONS.iter().chain(&LIST_CHATS).chain(&LIST_MESSAGES));
        for sql in statements {
            let mut explain = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            // Parameters stay unbound (NULL): the plan does not depend on their values.
            let mut rows = explain.raw_query();
            let mut plan: Vec<String> = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                plan.push(row.get(3).unwrap());
            }
            for step in &plan {
                // Scanning json_each walks the request's own list of numbers, not a table.
                let scans_a_table = step.starts_with("SCAN") && !step.contains("VIRTUAL TABLE");
                assert!(!scans_a_table && !step.contains("TEMP B-TREE"), "{sql}\n{plan:#?}");
            }
        }
    }
}
