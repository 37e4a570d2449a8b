//! The storage half of the composition root: the one place that knows which backend runs.
//! [`Backend::open`] builds it from the configuration (`--database-url` unset: embedded,
//! SQLite and tantivy in the data directory; set: PostgreSQL), and [`Backend::ports`] hands
//! the routes the three ports they use, so no route, extractor or error mapping knows which.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chatd_core::idempotency;
use chatd_core::progress::Progress;
use chatd_core::stats::WriterStatsSnapshot;
use chatd_core::{Catalog, Feed, Ingest, Search};
use chatd_search_tantivy::{Indexer, IndexerOptions, SearchIndex};
use chatd_store_postgres::PgStore;
use chatd_store_sqlite::{Options, SqliteSource, SqliteStore};

use crate::config::Config;
use crate::search::BlockingSearch;

/// Directory of the search index inside the data directory.
pub const SEARCH_DIR: &str = "search";
/// Searches running at once in the embedded mode; more wait for a turn.
const SEARCH_CONCURRENCY: usize = 4;

/// One implementation of each port, for the routes.
#[derive(Clone)]
pub struct Ports {
    pub ingest: Arc<dyn Ingest>,
    pub catalog: Arc<dyn Catalog>,
    pub search: Arc<dyn Search>,
    pub feed: Arc<dyn Feed>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// The storage a server runs on.
#[derive(Debug)]
pub enum Backend {
    Embedded(Embedded),
    Postgres(Arc<PgStore>),
}

/// The embedded mode's parts: the SQLite store, and the indexer that follows it.
#[derive(Debug)]
pub struct Embedded {
    pub store: Arc<SqliteStore>,
    index: Arc<SearchIndex>,
    source: Arc<SqliteSource>,
    indexer: Indexer,
    /// The change sequence the search index covers.
    pub indexed: Arc<Progress>,
}

impl Embedded {
    /// How many times indexing failed and was retried (e.g. on a full disk).
    pub fn index_failures(&self) -> Arc<AtomicU64> {
        self.indexer.failures()
    }
}

impl Backend {
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        match &config.database_url {
            Some(url) => {
                let defaults = chatd_store_postgres::Options::new(url.clone());
                let options = chatd_store_postgres::Options {
                    queue_capacity: config.queue_capacity,
                    max_batch: config.max_batch,
                    max_connections: u32::try_from(config.read_connections.saturating_mul(4))
                        .unwrap_or(u32::MAX),
                    // An outage must answer 503 well within the request timeout, not 408.
                    acquire_timeout: defaults
                        .acquire_timeout
                        .min(Duration::from_secs(config.request_timeout) / 3),
                    idempotency_window: config.idempotency_window,
                    ..defaults
                };
                Ok(Backend::Postgres(Arc::new(PgStore::connect(&options).await?)))
            }
            None => Ok(Backend::Embedded(open_embedded(config)?)),
        }
    }

    /// The ports the routes use.
    pub fn ports(&self) -> Ports {
        match self {
            Backend::Embedded(e) => Ports {
                ingest: e.store.clone(),
                catalog: e.store.clone(),
                search: Arc::new(BlockingSearch::new(e.source.clone(), e.index.clone(), SEARCH_CONCURRENCY)),
                feed: e.store.clone(),
            },
            Backend::Postgres(pg) => {
                Ports { ingest: pg.clone(), catalog: pg.clone(), search: pg.clone(), feed: pg.clone() }
            }
        }
    }

    /// The embedded mode's parts, when it runs.
    pub fn embedded(&self) -> Option<&Embedded> {
        match self {
            Backend::Embedded(e) => Some(e),
            Backend::Postgres(_) => None,
        }
    }

    /// What the writer has committed so far.
    pub fn writer_stats(&self) -> WriterStatsSnapshot {
        match self {
            Backend::Embedded(e) => e.store.writer_stats(),
            Backend::Postgres(pg) => pg.writer_stats(),
        }
    }

    /// Commits every write already accepted (and, embedded, indexes it), then lets go. On
    /// PostgreSQL at most `within`: a batch PostgreSQL does not answer must not hold the
    /// process. The embedded mode waits for its writer and indexer, as it always has.
    pub async fn close(self, within: Duration) {
        match self {
            Backend::Embedded(e) => {
                e.store.close().await;
                // The writer has committed everything; index it before exiting.
                let indexer = e.indexer;
                let _ = tokio::task::spawn_blocking(move || indexer.close()).await;
                let lookups = e.store.lookup_stats();
                tracing::info!(
                    lookups_inline = lookups.inline,
                    lookups_pooled = lookups.pooled,
                    "storage closed"
                );
            }
            Backend::Postgres(pg) => {
                if tokio::time::timeout(within, pg.close()).await.is_err() {
                    tracing::warn!("PostgreSQL did not settle the last writes in time; closing anyway");
                }
            }
        }
    }
}

/// How often expired `Idempotency-Key`s are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Deletes expired `Idempotency-Key`s off the request path, one bounded batch at a time:
/// every minute from a minute after start (not at start, where its write would take a place
/// in the writer's queue from the first requests), and again at once while a sweep finds a
/// full batch. (Expired keys are never honoured; sweeping only reclaims their space.) Runs
/// until dropped.
pub async fn sweep_idempotency_keys(ingest: Arc<dyn Ingest>) {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        loop {
            match ingest.sweep_idempotency_keys().await {
                Ok(deleted) if deleted >= idempotency::SWEEP_LIMIT => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping expired idempotency keys failed; will try again");
                    break;
                }
            }
        }
    }
}

fn open_embedded(config: &Config) -> anyhow::Result<Embedded> {
    let options = Options {
        durability: config.synchronous.into(),
        queue_capacity: config.queue_capacity,
        max_batch: config.max_batch,
        readers: config.read_connections,
        idempotency_window: config.idempotency_window,
        ..Options::new(&config.data_dir)
    };
    let store = Arc::new(SqliteStore::open(&options)?);
    let index = Arc::new(SearchIndex::open(&config.data_dir.join(SEARCH_DIR))?);
    let source = Arc::new(SqliteSource::open(&config.data_dir)?);
    let indexed = Arc::new(Progress::default());
    let indexer = Indexer::spawn(
        index.clone(),
        source.clone(),
        store.committed(),
        indexed.clone(),
        IndexerOptions {
            min_commit_interval: Duration::from_millis(config.index_commit_interval),
            ..IndexerOptions::default()
        },
    )?;
    Ok(Embedded { store, index, source, indexer, indexed })
}
