//! A real, throwaway PostgreSQL for chatd's tests.
//!
//! [`TestPostgres::start`] gives a server of the test's own: initdb on a fresh temp dir and a
//! start on a free loopback port, with `fsync` on (tests check durability) and
//! `max_connections = 200`. [`TestPostgres::shared`] gives the one server that all tests of a
//! test process share; each test takes a database of its own from it with
//! [`TestPostgres::fresh_database`].
//!
//! When `CHATD_TEST_DATABASE_URL` is set, both use that server instead of starting one (the
//! databases they create there are left behind, named `chatd_test_…`), and the fault
//! controls ([`TestPostgres::stop_immediately`], [`TestPostgres::start_again`]) answer
//! [`Error::NotOwned`].
//!
//! The programs come from `CHATD_TEST_PG_BIN` when set, else from the newest
//! `/usr/lib/postgresql/<version>/bin` (version 15 or newer). When they are missing, the error
//! says how to install them: tests never skip silently.
//!
//! A server this crate starts is stopped and its temp dir removed when its [`TestPostgres`]
//! is dropped (the drop waits for that), and the shared one a moment after its test process
//! exits, however it exits: a watchdog process does it (see `server`). Under cargo-nextest,
//! which runs each test in a process of its own, each test starts its own shared server.
//!
//! ```no_run
//! use chatd_pg_testing::TestPostgres;
//!
//! let postgres = TestPostgres::shared();
//! let url = postgres.fresh_database().expect("a database");
//! postgres.psql(&url, "CREATE EXTENSION pg_trgm").expect("pg_trgm");
//!
//! let mut own = TestPostgres::start().expect("a server for a fault test");
//! let url = own.fresh_database().expect("a database");
//! own.stop_immediately().expect("stopped as in a crash");
//! own.start_again().expect("back, same port, same data");
//! ```
#![forbid(unsafe_code)]

mod error;
mod server;
mod url;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use error::Error;
use server::OwnedServer;

/// The URL of a PostgreSQL server to use instead of starting one.
pub const DATABASE_URL_ENV: &str = "CHATD_TEST_DATABASE_URL";
/// The directory of initdb, pg_ctl and psql, when not under `/usr/lib/postgresql`.
pub const PG_BIN_ENV: &str = "CHATD_TEST_PG_BIN";

/// Where Debian puts each PostgreSQL version's programs: `<dir>/<version>/bin`.
const DEBIAN_PG_DIR: &str = "/usr/lib/postgresql";
/// The oldest PostgreSQL chatd supports (SPEC §2).
const MIN_VERSION: u32 = 15;

/// A PostgreSQL server for tests: one this crate started (stopped and deleted when dropped,
/// or when the test process exits), or the one `CHATD_TEST_DATABASE_URL` names.
#[derive(Debug)]
pub struct TestPostgres {
    server: Server,
}

#[derive(Debug)]
enum Server {
    /// From `CHATD_TEST_DATABASE_URL`; `psql` is the client used to create databases.
    External {
        url: String,
        psql: PathBuf,
    },
    Owned(OwnedServer),
}

impl TestPostgres {
    /// The server of `CHATD_TEST_DATABASE_URL` if set, else a new one started on a temp dir
    /// and a free loopback port, ready for connections when this returns.
    pub fn start() -> Result<TestPostgres, Error> {
        let server = match env::var(DATABASE_URL_ENV) {
            Ok(url) if !url.is_empty() => {
                let psql = find_bin().map_or_else(|_| PathBuf::from("psql"), |bin| bin.join("psql"));
                Server::External { url, psql }
            }
            _ => Server::Owned(OwnedServer::start(find_bin()?)?),
        };
        Ok(TestPostgres { server })
    }

    /// The server every test of this process shares, started by the first call. It is
    /// stopped and its temp dir removed when the test process exits (by the watchdog, since
    /// a static is never dropped). Fault tests cannot stop it (the fault controls take
    /// `&mut self`): they [`start`](Self::start) a server of their own.
    ///
    /// # Panics
    /// When the server cannot start; the message says why (each later call panics alike).
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
        match SHARED.get_or_init(|| TestPostgres::start().map_err(|error| error.to_string())) {
            Ok(postgres) => postgres,
            Err(error) => panic!("the shared test PostgreSQL did not start: {error}"),
        }
    }

    /// Creates a new database with a name unique to this call and returns its URL: one
    /// database per test, so tests sharing a server do not see each other's rows.
    pub fn fresh_database(&self) -> Result<String, Error> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let name = format!(
            "chatd_test_{}_{}_{}",
            std::process::id(),
            since_epoch.as_micros(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let maintenance = match &self.server {
            Server::External { url, .. } => url.clone(),
            Server::Owned(_) => self.url_of("postgres"),
        };
        self.psql(&maintenance, &format!("CREATE DATABASE {name}"))?;
        Ok(self.url_of(&name))
    }

    /// The URL of database `database` on this server (which need not exist). The name goes
    /// into the URL as it is, so it should be a plain identifier.
    pub fn url_of(&self, database: &str) -> String {
        match &self.server {
            Server::External { url, .. } => url::with_database(url, database),
            Server::Owned(server) => format!("postgres://postgres@127.0.0.1:{}/{database}", server.port()),
        }
    }

    /// Runs `sql` with `psql` against `url` (stopping at the first error) and returns what
    /// it printed: rows unaligned, one per line, columns separated by `|`.
    pub fn psql(&self, url: &str, sql: &str) -> Result<String, Error> {
        let psql = match &self.server {
            Server::External { psql, .. } => psql.clone(),
            Server::Owned(server) => server.bin().join("psql"),
        };
        let mut command = Command::new(psql);
        command
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .arg("--dbname")
            .arg(url)
            .arg("--command")
            .arg(sql)
            .stdin(Stdio::null());
        if env::var_os("PGCONNECT_TIMEOUT").is_none() {
            command.env("PGCONNECT_TIMEOUT", "10");
        }
        output(&mut command, &format!("psql {sql:?}"))
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`), for fault tests.
    /// [`Error::NotOwned`] for the server of `CHATD_TEST_DATABASE_URL`.
    pub fn stop_immediately(&mut self) -> Result<(), Error> {
        self.owned("stop")?.stop_immediately()
    }

    /// Starts the server again after [`stop_immediately`](Self::stop_immediately): same data,
    /// same port, so URLs handed out before stay valid. Returns once it accepts connections.
    pub fn start_again(&mut self) -> Result<(), Error> {
        self.owned("start")?.start_again()
    }

    /// The postmaster's process id while a server this crate started runs; `None` when it
    /// is stopped or is the server of `CHATD_TEST_DATABASE_URL`. For tests of clean-up.
    pub fn postmaster_pid(&self) -> Option<u32> {
        match &self.server {
            Server::External { .. } => None,
            Server::Owned(server) => server.postmaster_pid(),
        }
    }

    fn owned(&self, operation: &'static str) -> Result<&OwnedServer, Error> {
        match &self.server {
            Server::External { .. } => Err(Error::NotOwned { operation }),
            Server::Owned(server) => Ok(server),
        }
    }
}

/// The directory of PostgreSQL's programs: `CHATD_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` of version 15 or newer that holds initdb and pg_ctl.
fn find_bin() -> Result<PathBuf, Error> {
    find_bin_in(env::var_os(PG_BIN_ENV).map(PathBuf::from), Path::new(DEBIAN_PG_DIR))
}

/// [`find_bin`] with the override and the versions' parent dir as arguments.
fn find_bin_in(chosen: Option<PathBuf>, versions_dir: &Path) -> Result<PathBuf, Error> {
    let has_programs = |bin: &Path| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file();
    if let Some(bin) = chosen {
        return if has_programs(&bin) {
            Ok(bin)
        } else {
            Err(Error::MissingPrograms { searched: format!("{} ({PG_BIN_ENV})", bin.display()) })
        };
    }
    let versions = fs::read_dir(versions_dir).into_iter().flatten().flatten();
    versions
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|version| *version >= MIN_VERSION)
        .map(|version| (version, versions_dir.join(version.to_string()).join("bin")))
        .filter(|(_, bin)| has_programs(bin))
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or_else(|| Error::MissingPrograms {
            searched: format!("{}/<{MIN_VERSION} or newer>/bin", versions_dir.display()),
        })
}

/// Runs `command` to completion; its standard output, or [`Error::Failed`] with everything
/// it printed. A program that is not there is [`Error::MissingPrograms`].
fn output(command: &mut Command, doing: &str) -> Result<String, Error> {
    let out = command.output().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => {
            Error::MissingPrograms { searched: command.get_program().to_string_lossy().into_owned() }
        }
        _ => Error::Io { doing: doing.to_owned(), source },
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(Error::Failed {
            doing: doing.to_owned(),
            status: out.status,
            output: format!("{stdout}{stderr}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{Error, find_bin_in};

    const INSTALL_HINT: &str = "apt-get install -y postgresql-15 postgresql-contrib-15";

    #[test]
    fn missing_programs_say_how_to_install_them() {
        let searches = [
            find_bin_in(Some(PathBuf::from("/nonexistent/bin")), Path::new("/usr/lib/postgresql")),
            find_bin_in(None, Path::new("/nonexistent/postgresql")),
        ];
        for search in searches {
            let error = search.expect_err("no programs there");
            assert!(matches!(error, Error::MissingPrograms { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(INSTALL_HINT), "{message}");
            assert!(message.contains("CHATD_TEST_DATABASE_URL"), "{message}");
        }
    }

    #[test]
    fn versions_older_than_15_do_not_count() {
        let root = tempfile::tempdir().expect("a temp dir");
        for version in ["14", "15", "16", "not-a-version"] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).expect("a bin dir");
            for program in ["initdb", "pg_ctl"] {
                std::fs::write(bin.join(program), "").expect("a program");
            }
        }
        assert_eq!(find_bin_in(None, root.path()).expect("found"), root.path().join("16/bin"));
        std::fs::remove_dir_all(root.path().join("16")).expect("16 removed");
        std::fs::remove_dir_all(root.path().join("15")).expect("15 removed");
        assert!(matches!(find_bin_in(None, root.path()), Err(Error::MissingPrograms { .. })));
    }
}
