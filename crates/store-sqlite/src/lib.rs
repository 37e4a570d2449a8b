//! Embedded storage for chatd: one SQLite file in WAL mode.
//!
//! - Writes go through [`writer`]: one thread, one read-write connection, a bounded queue,
//!   group commit, numbers assigned in the transaction that inserts the row.
//! - Reads go through [`readers`]: read-only connections kept between calls. A lookup by
//!   key runs on the calling thread while lookups are quick (on the blocking pool while
//!   they read the disk); a list page runs on tokio's blocking pool, a few at once, so no
//!   long query holds an async thread.
//!
//! [`SqliteStore`] (in `store`) implements both [`Ingest`] and [`Catalog`]. Beside it:
//! `connection` opens the database and sets its pragmas, [`SqliteSource`] (in `source`)
//! reads for the search side, [`BulkLoader`] (in `bulk`) loads rows without the writer
//! thread, and [`SqliteImportTarget`] (in `import`) is where `chatd import` writes. The SQL
//! itself lives in `queries`, the schema in `schema`.
//!
//! [`Ingest`]: chatd_core::Ingest
//! [`Catalog`]: chatd_core::Catalog
#![forbid(unsafe_code)]

mod bulk;
mod connection;
mod import;
mod queries;
mod readers;
mod schema;
mod source;
mod store;
mod writer;

pub use bulk::BulkLoader;
pub use chatd_core::stats::{WriterStats, WriterStatsSnapshot};
pub use connection::{DB_FILE, Durability};
pub use import::{SqliteImportTarget, SqliteTargetView};
pub use readers::LookupStats;
pub use source::SqliteSource;
pub use store::{Options, SqliteStore};
