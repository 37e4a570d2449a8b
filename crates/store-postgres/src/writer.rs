//! The instance's writer: requests queue their creates and edits in a bounded channel; one
//! task takes every job waiting at that moment and applies them in one transaction:
//!
//! 1. lock the applications that gain chats or names, by id; then the chats that gain
//!    messages, by id (every instance locks in this order, so batches of different
//!    instances wait for each other but never in a cycle). The locks are `FOR NO KEY
//!    UPDATE`: they exclude each other, but not the share locks that inserts' foreign-key
//!    checks take on the same parents (a plain `FOR UPDATE` would, and batches creating
//!    chats in an application deadlocked with batches creating messages in it);
//! 2. check each job against what it locked (a missing application or chat fails that job
//!    alone, before anything of it is written);
//! 3. number the new rows after the parents' locked last numbers, insert them in bulk,
//!    store counts and last numbers (an imported parent may have gaps: its count is not
//!    its highest number);
//! 4. COMMIT, then answer every job.
//!
//! A batch that fails answers `Unavailable` to each of its jobs, never a success; one that
//! PostgreSQL aborted for a deadlock or a serialization failure runs again first. Creates
//! with an `Idempotency-Key` are settled between 1 and 2 ([`keys`]).

mod keys;

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use chatd_core::error::StoreResult;
use chatd_core::stats::WriterStats;
use chatd_core::{
    AppName, AppToken, Application, ChatNumber, Message, MessageBody, MessageNumber, StoreError, Timestamp,
};
use futures::FutureExt;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{is_retryable, map};
use crate::feed;
use crate::reads::message_from;
pub(crate) use keys::{RetryKey, sweep as sweep_keys};

/// Times a batch runs again after PostgreSQL aborted it for a deadlock or a serialization
/// failure, before its jobs are answered `Unavailable`.
const RETRIES: usize = 5;

type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// One job for the writer.
#[derive(Debug)]
pub(crate) enum Write {
    CreateApplication {
        token: AppToken,
        name: AppName,
        key: Option<RetryKey>,
        reply: Reply<Application>,
    },
    RenameApplication {
        token: AppToken,
        name: AppName,
        reply: Reply<Application>,
    },
    CreateChat {
        token: AppToken,
        key: Option<RetryKey>,
        reply: Reply<ChatNumber>,
    },
    /// `normalized` is the body as search normalises it, computed before the job queues so
    /// that the batch holding the chats' locks does not spend its time on it.
    CreateMessage {
        token: AppToken,
        chat: ChatNumber,
        body: MessageBody,
        normalized: String,
        key: Option<RetryKey>,
        reply: Reply<MessageNumber>,
    },
    EditMessage {
        token: AppToken,
        chat: ChatNumber,
        number: MessageNumber,
        body: MessageBody,
        normalized: String,
        reply: Reply<Message>,
    },
}

/// The handle requests use; closing it drains the queue.
#[derive(Debug)]
pub(crate) struct Writer {
    sender: Mutex<Option<mpsc::Sender<Write>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<WriterStats>,
}

impl Writer {
    pub fn spawn(pool: PgPool, capacity: usize, max_batch: usize) -> Self {
        let (sender, receiver) = mpsc::channel(capacity);
        let stats = Arc::new(WriterStats::default());
        let task = tokio::spawn(run(pool, receiver, max_batch, stats.clone()));
        Writer { sender: Mutex::new(Some(sender)), task: Mutex::new(Some(task)), stats }
    }

    pub fn stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// Jobs waiting in the queue for the writer to take them into a batch.
    pub fn queued(&self) -> usize {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        sender.as_ref().map_or(0, |s| s.max_capacity() - s.capacity())
    }

    fn sender(&self) -> StoreResult<mpsc::Sender<Write>> {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        sender.clone().ok_or_else(|| StoreError::Unavailable("shutting down".into()))
    }

    /// Whether the queue takes writes now.
    pub fn accepting(&self) -> StoreResult<()> {
        let sender = self.sender()?;
        if sender.is_closed() {
            return Err(StoreError::Unavailable("the writer stopped".into()));
        }
        match sender.capacity() {
            0 => Err(StoreError::Overloaded),
            _ => Ok(()),
        }
    }

    /// Queues a job (or answers `Overloaded` at once when the queue is full) and waits for
    /// its answer, sent after its batch committed.
    pub async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Write) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.sender()?.try_send(job(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Unavailable("shutting down".into()),
        })?;
        answer.await.map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }

    /// Stops taking jobs and waits until every queued one is answered.
    pub async fn close(&self) {
        drop(self.sender.lock().unwrap_or_else(PoisonError::into_inner).take());
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(pool: PgPool, mut receiver: mpsc::Receiver<Write>, max_batch: usize, stats: Arc<WriterStats>) {
    let mut batch = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut batch, max_batch).await > 0 {
        let size = batch.len();
        let started = Instant::now();
        // A bug that panics fails its batch, not every later write.
        let outcome = AssertUnwindSafe(apply_with_retries(&pool, &batch))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Failure::Store(StoreError::internal("the writer panicked on a batch"))));
        match outcome {
            Ok(answers) => {
                stats.record(size, started.elapsed());
                for (job, answer) in batch.drain(..).zip(answers) {
                    answer.send(job);
                }
            }
            Err(failure) => {
                let error = failure.into_store_error();
                tracing::warn!(error = %error, jobs = size, "a write batch failed; each of its jobs gets that error");
                for job in batch.drain(..) {
                    Answer::Failed(copy(&error)).send(job);
                }
            }
        }
    }
}

/// Runs a batch, again when PostgreSQL aborted it for a deadlock or a serialization failure.
async fn apply_with_retries(pool: &PgPool, batch: &[Write]) -> Result<Vec<Answer>, Failure> {
    let mut attempt = 0;
    loop {
        match apply(pool, batch).await {
            Err(Failure::Retry(e)) if attempt < RETRIES => {
                attempt += 1;
                tracing::info!(error = %e, attempt, "a write batch was aborted by PostgreSQL; running it again");
            }
            outcome => return outcome,
        }
    }
}

/// The same error for another job of the batch: an outage stays an outage (503), anything
/// else a bug (500).
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        other => StoreError::internal(other.to_string()),
    }
}

/// Why a batch did not commit.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Retry(sqlx::Error),
    #[error("{0}")]
    Store(StoreError),
}

impl Failure {
    fn into_store_error(self) -> StoreError {
        match self {
            // Retried to the end: PostgreSQL is too busy to settle it now.
            Failure::Retry(e) => StoreError::Unavailable(format!("database: {e}")),
            Failure::Store(e) => e,
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        if is_retryable(&e) { Failure::Retry(e) } else { Failure::Store(map(e)) }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// A job's answer, decided inside the transaction and sent only once it committed.
#[derive(Debug)]
enum Answer {
    Application(Application),
    Chat(ChatNumber),
    Message(MessageNumber),
    Edited(Message),
    Failed(StoreError),
}

impl Answer {
    fn send(self, job: Write) {
        match job {
            Write::CreateApplication { reply, .. } | Write::RenameApplication { reply, .. } => {
                self.deliver(reply, |a| match a {
                    Answer::Application(a) => Some(a),
                    _ => None,
                })
            }
            Write::CreateChat { reply, .. } => self.deliver(reply, |a| match a {
                Answer::Chat(n) => Some(n),
                _ => None,
            }),
            Write::CreateMessage { reply, .. } => self.deliver(reply, |a| match a {
                Answer::Message(n) => Some(n),
                _ => None,
            }),
            Write::EditMessage { reply, .. } => self.deliver(reply, |a| match a {
                Answer::Edited(m) => Some(m),
                _ => None,
            }),
        }
    }

    /// Sends the answer of the kind `pick` takes, or the failure, to the requester.
    fn deliver<T>(self, reply: Reply<T>, pick: impl FnOnce(Answer) -> Option<T>) {
        let result = match self {
            Answer::Failed(e) => Err(e),
            other => pick(other).ok_or_else(|| StoreError::internal("a job's answer does not fit its kind")),
        };
        // The requester may have gone away (client disconnected); its write still stands.
        let _ = reply.send(result);
    }
}

/// A locked application: its id and its chats' count and highest number.
#[derive(Debug, Clone, Copy)]
struct LockedApp {
    id: i64,
    chats: Counter,
}

/// A locked chat: ids and its messages' count and highest number.
#[derive(Debug, Clone, Copy)]
struct LockedChat {
    id: i64,
    application_id: i64,
    messages: Counter,
}

/// A parent's rows: how many, and the highest number among them (0: none). Apart only in a
/// parent imported with gaps in its numbers.
#[derive(Debug, Clone, Copy)]
struct Counter {
    count: i64,
    last: i64,
}

impl Counter {
    /// Counts a new row and returns its number: the one after the highest.
    fn next(&mut self) -> i64 {
        self.count += 1;
        self.last += 1;
        self.last
    }
}

/// Runs one batch in one transaction; the answers are in job order.
async fn apply(pool: &PgPool, batch: &[Write]) -> Result<Vec<Answer>, Failure> {
    let mut tx = pool.begin().await?;
    let now = Timestamp::now().as_millis();
    let answers = write_batch(&mut tx, batch, now).await?;
    tx.commit().await?;
    Ok(answers)
}

async fn write_batch(db: &mut PgConnection, batch: &[Write], now: i64) -> Result<Vec<Answer>, Failure> {
    // 1. Lock, in the one order every instance uses.
    let app_tokens: Vec<&str> = batch
        .iter()
        .filter_map(|w| match w {
            Write::RenameApplication { token, .. } | Write::CreateChat { token, .. } => Some(token.as_str()),
            _ => None,
        })
        .collect();
    let apps = lock_applications(db, &app_tokens).await?;
    let chat_keys: Vec<(&str, i64)> = batch
        .iter()
        .filter_map(|w| match w {
            Write::CreateMessage { token, chat, .. } => Some((token.as_str(), chat.get())),
            _ => None,
        })
        .collect();
    let chats = lock_chats(db, &chat_keys).await?;
    // The answers the batch's keys decide (retries of earlier creates, reused keys).
    let (mut answers, keys) = keys::settle(db, batch, &apps, &chats, now).await?;

    // 2 and 3. New applications, renames and new chats.
    let mut new_apps = (Vec::new(), Vec::new());
    let mut chat_counts: BTreeMap<i64, Counter> = BTreeMap::new();
    let mut new_chats = (Vec::new(), Vec::new());
    for (i, job) in batch.iter().enumerate().filter(|&(i, _)| !keys.skip[i]) {
        match job {
            Write::CreateApplication { token, name, .. } => {
                new_apps.0.push(token.as_str());
                new_apps.1.push(name.as_str());
                answers[i] = Some(Answer::Application(Application {
                    token: token.clone(),
                    name: name.as_str().to_owned(),
                    chats_count: 0,
                    created_at: Timestamp::from_millis(now),
                    updated_at: Timestamp::from_millis(now),
                }));
            }
            Write::CreateChat { token, .. } => {
                answers[i] = Some(match apps.get(token.as_str()) {
                    None => Answer::Failed(StoreError::ApplicationNotFound),
                    Some(app) => {
                        let number = chat_counts.entry(app.id).or_insert(app.chats).next();
                        new_chats.0.push(app.id);
                        new_chats.1.push(number);
                        Answer::Chat(ChatNumber::try_from(number).map_err(StoreError::internal)?)
                    }
                });
            }
            _ => {}
        }
    }
    if !new_apps.0.is_empty() {
        sqlx::query(
            "INSERT INTO applications (token, name, chats_count, created_at, updated_at) \
             SELECT t, n, 0, $3, $3 FROM unnest($1::text[], $2::text[]) AS u(t, n)",
        )
        .bind(&new_apps.0)
        .bind(&new_apps.1)
        .bind(now)
        .execute(&mut *db)
        .await?;
    }
    if !new_chats.0.is_empty() {
        sqlx::query(
            "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
             SELECT a, n, 0, $3, $3 FROM unnest($1::bigint[], $2::bigint[]) AS u(a, n)",
        )
        .bind(&new_chats.0)
        .bind(&new_chats.1)
        .bind(now)
        .execute(&mut *db)
        .await?;
        store_counts(db, STORE_CHATS_COUNTS, &chat_counts).await?;
    }
    // Renames after the batch's new chats, so the count they answer includes them.
    for (i, job) in batch.iter().enumerate() {
        if let Write::RenameApplication { token, name, .. } = job {
            answers[i] = Some(match apps.get(token.as_str()) {
                None => Answer::Failed(StoreError::ApplicationNotFound),
                Some(_) => {
                    let row = sqlx::query(
                        "UPDATE applications SET name = $2, updated_at = $3 WHERE token = $1 \
                         RETURNING chats_count, created_at",
                    )
                    .bind(token.as_str())
                    .bind(name.as_str())
                    .bind(now)
                    .fetch_one(&mut *db)
                    .await?;
                    Answer::Application(Application {
                        token: token.clone(),
                        name: name.as_str().to_owned(),
                        chats_count: row.try_get("chats_count")?,
                        created_at: Timestamp::from_millis(row.try_get("created_at")?),
                        updated_at: Timestamp::from_millis(now),
                    })
                }
            });
        }
    }

    // New messages.
    let mut message_counts: BTreeMap<i64, Counter> = BTreeMap::new();
    let mut rows = NewMessages::default();
    for (i, job) in batch.iter().enumerate().filter(|&(i, _)| !keys.skip[i]) {
        if let Write::CreateMessage { token, chat, body, normalized, .. } = job {
            answers[i] = Some(match chats.get(&(token.as_str(), chat.get())) {
                Some(Ok(locked)) => {
                    let number = message_counts.entry(locked.id).or_insert(locked.messages).next();
                    rows.push(locked, number, body, normalized);
                    Answer::Message(MessageNumber::try_from(number).map_err(StoreError::internal)?)
                }
                Some(Err(missing)) => Answer::Failed(missing.error()),
                None => Answer::Failed(StoreError::internal("a chat the batch needs was not looked up")),
            });
        }
    }
    if !rows.chat_id.is_empty() {
        sqlx::query(
            "INSERT INTO messages (application_id, chat_id, number, body, body_norm, created_at, updated_at) \
             SELECT a, c, n, b, bn, $6, $6 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) \
             AS u(a, c, n, b, bn)",
        )
        .bind(&rows.application_id)
        .bind(&rows.chat_id)
        .bind(&rows.number)
        .bind(&rows.body)
        .bind(&rows.body_norm)
        .bind(now)
        .execute(&mut *db)
        .await?;
        store_counts(db, STORE_MESSAGES_COUNTS, &message_counts).await?;
    }
    let mut events: Vec<String> =
        rows.ranges().map(|(chat, first, last)| feed::new_messages(chat, first, last)).collect();

    // Edits last, in (chat, number) order: a message row is locked after every parent row.
    let mut edits: Vec<_> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, w)| match w {
            Write::EditMessage { token, chat, number, body, normalized, .. } => {
                Some((i, token, *chat, *number, body, normalized))
            }
            _ => None,
        })
        .collect();
    edits.sort_by_key(|&(_, token, chat, number, ..)| (token.as_str(), chat.get(), number.get()));
    for (i, token, chat, number, body, normalized) in edits {
        let (answer, chat_id) = edit(db, token, chat, number, body, normalized, now).await?;
        events.extend(chat_id.map(|chat_id| feed::edited(chat_id, number.get())));
        answers[i] = Some(answer);
    }
    // Delivered to every instance's listener when (and only if) the batch commits.
    if !events.is_empty() {
        sqlx::query("SELECT pg_notify($1, e) FROM unnest($2::text[]) AS u(e)")
            .bind(feed::CHANNEL)
            .bind(&events)
            .execute(&mut *db)
            .await?;
    }
    keys.finish(db, &mut answers).await?;

    answers
        .into_iter()
        .map(|a| a.ok_or_else(|| Failure::Store(StoreError::internal("a job of the batch was not applied"))))
        .collect()
}

/// Applications by token, locked in id order; tokens that name none are absent.
async fn lock_applications(
    db: &mut PgConnection,
    tokens: &[&str],
) -> Result<HashMap<String, LockedApp>, Failure> {
    if tokens.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT id, token, chats_count, GREATEST(last_chat_number, chats_count) AS last_chat_number \
         FROM applications WHERE token = ANY ($1) \
         ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(tokens)
    .fetch_all(&mut *db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("token")?,
                LockedApp {
                    id: r.try_get("id")?,
                    chats: Counter { count: r.try_get("chats_count")?, last: r.try_get("last_chat_number")? },
                },
            ))
        })
        .collect()
}

/// Which parent a create-message job found missing.
#[derive(Debug, Clone, Copy)]
enum Missing {
    Application,
    Chat,
}

impl Missing {
    fn error(self) -> StoreError {
        match self {
            Missing::Application => StoreError::ApplicationNotFound,
            Missing::Chat => StoreError::ChatNotFound,
        }
    }
}

type ChatLocks<'a> = HashMap<(&'a str, i64), Result<LockedChat, Missing>>;

/// Chats by (token, number), locked in id order; each key maps to its chat or to which
/// parent is missing.
async fn lock_chats<'a>(db: &mut PgConnection, keys: &[(&'a str, i64)]) -> Result<ChatLocks<'a>, Failure> {
    let mut found: ChatLocks<'a> = HashMap::new();
    if keys.is_empty() {
        return Ok(found);
    }
    let tokens: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let numbers: Vec<i64> = keys.iter().map(|k| k.1).collect();
    let rows = sqlx::query(
        "SELECT c.id, c.application_id, c.messages_count, \
         GREATEST(c.last_message_number, c.messages_count) AS last_message_number, a.token, c.number \
         FROM chats c JOIN applications a ON a.id = c.application_id \
         WHERE (a.token, c.number) IN (SELECT * FROM unnest($1::text[], $2::bigint[])) \
         ORDER BY c.id FOR NO KEY UPDATE OF c",
    )
    .bind(&tokens)
    .bind(&numbers)
    .fetch_all(&mut *db)
    .await?;
    let mut locked: HashMap<(String, i64), LockedChat> = HashMap::new();
    for r in &rows {
        let chat = LockedChat {
            id: r.try_get("id")?,
            application_id: r.try_get("application_id")?,
            messages: Counter {
                count: r.try_get("messages_count")?,
                last: r.try_get("last_message_number")?,
            },
        };
        locked.insert((r.try_get("token")?, r.try_get("number")?), chat);
    }
    let mut missing_apps: Vec<&str> = Vec::new();
    for &(token, number) in keys {
        match locked.get(&(token.to_owned(), number)) {
            Some(chat) => {
                found.insert((token, number), Ok(*chat));
            }
            None => missing_apps.push(token),
        }
    }
    if !missing_apps.is_empty() {
        let existing: Vec<String> =
            sqlx::query_scalar("SELECT token FROM applications WHERE token = ANY ($1)")
                .bind(&missing_apps)
                .fetch_all(&mut *db)
                .await?;
        for &(token, number) in keys {
            found.entry((token, number)).or_insert(if existing.iter().any(|t| t == token) {
                Err(Missing::Chat)
            } else {
                Err(Missing::Application)
            });
        }
    }
    Ok(found)
}

const STORE_CHATS_COUNTS: &str = "UPDATE applications AS t SET chats_count = u.count, \
    last_chat_number = u.last FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, count, last) \
    WHERE t.id = u.id";
const STORE_MESSAGES_COUNTS: &str = "UPDATE chats AS t SET messages_count = u.count, \
    last_message_number = u.last FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, count, last) \
    WHERE t.id = u.id";

/// Stores each parent's new count and last number with `sql` (one of the two statements
/// above).
async fn store_counts(
    db: &mut PgConnection,
    sql: &'static str,
    counts: &BTreeMap<i64, Counter>,
) -> Result<(), Failure> {
    let ids: Vec<i64> = counts.keys().copied().collect();
    let values: Vec<i64> = counts.values().map(|c| c.count).collect();
    let last: Vec<i64> = counts.values().map(|c| c.last).collect();
    sqlx::query(sql).bind(&ids).bind(&values).bind(&last).execute(&mut *db).await?;
    Ok(())
}

/// The columns of the batch's new messages.
#[derive(Debug, Default)]
struct NewMessages {
    application_id: Vec<i64>,
    chat_id: Vec<i64>,
    number: Vec<i64>,
    body: Vec<String>,
    body_norm: Vec<String>,
}

impl NewMessages {
    /// Each chat's new numbers, as (chat id, first, last): a chat's are consecutive.
    fn ranges(&self) -> impl Iterator<Item = (i64, i64, i64)> {
        let mut ranges: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (&chat, &number) in self.chat_id.iter().zip(&self.number) {
            let range = ranges.entry(chat).or_insert((number, number));
            range.0 = range.0.min(number);
            range.1 = range.1.max(number);
        }
        ranges.into_iter().map(|(chat, (first, last))| (chat, first, last))
    }

    fn push(&mut self, chat: &LockedChat, number: i64, body: &MessageBody, normalized: &str) {
        self.application_id.push(chat.application_id);
        self.chat_id.push(chat.id);
        self.number.push(number);
        self.body.push(body.as_str().to_owned());
        self.body_norm.push(normalized.to_owned());
    }
}

async fn edit(
    db: &mut PgConnection,
    token: &AppToken,
    chat: ChatNumber,
    number: MessageNumber,
    body: &MessageBody,
    normalized: &str,
    now: i64,
) -> Result<(Answer, Option<i64>), Failure> {
    let row = sqlx::query(
        "UPDATE messages m SET body = $4, body_norm = $5, updated_at = $6 \
         FROM chats c JOIN applications a ON a.id = c.application_id \
         WHERE a.token = $1 AND c.number = $2 AND m.chat_id = c.id AND m.number = $3 \
         RETURNING m.chat_id, m.number, m.body, m.created_at, m.updated_at",
    )
    .bind(token.as_str())
    .bind(chat.get())
    .bind(number.get())
    .bind(body.as_str())
    .bind(normalized)
    .bind(now)
    .fetch_optional(&mut *db)
    .await?;
    if let Some(row) = row {
        return Ok((Answer::Edited(message_from(&row)?), Some(row.try_get("chat_id")?)));
    }
    let chat_exists: Option<bool> = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM chats c WHERE c.application_id = a.id AND c.number = $2) \
         FROM applications a WHERE a.token = $1",
    )
    .bind(token.as_str())
    .bind(chat.get())
    .fetch_optional(&mut *db)
    .await?;
    let missing = match chat_exists {
        None => StoreError::ApplicationNotFound,
        Some(false) => StoreError::ChatNotFound,
        Some(true) => StoreError::MessageNotFound,
    };
    Ok((Answer::Failed(missing), None))
}
