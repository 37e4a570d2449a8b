//! Reads on the pool. Every lookup and list is one query served by an index: the token's
//! unique index, (application, number) on chats, (chat, number) on messages.

use chatd_core::error::StoreResult;
use chatd_core::{
    AppToken, Application, Chat, ChatNumber, Listed, Message, MessageNumber, NumberBound, Page, StoreError,
    Timestamp,
};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::error::map;

/// A page query in both directions, indexed by `Order as usize`: `$1` the parent, `$2` and
/// `$3` the inclusive key range, `$4` the row count.
macro_rules! ordered_pair {
    ($sql:literal) => {
        [concat!($sql, " ASC LIMIT $4"), concat!($sql, " DESC LIMIT $4")]
    };
}

const LIST_APPLICATIONS: [&str; 2] = ordered_pair!(
    "SELECT token, name, chats_count, created_at, updated_at FROM applications \
     WHERE $1 = $1 AND id BETWEEN $2 AND $3 ORDER BY id"
);
const LIST_CHATS: [&str; 2] = ordered_pair!(
    "SELECT number, messages_count, GREATEST(last_message_number, messages_count) AS last_message_number, \
     created_at, updated_at FROM chats \
     WHERE application_id = $1 AND number BETWEEN $2 AND $3 ORDER BY number"
);
const LIST_MESSAGES: [&str; 2] = ordered_pair!(
    "SELECT number, body, created_at, updated_at FROM messages \
     WHERE chat_id = $1 AND number BETWEEN $2 AND $3 ORDER BY number"
);

pub(crate) async fn ping(pool: &PgPool) -> StoreResult<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop).map_err(map)
}

/// Whether the server takes writes: reachable, and not a standby in recovery (read-only,
/// as after a failover that pointed the URL at one).
pub(crate) async fn writable(pool: &PgPool) -> StoreResult<()> {
    let in_recovery: bool =
        sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(pool).await.map_err(map)?;
    if in_recovery {
        Err(StoreError::Unavailable("the database is read-only (in recovery)".into()))
    } else {
        Ok(())
    }
}

/// Reads a positive number column into its domain type.
pub(crate) fn number<N: TryFrom<i64>>(row: &PgRow, column: &str) -> StoreResult<N> {
    let n: i64 = row.try_get(column).map_err(map)?;
    N::try_from(n).map_err(|_| StoreError::internal(format!("{column} {n} is not a positive number")))
}

fn time(row: &PgRow, column: &str) -> StoreResult<Timestamp> {
    row.try_get(column).map(Timestamp::from_millis).map_err(map)
}

fn application_from(row: &PgRow) -> StoreResult<Application> {
    let token: String = row.try_get("token").map_err(map)?;
    Ok(Application {
        token: AppToken::parse(&token)
            .ok_or_else(|| StoreError::internal("a stored token does not parse"))?,
        name: row.try_get("name").map_err(map)?,
        chats_count: row.try_get("chats_count").map_err(map)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

fn chat_from(row: &PgRow) -> StoreResult<Chat> {
    Ok(Chat {
        number: number(row, "number")?,
        messages_count: row.try_get("messages_count").map_err(map)?,
        last_number: row.try_get("last_message_number").map_err(map)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub(crate) fn message_from(row: &PgRow) -> StoreResult<Message> {
    Ok(Message {
        number: number(row, "number")?,
        body: row.try_get("body").map_err(map)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

async fn application_id(pool: &PgPool, token: &AppToken) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT id FROM applications WHERE token = $1")
        .bind(token.as_str())
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .ok_or(StoreError::ApplicationNotFound)
}

/// The chat's id, or which of application and chat is missing.
pub(crate) async fn chat_id(pool: &PgPool, token: &AppToken, chat: ChatNumber) -> StoreResult<i64> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT c.id FROM applications a JOIN chats c ON c.application_id = a.id AND c.number = $2 \
         WHERE a.token = $1",
    )
    .bind(token.as_str())
    .bind(chat.get())
    .fetch_optional(pool)
    .await
    .map_err(map)?;
    match found {
        Some(id) => Ok(id),
        None => application_id(pool, token).await.and(Err(StoreError::ChatNotFound)),
    }
}

/// `(low, high)`: the inclusive key range of exclusive bounds.
fn key_range(after: Option<i64>, before: Option<i64>) -> (i64, i64) {
    (after.map_or(i64::MIN, |a| a.saturating_add(1)), before.map_or(i64::MAX, |b| b.saturating_sub(1)))
}

/// One page of a list query: a row beyond the page says whether more exist.
async fn page<T>(
    pool: &PgPool,
    sql: &'static str,
    parent: i64,
    (low, high): (i64, i64),
    limit: u32,
    read: fn(&PgRow) -> StoreResult<T>,
) -> StoreResult<Listed<T>> {
    let rows = sqlx::query(sql)
        .bind(parent)
        .bind(low)
        .bind(high)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(map)?;
    let mut items = rows.iter().map(read).collect::<StoreResult<Vec<T>>>()?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(Listed { items, more })
}

pub(crate) async fn application(pool: &PgPool, token: &AppToken) -> StoreResult<Application> {
    let sql = "SELECT token, name, chats_count, created_at, updated_at FROM applications WHERE token = $1";
    let row = sqlx::query(sql).bind(token.as_str()).fetch_optional(pool).await.map_err(map)?;
    row.as_ref().map(application_from).unwrap_or(Err(StoreError::ApplicationNotFound))
}

pub(crate) async fn applications(
    pool: &PgPool,
    page_req: &Page<AppToken>,
) -> StoreResult<Listed<Application>> {
    async fn cursor(pool: &PgPool, t: &Option<AppToken>, field: &'static str) -> StoreResult<Option<i64>> {
        match t {
            None => Ok(None),
            Some(t) => match application_id(pool, t).await {
                Err(StoreError::ApplicationNotFound) => Err(StoreError::BadCursor(field)),
                other => other.map(Some),
            },
        }
    }
    let after = cursor(pool, &page_req.after, "after").await?;
    let before = cursor(pool, &page_req.before, "before").await?;
    let sql = LIST_APPLICATIONS[page_req.order as usize];
    page(pool, sql, 0, key_range(after, before), page_req.limit.get(), application_from).await
}

pub(crate) async fn chat(pool: &PgPool, token: &AppToken, chat: ChatNumber) -> StoreResult<Chat> {
    let row = sqlx::query(
        "SELECT c.number, c.messages_count, GREATEST(c.last_message_number, c.messages_count) AS last_message_number, \
         c.created_at, c.updated_at \
         FROM applications a \
         JOIN chats c ON c.application_id = a.id AND c.number = $2 WHERE a.token = $1",
    )
    .bind(token.as_str())
    .bind(chat.get())
    .fetch_optional(pool)
    .await
    .map_err(map)?;
    match row {
        Some(row) => chat_from(&row),
        None => application_id(pool, token).await.and(Err(StoreError::ChatNotFound)),
    }
}

pub(crate) async fn chats(
    pool: &PgPool,
    token: &AppToken,
    page_req: &Page<NumberBound>,
) -> StoreResult<Listed<Chat>> {
    let app = application_id(pool, token).await?;
    let sql = LIST_CHATS[page_req.order as usize];
    let range = key_range(page_req.after.map(NumberBound::get), page_req.before.map(NumberBound::get));
    page(pool, sql, app, range, page_req.limit.get(), chat_from).await
}

pub(crate) async fn message(
    pool: &PgPool,
    token: &AppToken,
    chat: ChatNumber,
    number: MessageNumber,
) -> StoreResult<Message> {
    let row = sqlx::query(
        "SELECT m.number, m.body, m.created_at, m.updated_at FROM applications a \
         JOIN chats c ON c.application_id = a.id AND c.number = $2 \
         JOIN messages m ON m.chat_id = c.id AND m.number = $3 WHERE a.token = $1",
    )
    .bind(token.as_str())
    .bind(chat.get())
    .bind(number.get())
    .fetch_optional(pool)
    .await
    .map_err(map)?;
    match row {
        Some(row) => message_from(&row),
        None => chat_id(pool, token, chat).await.and(Err(StoreError::MessageNotFound)),
    }
}

pub(crate) async fn messages(
    pool: &PgPool,
    token: &AppToken,
    chat: ChatNumber,
    page_req: &Page<NumberBound>,
) -> StoreResult<Listed<Message>> {
    let chat = chat_id(pool, token, chat).await?;
    let sql = LIST_MESSAGES[page_req.order as usize];
    let range = key_range(page_req.after.map(NumberBound::get), page_req.before.map(NumberBound::get));
    page(pool, sql, chat, range, page_req.limit.get(), message_from).await
}
