//! `chatd import` (SPEC §9): moving the old Rails + Go system's data into chatd.
//!
//! The old schema had no unique index and no lock for numbers, stored `null` tokens for
//! blank names and kept counters that could be wrong, so its rows go through [`rules`]
//! before they are written: every irregularity has one rule, applied the same way every
//! time, and leaves a [`Note`] in the target. [`run`] reads the source in primary-key order
//! and writes it through an [`ImportTarget`] in large batches, each in one transaction
//! with the step's checkpoint, so a stopped import resumes where its last batch committed
//! and a finished one, run again, writes nothing.
//!
//! # Numbers
//!
//! In each parent (an application's chats, a chat's messages) the row with the lowest id
//! keeps its number; rows whose number is taken by a lower id, null, below 1 or beyond the
//! old schema's `int` take the next
//! free numbers after the parent's highest, in id order. [`run`] does this in two steps per
//! table: the first writes every row under its own number where that number is free and
//! records the others as *deferred*; the second, once all numbers are in, reads the deferred
//! rows again in id order and gives each the parent's highest number plus one. Both steps
//! are functions of the source alone, so a resumed import numbers as one clean run does.
//! Imported parents may have gaps in their numbers (the old system's lost writes): chatd
//! keeps, besides the exact count, the parent's highest number, and numbers new rows after
//! it.

mod rules;
mod run;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::StoreResult;
use crate::{AppToken, StoreError, Timestamp};

pub use rules::{BLANK_BODY, BLANK_NAME};
pub use run::{ImportOptions, Observer, Summary, TableSummary, run};

/// A row of the old `applications` table, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyApplication {
    pub id: i64,
    pub name: Option<String>,
    pub token: Option<String>,
    /// The old counter: only compared with the rows, never copied.
    pub chat_count: Option<i64>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// A row of the old `chats` table, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyChat {
    pub id: i64,
    pub application_id: i64,
    pub number: Option<i64>,
    pub message_count: Option<i64>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// A row of the old `messages` table, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMessage {
    pub id: i64,
    pub chat_id: i64,
    pub number: Option<i64>,
    pub body: Option<String>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// The old system's tables, in the order they are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Applications,
    Chats,
    Messages,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Applications, Table::Chats, Table::Messages];

    /// The table's name, in the source and in the target's import records.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Applications => "applications",
            Table::Chats => "chats",
            Table::Messages => "messages",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Table::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The row kind, for reports ("message 12").
    pub fn singular(self) -> &'static str {
        match self {
            Table::Applications => "application",
            Table::Chats => "chat",
            Table::Messages => "message",
        }
    }
}

/// A step of an import; each has its own checkpoint (the last legacy id it wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Applications, in id order.
    Applications,
    /// Chats under their own numbers; the others deferred.
    Chats,
    /// Deferred chats, numbered after their application's highest.
    ChatsRenumbered,
    /// Messages under their own numbers; the others deferred.
    Messages,
    /// Deferred messages, numbered after their chat's highest.
    MessagesRenumbered,
}

impl Step {
    pub const ALL: [Step; 5] =
        [Step::Applications, Step::Chats, Step::ChatsRenumbered, Step::Messages, Step::MessagesRenumbered];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Applications => "applications",
            Step::Chats => "chats",
            Step::ChatsRenumbered => "chats renumbered",
            Step::Messages => "messages",
            Step::MessagesRenumbered => "messages renumbered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Step::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn table(self) -> Table {
        match self {
            Step::Applications => Table::Applications,
            Step::Chats | Step::ChatsRenumbered => Table::Chats,
            Step::Messages | Step::MessagesRenumbered => Table::Messages,
        }
    }

    /// Whether the step gives its rows the next free numbers (rather than their own).
    pub fn renumbers(self) -> bool {
        matches!(self, Step::ChatsRenumbered | Step::MessagesRenumbered)
    }
}

/// What a rule did to a row, recorded in the target with the row's legacy id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoteKind {
    /// Given the next free number: its own was taken by a lower id, null, below 1, or above
    /// [`MAX_NUMBER`].
    Renumbered,
    /// A null or blank name or body, stored as [`BLANK_NAME`] or [`BLANK_BODY`].
    Placeholder,
    /// An application without a token chatd can serve (null, blank, or with characters a
    /// URL path segment of chatd does not take): given a new one.
    NewToken,
    /// A body longer than the API accepts, or a name longer than it accepts, kept whole.
    KeptLong,
    /// NUL characters (which PostgreSQL cannot store) replaced by U+FFFD.
    NulReplaced,
    /// Not written: its parent is not in the source.
    Orphan,
}

impl NoteKind {
    pub const ALL: [NoteKind; 6] = [
        NoteKind::Renumbered,
        NoteKind::Placeholder,
        NoteKind::NewToken,
        NoteKind::KeptLong,
        NoteKind::NulReplaced,
        NoteKind::Orphan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Renumbered => "renumbered",
            NoteKind::Placeholder => "placeholder",
            NoteKind::NewToken => "new_token",
            NoteKind::KeptLong => "kept_long",
            NoteKind::NulReplaced => "nul_replaced",
            NoteKind::Orphan => "orphan",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        NoteKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One rule applied to one row. Stored in the target in the transaction of the row, so the
/// report of a resumed import is the report of one clean run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub table: Table,
    pub legacy_id: i64,
    pub kind: NoteKind,
    /// The parent's legacy id (an application's: none).
    pub parent: Option<i64>,
    /// Renumbered: the number in the source (none when null).
    pub old_number: Option<i64>,
    /// Renumbered: the number given.
    pub new_number: Option<i64>,
    /// New token: the token given, read back from the target when reported.
    pub token: Option<AppToken>,
}

impl Note {
    /// A note with no numbers.
    pub fn new(table: Table, legacy_id: i64, parent: Option<i64>, kind: NoteKind) -> Self {
        Note { table, legacy_id, kind, parent, old_number: None, new_number: None, token: None }
    }
}

/// An application ready to write: token, name and times decided by the rules.
#[derive(Debug, Clone)]
pub struct ImportedApplication {
    pub legacy_id: i64,
    pub token: AppToken,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The old counter, to report whether it agreed with the rows.
    pub old_count: Option<i64>,
    /// What the rules did (placeholder name, new token, …).
    pub notes: Vec<NoteKind>,
}

/// The highest number a row keeps; others are renumbered.
pub const MAX_NUMBER: i64 = i32::MAX as i64;

/// A chat or a message ready to write. Its number is decided by the target: its own when
/// free and the step keeps numbers, else the parent's highest plus one.
#[derive(Debug, Clone)]
pub struct ImportedRow {
    pub legacy_id: i64,
    /// The parent's legacy id (the chat's application, the message's chat).
    pub parent: i64,
    /// The number in the source, as stored (null, or below 1, included).
    pub number: Option<i64>,
    /// The message's body after the rules; empty for a chat.
    pub body: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A chat's old counter, to report whether it agreed with the rows.
    pub old_count: Option<i64>,
    pub notes: Vec<NoteKind>,
}

impl ImportedRow {
    /// The number the row asks to keep: its own, when it is one of the old schema's
    /// (1 to 2³¹ − 1: its columns are `int`; a larger one, from a widened column, would leave
    /// too little room above it, and JavaScript clients cannot hold numbers past 2⁵³).
    pub fn own_number(&self) -> Option<i64> {
        self.number.filter(|n| (1..=MAX_NUMBER).contains(n))
    }
}

/// One batch, written in one transaction together with its step's checkpoint.
#[derive(Debug, Clone)]
pub enum Batch {
    Applications(Vec<ImportedApplication>),
    /// Chats or messages (as `step` says), in legacy id order.
    Rows {
        step: Step,
        rows: Vec<ImportedRow>,
    },
}

impl Batch {
    pub fn step(&self) -> Step {
        match self {
            Batch::Applications(_) => Step::Applications,
            Batch::Rows { step, .. } => *step,
        }
    }

    /// The legacy id the step's checkpoint moves to.
    pub fn through(&self) -> Option<i64> {
        match self {
            Batch::Applications(rows) => rows.last().map(|r| r.legacy_id),
            Batch::Rows { rows, .. } => rows.last().map(|r| r.legacy_id),
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows written.
    pub written: u64,
    /// Rows left for the renumbering step.
    pub deferred: u64,
    /// Rows not written because their parent is not in the source.
    pub orphans: u64,
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, other: Written) {
        self.written += other.written;
        self.deferred += other.deferred;
        self.orphans += other.orphans;
    }
}

/// Where an import of one source stands in a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// Each step's checkpoint: the last legacy id it wrote (0: none yet).
    pub checkpoints: Vec<(Step, i64)>,
    /// The target holds applications that did not come from this source.
    pub foreign: bool,
}

impl Standing {
    pub fn checkpoint(&self, step: Step) -> i64 {
        self.checkpoints.iter().find(|(s, _)| *s == step).map_or(0, |(_, at)| *at)
    }
}

/// Totals of an import as the target holds them (all runs together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows imported per table.
    pub imported: Vec<(Table, u64)>,
    /// Notes per table and kind.
    pub notes: Vec<(Table, NoteKind, u64)>,
    /// Parents whose old counter disagreed with their rows (null counters included).
    pub wrong_counters: Vec<(Table, u64)>,
}

impl Tally {
    pub fn imported(&self, table: Table) -> u64 {
        self.imported.iter().find(|(t, _)| *t == table).map_or(0, |(_, n)| *n)
    }

    pub fn notes(&self, table: Table, kind: NoteKind) -> u64 {
        self.notes.iter().find(|(t, k, _)| *t == table && *k == kind).map_or(0, |(_, _, n)| *n)
    }

    pub fn wrong_counters(&self, table: Table) -> u64 {
        self.wrong_counters.iter().find(|(t, _)| *t == table).map_or(0, |(_, n)| *n)
    }
}

/// The old system's database, read in primary-key order. Implemented by `import-mysql`.
#[async_trait]
pub trait LegacySource: Send {
    /// Names the source without credentials (`host:port/database`); a target records it, so
    /// that a resumed import goes on only from the same source.
    fn name(&self) -> &str;
    /// Rows of `table` with an id above `after`.
    async fn count(&mut self, table: Table, after: i64) -> Result<u64, ImportError>;
    /// Applications with an id above `after`, in id order, streamed.
    fn applications(&mut self, after: i64) -> BoxStream<'_, Result<LegacyApplication, ImportError>>;
    /// Chats with an id above `after`, in id order, streamed.
    fn chats(&mut self, after: i64) -> BoxStream<'_, Result<LegacyChat, ImportError>>;
    /// Messages with an id above `after`, in id order, streamed.
    fn messages(&mut self, after: i64) -> BoxStream<'_, Result<LegacyMessage, ImportError>>;
    /// The chats with these ids, in id order.
    async fn chats_by_id(&mut self, ids: &[i64]) -> Result<Vec<LegacyChat>, ImportError>;
    /// The messages with these ids, in id order.
    async fn messages_by_id(&mut self, ids: &[i64]) -> Result<Vec<LegacyMessage>, ImportError>;
}

/// chatd's storage as an import writes it. Implemented by each store; an implementor holds
/// the target for one import at a time (and, embedded, keeps a server off it).
#[async_trait]
pub trait ImportTarget: Send {
    /// Where the import of `source` stands; registers the source on its first import.
    async fn begin(&mut self, source: &str) -> StoreResult<Standing>;
    /// Of `tokens`, those an application of the target already has.
    async fn tokens_taken(&mut self, tokens: &[AppToken]) -> StoreResult<Vec<AppToken>>;
    /// Writes a batch in one transaction with its notes and its step's checkpoint.
    ///
    /// Applications: a token already taken fails the batch (nothing of it is written).
    /// Rows of a step that keeps numbers: a row is written under its own number when that
    /// number is free in its parent, else (or when it has none) deferred; a row whose parent
    /// was not imported is an orphan, noted and not written. Rows of a renumbering step take
    /// the parent's highest number plus one, in order, and are noted `Renumbered`. Parents'
    /// counts and highest numbers move with their rows.
    async fn write(&mut self, batch: Batch) -> StoreResult<Written>;
    /// Legacy ids of the rows of `table` deferred by the first step, above `after`, in order.
    async fn deferred(&mut self, table: Table, after: i64, limit: usize) -> StoreResult<Vec<i64>>;
    /// How many rows of `table` above `after` are deferred.
    async fn deferred_count(&mut self, table: Table, after: i64) -> StoreResult<u64>;
    /// The import's totals, all runs together.
    async fn tally(&mut self) -> StoreResult<Tally>;
    /// Up to `limit` notes after `after` (table, legacy id, kind order), new tokens filled in.
    async fn notes(&mut self, after: Option<&Note>, limit: usize) -> StoreResult<Vec<Note>>;
}

/// Why an import stopped. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source could not be read; the message names what is wrong.
    #[error("{0}")]
    Source(String),
    #[error("{}", store_line(.0))]
    Target(#[from] StoreError),
    #[error(
        "the target already holds data that was not imported from {from}; \
         run again with --merge to import beside it"
    )]
    NotEmpty { from: String },
    #[error(
        "{} application(s) of the source have a token the target already uses (old ids: {}); \
         nothing was written",
        ids.len(), list(ids)
    )]
    TokensTaken { ids: Vec<i64> },
}

/// A store error with its causes, on one line.
fn store_line(e: &StoreError) -> String {
    let mut line = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

/// The first ids of a list, for a one-line message.
fn list(ids: &[i64]) -> String {
    const SHOWN: usize = 10;
    let mut s = ids.iter().take(SHOWN).map(i64::to_string).collect::<Vec<_>>().join(", ");
    if ids.len() > SHOWN {
        s.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    s
}
