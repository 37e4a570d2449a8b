//! The scale-out mode's PostgreSQL: the server a run uses (a throwaway one started with
//! `chatd-pg-testing`, or the one `--database-url` names) and a fresh database on it for each
//! phase; the preload, which writes chatd's tables directly with `COPY`; and pgbench running
//! the one-transaction-per-create design that chatd's batched writer replaces.
//!
//! Every database gets chatd's schema from chatd's own migrations ([`PgStore::connect`]
//! runs them), so the preload and pgbench write the same tables, constraints and trigram
//! index that chatd does.

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatd_core::search::normalize;
use chatd_core::{AppToken, ChatNumber, Timestamp};
use chatd_pg_testing::TestPostgres;
use chatd_store_postgres::{Options, PgStore};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::data::{Layout, Preloaded, Rng, Words};

/// The PostgreSQL server of a run.
#[derive(Debug)]
pub enum Server {
    /// Started for this run on a temp dir; stopped and deleted when dropped.
    Throwaway(TestPostgres),
    /// The server of `--database-url`: the run creates its databases there, and
    /// [`Server::drop_databases`] drops them.
    Given { url: String, created: Mutex<Vec<String>> },
}

impl Server {
    /// The server at `url`, or a throwaway one when there is none.
    pub fn start(url: Option<&str>) -> anyhow::Result<Server> {
        Ok(match url {
            Some(url) => Server::Given { url: url.to_owned(), created: Mutex::new(Vec::new()) },
            None => Server::Throwaway(TestPostgres::start().context("starting a throwaway PostgreSQL")?),
        })
    }

    /// Creates an empty database for one phase and returns its URL.
    pub fn fresh_database(&self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<String> {
        match self {
            Server::Throwaway(postgres) => Ok(postgres.fresh_database()?),
            Server::Given { url, created } => {
                let mut created = created.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let name = format!("chatd_bench_{}_{}", std::process::id(), created.len());
                runtime.block_on(async {
                    let mut db = PgConnection::connect(url).await?;
                    // The name is this function's own: digits and underscores.
                    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut db).await?;
                    db.close().await
                })?;
                created.push(name.clone());
                Ok(with_database(url, &name))
            }
        }
    }

    /// Drops the databases this run created on a given server (a throwaway server goes
    /// whole when dropped).
    pub fn drop_databases(&self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Server::Given { url, created } = self else { return Ok(()) };
        let names = std::mem::take(&mut *created.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        runtime.block_on(async {
            let mut db = PgConnection::connect(url).await?;
            for name in names {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut db).await?;
            }
            db.close().await
        })?;
        Ok(())
    }
}

/// `url` with its database (the path) replaced by `database`; its query string is kept.
pub fn with_database(url: &str, database: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let authority_end = rest.find(['/', '?']).map_or(url.len(), |i| after_scheme + i);
    let query = url[authority_end..].find('?').map_or("", |i| &url[authority_end + i..]);
    format!("{}/{database}{query}", &url[..authority_end])
}

/// `url` with the password of its user info, if any, hidden: for printing.
pub fn redacted(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..].find(['/', '?']).map_or(url.len(), |i| after_scheme + i);
    match url[after_scheme..authority_end].rfind('@') {
        Some(at) => match url[after_scheme..after_scheme + at].find(':') {
            Some(colon) => {
                format!("{}:***{}", &url[..after_scheme + colon], &url[after_scheme + at..])
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Brings the database at `url` to chatd's schema with chatd's own migrations.
async fn migrate(url: &str) -> anyhow::Result<()> {
    let store = PgStore::connect(&Options::new(url)).await?;
    store.close().await;
    Ok(())
}

/// The current time as chatd stores it.
fn now_millis() -> i64 {
    Timestamp::now().as_millis()
}

/// How long each step of [`preload`] took.
#[derive(Debug, Clone, Copy)]
pub struct LoadTimes {
    /// Applications, chats and messages written (`COPY` of the messages, their indexes
    /// dropped).
    pub rows: Duration,
    /// The messages' indexes built again, and the tables analysed.
    pub indexes: Duration,
}

/// Loads `messages` messages into the empty database at `url`, as [`Layout`] places them
/// (the same applications, chats and bodies as the embedded preload), straight into chatd's
/// tables: numbers, counts and the normalised body set as chatd's writer sets them. The
/// messages' secondary indexes (the trigram index) are dropped for the `COPY` and built
/// again from their own definitions, as a bulk load does.
pub async fn preload(
    url: &str,
    messages: u64,
    chats: usize,
    words: &Words,
) -> anyhow::Result<(Preloaded, LoadTimes)> {
    let started = Instant::now();
    let layout = Layout { messages, chats };
    migrate(url).await?;
    let mut db = PgConnection::connect(url).await?;
    let now = now_millis();

    let tokens: Vec<AppToken> = (0..Layout::APPS)
        .map(|_| AppToken::generate().map_err(|e| anyhow::anyhow!("a token: {e}")))
        .collect::<anyhow::Result<_>>()?;
    // Each slot's application and number (numbered per application in slot order), and the
    // counts: of chats per application, of messages per slot.
    let mut chats_of_app = vec![0i64; Layout::APPS];
    let (mut slot_tokens, mut slot_numbers) = (Vec::new(), Vec::new());
    for slot in layout.slots() {
        let app = layout.app_of(slot);
        chats_of_app[app] += 1;
        slot_tokens.push(tokens[app].as_str());
        slot_numbers.push(chats_of_app[app]);
    }
    let mut messages_of_slot = vec![0i64; slot_numbers.len()];
    for i in 0..messages {
        messages_of_slot[layout.slot_of(i)] += 1;
    }
    let token_strs: Vec<&str> = tokens.iter().map(AppToken::as_str).collect();
    let names: Vec<String> = (0..Layout::APPS).map(|i| format!("bench app {i}")).collect();
    sqlx::query(
        "WITH apps AS (\
             INSERT INTO applications (token, name, chats_count, last_chat_number, created_at, updated_at) \
             SELECT t, n, c, c, $7, $7 FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(t, n, c) \
             RETURNING id, token) \
         INSERT INTO chats (application_id, number, messages_count, last_message_number, created_at, updated_at) \
         SELECT apps.id, u.n, u.m, u.m, $7, $7 FROM unnest($4::text[], $5::bigint[], $6::bigint[]) AS u(t, n, m) \
         JOIN apps ON apps.token = u.t",
    )
    .bind(&token_strs)
    .bind(&names)
    .bind(&chats_of_app)
    .bind(&slot_tokens)
    .bind(&slot_numbers)
    .bind(&messages_of_slot)
    .bind(now)
    .execute(&mut db)
    .await?;
    let slot_rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT c.application_id, c.id FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS u(t, n, o) \
         JOIN applications AS a ON a.token = u.t JOIN chats AS c ON c.application_id = a.id AND c.number = u.n \
         ORDER BY u.o",
    )
    .bind(&slot_tokens)
    .bind(&slot_numbers)
    .fetch_all(&mut db)
    .await?;
    anyhow::ensure!(
        slot_rows.len() == slot_numbers.len(),
        "{} of {} chats inserted",
        slot_rows.len(),
        slot_numbers.len()
    );
    let (slot_apps, slot_ids): (Vec<i64>, Vec<i64>) = slot_rows.into_iter().unzip();

    let indexes = secondary_indexes(&mut db, "messages").await?;
    for (name, _) in &indexes {
        let drop = format!("DROP INDEX \"{}\"", name.replace('"', "\"\""));
        sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut db).await?;
    }
    copy_messages(&mut db, &layout, words, &slot_apps, &slot_ids, now).await?;
    let rows = started.elapsed();

    let started = Instant::now();
    sqlx::raw_sql("SET maintenance_work_mem = '512MB'").execute(&mut db).await?;
    for (_, definition) in &indexes {
        // PostgreSQL's own text of an index it held a moment ago.
        sqlx::raw_sql(AssertSqlSafe(definition.as_str())).execute(&mut db).await?;
    }
    anyhow::ensure!(
        secondary_indexes(&mut db, "messages").await? == indexes,
        "the messages' indexes are not those dropped for the load: {indexes:?}"
    );
    sqlx::raw_sql("ANALYZE applications, chats, messages").execute(&mut db).await?;
    db.close().await?;

    let slot_chats: Vec<(AppToken, ChatNumber)> = layout
        .slots()
        .zip(&slot_numbers)
        .map(|(slot, n)| Ok((tokens[layout.app_of(slot)].clone(), ChatNumber::try_from(*n)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut slot_chats = slot_chats.into_iter();
    let big_chat = slot_chats.next().ok_or_else(|| anyhow::anyhow!("no big chat"))?;
    let loaded = Preloaded { big_chat, small_chats: slot_chats.collect(), messages };
    Ok((loaded, LoadTimes { rows, indexes: started.elapsed() }))
}

/// The indexes of `table` that no constraint owns (those a bulk load may drop and build
/// again): name and definition.
async fn secondary_indexes(db: &mut PgConnection, table: &str) -> anyhow::Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT indexname, indexdef FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = $1 \
         AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass) \
         ORDER BY indexname",
    )
    .bind(table)
    .fetch_all(&mut *db)
    .await?;
    Ok(rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, sqlx::Error>>()?)
}

/// Streams every message of `layout` into `messages` with one `COPY`, numbered 1, 2, 3… per
/// chat.
async fn copy_messages(
    db: &mut PgConnection,
    layout: &Layout,
    words: &Words,
    slot_apps: &[i64],
    slot_ids: &[i64],
    now: i64,
) -> anyhow::Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut counts = vec![0i64; slot_ids.len()];
    let mut copy = db
        .copy_in_raw(
            "COPY messages (application_id, chat_id, number, body, body_norm, created_at, updated_at) \
             FROM STDIN",
        )
        .await?;
    let mut buffer = String::with_capacity(CHUNK + 1024);
    for (slot, body) in layout.messages(words) {
        counts[slot] += 1;
        let norm = normalize(&body);
        buffer.push_str(&format!("{}\t{}\t{}\t", slot_apps[slot], slot_ids[slot], counts[slot]));
        push_copy_text(&mut buffer, &body);
        buffer.push('\t');
        push_copy_text(&mut buffer, &norm);
        buffer.push_str(&format!("\t{now}\t{now}\n"));
        if buffer.len() >= CHUNK {
            copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.into_bytes()).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// Appends `text` as a column of `COPY`'s text format (its delimiters and escape character
/// escaped).
fn push_copy_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The size of the messages table and of its indexes, in bytes.
pub async fn message_sizes(url: &str) -> anyhow::Result<(i64, i64)> {
    let mut db = PgConnection::connect(url).await?;
    let row = sqlx::query("SELECT pg_table_size('messages'), pg_indexes_size('messages')")
        .fetch_one(&mut db)
        .await?;
    let sizes = (row.try_get(0)?, row.try_get(1)?);
    db.close().await?;
    Ok(sizes)
}

/// Bodies pgbench's transactions insert, drawn from the same words as chatd's creates.
const PGBENCH_BODIES: usize = 1000;

/// What a pgbench run measured.
#[derive(Debug, Clone)]
pub struct PgbenchRun {
    pub clients: usize,
    pub chats: usize,
    pub seconds: u64,
    pub transactions: u64,
    pub failed: u64,
    pub tps: f64,
    pub latency_ms: f64,
}

/// Prepares the empty database at `url` for [`pgbench`]: chatd's schema, `chats` chats spread
/// over [`Layout::APPS`] applications, and a table of message bodies (with their normalised
/// copies) for the transactions to insert. Returns the first and last chat id.
pub async fn prepare_pgbench(url: &str, chats: usize, words: &Words) -> anyhow::Result<(i64, i64)> {
    migrate(url).await?;
    let mut db = PgConnection::connect(url).await?;
    let now = now_millis();
    let per_app = chats.div_ceil(Layout::APPS) as i64;
    sqlx::query(
        "INSERT INTO applications (token, name, chats_count, last_chat_number, created_at, updated_at) \
         SELECT 'pgbench' || i, 'pgbench ' || i, $2, $2, $1, $1 FROM generate_series(1, $3) AS i",
    )
    .bind(now)
    .bind(per_app)
    .bind(Layout::APPS as i64)
    .execute(&mut db)
    .await?;
    sqlx::query(
        "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
         SELECT a.id, n, 0, $1, $1 FROM applications AS a, generate_series(1, $2) AS n ORDER BY a.id, n",
    )
    .bind(now)
    .bind(per_app)
    .execute(&mut db)
    .await?;
    let mut rng = Rng::new(4242);
    let bodies: Vec<String> = (0..PGBENCH_BODIES).map(|_| words.body(&mut rng)).collect();
    let norms: Vec<String> = bodies.iter().map(|b| normalize(b)).collect();
    sqlx::raw_sql(
        "CREATE TABLE pgbench_bodies (id integer PRIMARY KEY, body text NOT NULL, body_norm text NOT NULL)",
    )
    .execute(&mut db)
    .await?;
    sqlx::query(
        "INSERT INTO pgbench_bodies SELECT o, b, bn FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(b, bn, o)",
    )
    .bind(&bodies)
    .bind(&norms)
    .execute(&mut db)
    .await?;
    sqlx::raw_sql("ANALYZE").execute(&mut db).await?;
    let (first, last, count): (i64, i64, i64) =
        sqlx::query_as("SELECT min(id), max(id), count(*) FROM chats").fetch_one(&mut db).await?;
    db.close().await?;
    anyhow::ensure!(
        count == last - first + 1,
        "chat ids {first}..={last} are not contiguous ({count} chats)"
    );
    Ok((first, last))
}

/// pgbench's script: a create as an app that writes per request does it, in one transaction
/// of its own: take the chat's next number under its row lock, insert the message with it
/// (body and normalised body, so the trigram index is written as chatd writes it), commit.
fn pgbench_script(first_chat: i64, last_chat: i64) -> String {
    format!(
        "\\set c random({first_chat}, {last_chat})\n\
         \\set b random(1, {PGBENCH_BODIES})\n\
         BEGIN;\n\
         UPDATE chats SET messages_count = messages_count + 1 WHERE id = :c RETURNING application_id, messages_count \\gset\n\
         INSERT INTO messages (application_id, chat_id, number, body, body_norm, created_at, updated_at) \
         SELECT :application_id, :c, :messages_count, body, body_norm, t, t FROM pgbench_bodies, \
         (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS t) AS now WHERE id = :b;\n\
         COMMIT;\n"
    )
}

/// Runs `program` (pgbench) with [`pgbench_script`] against the database at `url` that
/// [`prepare_pgbench`] prepared: `clients` connections for `seconds`, prepared statements,
/// one thread per core at most.
pub fn pgbench(
    program: &Path,
    url: &str,
    (first_chat, last_chat): (i64, i64),
    clients: usize,
    seconds: u64,
) -> anyhow::Result<PgbenchRun> {
    let mut script = tempfile::NamedTempFile::new()?;
    script.write_all(pgbench_script(first_chat, last_chat).as_bytes())?;
    script.flush()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = std::process::Command::new(program)
        .args(["--no-vacuum", "--protocol=prepared"])
        .arg(format!("--client={clients}"))
        .arg(format!("--jobs={}", clients.min(cores).max(1)))
        .arg(format!("--time={seconds}"))
        .arg("--file")
        .arg(script.path())
        .arg(url)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "{} failed ({}): {stdout}{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_pgbench(&stdout, clients, (last_chat - first_chat + 1) as usize, seconds)
}

/// The figures of pgbench's summary.
fn parse_pgbench(out: &str, clients: usize, chats: usize, seconds: u64) -> anyhow::Result<PgbenchRun> {
    let field = |prefix: &str| -> anyhow::Result<f64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no `{prefix}` in pgbench's output:\n{out}"))
    };
    Ok(PgbenchRun {
        clients,
        chats,
        seconds,
        transactions: field("number of transactions actually processed:")? as u64,
        // Older versions do not print it; they stop a client at its first failure instead.
        failed: field("number of failed transactions:").unwrap_or(0.0) as u64,
        tps: field("tps =")?,
        latency_ms: field("latency average =")?,
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_pgbench, push_copy_text, redacted, with_database};

    #[test]
    fn a_database_url_names_another_database_of_the_same_server() {
        assert_eq!(with_database("postgres://u@h:5432/chatd", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            with_database("postgres://u:p@h/chatd?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:5", "x"), "postgres://h:5/x");
        assert_eq!(
            with_database("postgresql://h?application_name=a", "x"),
            "postgresql://h/x?application_name=a"
        );
    }

    #[test]
    fn a_printed_url_hides_its_password() {
        assert_eq!(redacted("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redacted("postgres://h/db?user=a@b"), "postgres://h/db?user=a@b");
    }

    #[test]
    fn copy_text_escapes_its_delimiters() {
        let mut out = String::new();
        push_copy_text(&mut out, "a\tb\\c\nd\re é");
        assert_eq!(out, "a\\tb\\\\c\\nd\\re é");
    }

    #[test]
    fn pgbench_s_summary_gives_its_figures() {
        let out = "transaction type: /tmp/x\nscaling factor: 1\nnumber of clients: 64\n\
                   number of transactions actually processed: 24567\n\
                   number of failed transactions: 3 (0.012%)\nlatency average = 12.345 ms\n\
                   initial connection time = 45.678 ms\ntps = 5123.456789 (without initial connection time)\n";
        let run = parse_pgbench(out, 64, 1000, 5).unwrap();
        assert_eq!((run.transactions, run.failed, run.clients, run.chats), (24567, 3, 64, 1000));
        assert!((run.tps - 5123.456789).abs() < 1e-9 && (run.latency_ms - 12.345).abs() < 1e-9);
        assert!(parse_pgbench("nothing", 1, 1, 1).is_err());
    }
}
