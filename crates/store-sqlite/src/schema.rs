//! Versioned migrations, applied at open in one transaction each. The version lives in
//! SQLite's `user_version`, so an older binary refuses a newer database instead of
//! misreading it.

use rusqlite::{Connection, Transaction};

/// Each entry moves the schema one version forward. Never edit a released entry: append.
const MIGRATIONS: &[&str] = &[
    // 1: applications, chats, messages.
    //
    // Numbers come from the parent's count column (`chats_count + 1`, `messages_count + 1`),
    // read and written by the single writer in the same transaction as the insert; chats and
    // messages are never deleted, so count and highest number stay equal (until version 4,
    // which keeps the highest number apart). The unique
    // constraints are the backstop. `change_seq` stamps every insert and edit of a message
    // in commit order, so a search index can follow the table (see `messages_change_seq`).
    r#"
    CREATE TABLE applications (
        id          INTEGER PRIMARY KEY,
        token       TEXT    NOT NULL,
        name        TEXT    NOT NULL,
        chats_count INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        CONSTRAINT applications_token_key UNIQUE (token)
    );
    CREATE TABLE chats (
        id             INTEGER PRIMARY KEY,
        application_id INTEGER NOT NULL REFERENCES applications (id),
        number         INTEGER NOT NULL CHECK (number >= 1),
        messages_count INTEGER NOT NULL DEFAULT 0,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        CONSTRAINT chats_application_number_key UNIQUE (application_id, number)
    );
    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY,
        chat_id    INTEGER NOT NULL REFERENCES chats (id),
        number     INTEGER NOT NULL CHECK (number >= 1),
        body       TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        change_seq INTEGER NOT NULL,
        CONSTRAINT messages_chat_number_key UNIQUE (chat_id, number)
    );
    CREATE UNIQUE INDEX messages_change_seq ON messages (change_seq);
    "#,
    // 2: `created_seq` keeps the insert's stamp, so the index tells an edit (which replaces
    // a document) from a new message (which needs no delete). Rows from before read as
    // edits (0 never equals a stamp), which only costs the index a harmless delete.
    r#"
    ALTER TABLE messages ADD COLUMN created_seq INTEGER NOT NULL DEFAULT 0;
    "#,
    // 3: `Idempotency-Key`s (SPEC §8), each written in the transaction of the row it created.
    // `scope` is the application's id for chat and message creates, 0 for application
    // creates (row ids start at 1). `resource` is the number created (0 for an application);
    // `token` and `name` are a new application's, as created, so that a retry answers the
    // first answer even after a rename. Expired keys are swept oldest first by `created_at`.
    r#"
    CREATE TABLE idempotency_keys (
        scope       INTEGER NOT NULL,
        key         TEXT    NOT NULL,
        fingerprint BLOB    NOT NULL,
        created_at  INTEGER NOT NULL,
        resource    INTEGER NOT NULL,
        token       TEXT,
        name        TEXT,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
    "#,
    // 4: `chatd import` (SPEC §9). Imported parents may have gaps in their numbers, so each
    // keeps its highest number apart from its count, and new rows are numbered after it.
    // The `import_*` tables are the import's own: the sources it read (by name), each
    // step's checkpoint (the last legacy id written, and rows written), where legacy
    // applications and chats went, the rows left for renumbering, and a note for every rule
    // applied to a row. Each is written in the transaction of the rows it describes.
    r#"
    ALTER TABLE applications ADD COLUMN last_chat_number INTEGER NOT NULL DEFAULT 0;
    UPDATE applications SET last_chat_number = chats_count;
    ALTER TABLE chats ADD COLUMN last_message_number INTEGER NOT NULL DEFAULT 0;
    UPDATE chats SET last_message_number = messages_count;
    CREATE TABLE import_sources (
        id   INTEGER PRIMARY KEY,
        name TEXT    NOT NULL UNIQUE
    );
    CREATE TABLE import_checkpoints (
        source  INTEGER NOT NULL,
        step    TEXT    NOT NULL,
        after   INTEGER NOT NULL,
        written INTEGER NOT NULL,
        PRIMARY KEY (source, step)
    ) WITHOUT ROWID;
    CREATE TABLE import_applications (
        source         INTEGER NOT NULL,
        legacy_id      INTEGER NOT NULL,
        application_id INTEGER NOT NULL,
        old_count      INTEGER,
        PRIMARY KEY (source, legacy_id)
    ) WITHOUT ROWID;
    CREATE TABLE import_chats (
        source         INTEGER NOT NULL,
        legacy_id      INTEGER NOT NULL,
        chat_id        INTEGER NOT NULL,
        application_id INTEGER NOT NULL,
        old_count      INTEGER,
        PRIMARY KEY (source, legacy_id)
    ) WITHOUT ROWID;
    CREATE TABLE import_deferred (
        source    INTEGER NOT NULL,
        tbl       TEXT    NOT NULL,
        legacy_id INTEGER NOT NULL,
        PRIMARY KEY (source, tbl, legacy_id)
    ) WITHOUT ROWID;
    CREATE TABLE import_notes (
        source     INTEGER NOT NULL,
        tbl        TEXT    NOT NULL,
        legacy_id  INTEGER NOT NULL,
        kind       TEXT    NOT NULL,
        parent     INTEGER,
        old_number INTEGER,
        new_number INTEGER,
        PRIMARY KEY (source, tbl, legacy_id, kind)
    ) WITHOUT ROWID;
    "#,
];

/// Brings the database to the newest schema version.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {current} is newer than this chatd ({}); upgrade chatd",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        apply(&tx, sql, i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

fn apply(tx: &Transaction<'_>, sql: &str, version: usize) -> rusqlite::Result<()> {
    tx.execute_batch(sql)?;
    tx.pragma_update(None, "user_version", version as i64)
}
