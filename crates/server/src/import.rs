//! `chatd import --from mysql://…` (SPEC §9): the old system's MySQL database into the
//! storage the other flags select, with a progress bar per step and a report at the end.
//!
//! The work is `chatd_core::import::run` between a `MySqlSource` and the mode's import
//! target. Embedded, the command holds the search index's lock from start to end (so no
//! server opens the directory meanwhile), then indexes what it wrote before it exits: when
//! it is done, everything imported is searchable. `--dry-run` imports into a scratch
//! directory that is deleted at the end, so its report is exactly that of a real import from
//! scratch; it reads the real target (read only) for what would refuse the import.

use std::io::Write;
use std::time::{Duration, Instant};

use chatd_core::error::StoreResult;
use chatd_core::import::{
    Batch, ImportError, ImportOptions, ImportTarget, Note, NoteKind, Observer, Standing, Step, Summary,
    Table, Tally, Written,
};
use chatd_core::{AppToken, StoreError};
use chatd_import_mysql::MySqlSource;
use chatd_search_tantivy::{SearchIndex, catch_up_offline};
use chatd_store_postgres::{PgImportTarget, PgTargetView};
use chatd_store_sqlite::{SqliteImportTarget, SqliteSource, SqliteTargetView};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::backend::SEARCH_DIR;
use crate::config::ImportArgs;

/// Notes read from the target per page of the report.
const NOTES_PAGE: usize = 1_000;

/// What an import did, and how long it took.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub summary: Summary,
    /// Reading the source and writing the rows.
    pub rows: Duration,
    /// Embedded: bringing the search index up to the rows, after them.
    pub index: Option<Duration>,
}

/// Runs the import the arguments describe and prints its report on stdout.
pub async fn run(args: &ImportArgs) -> Result<Outcome, ImportError> {
    let started = Instant::now();
    let mut source = MySqlSource::connect(&args.from).await?;
    let options = ImportOptions {
        merge: args.merge,
        max_body_bytes: args.max_message_bytes,
        batch_rows: usize::try_from(args.batch_rows).unwrap_or(usize::MAX),
        ..ImportOptions::default()
    };
    let bars = Bars::default();
    // A dry run's scratch directory, removed when this returns (after the report read it).
    let mut scratch = None;
    let (outcome, mut target, headline): (_, Box<dyn ImportTarget>, _) = if args.dry_run {
        let dir = scratch.insert(tempfile::tempdir().map_err(StoreError::internal)?);
        let view = match &args.database_url {
            Some(url) => View::Postgres(PgTargetView::connect(url).await?),
            None => View::Embedded(SqliteTargetView::open(&args.data_dir)?),
        };
        let mut target = DryRun { view, scratch: SqliteImportTarget::open(dir.path())? };
        let summary = chatd_core::import::run(&mut source, &mut target, &options, &bars).await?;
        let outcome = Outcome { summary, rows: started.elapsed(), index: None };
        (outcome, Box::new(target), Some("dry run: nothing was written"))
    } else if let Some(url) = &args.database_url {
        let mut target = PgImportTarget::connect(url).await?;
        let summary = chatd_core::import::run(&mut source, &mut target, &options, &bars).await?;
        (Outcome { summary, rows: started.elapsed(), index: None }, Box::new(target), None)
    } else {
        let index = SearchIndex::open(&args.data_dir.join(SEARCH_DIR))?;
        // Before the first write: refuses while a server (or another import) runs here.
        let lock = index.lock()?;
        let mut target = SqliteImportTarget::open(&args.data_dir)?;
        let summary = chatd_core::import::run(&mut source, &mut target, &options, &bars).await?;
        let rows = started.elapsed();
        let indexing = index_what_was_written(index, lock, &args.data_dir, &bars).await?;
        (Outcome { summary, rows, index: Some(indexing) }, Box::new(target), None)
    };
    report(&mut Unpiped(std::io::stdout().lock()), &outcome, target.as_mut(), headline).await?;
    Ok(outcome)
}

/// The real target, read only, during a dry run.
enum View {
    Embedded(SqliteTargetView),
    Postgres(PgTargetView),
}

/// A dry run's target: the rows go to a scratch directory; whether the real target holds
/// other data, and which tokens it has, come from the real target (read only), so a dry run
/// is refused (or stopped by taken tokens) exactly when the real import would be.
struct DryRun {
    view: View,
    scratch: SqliteImportTarget,
}

#[async_trait::async_trait]
impl ImportTarget for DryRun {
    async fn begin(&mut self, source: &str) -> StoreResult<Standing> {
        let standing = self.scratch.begin(source).await?;
        let foreign = match &mut self.view {
            View::Embedded(view) => view.foreign(source)?,
            View::Postgres(view) => view.foreign(source).await?,
        };
        Ok(Standing { foreign, ..standing })
    }

    async fn tokens_taken(&mut self, tokens: &[AppToken]) -> StoreResult<Vec<AppToken>> {
        match &mut self.view {
            View::Embedded(view) => view.tokens_taken(tokens),
            View::Postgres(view) => view.tokens_taken(tokens).await,
        }
    }

    async fn write(&mut self, batch: Batch) -> StoreResult<Written> {
        self.scratch.write(batch).await
    }

    async fn deferred(&mut self, table: Table, after: i64, limit: usize) -> StoreResult<Vec<i64>> {
        self.scratch.deferred(table, after, limit).await
    }

    async fn deferred_count(&mut self, table: Table, after: i64) -> StoreResult<u64> {
        self.scratch.deferred_count(table, after).await
    }

    async fn tally(&mut self) -> StoreResult<Tally> {
        self.scratch.tally().await
    }

    async fn notes(&mut self, after: Option<&Note>, limit: usize) -> StoreResult<Vec<Note>> {
        self.scratch.notes(after, limit).await
    }
}

/// Brings the search index up to the database, with a progress bar; returns the time taken.
async fn index_what_was_written(
    index: SearchIndex,
    mut lock: chatd_search_tantivy::IndexLock,
    data_dir: &std::path::Path,
    bars: &Bars,
) -> Result<Duration, ImportError> {
    let started = Instant::now();
    let source = SqliteSource::open(data_dir)?;
    let from = index.indexed_seq()?;
    let to = chatd_core::search::ChangeFeed::last_seq(&source)?;
    let bar = bars.bar("search index", u64::try_from(to - from).unwrap_or(0));
    tokio::task::spawn_blocking(move || {
        let covered = catch_up_offline(&index, &mut lock, &source, &mut |seq| {
            bar.set_position(u64::try_from(seq - from).unwrap_or(0));
        });
        bar.finish();
        covered
    })
    .await
    .map_err(StoreError::internal)??;
    Ok(started.elapsed())
}

/// Progress bars on stderr, one per step (hidden when stderr is not a terminal).
#[derive(Debug, Default)]
struct Bars {
    multi: MultiProgress,
    steps: std::sync::Mutex<Vec<(Step, ProgressBar)>>,
}

impl Bars {
    fn bar(&self, name: &str, total: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>19} [{bar:30}] {human_pos}/{human_len} rows ({rate} rows/s, {elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", indicatif::HumanCount(state.per_sec() as u64));
        })
        .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(total).with_style(style).with_prefix(name.to_owned()));
        bar.tick();
        bar
    }

    fn with(&self, step: Step, f: impl FnOnce(&ProgressBar)) {
        let steps = self.steps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, bar)) = steps.iter().find(|(s, _)| *s == step) {
            f(bar);
        }
    }
}

impl Observer for Bars {
    fn begin(&self, step: Step, total: u64) {
        let bar = self.bar(step.as_str(), total);
        self.steps.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((step, bar));
    }

    fn advance(&self, step: Step, rows: u64) {
        self.with(step, |bar| bar.inc(rows));
    }

    fn end(&self, step: Step) {
        self.with(step, |bar| {
            bar.finish();
            tracing::info!(step = step.as_str(), rows = bar.position(), elapsed = ?bar.elapsed(), "import step done");
        });
    }
}

/// Stdout that a reader may close early (`chatd import … | head`): the import is done by
/// then, and what is not read is dropped rather than reported as a failure.
struct Unpiped<W>(W);

impl<W: Write> Write for Unpiped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// Prints the summary, then one line per note (renumbered rows, new tokens, …).
async fn report(
    out: &mut dyn Write,
    outcome: &Outcome,
    target: &mut dyn ImportTarget,
    headline: Option<&str>,
) -> Result<(), ImportError> {
    let io = |e: std::io::Error| ImportError::Target(StoreError::internal(e));
    let summary = &outcome.summary;
    let tally = &summary.tally;
    writeln!(
        out,
        "chatd import from {}: done{}",
        summary.source,
        headline.map(|h| format!(" ({h})")).unwrap_or_default()
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:<13}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
        "table", "in source", "read", "written", "imported", "renumbered", "skipped"
    )
    .map_err(io)?;
    for table in Table::ALL {
        let t = summary.table(table);
        writeln!(
            out,
            "{:<13}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
            table.as_str(),
            t.in_source,
            t.read,
            t.written,
            tally.imported(table),
            tally.notes(table, NoteKind::Renumbered),
            tally.notes(table, NoteKind::Orphan),
        )
        .map_err(io)?;
    }
    writeln!(out, "(read, written: this run; imported, renumbered, skipped: the whole import)")
        .map_err(io)?;
    let both = |kind| {
        format!(
            "{} application names, {} message bodies",
            tally.notes(Table::Applications, kind),
            tally.notes(Table::Messages, kind)
        )
    };
    writeln!(out, "placeholders for null or blank text: {}", both(NoteKind::Placeholder)).map_err(io)?;
    writeln!(out, "kept whole though longer than the API accepts: {}", both(NoteKind::KeptLong))
        .map_err(io)?;
    writeln!(out, "NUL characters replaced: {}", both(NoteKind::NulReplaced)).map_err(io)?;
    writeln!(out, "new tokens: {} applications", tally.notes(Table::Applications, NoteKind::NewToken))
        .map_err(io)?;
    writeln!(
        out,
        "counters that disagreed with the rows (recomputed): {} applications, {} chats",
        tally.wrong_counters(Table::Applications),
        tally.wrong_counters(Table::Chats)
    )
    .map_err(io)?;
    match outcome.index {
        Some(index) => writeln!(
            out,
            "time: rows {:.1} s, search index {:.1} s",
            outcome.rows.as_secs_f64(),
            index.as_secs_f64()
        ),
        None => writeln!(out, "time: rows {:.1} s", outcome.rows.as_secs_f64()),
    }
    .map_err(io)?;
    let mut last: Option<Note> = None;
    loop {
        let notes = target.notes(last.as_ref(), NOTES_PAGE).await?;
        for note in &notes {
            writeln!(out, "{}", note_line(note)).map_err(io)?;
        }
        match notes.into_iter().last() {
            Some(note) => last = Some(note),
            None => break,
        }
    }
    out.flush().map_err(io)
}

/// One note as a line of the report.
fn note_line(note: &Note) -> String {
    let table = note.table;
    let row = match (table, note.parent) {
        (Table::Chats, Some(parent)) => format!("chat {} of application {parent}", note.legacy_id),
        (Table::Messages, Some(parent)) => format!("message {} of chat {parent}", note.legacy_id),
        _ => format!("{} {}", table.singular(), note.legacy_id),
    };
    let number = |n: Option<i64>| n.map_or_else(|| "none".to_owned(), |n| n.to_string());
    let text = if table == Table::Applications { "name" } else { "body" };
    match note.kind {
        NoteKind::Renumbered => {
            format!("renumbered {row}: {} -> {}", number(note.old_number), number(note.new_number))
        }
        NoteKind::Orphan => {
            let parent = if table == Table::Chats { "application" } else { "chat" };
            format!("skipped {row}: its {parent} is not in the source or was skipped")
        }
        NoteKind::NewToken => {
            format!("new token for {row}: {}", note.token.as_ref().map_or("(unknown)", |t| t.as_str()))
        }
        NoteKind::Placeholder => format!("placeholder {text} for {row}"),
        NoteKind::KeptLong => format!("kept long {text} of {row}"),
        NoteKind::NulReplaced => format!("replaced NUL characters in the {text} of {row}"),
    }
}
