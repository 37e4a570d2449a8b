//! `--import N`: `chatd import` of the old system's database holding `N` messages, from a
//! throwaway MariaDB on this machine into the embedded store (or, with `--postgres`, a
//! throwaway PostgreSQL). The data is made inside MariaDB (its sequence engine), in the
//! old system's schema: 10 applications, `--chats` chats over them, messages spread over the
//! chats in id order, bodies of a few words from a small vocabulary; about one message in
//! a hundred (every 97th) has the number of the one before it in its chat, one in a thousand
//! none, so the renumbering step does real work too.

use std::time::Instant;

use anyhow::Context;
use chatd_import_mysql::RAILS_SCHEMA;
use chatd_mariadb_testing::TestMariaDb;
use chatd_server::config::ImportArgs;

use crate::{Opts, Report};

/// Applications the chats are spread over.
const APPLICATIONS: u64 = 10;

/// Loads the old database, imports it, and reports rows per second.
pub fn run(opts: &Opts, messages: u64) -> anyhow::Result<Report> {
    let mut report = Report { checks_passed: true, ..Report::default() };
    let chats = u64::try_from(opts.chats).unwrap_or(1).max(1);
    let maria = TestMariaDb::start().context("starting a throwaway MariaDB")?;
    let from = maria.fresh_database()?;
    let loading = Instant::now();
    maria.execute(&from, RAILS_SCHEMA)?;
    maria.execute(&from, &old_data(messages, chats))?;
    println!("old database loaded: {messages} messages in {:.1} s", loading.elapsed().as_secs_f64());

    let runtime = tokio::runtime::Runtime::new()?;
    let data = tempfile::tempdir()?;
    let pg = if opts.postgres { Some(crate::postgres::Server::start(None)?) } else { None };
    let database_url = pg.as_ref().map(|pg| pg.fresh_database(&runtime)).transpose()?;
    let args = ImportArgs {
        from,
        data_dir: data.path().join("data"),
        database_url,
        dry_run: false,
        merge: false,
        max_message_bytes: 64 * 1024,
        batch_rows: 10_000,
        log: "warn".into(),
    };
    let started = Instant::now();
    let outcome = runtime.block_on(chatd_server::import::run(&args)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let total = started.elapsed();
    let held = outcome.summary.table(chatd_core::import::Table::Messages).in_source;
    anyhow::ensure!(held == messages, "the source held {held} messages");

    let target = if opts.postgres { "PostgreSQL" } else { "embedded" };
    let per_second = messages as f64 / outcome.rows.as_secs_f64();
    report.add(
        &format!("import, messages per second into {target} (rows written)"),
        format!("{per_second:.0} ({messages} in {:.1} s)", outcome.rows.as_secs_f64()),
        if opts.postgres { "not set" } else { ">= 50,000" },
    );
    if let Some(index) = outcome.index {
        report.add(
            "import, search index caught up after the rows",
            format!("{:.1} s", index.as_secs_f64()),
            "<= 60 s",
        );
    }
    report.add("import, whole command", format!("{:.1} s", total.as_secs_f64()), "");
    Ok(report)
}

/// The old system's rows, made by MariaDB: applications, chats, messages.
fn old_data(messages: u64, chats: u64) -> String {
    format!(
        "INSERT INTO applications (id, name, access_token, created_at, updated_at, chat_count)
           SELECT seq, CONCAT('app ', seq), CONCAT('benchToken', seq), NOW(6), NOW(6), NULL
           FROM seq_1_to_{APPLICATIONS};
         INSERT INTO chats (id, number, application_id, created_at, updated_at, message_count)
           SELECT seq, (seq - 1) DIV {APPLICATIONS} + 1, (seq - 1) MOD {APPLICATIONS} + 1, NOW(6), NOW(6), NULL
           FROM seq_1_to_{chats};
         INSERT INTO messages (id, number, body, chat_id, created_at, updated_at)
           SELECT seq,
                  CASE WHEN seq MOD 1000 = 0 THEN NULL
                       WHEN seq MOD 97 = 0 THEN GREATEST((seq - 1) DIV {chats}, 1)
                       ELSE (seq - 1) DIV {chats} + 1 END,
                  CONCAT(ELT(1 + seq MOD 7, 'hello', 'status', 'deploy', 'lunch', 'review', 'ticket', 'meeting'),
                         ' ', ELT(1 + seq MOD 5, 'today', 'at noon', 'is done', 'needs help', 'moved'),
                         ' #', seq, ' ', ELT(1 + seq MOD 3, 'ok', 'thanks, see you there', 'on it')),
                  (seq - 1) MOD {chats} + 1, NOW(6), NOW(6)
           FROM seq_1_to_{messages};"
    )
}
