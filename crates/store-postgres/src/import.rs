//! `chatd import` into PostgreSQL (SPEC §9): [`PgImportTarget`] implements the core's
//! [`ImportTarget`] on a connection of its own.
//!
//! - One import at a time per database: the connection holds a session advisory lock for as
//!   long as it is open, and a second import is refused rather than left waiting.
//! - Each batch is one transaction: its rows (inserted in bulk from arrays), their notes,
//!   the rows it deferred, the parents' counts and last numbers, and its step's checkpoint.
//!   A stopped import goes on after its last committed batch.
//! - The parents a batch writes under are locked in id order (applications for chats, chats
//!   for messages), as the live writer locks them, so an import beside running instances
//!   waits for their batches and they for its, never in a cycle.
//! - In a step that keeps numbers, a row's number is claimed first within the batch (lowest
//!   legacy id first), then against the table (`ON CONFLICT DO NOTHING`): a row whose number
//!   is taken, or that has none, is deferred. A renumbering step gives each row its parent's
//!   last number plus one.
//! - What an import knows of its source (checkpoints, the legacy ids of the applications and
//!   chats it wrote, deferred rows, notes) lives in the `import_*` tables, keyed by source.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chatd_core::error::StoreResult;
use chatd_core::import::{
    Batch, ImportTarget, ImportedApplication, ImportedRow, Note, NoteKind, Standing, Step, Table, Tally,
    Written,
};
use chatd_core::search::normalize;
use chatd_core::{AppToken, StoreError};
use sqlx::{Connection, PgConnection, Row};

use crate::error::map;

/// The advisory lock an import holds on its database, as two 32-bit halves ("chat",
/// "impt"): a key space apart from the single 64-bit keys (sqlx's migrator's among them).
const IMPORT_LOCK: (i32, i32) = (0x6368_6174, 0x696d_7074);

/// chatd's storage as `chatd import` writes it: one connection, holding the database's
/// import lock while it is open.
#[derive(Debug)]
pub struct PgImportTarget {
    db: PgConnection,
    /// The source [`ImportTarget::begin`] registered; every later call is about it.
    source: Option<i64>,
}

/// Of `tokens`, those an application in `db` has.
async fn taken_tokens(db: &mut PgConnection, tokens: &[AppToken]) -> StoreResult<Vec<AppToken>> {
    let tokens: Vec<&str> = tokens.iter().map(AppToken::as_str).collect();
    let taken: Vec<String> = sqlx::query_scalar("SELECT token FROM applications WHERE token = ANY ($1)")
        .bind(&tokens)
        .fetch_all(&mut *db)
        .await
        .map_err(map)?;
    taken.iter().map(|t| parse(t, AppToken::parse)).collect()
}

/// A PostgreSQL target as it stands, read only, for `chatd import --dry-run`: what a real
/// import would be refused for (other data, tokens taken), without a lock, a migration or a
/// write. A database chatd never ran on is empty.
#[derive(Debug)]
pub struct PgTargetView {
    db: PgConnection,
}

impl PgTargetView {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let db = PgConnection::connect_with(&crate::connect_options(url)?).await.map_err(map)?;
        Ok(PgTargetView { db })
    }

    /// Whether the target holds applications that did not come from the source `name`.
    pub async fn foreign(&mut self, name: &str) -> StoreResult<bool> {
        let (apps, imports): (bool, bool) = sqlx::query_as(
            "SELECT to_regclass('applications') IS NOT NULL, to_regclass('import_applications') IS NOT NULL",
        )
        .fetch_one(&mut self.db)
        .await
        .map_err(map)?;
        if !apps {
            return Ok(false);
        }
        let foreign = if imports {
            sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM applications) > (SELECT count(*) FROM import_applications i \
                 JOIN import_sources s ON s.id = i.source WHERE s.name = $1)",
            )
            .bind(name)
            .fetch_one(&mut self.db)
            .await
        } else {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM applications)").fetch_one(&mut self.db).await
        };
        foreign.map_err(map)
    }

    /// Of `tokens`, those an application of the target has.
    pub async fn tokens_taken(&mut self, tokens: &[AppToken]) -> StoreResult<Vec<AppToken>> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('applications') IS NOT NULL")
            .fetch_one(&mut self.db)
            .await
            .map_err(map)?;
        if !exists {
            return Ok(Vec::new());
        }
        taken_tokens(&mut self.db, tokens).await
    }
}

impl PgImportTarget {
    /// Connects, takes the database's import lock (refused with `Unavailable` when another
    /// import holds it) and brings the schema up to date as [`crate::PgStore::connect`] does.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let mut db = PgConnection::connect_with(&crate::connect_options(url)?).await.map_err(map)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(IMPORT_LOCK.0)
            .bind(IMPORT_LOCK.1)
            .fetch_one(&mut db)
            .await
            .map_err(map)?;
        if !locked {
            let _ = db.close().await;
            return Err(StoreError::Unavailable("another import is running on this database".into()));
        }
        crate::prepare(&mut db).await?;
        // A batch writes thousands of rows with their indexes, and the tally reads every
        // imported parent: more than a request's statement is allowed. Waits for locks stay
        // bounded.
        sqlx::query("SET statement_timeout = 0").execute(&mut db).await.map_err(map)?;
        Ok(PgImportTarget { db, source: None })
    }

    /// Closes the connection, and with it releases the import lock.
    pub async fn close(self) -> StoreResult<()> {
        self.db.close().await.map_err(map)
    }

    fn source(&self) -> StoreResult<i64> {
        self.source.ok_or_else(|| StoreError::internal("an import target used before begin"))
    }
}

#[async_trait]
impl ImportTarget for PgImportTarget {
    async fn begin(&mut self, source: &str) -> StoreResult<Standing> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO import_sources (name) VALUES ($1) \
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        )
        .bind(source)
        .fetch_one(&mut self.db)
        .await
        .map_err(map)?;
        self.source = Some(id);
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT step, after FROM import_checkpoints WHERE source = $1 ORDER BY step")
                .bind(id)
                .fetch_all(&mut self.db)
                .await
                .map_err(map)?;
        let checkpoints = rows
            .into_iter()
            .map(|(step, after)| Ok((parse(&step, Step::parse)?, after)))
            .collect::<StoreResult<_>>()?;
        let foreign: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM applications a WHERE NOT EXISTS \
             (SELECT 1 FROM import_applications i WHERE i.source = $1 AND i.application_id = a.id))",
        )
        .bind(id)
        .fetch_one(&mut self.db)
        .await
        .map_err(map)?;
        Ok(Standing { checkpoints, foreign })
    }

    async fn tokens_taken(&mut self, tokens: &[AppToken]) -> StoreResult<Vec<AppToken>> {
        taken_tokens(&mut self.db, tokens).await
    }

    #[tracing::instrument(skip_all, fields(step = batch.step().as_str()))]
    async fn write(&mut self, batch: Batch) -> StoreResult<Written> {
        let source = self.source()?;
        let step = batch.step();
        let Some(through) = batch.through() else { return Ok(Written::default()) };
        let mut tx = self.db.begin().await.map_err(map)?;
        let mut notes = Notes::default();
        let written = match batch {
            Batch::Applications(apps) => write_applications(&mut tx, source, &apps, &mut notes).await?,
            Batch::Rows { step, rows } => write_rows(&mut tx, source, step, rows, &mut notes).await?,
        };
        notes.insert(&mut tx, source).await?;
        sqlx::query(
            "INSERT INTO import_checkpoints (source, step, after, written) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (source, step) DO UPDATE \
             SET after = EXCLUDED.after, written = import_checkpoints.written + EXCLUDED.written",
        )
        .bind(source)
        .bind(step.as_str())
        .bind(through)
        .bind(count(written.written)?)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(written)
    }

    async fn deferred(&mut self, table: Table, after: i64, limit: usize) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT legacy_id FROM import_deferred WHERE source = $1 AND tbl = $2 AND legacy_id > $3 \
             ORDER BY legacy_id LIMIT $4",
        )
        .bind(self.source()?)
        .bind(table.as_str())
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut self.db)
        .await
        .map_err(map)
    }

    async fn deferred_count(&mut self, table: Table, after: i64) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM import_deferred WHERE source = $1 AND tbl = $2 AND legacy_id > $3",
        )
        .bind(self.source()?)
        .bind(table.as_str())
        .bind(after)
        .fetch_one(&mut self.db)
        .await
        .map_err(map)?;
        unsigned(n)
    }

    async fn tally(&mut self) -> StoreResult<Tally> {
        let source = self.source()?;
        let steps: Vec<(String, i64)> =
            sqlx::query_as("SELECT step, written FROM import_checkpoints WHERE source = $1")
                .bind(source)
                .fetch_all(&mut self.db)
                .await
                .map_err(map)?;
        let mut imported: BTreeMap<Table, u64> = Table::ALL.into_iter().map(|t| (t, 0)).collect();
        for (step, written) in steps {
            *imported.entry(parse(&step, Step::parse)?.table()).or_default() += unsigned(written)?;
        }
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT tbl, kind, count(*) FROM import_notes WHERE source = $1 GROUP BY tbl, kind ORDER BY tbl, kind",
        )
        .bind(source)
        .fetch_all(&mut self.db)
        .await
        .map_err(map)?;
        let notes = rows
            .iter()
            .map(|(table, kind, n)| {
                Ok((parse(table, Table::parse)?, parse(kind, NoteKind::parse)?, unsigned(*n)?))
            })
            .collect::<StoreResult<_>>()?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT 'applications', count(*) FROM import_applications i \
             JOIN applications a ON a.id = i.application_id \
             WHERE i.source = $1 AND i.old_count IS DISTINCT FROM a.chats_count \
             UNION ALL \
             SELECT 'chats', count(*) FROM import_chats i JOIN chats c ON c.id = i.chat_id \
             WHERE i.source = $1 AND i.old_count IS DISTINCT FROM c.messages_count",
        )
        .bind(source)
        .fetch_all(&mut self.db)
        .await
        .map_err(map)?;
        let wrong_counters = rows
            .iter()
            .map(|(table, n)| Ok((parse(table, Table::parse)?, unsigned(*n)?)))
            .collect::<StoreResult<_>>()?;
        Ok(Tally { imported: imported.into_iter().collect(), notes, wrong_counters })
    }

    async fn notes(&mut self, after: Option<&Note>, limit: usize) -> StoreResult<Vec<Note>> {
        // Below every note's key when none is given.
        let (table, legacy_id, kind) =
            after.map_or(("", i64::MIN, ""), |n| (n.table.as_str(), n.legacy_id, n.kind.as_str()));
        let rows = sqlx::query(
            "SELECT n.tbl, n.legacy_id, n.kind, n.parent, n.old_number, n.new_number, a.token \
             FROM import_notes n \
             LEFT JOIN import_applications i ON n.tbl = 'applications' AND n.kind = 'new_token' \
             AND i.source = n.source AND i.legacy_id = n.legacy_id \
             LEFT JOIN applications a ON a.id = i.application_id \
             WHERE n.source = $1 AND (n.tbl, n.legacy_id, n.kind) > ($2, $3, $4) \
             ORDER BY n.tbl, n.legacy_id, n.kind LIMIT $5",
        )
        .bind(self.source()?)
        .bind(table)
        .bind(legacy_id)
        .bind(kind)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut self.db)
        .await
        .map_err(map)?;
        rows.iter()
            .map(|r| {
                let token: Option<String> = r.try_get("token").map_err(map)?;
                Ok(Note {
                    table: parse(r.try_get("tbl").map_err(map)?, Table::parse)?,
                    legacy_id: r.try_get("legacy_id").map_err(map)?,
                    kind: parse(r.try_get("kind").map_err(map)?, NoteKind::parse)?,
                    parent: r.try_get("parent").map_err(map)?,
                    old_number: r.try_get("old_number").map_err(map)?,
                    new_number: r.try_get("new_number").map_err(map)?,
                    token: token.as_deref().map(|t| parse(t, AppToken::parse)).transpose()?,
                })
            })
            .collect()
    }
}

/// A stored name (of a step, table, note kind, token) read back into its type.
fn parse<T>(stored: &str, parse: impl Fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(stored).ok_or_else(|| StoreError::internal(format!("the import records hold {stored:?}, unknown")))
}

fn unsigned(n: i64) -> StoreResult<u64> {
    u64::try_from(n).map_err(StoreError::internal)
}

fn count(n: u64) -> StoreResult<i64> {
    i64::try_from(n).map_err(StoreError::internal)
}

/// The notes a batch writes, as columns.
#[derive(Debug, Default)]
struct Notes {
    table: Vec<&'static str>,
    legacy_id: Vec<i64>,
    kind: Vec<&'static str>,
    parent: Vec<Option<i64>>,
    old_number: Vec<Option<i64>>,
    new_number: Vec<Option<i64>>,
}

impl Notes {
    /// A note with no numbers.
    fn push(&mut self, table: Table, legacy_id: i64, kind: NoteKind, parent: Option<i64>) {
        self.push_numbered(table, legacy_id, kind, parent, (None, None));
    }

    /// A renumbering: the number in the source (as stored) and the one given.
    fn renumbered(&mut self, table: Table, row: &ImportedRow, number: i64) {
        let numbers = (row.number, Some(number));
        self.push_numbered(table, row.legacy_id, NoteKind::Renumbered, Some(row.parent), numbers);
    }

    fn push_numbered(
        &mut self,
        table: Table,
        legacy_id: i64,
        kind: NoteKind,
        parent: Option<i64>,
        (old, new): (Option<i64>, Option<i64>),
    ) {
        self.table.push(table.as_str());
        self.legacy_id.push(legacy_id);
        self.kind.push(kind.as_str());
        self.parent.push(parent);
        self.old_number.push(old);
        self.new_number.push(new);
    }

    async fn insert(&self, db: &mut PgConnection, source: i64) -> StoreResult<()> {
        if self.table.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO import_notes (source, tbl, legacy_id, kind, parent, old_number, new_number) \
             SELECT $1, t, l, k, p, o, n \
             FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[]) \
             AS u(t, l, k, p, o, n)",
        )
        .bind(source)
        .bind(&self.table)
        .bind(&self.legacy_id)
        .bind(&self.kind)
        .bind(&self.parent)
        .bind(&self.old_number)
        .bind(&self.new_number)
        .execute(&mut *db)
        .await
        .map_err(map)?;
        Ok(())
    }
}

/// Applications under their own tokens; a token already taken fails the batch.
async fn write_applications(
    db: &mut PgConnection,
    source: i64,
    apps: &[ImportedApplication],
    notes: &mut Notes,
) -> StoreResult<Written> {
    let tokens: Vec<&str> = apps.iter().map(|a| a.token.as_str()).collect();
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let created: Vec<i64> = apps.iter().map(|a| a.created_at.as_millis()).collect();
    let updated: Vec<i64> = apps.iter().map(|a| a.updated_at.as_millis()).collect();
    // In legacy id order, so that applications list in the order they had.
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "INSERT INTO applications (token, name, created_at, updated_at) \
         SELECT t, n, c, u FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
         WITH ORDINALITY AS r(t, n, c, u, o) ORDER BY o \
         ON CONFLICT (token) DO NOTHING RETURNING id, token",
    )
    .bind(&tokens)
    .bind(&names)
    .bind(&created)
    .bind(&updated)
    .fetch_all(&mut *db)
    .await
    .map_err(map)?;
    let mut ids: HashMap<String, i64> = rows.into_iter().map(|(id, token)| (token, id)).collect();
    // Each id taken once: of two applications of the batch with one token, the second fails.
    let ids: Vec<Option<i64>> = apps.iter().map(|a| ids.remove(a.token.as_str())).collect();
    let taken: Vec<String> =
        apps.iter().zip(&ids).filter(|(_, id)| id.is_none()).map(|(a, _)| a.legacy_id.to_string()).collect();
    if !taken.is_empty() {
        // The transaction is dropped, not committed: nothing of the batch stays.
        return Err(StoreError::internal(format!(
            "the token of application(s) {} (old ids) is already taken in the target",
            taken.join(", ")
        )));
    }
    let legacy: Vec<i64> = apps.iter().map(|a| a.legacy_id).collect();
    let old_counts: Vec<Option<i64>> = apps.iter().map(|a| a.old_count).collect();
    sqlx::query(
        "INSERT INTO import_applications (source, legacy_id, application_id, old_count) \
         SELECT $1, l, a, c FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS u(l, a, c)",
    )
    .bind(source)
    .bind(&legacy)
    .bind(&ids)
    .bind(&old_counts)
    .execute(&mut *db)
    .await
    .map_err(map)?;
    for app in apps {
        for &kind in &app.notes {
            notes.push(Table::Applications, app.legacy_id, kind, None);
        }
    }
    Ok(Written { written: count_of(apps.len()), ..Written::default() })
}

fn count_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A parent of a batch's rows (an application of chats, a chat of messages), locked.
#[derive(Debug, Clone, Copy)]
struct Parent {
    id: i64,
    application_id: i64,
    /// Its highest number, and after it those the batch gave so far.
    last: i64,
}

/// The statements that differ between chats and messages.
struct Level {
    /// `$1` the source, `$2` parents' legacy ids: (legacy_id, id, application_id, last),
    /// locked in id order.
    lock: &'static str,
    /// `$1`..`$4` parent ids, numbers, created and updated times (with `bodies`, `$5`..`$7`
    /// application ids, bodies, normalised bodies): the rows written, as (parent, number,
    /// id) (a message's id: 0).
    insert: &'static str,
    /// Whether the rows carry bodies (messages).
    bodies: bool,
    /// `$1` parent ids, `$2` rows added, `$3` the highest number among them.
    update: &'static str,
}

const CHATS: Level = Level {
    lock: "SELECT i.legacy_id, a.id, a.id AS application_id, a.last_chat_number AS last \
        FROM import_applications i JOIN applications a ON a.id = i.application_id \
        WHERE i.source = $1 AND i.legacy_id = ANY ($2) ORDER BY a.id FOR NO KEY UPDATE OF a",
    insert: "INSERT INTO chats (application_id, number, created_at, updated_at) \
        SELECT p, n, c, u FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) \
        WITH ORDINALITY AS r(p, n, c, u, o) ORDER BY o \
        ON CONFLICT (application_id, number) DO NOTHING RETURNING application_id, number, id",
    bodies: false,
    update: "UPDATE applications AS t SET chats_count = t.chats_count + u.n, \
        last_chat_number = greatest(t.last_chat_number, u.last) \
        FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, n, last) WHERE t.id = u.id",
};

const MESSAGES: Level = Level {
    lock: "SELECT i.legacy_id, c.id, c.application_id, c.last_message_number AS last \
        FROM import_chats i JOIN chats c ON c.id = i.chat_id \
        WHERE i.source = $1 AND i.legacy_id = ANY ($2) ORDER BY c.id FOR NO KEY UPDATE OF c",
    insert: "INSERT INTO messages (chat_id, number, created_at, updated_at, application_id, body, body_norm) \
        SELECT p, n, c, u, a, b, bn FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
        $5::bigint[], $6::text[], $7::text[]) WITH ORDINALITY AS r(p, n, c, u, a, b, bn, o) ORDER BY o \
        ON CONFLICT (chat_id, number) DO NOTHING RETURNING chat_id, number, 0::bigint",
    bodies: true,
    update: "UPDATE chats AS t SET messages_count = t.messages_count + u.n, \
        last_message_number = greatest(t.last_message_number, u.last) \
        FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, n, last) WHERE t.id = u.id",
};

/// Chats or messages: each under its parent (found by legacy id and locked), with its own
/// number or, in a renumbering step, the parent's next; orphans and deferred rows recorded.
async fn write_rows(
    db: &mut PgConnection,
    source: i64,
    step: Step,
    mut rows: Vec<ImportedRow>,
    notes: &mut Notes,
) -> StoreResult<Written> {
    let table = step.table();
    let level = match table {
        Table::Chats => &CHATS,
        Table::Messages => &MESSAGES,
        Table::Applications => return Err(StoreError::internal("applications came as rows")),
    };
    rows.sort_by_key(|r| r.legacy_id);
    let mut parents = lock_parents(db, level, source, &rows).await?;

    // Each row's number, or why it has none.
    let mut written = Written::default();
    let mut deferred = Vec::new();
    let mut claimed: HashSet<(i64, i64)> = HashSet::new();
    let mut candidates: Vec<(&ImportedRow, Parent, i64)> = Vec::new();
    for row in &rows {
        let Some(parent) = parents.get_mut(&row.parent) else {
            notes.push(table, row.legacy_id, NoteKind::Orphan, Some(row.parent));
            written.orphans += 1;
            continue;
        };
        if step.renumbers() {
            parent.last += 1;
            candidates.push((row, *parent, parent.last));
            continue;
        }
        match row.own_number() {
            Some(n) if claimed.insert((parent.id, n)) => candidates.push((row, *parent, n)),
            _ => deferred.push(row.legacy_id),
        }
    }

    let inserted = insert_rows(db, level, &candidates).await?;
    // Per parent id: rows written, highest number.
    let mut moved: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut chats = ImportedChats::default();
    for (row, parent, number) in candidates {
        let Some(&id) = inserted.get(&(parent.id, number)) else {
            if step.renumbers() {
                return Err(StoreError::internal(format!(
                    "{} {}: number {number}, after its parent's highest, is taken",
                    table.singular(),
                    row.legacy_id
                )));
            }
            deferred.push(row.legacy_id);
            continue;
        };
        written.written += 1;
        let m = moved.entry(parent.id).or_insert((0, 0));
        *m = (m.0 + 1, m.1.max(number));
        for &kind in &row.notes {
            notes.push(table, row.legacy_id, kind, Some(row.parent));
        }
        if step.renumbers() {
            notes.renumbered(table, row, number);
        }
        if table == Table::Chats {
            chats.legacy_id.push(row.legacy_id);
            chats.chat_id.push(id);
            chats.application_id.push(parent.application_id);
            chats.old_count.push(row.old_count);
        }
    }

    if !moved.is_empty() {
        let ids: Vec<i64> = moved.keys().copied().collect();
        let added: Vec<i64> = moved.values().map(|m| m.0).collect();
        let last: Vec<i64> = moved.values().map(|m| m.1).collect();
        sqlx::query(level.update).bind(&ids).bind(&added).bind(&last).execute(&mut *db).await.map_err(map)?;
    }
    if !chats.legacy_id.is_empty() {
        sqlx::query(
            "INSERT INTO import_chats (source, legacy_id, chat_id, application_id, old_count) \
             SELECT $1, l, c, a, o FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) \
             AS u(l, c, a, o)",
        )
        .bind(source)
        .bind(&chats.legacy_id)
        .bind(&chats.chat_id)
        .bind(&chats.application_id)
        .bind(&chats.old_count)
        .execute(&mut *db)
        .await
        .map_err(map)?;
    }
    if !deferred.is_empty() {
        written.deferred = count_of(deferred.len());
        sqlx::query(
            "INSERT INTO import_deferred (source, tbl, legacy_id) SELECT $1, $2, l FROM unnest($3::bigint[]) AS u(l)",
        )
        .bind(source)
        .bind(table.as_str())
        .bind(&deferred)
        .execute(&mut *db)
        .await
        .map_err(map)?;
    }
    Ok(written)
}

/// The `import_chats` rows of a batch's chats, as columns.
#[derive(Debug, Default)]
struct ImportedChats {
    legacy_id: Vec<i64>,
    chat_id: Vec<i64>,
    application_id: Vec<i64>,
    old_count: Vec<Option<i64>>,
}

/// The rows' parents this source imported, by legacy id, locked in id order.
async fn lock_parents(
    db: &mut PgConnection,
    level: &Level,
    source: i64,
    rows: &[ImportedRow],
) -> StoreResult<HashMap<i64, Parent>> {
    let legacy: Vec<i64> = rows.iter().map(|r| r.parent).collect::<BTreeSet<_>>().into_iter().collect();
    let found: Vec<(i64, i64, i64, i64)> =
        sqlx::query_as(level.lock).bind(source).bind(&legacy).fetch_all(&mut *db).await.map_err(map)?;
    Ok(found
        .into_iter()
        .map(|(legacy_id, id, application_id, last)| (legacy_id, Parent { id, application_id, last }))
        .collect())
}

/// Inserts the rows under their numbers where free; returns those written, by (parent id,
/// number), with their ids.
async fn insert_rows(
    db: &mut PgConnection,
    level: &Level,
    rows: &[(&ImportedRow, Parent, i64)],
) -> StoreResult<HashMap<(i64, i64), i64>> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let parents: Vec<i64> = rows.iter().map(|(_, p, _)| p.id).collect();
    let numbers: Vec<i64> = rows.iter().map(|(_, _, n)| *n).collect();
    let created: Vec<i64> = rows.iter().map(|(r, _, _)| r.created_at.as_millis()).collect();
    let updated: Vec<i64> = rows.iter().map(|(r, _, _)| r.updated_at.as_millis()).collect();
    let mut query = sqlx::query_as(level.insert).bind(&parents).bind(&numbers).bind(&created).bind(&updated);
    if level.bodies {
        let applications: Vec<i64> = rows.iter().map(|(_, p, _)| p.application_id).collect();
        let bodies: Vec<&str> = rows.iter().map(|(r, _, _)| r.body.as_str()).collect();
        let normalized: Vec<String> = rows.iter().map(|(r, _, _)| normalize(&r.body)).collect();
        query = query.bind(applications).bind(bodies).bind(normalized);
    }
    let written: Vec<(i64, i64, i64)> = query.fetch_all(&mut *db).await.map_err(map)?;
    Ok(written.into_iter().map(|(parent, number, id)| ((parent, number), id)).collect())
}
