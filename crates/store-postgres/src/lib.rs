//! Scale-out storage for chatd: any number of stateless instances on one PostgreSQL.
//!
//! - Writes go through [`writer`]: each instance queues creates and edits in a bounded
//!   queue, and one task applies every job waiting at that moment in one transaction. The
//!   parents' counter rows are locked in a fixed order (applications, then chats, each by
//!   id), numbers are taken from them, rows are inserted in bulk, and the batch commits
//!   once before any job is answered. Batches of different instances wait for each other,
//!   never in a cycle; should PostgreSQL abort one anyway (deadlock, serialization), it runs
//!   again inside.
//! - Reads go through [`reads`] on the pool: every lookup and list is one indexed query.
//! - Search goes through [`search`]: pg_trgm over the normalised body, written in the row's
//!   transaction, then the core's exact verification and ranking.
//! - Live events go through [`feed`]: each batch notifies what it wrote, and every instance
//!   listens and reads the rows its streams follow.
//!
//! - `chatd import` writes through [`PgImportTarget`], on a connection of its own.
//!
//! [`PgStore`] implements [`Ingest`], [`Catalog`], [`Search`] and [`Feed`].
#![forbid(unsafe_code)]

mod error;
mod feed;
mod import;
mod reads;
mod search;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatd_core::error::StoreResult;
use chatd_core::feed::{Hub, STREAM_CAPACITY, Subscription};
use chatd_core::idempotency::{self, Fingerprint, Idempotent};
use chatd_core::search::ChatKey;
use chatd_core::search::{SearchRequest, normalize};
use chatd_core::{
    AppName, AppToken, Application, Catalog, Chat, ChatNumber, Feed, IdempotencyKey, Ingest, Listed, Message,
    MessageBody, MessageNumber, NumberBound, Page, Search, StoreError,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

pub use chatd_core::stats::{WriterStats, WriterStatsSnapshot};
pub use import::{PgImportTarget, PgTargetView};
pub use search::{NEWEST_WHOLE_WORD_CANDIDATES, SEARCH_CANDIDATES, WHOLE_WORD_CANDIDATES};

/// Settings of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct Options {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Connections this instance keeps open at most.
    pub max_connections: u32,
    /// How long a request waits for a connection before answering `Unavailable`.
    pub acquire_timeout: Duration,
    /// Jobs the write queue holds before answering `Overloaded`.
    pub queue_capacity: usize,
    /// Most jobs one transaction carries.
    pub max_batch: usize,
    /// Live events a followed chat keeps for its slowest stream before dropping it.
    pub stream_capacity: usize,
    /// How long an `Idempotency-Key` is honoured after its create (SPEC §8: 24 hours).
    pub idempotency_window: Duration,
}

impl Options {
    pub fn new(url: impl Into<String>) -> Self {
        Options {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            queue_capacity: 1024,
            max_batch: 512,
            stream_capacity: STREAM_CAPACITY,
            idempotency_window: idempotency::DEFAULT_WINDOW,
        }
    }
}

/// Settings of every connection chatd opens.
///
/// - `synchronous_commit`: acknowledged means committed to disk (SPEC §4.3), whatever the
///   server's default.
/// - `enable_seqscan`: every statement of chatd is a lookup or a range scan on an index, and
///   must stay one: when few rows are expected to match (a rare search term) PostgreSQL
///   would otherwise rather read the whole table than a chat's rows in number order.
/// - The timeouts bound what one stuck instance can hold: a batch waiting for a lock, a
///   statement, or a transaction whose instance stopped talking mid-way (frozen, cut off)
///   and still holds its parents' locks, which every other instance's batches would wait
///   for. Each is below the default request timeout, so a client gets a 503, not a 408.
pub const SESSION_SETTINGS: [(&str, &str); 5] = [
    ("synchronous_commit", "on"),
    ("enable_seqscan", "off"),
    ("lock_timeout", "10s"),
    ("statement_timeout", "20s"),
    ("idle_in_transaction_session_timeout", "20s"),
];

/// chatd's settings for a connection to the database at `url`.
fn connect_options(url: &str) -> StoreResult<PgConnectOptions> {
    let connect: PgConnectOptions =
        url.parse().map_err(|e| StoreError::Unavailable(format!("the database URL is not valid: {e}")))?;
    Ok(connect.options(SESSION_SETTINGS))
}

/// Checks that the database can hold chatd's text and brings its schema up to date (several
/// instances may start at once: the migrator holds an advisory lock meanwhile).
async fn prepare(db: &mut PgConnection) -> StoreResult<()> {
    let encoding: String =
        sqlx::query_scalar("SHOW server_encoding").fetch_one(&mut *db).await.map_err(error::map)?;
    if encoding != "UTF8" {
        return Err(StoreError::Unavailable(format!(
            "the database's encoding is {encoding}: chatd needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')"
        )));
    }
    sqlx::migrate!("./migrations").run(db).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => error::map(e),
        other => StoreError::Unavailable(format!("migrating the database: {other}")),
    })
}

/// Searches running at once per instance; more wait for a turn (as in the embedded mode).
const SEARCH_CONCURRENCY: usize = 4;

/// The read pool's connections at one moment, for `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open, idle or in use.
    pub open: u32,
    /// Open connections waiting for a query.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

/// The scale-out store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PgStore {
    /// Reads and searches.
    pool: PgPool,
    /// The writer's own connection, so that busy reads never starve a batch of one.
    write_pool: PgPool,
    writer: writer::Writer,
    searches: tokio::sync::Semaphore,
    listener: Arc<feed::Listener>,
    /// How long an `Idempotency-Key` is honoured.
    idempotency_window: Duration,
}

impl PgStore {
    /// Connects, brings the schema up to date (several instances may start at once: the
    /// migrator holds an advisory lock), and starts the writer task.
    pub async fn connect(options: &Options) -> Result<Self, StoreError> {
        let connect = connect_options(&options.url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(error::map)?;
        prepare(&mut *pool.acquire().await.map_err(error::map)?).await?;
        let write_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        let writer = writer::Writer::spawn(
            write_pool.clone(),
            options.queue_capacity.max(1),
            options.max_batch.max(1),
        );
        let listener = feed::Listener::start(pool.clone(), Hub::new(options.stream_capacity)).await?;
        Ok(PgStore {
            pool,
            write_pool,
            writer,
            searches: tokio::sync::Semaphore::new(SEARCH_CONCURRENCY),
            listener,
            idempotency_window: options.idempotency_window,
        })
    }

    /// A create's key with its fingerprint, as the writer stores it.
    fn retry_key(
        &self,
        key: Option<IdempotencyKey>,
        of: impl FnOnce() -> Fingerprint,
    ) -> Option<writer::RetryKey> {
        Idempotent::new(key, of).map(|key| writer::RetryKey { key, window: self.idempotency_window })
    }

    /// What the writer has done so far.
    pub fn writer_stats(&self) -> WriterStatsSnapshot {
        self.writer.stats().snapshot()
    }

    /// Writes waiting in the queue for the writer to take them into a batch.
    pub fn queued(&self) -> usize {
        self.writer.queued()
    }

    /// The read pool's connections now: open, of which idle, and the most it opens.
    pub fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// Stops taking writes, lets the writer commit everything already queued, then closes
    /// the pool. Safe to call more than once.
    pub async fn close(&self) {
        self.listener.stop();
        self.writer.close().await;
        self.write_pool.close().await;
        self.searches.close();
        self.pool.close().await;
    }
}

#[async_trait]
impl Ingest for PgStore {
    async fn create_application(
        &self,
        name: AppName,
        key: Option<IdempotencyKey>,
    ) -> StoreResult<Application> {
        let token = AppToken::generate().map_err(|e| StoreError::internal(e.to_string()))?;
        let key = self.retry_key(key, || Fingerprint::application(&name));
        self.writer.submit(|reply| writer::Write::CreateApplication { token, name, key, reply }).await
    }

    async fn rename_application(&self, token: AppToken, name: AppName) -> StoreResult<Application> {
        self.writer.submit(|reply| writer::Write::RenameApplication { token, name, reply }).await
    }

    async fn create_chat(&self, token: AppToken, key: Option<IdempotencyKey>) -> StoreResult<ChatNumber> {
        let key = self.retry_key(key, Fingerprint::chat);
        self.writer.submit(|reply| writer::Write::CreateChat { token, key, reply }).await
    }

    async fn create_message(
        &self,
        token: AppToken,
        chat: ChatNumber,
        body: MessageBody,
        key: Option<IdempotencyKey>,
    ) -> StoreResult<MessageNumber> {
        let normalized = normalize(body.as_str());
        let key = self.retry_key(key, || Fingerprint::message(chat, &body));
        self.writer
            .submit(|reply| writer::Write::CreateMessage { token, chat, body, normalized, key, reply })
            .await
    }

    async fn edit_message(
        &self,
        token: AppToken,
        chat: ChatNumber,
        number: MessageNumber,
        body: MessageBody,
    ) -> StoreResult<Message> {
        let normalized = normalize(body.as_str());
        self.writer
            .submit(|reply| writer::Write::EditMessage { token, chat, number, body, normalized, reply })
            .await
    }

    async fn sweep_idempotency_keys(&self) -> StoreResult<usize> {
        writer::sweep_keys(&self.pool, self.idempotency_window, idempotency::SWEEP_LIMIT).await
    }

    async fn ready(&self) -> StoreResult<()> {
        self.writer.accepting()?;
        reads::writable(&self.pool).await
    }
}

#[async_trait]
impl Catalog for PgStore {
    async fn application(&self, token: AppToken) -> StoreResult<Application> {
        reads::application(&self.pool, &token).await
    }

    async fn applications(&self, page: Page<AppToken>) -> StoreResult<Listed<Application>> {
        reads::applications(&self.pool, &page).await
    }

    async fn chat(&self, token: AppToken, chat: ChatNumber) -> StoreResult<Chat> {
        reads::chat(&self.pool, &token, chat).await
    }

    async fn chats(&self, token: AppToken, page: Page<NumberBound>) -> StoreResult<Listed<Chat>> {
        reads::chats(&self.pool, &token, &page).await
    }

    async fn message(
        &self,
        token: AppToken,
        chat: ChatNumber,
        number: MessageNumber,
    ) -> StoreResult<Message> {
        reads::message(&self.pool, &token, chat, number).await
    }

    async fn messages(
        &self,
        token: AppToken,
        chat: ChatNumber,
        page: Page<NumberBound>,
    ) -> StoreResult<Listed<Message>> {
        reads::messages(&self.pool, &token, chat, &page).await
    }

    async fn ready(&self) -> StoreResult<()> {
        reads::ping(&self.pool).await
    }
}

#[async_trait]
impl Feed for PgStore {
    async fn subscribe(&self, token: AppToken, chat: ChatNumber) -> StoreResult<Subscription> {
        let id = reads::chat_id(&self.pool, &token, chat).await?;
        let subscription = self.listener.hub.subscribe(ChatKey(id));
        // Checked after subscribing: should the listener drop from here on, it ends this
        // subscription with the others.
        self.listener.check()?;
        Ok(subscription)
    }
}

#[async_trait]
impl Search for PgStore {
    async fn search(
        &self,
        token: AppToken,
        chat: ChatNumber,
        request: SearchRequest,
    ) -> StoreResult<Vec<Message>> {
        let _turn =
            self.searches.acquire().await.map_err(|_| StoreError::Unavailable("shutting down".into()))?;
        search::search(&self.pool, &token, chat, &request).await
    }
}
