//! `chatd reindex`: rebuild the search index from the database, with a progress bar.

use chatd_core::search::ChangeFeed;
use chatd_search_tantivy::{SearchIndex, rebuild};
use chatd_store_sqlite::SqliteSource;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::SEARCH_DIR;
use crate::config::ReindexArgs;

/// Rebuilds the index. Fails, changing nothing, while a server holds the index's writer.
pub fn run(args: &ReindexArgs) -> anyhow::Result<()> {
    let source = SqliteSource::open(&args.data_dir)?;
    let index = SearchIndex::open(&args.data_dir.join(SEARCH_DIR))?;
    let last = source.last_seq()?;
    let bar = ProgressBar::new(u64::try_from(last).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} reindexing [{bar:40}] {pos}/{len} changes ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let covered = rebuild(&index, &source, &mut |seq| bar.set_position(u64::try_from(seq).unwrap_or(0)))?;
    bar.finish();
    tracing::info!(covered, "search index rebuilt");
    Ok(())
}
