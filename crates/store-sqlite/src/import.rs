//! [`SqliteImportTarget`]: `chatd import` into the embedded store (SPEC §9).
//!
//! One read-write connection of its own, without the writer thread: an import is a command
//! run while no server has the data directory open (the `chatd import` command holds the
//! search index's lock meanwhile, which a server needs to start). Each batch is one
//! transaction holding its rows, the rows' notes, the parents' new counts and highest
//! numbers, and the step's checkpoint (`import_*` tables, schema version 4), so a stop at
//! any moment leaves the target at a batch boundary. Messages are stamped with the change
//! sequence like the writer's, so the search index follows them as it follows creates.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use async_trait::async_trait;
use chatd_core::error::StoreResult;
use chatd_core::import::{
    Batch, ImportTarget, ImportedApplication, ImportedRow, Note, NoteKind, Standing, Step, Table, Tally,
    Written,
};
use chatd_core::{AppToken, StoreError};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::connection::{map_err, open_reader, open_writer};
use crate::{DB_FILE, Durability, queries, schema};

/// Parents' row ids by legacy id, kept between batches; bounded.
const PARENT_CACHE: usize = 100_000;

/// The embedded store as an import writes it.
#[derive(Debug)]
pub struct SqliteImportTarget {
    /// Moved to the blocking pool for each call and back.
    state: Option<Box<State>>,
}

#[derive(Debug)]
struct State {
    db: Connection,
    /// The import source's id, once [`ImportTarget::begin`] has run.
    source: i64,
    /// The last change sequence stamped.
    last_seq: i64,
    /// Legacy parent id → row ids (for messages: the chat's), for the current table.
    parents: HashMap<i64, i64>,
    parents_of: Option<Table>,
}

impl SqliteImportTarget {
    /// Opens (creating if needed) the database in `data_dir`, at the newest schema.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display())))?;
        // NORMAL: a killed import loses nothing it committed; power loss may lose the last
        // batches, which a new run writes again from the checkpoint that went with them.
        let mut db = open_writer(&data_dir.join(DB_FILE), Durability::Normal).map_err(map_err)?;
        schema::migrate(&mut db).map_err(map_err)?;
        let last_seq = queries::last_seq(&db)?;
        let state = State { db, source: 0, last_seq, parents: HashMap::new(), parents_of: None };
        Ok(SqliteImportTarget { state: Some(Box::new(state)) })
    }

    /// Runs `f` on the blocking pool with the target's state.
    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut State) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let mut state =
            self.state.take().ok_or_else(|| StoreError::internal("the import target failed before"))?;
        let (state, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut state);
            (state, result)
        })
        .await
        .map_err(StoreError::internal)?;
        self.state = Some(state);
        result
    }
}

/// The embedded target as it stands, read only, for `chatd import --dry-run`: what a real
/// import would be refused for (other data, tokens taken), without a migration or a write.
/// A data directory without a database is empty.
#[derive(Debug)]
pub struct SqliteTargetView {
    db: Option<Connection>,
}

impl SqliteTargetView {
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        let path = data_dir.join(DB_FILE);
        let db = if path.exists() { Some(open_reader(&path).map_err(map_err)?) } else { None };
        Ok(SqliteTargetView { db })
    }

    fn has_table(db: &Connection, name: &str) -> StoreResult<bool> {
        db.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .map_err(map_err)
    }

    /// Whether the target holds applications that did not come from the source `name`.
    pub fn foreign(&self, name: &str) -> StoreResult<bool> {
        let Some(db) = &self.db else { return Ok(false) };
        if !Self::has_table(db, "applications")? {
            return Ok(false);
        }
        let apps: i64 =
            db.query_row("SELECT count(*) FROM applications", [], |r| r.get(0)).map_err(map_err)?;
        let imported: i64 = if Self::has_table(db, "import_applications")? {
            db.query_row(
                "SELECT count(*) FROM import_applications i JOIN import_sources s ON s.id = i.source \
                 WHERE s.name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(map_err)?
        } else {
            0
        };
        Ok(apps > imported)
    }

    /// Of `tokens`, those an application of the target has.
    pub fn tokens_taken(&self, tokens: &[AppToken]) -> StoreResult<Vec<AppToken>> {
        let Some(db) = &self.db else { return Ok(Vec::new()) };
        if !Self::has_table(db, "applications")? {
            return Ok(Vec::new());
        }
        taken_tokens(db, tokens)
    }
}

/// Of `tokens`, those an application in `db` has.
fn taken_tokens(db: &Connection, tokens: &[AppToken]) -> StoreResult<Vec<AppToken>> {
    let list = json_list(tokens.iter().map(|t| format!("\"{}\"", t.as_str())));
    let mut stmt = db
        .prepare("SELECT token FROM applications WHERE token IN (SELECT value FROM json_each(?1))")
        .map_err(map_err)?;
    let rows = stmt.query_map([list], |r| r.get::<_, String>(0)).map_err(map_err)?;
    let mut found = Vec::new();
    for token in rows {
        found.extend(AppToken::parse(&token.map_err(map_err)?));
    }
    Ok(found)
}

#[async_trait]
impl ImportTarget for SqliteImportTarget {
    async fn begin(&mut self, source: &str) -> StoreResult<Standing> {
        let name = source.to_owned();
        self.with(move |s| {
            let db = &s.db;
            db.execute("INSERT OR IGNORE INTO import_sources (name) VALUES (?1)", [&name])
                .map_err(map_err)?;
            s.source = db
                .query_row("SELECT id FROM import_sources WHERE name = ?1", [&name], |r| r.get(0))
                .map_err(map_err)?;
            let mut stmt = db
                .prepare("SELECT step, after FROM import_checkpoints WHERE source = ?1")
                .map_err(map_err)?;
            let rows = stmt.query_map([s.source], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)));
            let mut checkpoints = Vec::new();
            for row in rows.map_err(map_err)? {
                let (step, after) = row.map_err(map_err)?;
                let step =
                    Step::parse(&step).ok_or_else(|| StoreError::internal(format!("unknown step {step}")))?;
                checkpoints.push((step, after));
            }
            // Applications are never deleted, so equal counts mean every one is this source's.
            let foreign = db
                .query_row(
                    "SELECT (SELECT count(*) FROM applications) > \
                     (SELECT count(*) FROM import_applications WHERE source = ?1)",
                    [s.source],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            Ok(Standing { checkpoints, foreign })
        })
        .await
    }

    async fn tokens_taken(&mut self, tokens: &[AppToken]) -> StoreResult<Vec<AppToken>> {
        let tokens = tokens.to_vec();
        self.with(move |s| taken_tokens(&s.db, &tokens)).await
    }

    async fn write(&mut self, batch: Batch) -> StoreResult<Written> {
        self.with(move |s| s.write(batch)).await
    }

    async fn deferred(&mut self, table: Table, after: i64, limit: usize) -> StoreResult<Vec<i64>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |s| {
            let mut stmt =
                s.db.prepare(
                    "SELECT legacy_id FROM import_deferred WHERE source = ?1 AND tbl = ?2 AND legacy_id > ?3 \
                     ORDER BY legacy_id LIMIT ?4",
                )
                .map_err(map_err)?;
            let rows = stmt.query_map(params![s.source, table.as_str(), after, limit], |r| r.get(0));
            rows.map_err(map_err)?.collect::<rusqlite::Result<Vec<i64>>>().map_err(map_err)
        })
        .await
    }

    async fn deferred_count(&mut self, table: Table, after: i64) -> StoreResult<u64> {
        self.with(move |s| {
            let sql =
                "SELECT count(*) FROM import_deferred WHERE source = ?1 AND tbl = ?2 AND legacy_id > ?3";
            let n: i64 =
                s.db.query_row(sql, params![s.source, table.as_str(), after], |r| r.get(0))
                    .map_err(map_err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn tally(&mut self) -> StoreResult<Tally> {
        self.with(|s| s.tally().map_err(map_err)).await
    }

    async fn notes(&mut self, after: Option<&Note>, limit: usize) -> StoreResult<Vec<Note>> {
        let after = after.map_or((String::new(), i64::MIN, String::new()), |n| {
            (n.table.as_str().to_owned(), n.legacy_id, n.kind.as_str().to_owned())
        });
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |s| s.notes(after, limit)).await
    }
}

/// `[a,b,c]` for `json_each`.
fn json_list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(","))
}

/// A parent touched by a batch: its highest number, and how many rows it gained.
#[derive(Debug, Clone, Copy)]
struct Parent {
    last: i64,
    added: i64,
}

impl State {
    fn write(&mut self, batch: Batch) -> StoreResult<Written> {
        let step = batch.step();
        let through = batch.through();
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
        let mut last_seq = self.last_seq;
        let written = match batch {
            Batch::Applications(rows) => write_applications(&tx, self.source, &rows)?,
            Batch::Rows { step, rows } => {
                if self.parents_of != Some(step.table()) {
                    self.parents.clear();
                    self.parents_of = Some(step.table());
                }
                let mut rows_ctx = Rows {
                    tx: &tx,
                    source: self.source,
                    step,
                    parents: &mut self.parents,
                    last_seq: &mut last_seq,
                };
                rows_ctx.write(&rows)?
            }
        };
        if let Some(through) = through {
            tx.execute(
                "INSERT INTO import_checkpoints (source, step, after, written) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (source, step) DO UPDATE SET after = excluded.after, written = written + excluded.written",
                params![self.source, step.as_str(), through, i64::try_from(written.written).unwrap_or(i64::MAX)],
            )
            .map_err(map_err)?;
        }
        tx.commit().map_err(map_err)?;
        self.last_seq = last_seq;
        Ok(written)
    }

    fn tally(&self) -> rusqlite::Result<Tally> {
        let db = &self.db;
        let mut tally = Tally::default();
        let mut stmt = db.prepare("SELECT step, written FROM import_checkpoints WHERE source = ?1")?;
        let mut imported: HashMap<Table, u64> = HashMap::new();
        for row in stmt.query_map([self.source], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (step, written) = row?;
            if let Some(step) = Step::parse(&step) {
                *imported.entry(step.table()).or_default() += u64::try_from(written).unwrap_or(0);
            }
        }
        tally.imported = Table::ALL.iter().map(|t| (*t, imported.get(t).copied().unwrap_or(0))).collect();
        let mut stmt =
            db.prepare("SELECT tbl, kind, count(*) FROM import_notes WHERE source = ?1 GROUP BY tbl, kind")?;
        for row in stmt.query_map([self.source], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })? {
            let (table, kind, n) = row?;
            if let (Some(table), Some(kind)) = (Table::parse(&table), NoteKind::parse(&kind)) {
                tally.notes.push((table, kind, u64::try_from(n).unwrap_or(0)));
            }
        }
        let wrong = |sql: &str| db.query_row(sql, [self.source], |r| r.get::<_, i64>(0));
        let apps = wrong(
            "SELECT count(*) FROM import_applications i JOIN applications a ON a.id = i.application_id \
             WHERE i.source = ?1 AND (i.old_count IS NULL OR i.old_count <> a.chats_count)",
        )?;
        let chats = wrong(
            "SELECT count(*) FROM import_chats i JOIN chats c ON c.id = i.chat_id \
             WHERE i.source = ?1 AND (i.old_count IS NULL OR i.old_count <> c.messages_count)",
        )?;
        tally.wrong_counters = vec![
            (Table::Applications, u64::try_from(apps).unwrap_or(0)),
            (Table::Chats, u64::try_from(chats).unwrap_or(0)),
        ];
        Ok(tally)
    }

    fn notes(&self, after: (String, i64, String), limit: i64) -> StoreResult<Vec<Note>> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT n.tbl, n.legacy_id, n.kind, n.parent, n.old_number, n.new_number, a.token \
                 FROM import_notes n \
                 LEFT JOIN import_applications i \
                   ON n.kind = 'new_token' AND i.source = n.source AND i.legacy_id = n.legacy_id \
                 LEFT JOIN applications a ON a.id = i.application_id \
                 WHERE n.source = ?1 AND (n.tbl, n.legacy_id, n.kind) > (?2, ?3, ?4) \
                 ORDER BY n.tbl, n.legacy_id, n.kind LIMIT ?5",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![self.source, after.0, after.1, after.2, limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(map_err)?;
        let mut notes = Vec::new();
        for row in rows {
            let (table, legacy_id, kind, parent, old_number, new_number, token) = row.map_err(map_err)?;
            let bad = || StoreError::internal(format!("an import note of unknown kind: {table} {kind}"));
            notes.push(Note {
                table: Table::parse(&table).ok_or_else(bad)?,
                legacy_id,
                kind: NoteKind::parse(&kind).ok_or_else(bad)?,
                parent,
                old_number,
                new_number,
                token: token.as_deref().and_then(AppToken::parse),
            });
        }
        Ok(notes)
    }
}

fn write_applications(
    tx: &Transaction<'_>,
    source: i64,
    rows: &[ImportedApplication],
) -> StoreResult<Written> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO applications (token, name, chats_count, created_at, updated_at, last_chat_number) \
             VALUES (?1, ?2, 0, ?3, ?4, 0)",
        )
        .map_err(map_err)?;
    let mut map = tx
        .prepare_cached(
            "INSERT INTO import_applications (source, legacy_id, application_id, old_count) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(map_err)?;
    for row in rows {
        let inserted = insert.execute(params![
            row.token.as_str(),
            row.name,
            row.created_at.as_millis(),
            row.updated_at.as_millis()
        ]);
        match inserted {
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                return Err(StoreError::internal(format!(
                    "the token of application {} is already used in the target",
                    row.legacy_id
                )));
            }
            other => other.map_err(map_err)?,
        };
        map.execute(params![source, row.legacy_id, tx.last_insert_rowid(), row.old_count])
            .map_err(map_err)?;
        for kind in &row.notes {
            note(tx, source, &Note::new(Table::Applications, row.legacy_id, None, *kind))?;
        }
    }
    Ok(Written { written: rows.len() as u64, ..Written::default() })
}

/// What writing one batch of chats or messages needs.
struct Rows<'a> {
    tx: &'a Transaction<'a>,
    source: i64,
    step: Step,
    parents: &'a mut HashMap<i64, i64>,
    last_seq: &'a mut i64,
}

impl Rows<'_> {
    fn write(&mut self, rows: &[ImportedRow]) -> StoreResult<Written> {
        let table = self.step.table();
        let mut touched: HashMap<i64, Parent> = HashMap::new();
        let mut written = Written::default();
        for row in rows {
            let Some(parent) = self.parent(row.parent)? else {
                note(
                    self.tx,
                    self.source,
                    &Note::new(table, row.legacy_id, Some(row.parent), NoteKind::Orphan),
                )?;
                written.orphans += 1;
                continue;
            };
            let at = match touched.entry(parent) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(Parent { last: self.last_number(parent)?, added: 0 }),
            };
            let number = match (self.step.renumbers(), row.own_number()) {
                (true, _) => at.last + 1,
                (false, Some(n)) => n,
                (false, None) => {
                    self.defer(row.legacy_id)?;
                    written.deferred += 1;
                    continue;
                }
            };
            if !self.insert(parent, number, row)? {
                if self.step.renumbers() {
                    return Err(StoreError::internal(format!(
                        "{} {}: number {number} is taken although it is above the highest",
                        table.singular(),
                        row.legacy_id
                    )));
                }
                self.defer(row.legacy_id)?;
                written.deferred += 1;
                continue;
            }
            at.last = at.last.max(number);
            at.added += 1;
            written.written += 1;
            for kind in &row.notes {
                note(self.tx, self.source, &Note::new(table, row.legacy_id, Some(row.parent), *kind))?;
            }
            if self.step.renumbers() {
                let mut renumbered = Note::new(table, row.legacy_id, Some(row.parent), NoteKind::Renumbered);
                renumbered.old_number = row.number;
                renumbered.new_number = Some(number);
                note(self.tx, self.source, &renumbered)?;
            }
        }
        let bump = match table {
            Table::Chats => {
                "UPDATE applications SET chats_count = chats_count + ?2, last_chat_number = ?3 WHERE id = ?1"
            }
            _ => {
                "UPDATE chats SET messages_count = messages_count + ?2, last_message_number = ?3 WHERE id = ?1"
            }
        };
        let mut bump = self.tx.prepare_cached(bump).map_err(map_err)?;
        for (id, p) in touched {
            bump.execute(params![id, p.added, p.last]).map_err(map_err)?;
        }
        Ok(written)
    }

    /// The row id of the imported parent (an application for chats, a chat for messages).
    fn parent(&mut self, legacy: i64) -> StoreResult<Option<i64>> {
        if let Some(id) = self.parents.get(&legacy) {
            return Ok(Some(*id));
        }
        let sql = match self.step.table() {
            Table::Chats => {
                "SELECT application_id FROM import_applications WHERE source = ?1 AND legacy_id = ?2"
            }
            _ => "SELECT chat_id FROM import_chats WHERE source = ?1 AND legacy_id = ?2",
        };
        let found: Option<i64> = self
            .tx
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row([self.source, legacy], |r| r.get(0)).optional())
            .map_err(map_err)?;
        if let Some(id) = found {
            if self.parents.len() >= PARENT_CACHE {
                self.parents.clear();
            }
            self.parents.insert(legacy, id);
        }
        Ok(found)
    }

    fn last_number(&self, parent: i64) -> StoreResult<i64> {
        match self.step.table() {
            Table::Chats => queries::last_chat_number(self.tx, parent),
            _ => queries::last_message_number(self.tx, parent),
        }
    }

    /// Inserts the row under `number`; `false` when the parent has that number already.
    fn insert(&mut self, parent: i64, number: i64, row: &ImportedRow) -> StoreResult<bool> {
        let (created, updated) = (row.created_at.as_millis(), row.updated_at.as_millis());
        let inserted = match self.step.table() {
            Table::Chats => {
                let n = self
                    .tx
                    .prepare_cached(
                        "INSERT INTO chats \
                         (application_id, number, messages_count, created_at, updated_at, last_message_number) \
                         VALUES (?1, ?2, 0, ?3, ?4, 0) ON CONFLICT (application_id, number) DO NOTHING",
                    )
                    .and_then(|mut s| s.execute(params![parent, number, created, updated]))
                    .map_err(map_err)?;
                if n == 1 {
                    self.tx
                        .prepare_cached(
                            "INSERT INTO import_chats (source, legacy_id, chat_id, application_id, old_count) \
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![
                                self.source,
                                row.legacy_id,
                                self.tx.last_insert_rowid(),
                                parent,
                                row.old_count
                            ])
                        })
                        .map_err(map_err)?;
                }
                n
            }
            _ => {
                let seq = *self.last_seq + 1;
                let n = self
                    .tx
                    .prepare_cached(
                        "INSERT INTO messages (chat_id, number, body, created_at, updated_at, change_seq, created_seq) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (chat_id, number) DO NOTHING",
                    )
                    .and_then(|mut s| s.execute(params![parent, number, row.body, created, updated, seq]))
                    .map_err(map_err)?;
                if n == 1 {
                    *self.last_seq = seq;
                }
                n
            }
        };
        Ok(inserted == 1)
    }

    fn defer(&self, legacy: i64) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO import_deferred (source, tbl, legacy_id) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![self.source, self.step.table().as_str(), legacy]))
            .map(drop)
            .map_err(map_err)
    }
}

fn note(tx: &Transaction<'_>, source: i64, note: &Note) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO import_notes (source, tbl, legacy_id, kind, parent, old_number, new_number) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            source,
            note.table.as_str(),
            note.legacy_id,
            note.kind.as_str(),
            note.parent,
            note.old_number,
            note.new_number
        ])
    })
    .map(drop)
    .map_err(map_err)
}

#[cfg(test)]
mod tests {
    use chatd_core::{Catalog, ChatNumber, Ingest, Limit, MessageBody, Order, Page, Timestamp};

    use super::*;
    use crate::{Options, SqliteStore};

    fn app(legacy_id: i64, token: &str) -> ImportedApplication {
        ImportedApplication {
            legacy_id,
            token: AppToken::parse(token).unwrap(),
            name: format!("app {legacy_id}"),
            created_at: Timestamp::from_millis(1_000),
            updated_at: Timestamp::from_millis(2_000),
            old_count: Some(2),
            notes: Vec::new(),
        }
    }

    fn row(legacy_id: i64, parent: i64, number: Option<i64>) -> ImportedRow {
        ImportedRow {
            legacy_id,
            parent,
            number,
            body: format!("body {legacy_id}"),
            created_at: Timestamp::from_millis(3_000 + legacy_id),
            updated_at: Timestamp::from_millis(4_000 + legacy_id),
            old_count: None,
            notes: Vec::new(),
        }
    }

    fn rows(step: Step, rows: Vec<ImportedRow>) -> Batch {
        Batch::Rows { step, rows }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn numbers_are_kept_where_free_and_the_rest_follow_the_highest_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut target = SqliteImportTarget::open(dir.path()).unwrap();
        assert_eq!(target.begin("old:3306/app").await.unwrap(), Standing::default());
        let mut named = app(1, "tokenA");
        named.notes = vec![NoteKind::Placeholder];
        target.write(Batch::Applications(vec![named, app(2, "tokenB")])).await.unwrap();

        // Chats of application 1: 11 and 12 both say 1, 13 has none, 14 says 5; 15's
        // application is not in the source.
        let chats = vec![
            row(11, 1, Some(1)),
            row(12, 1, Some(1)),
            row(13, 1, None),
            row(14, 1, Some(5)),
            row(15, 9, Some(1)),
        ];
        let written = target.write(rows(Step::Chats, chats)).await.unwrap();
        assert_eq!(written, Written { written: 2, deferred: 2, orphans: 1 });
        assert_eq!(target.deferred(Table::Chats, 0, 10).await.unwrap(), [12, 13]);
        assert_eq!(target.deferred(Table::Chats, 12, 10).await.unwrap(), [13]);
        assert_eq!(target.deferred_count(Table::Chats, 0).await.unwrap(), 2);
        let written = target
            .write(rows(Step::ChatsRenumbered, vec![row(12, 1, Some(1)), row(13, 1, None)]))
            .await
            .unwrap();
        assert_eq!(written.written, 2);

        // Messages of chat 11 (number 1): a duplicate and a gap (1, 1, 4); chat 14's 0 is no number.
        let messages =
            vec![row(21, 11, Some(1)), row(22, 11, Some(1)), row(23, 11, Some(4)), row(24, 14, Some(0))];
        let written = target.write(rows(Step::Messages, messages)).await.unwrap();
        assert_eq!(written, Written { written: 2, deferred: 2, orphans: 0 });
        target
            .write(rows(Step::MessagesRenumbered, vec![row(22, 11, Some(1)), row(24, 14, Some(0))]))
            .await
            .unwrap();

        let standing = target.begin("old:3306/app").await.unwrap();
        assert_eq!(standing.checkpoint(Step::Chats), 15);
        assert_eq!(standing.checkpoint(Step::MessagesRenumbered), 24);
        assert!(!standing.foreign);
        let tally = target.tally().await.unwrap();
        assert_eq!(
            (
                tally.imported(Table::Applications),
                tally.imported(Table::Chats),
                tally.imported(Table::Messages)
            ),
            (2, 4, 4)
        );
        assert_eq!(tally.notes(Table::Chats, NoteKind::Renumbered), 2);
        assert_eq!(tally.notes(Table::Chats, NoteKind::Orphan), 1);
        assert_eq!(tally.notes(Table::Applications, NoteKind::Placeholder), 1);
        // Application 1 had 2 chats by its counter, 4 by its rows; application 2 had 0, said 2.
        assert_eq!(tally.wrong_counters(Table::Applications), 2);
        let mut notes = Vec::new();
        while let Some(page) = Some(target.notes(notes.last(), 2).await.unwrap()).filter(|p| !p.is_empty()) {
            notes.extend(page);
        }
        let renumbered: Vec<_> = notes
            .iter()
            .filter(|n| n.kind == NoteKind::Renumbered)
            .map(|n| (n.table, n.legacy_id, n.old_number, n.new_number))
            .collect();
        assert_eq!(
            renumbered,
            [
                (Table::Chats, 12, Some(1), Some(6)),
                (Table::Chats, 13, None, Some(7)),
                (Table::Messages, 22, Some(1), Some(5)),
                (Table::Messages, 24, Some(0), Some(1)),
            ]
        );
        assert_eq!(notes.len(), 6);
        drop(target);

        // What a server then serves: numbers as ruled, exact counts, and new rows after the highest.
        let store = SqliteStore::open(&Options::new(dir.path())).unwrap();
        let token = AppToken::parse("tokenA").unwrap();
        let application = store.application(token.clone()).await.unwrap();
        assert_eq!((application.chats_count, application.name.as_str()), (4, "app 1"));
        assert_eq!(application.created_at, Timestamp::from_millis(1_000));
        let page = || Page { limit: Limit::DEFAULT, order: Order::Asc, after: None, before: None };
        let listed = store.chats(token.clone(), page()).await.unwrap();
        let numbers: Vec<i64> = listed.items.iter().map(|c| c.number.get()).collect();
        assert_eq!(numbers, [1, 5, 6, 7]);
        let chat = ChatNumber::try_from(1).unwrap();
        let messages = store.messages(token.clone(), chat, page()).await.unwrap();
        let got: Vec<(i64, &str)> =
            messages.items.iter().map(|m| (m.number.get(), m.body.as_str())).collect();
        assert_eq!(got, [(1, "body 21"), (4, "body 23"), (5, "body 22")]);
        assert_eq!(messages.items[0].created_at, Timestamp::from_millis(3_021));
        assert_eq!(messages.items[0].updated_at, Timestamp::from_millis(4_021));
        let held = store.chat(token.clone(), chat).await.unwrap();
        assert_eq!((held.messages_count, held.last_number), (3, 5));
        let body = MessageBody::parse("new".into(), 100).unwrap();
        assert_eq!(store.create_message(token.clone(), chat, body, None).await.unwrap().get(), 6);
        assert_eq!(store.create_chat(token.clone(), None).await.unwrap().get(), 8);
        let held = store.chat(token.clone(), chat).await.unwrap();
        assert_eq!((held.messages_count, held.last_number), (4, 6));
        store.close().await;

        // The target now holds a chat nobody imported, but no foreign application; one
        // created through the API is foreign, and its token is taken.
        let store = SqliteStore::open(&Options::new(dir.path())).unwrap();
        let other =
            store.create_application(chatd_core::AppName::parse("api".into()).unwrap(), None).await.unwrap();
        store.close().await;
        let mut target = SqliteImportTarget::open(dir.path()).unwrap();
        assert!(target.begin("old:3306/app").await.unwrap().foreign);
        let taken =
            target.tokens_taken(&[other.token.clone(), AppToken::parse("free").unwrap()]).await.unwrap();
        assert_eq!(taken, [other.token]);
        assert!(
            target.write(Batch::Applications(vec![app(3, "freeToken"), app(4, "tokenB")])).await.is_err()
        );
        let standing = target.begin("old:3306/app").await.unwrap();
        assert_eq!(standing.checkpoint(Step::Applications), 2, "the failed batch moved its checkpoint");
        assert!(target.tokens_taken(&[AppToken::parse("freeToken").unwrap()]).await.unwrap().is_empty());
        assert!(target.begin("another:3306/app").await.unwrap().foreign);
    }
}
