//! [`run`]: one import, step by step, each step from its checkpoint. Reading and writing
//! overlap: while the target writes one batch, the next is read from the source (at most two
//! batches wait), so memory stays bounded by the batch size whatever the tables hold.

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;

use super::{
    Batch, ImportError, ImportTarget, ImportedRow, LegacySource, Standing, Step, Table, Tally, Written, rules,
};
use crate::{AppToken, MessageBody, Timestamp};

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Import beside data that did not come from this source (else refused).
    pub merge: bool,
    /// The API's body limit: longer bodies are kept whole, and noted.
    pub max_body_bytes: usize,
    /// Most rows per batch (one transaction each).
    pub batch_rows: usize,
    /// Most bytes of bodies per batch.
    pub batch_bytes: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            merge: false,
            max_body_bytes: MessageBody::DEFAULT_MAX_BYTES,
            batch_rows: 10_000,
            batch_bytes: 16 << 20,
        }
    }
}

/// Most rows per batch of the renumbering steps (re-read from the source by id).
const RENUMBER_BATCH: usize = 1_000;
/// Tokens checked against the target at once.
const TOKEN_CHECK_BATCH: usize = 1_000;

/// Told how each step goes, for a progress display.
pub trait Observer: Send + Sync {
    /// A step starts with `total` rows to go through.
    fn begin(&self, step: Step, total: u64);
    /// `rows` more went through.
    fn advance(&self, step: Step, rows: u64);
    /// The step is over.
    fn end(&self, step: Step);
}

/// What one table's steps did in this run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSummary {
    /// Rows in the source.
    pub in_source: u64,
    /// Rows read by this run (rows a former run imported are not read again).
    pub read: u64,
    /// Rows written by this run.
    pub written: u64,
    /// Rows this run did not write because their parent is not in the source.
    pub orphans: u64,
}

/// What an import did: this run's figures, and the target's totals for the whole import.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub source: String,
    pub tables: Vec<(Table, TableSummary)>,
    pub tally: Tally,
}

impl Summary {
    pub fn table(&self, table: Table) -> TableSummary {
        self.tables.iter().find(|(t, _)| *t == table).map(|(_, s)| *s).unwrap_or_default()
    }

    fn table_mut(&mut self, table: Table) -> &mut TableSummary {
        let i = self.tables.iter().position(|(t, _)| *t == table).unwrap_or_else(|| {
            self.tables.push((table, TableSummary::default()));
            self.tables.len() - 1
        });
        &mut self.tables[i].1
    }

    fn count(&mut self, table: Table, read: u64, written: Written) {
        let t = self.table_mut(table);
        t.read += read;
        t.written += written.written;
        t.orphans += written.orphans;
    }
}

/// Imports `source` into `target`: refuses a target holding other data unless `merge`,
/// then each step from its checkpoint. Run again after a stop, it goes on; after a finished
/// import, it writes nothing (rows the source gained since are added).
pub async fn run(
    source: &mut dyn LegacySource,
    target: &mut dyn ImportTarget,
    options: &ImportOptions,
    observer: &dyn Observer,
) -> Result<Summary, ImportError> {
    let name = source.name().to_owned();
    let standing = target.begin(&name).await?;
    if standing.foreign && !options.merge {
        return Err(ImportError::NotEmpty { from: name });
    }
    let mut summary = Summary { source: name, ..Summary::default() };
    for table in Table::ALL {
        summary.table_mut(table).in_source = source.count(table, 0).await?;
    }
    if standing.foreign {
        check_tokens(source, target, standing.checkpoint(Step::Applications)).await?;
    }
    let now = Timestamp::now();

    let step = Step::Applications;
    let after = begin(source, &standing, &summary, step, observer).await?;
    let rows = source.applications(after);
    let (read, written) = copy(
        rows,
        target,
        options,
        step,
        observer,
        |_| 0,
        |rows| {
            let apps = rows.into_iter().map(|r| rules::application(r, now)).collect::<Result<Vec<_>, _>>();
            apps.map(Batch::Applications).map_err(|e| ImportError::Source(format!("no random token: {e}")))
        },
    )
    .await?;
    summary.count(Table::Applications, read, written);

    let step = Step::Chats;
    let after = begin(source, &standing, &summary, step, observer).await?;
    let rows = source.chats(after);
    let batch = |rows: Vec<_>| Ok(rows_batch(step, rows.into_iter().map(|r| rules::chat(r, now))));
    let (read, written) = copy(rows, target, options, step, observer, |_| 0, batch).await?;
    summary.count(Table::Chats, read, written);
    let written = renumber(source, target, &standing, Step::ChatsRenumbered, now, options, observer).await?;
    summary.count(Table::Chats, 0, written);

    let step = Step::Messages;
    let after = begin(source, &standing, &summary, step, observer).await?;
    let rows = source.messages(after);
    let max = options.max_body_bytes;
    let size = |r: &super::LegacyMessage| r.body.as_ref().map_or(0, String::len);
    let batch = |rows: Vec<_>| Ok(rows_batch(step, rows.into_iter().map(|r| rules::message(r, now, max))));
    let (read, written) = copy(rows, target, options, step, observer, size, batch).await?;
    summary.count(Table::Messages, read, written);
    let written =
        renumber(source, target, &standing, Step::MessagesRenumbered, now, options, observer).await?;
    summary.count(Table::Messages, 0, written);

    summary.tally = target.tally().await?;
    Ok(summary)
}

/// A batch of chats or messages.
fn rows_batch(step: Step, rows: impl Iterator<Item = ImportedRow>) -> Batch {
    Batch::Rows { step, rows: rows.collect() }
}

/// Tells the observer a copying step begins; returns the step's checkpoint. A step starting
/// from nothing has the whole table to go: counted already, not counted again.
async fn begin(
    source: &mut dyn LegacySource,
    standing: &Standing,
    summary: &Summary,
    step: Step,
    observer: &dyn Observer,
) -> Result<i64, ImportError> {
    let after = standing.checkpoint(step);
    let total = match after {
        0 => summary.table(step.table()).in_source,
        after => source.count(step.table(), after).await?,
    };
    observer.begin(step, total);
    Ok(after)
}

/// Refuses, before anything is written, tokens of the source's applications (those not yet
/// imported) that the target already has.
async fn check_tokens(
    source: &mut dyn LegacySource,
    target: &mut dyn ImportTarget,
    after: i64,
) -> Result<(), ImportError> {
    let mut taken = Vec::new();
    let mut chunks = source.applications(after).chunks(TOKEN_CHECK_BATCH);
    while let Some(chunk) = chunks.next().await {
        let apps = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
        let tokens: Vec<(i64, AppToken)> =
            apps.iter().filter_map(|a| Some((a.id, a.token.as_deref().and_then(AppToken::parse)?))).collect();
        let found = target.tokens_taken(&tokens.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>()).await?;
        taken.extend(tokens.into_iter().filter(|(_, t)| found.contains(t)).map(|(id, _)| id));
    }
    if taken.is_empty() { Ok(()) } else { Err(ImportError::TokensTaken { ids: taken }) }
}

/// Copies a stream of rows in batches, reading the next batch while the target writes one.
/// Returns the rows read and what the batches did.
async fn copy<R: Send>(
    mut rows: BoxStream<'_, Result<R, ImportError>>,
    target: &mut dyn ImportTarget,
    options: &ImportOptions,
    step: Step,
    observer: &dyn Observer,
    size: impl Fn(&R) -> usize,
    batch: impl Fn(Vec<R>) -> Result<Batch, ImportError>,
) -> Result<(u64, Written), ImportError> {
    let (tx, mut rx) = mpsc::channel::<Vec<R>>(2);
    let read = async move {
        let (mut rows_read, mut pending, mut bytes) = (0u64, Vec::new(), 0usize);
        while let Some(row) = rows.next().await {
            let row = row?;
            rows_read += 1;
            bytes += size(&row);
            pending.push(row);
            if pending.len() >= options.batch_rows || bytes >= options.batch_bytes {
                bytes = 0;
                if tx.send(std::mem::take(&mut pending)).await.is_err() {
                    // The writer stopped on an error of its own (and dropped its end), which
                    // is the one reported.
                    return Ok(rows_read);
                }
            }
        }
        if !pending.is_empty() {
            let _ = tx.send(pending).await;
        }
        Ok::<_, ImportError>(rows_read)
    };
    // `move`: a write error drops `rx`, so that the reader's next send fails and it stops.
    let write = async move {
        let mut total = Written::default();
        while let Some(rows) = rx.recv().await {
            let n = rows.len() as u64;
            total += target.write(batch(rows)?).await?;
            observer.advance(step, n);
        }
        Ok::<_, ImportError>(total)
    };
    let (read, written) = futures::join!(read, write);
    // A write error first: it is why reading stopped, when it did.
    let written = written?;
    let read = read?;
    observer.end(step);
    Ok((read, written))
}

/// The renumbering step of a table: the rows its first step deferred, re-read from the
/// source by id, in id order, each given its parent's highest number plus one.
async fn renumber(
    source: &mut dyn LegacySource,
    target: &mut dyn ImportTarget,
    standing: &Standing,
    step: Step,
    now: Timestamp,
    options: &ImportOptions,
    observer: &dyn Observer,
) -> Result<Written, ImportError> {
    let table = step.table();
    let mut after = standing.checkpoint(step);
    observer.begin(step, target.deferred_count(table, after).await?);
    let mut total = Written::default();
    loop {
        let ids = target.deferred(table, after, RENUMBER_BATCH.min(options.batch_rows)).await?;
        let Some(&last) = ids.last() else { break };
        let rows: Vec<ImportedRow> = match table {
            Table::Chats => {
                source.chats_by_id(&ids).await?.into_iter().map(|r| rules::chat(r, now)).collect()
            }
            Table::Messages => {
                let max = options.max_body_bytes;
                let rows = source.messages_by_id(&ids).await?;
                rows.into_iter().map(|r| rules::message(r, now, max)).collect()
            }
            Table::Applications => unreachable!("applications keep no numbers"),
        };
        if let Some(gone) = ids.iter().find(|id| !rows.iter().any(|r| r.legacy_id == **id)) {
            return Err(ImportError::Source(format!(
                "{} {gone} left the source during the import; an import needs the old system stopped",
                table.singular()
            )));
        }
        total += target.write(Batch::Rows { step, rows }).await?;
        observer.advance(step, ids.len() as u64);
        after = last;
    }
    observer.end(step);
    Ok(total)
}
