//! A real, throwaway MariaDB for the tests of `chatd import` (SPEC §9), whose source is the
//! old system's MySQL database.
//!
//! [`TestMariaDb::start`] gives a server of the test's own: `mariadb-install-db` on a fresh
//! temp dir, then `mariadbd --no-defaults` on a free loopback port, utf8mb4 by default, with
//! `root` reachable over TCP with a password of the server's own (so that tests can also try
//! a wrong one). [`TestMariaDb::shared`] gives the one server that all tests of a test process
//! share; each test takes a database of its own from it with [`TestMariaDb::fresh_database`]
//! and loads it with [`TestMariaDb::execute`].
//!
//! When `CHATD_TEST_MYSQL_URL` is set, both use that server instead of starting one (the
//! databases they create there are left behind, named `chatd_test_…`), and the fault
//! controls ([`TestMariaDb::kill`], [`TestMariaDb::start_again`]) answer [`Error::NotOwned`].
//!
//! The programs (`mariadbd`, `mariadb-install-db`, and the `mariadb` client) are looked for
//! on `PATH` and in `/usr/sbin`, `/usr/local/sbin` and `/usr/bin`. When they are missing,
//! the error says how to install them: tests never skip silently.
//!
//! A server this crate starts is killed and its temp dir removed when its [`TestMariaDb`] is
//! dropped (the drop waits for that), and the shared one a moment after its test process
//! exits, however it exits: a watchdog process does it (see `server`). Under cargo-nextest,
//! which runs each test in a process of its own, each test starts its own shared server.
//!
//! ```no_run
//! use chatd_mariadb_testing::TestMariaDb;
//!
//! let mariadb = TestMariaDb::shared();
//! let url = mariadb.fresh_database().expect("a database");
//! mariadb.execute(&url, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)").expect("loaded");
//! assert_eq!(mariadb.execute(&url, "SELECT id FROM t").expect("read"), "1\n");
//!
//! let mut own = TestMariaDb::start().expect("a server for a fault test");
//! own.kill().expect("killed as in a crash");
//! own.start_again().expect("back, same port, same data");
//! ```
#![forbid(unsafe_code)]

mod error;
mod server;
mod url;

use std::env;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub use error::Error;
use server::OwnedServer;

/// The URL of a MySQL or MariaDB server to use instead of starting one
/// (`mysql://user:password@host:port/`); its user must be allowed to create databases.
pub const MYSQL_URL_ENV: &str = "CHATD_TEST_MYSQL_URL";

/// Where the programs are looked for after `PATH` (Debian puts `mariadbd` in `/usr/sbin`,
/// which a user's `PATH` often lacks).
const PROGRAM_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/usr/bin"];

/// A MariaDB server for tests: one this crate started (killed and deleted when dropped, or
/// when the test process exits), or the one `CHATD_TEST_MYSQL_URL` names.
#[derive(Debug)]
pub struct TestMariaDb {
    server: Server,
    /// The `mariadb` client, which [`TestMariaDb::execute`] runs.
    client: PathBuf,
}

#[derive(Debug)]
enum Server {
    /// From `CHATD_TEST_MYSQL_URL`.
    External {
        url: String,
    },
    Owned(OwnedServer),
}

/// The server programs of an owned server.
#[derive(Debug)]
pub(crate) struct Programs {
    pub(crate) mariadbd: PathBuf,
    pub(crate) install_db: PathBuf,
}

impl TestMariaDb {
    /// The server of `CHATD_TEST_MYSQL_URL` if set, else a new one started on a temp dir and
    /// a free loopback port, ready for connections when this returns.
    pub fn start() -> Result<TestMariaDb, Error> {
        match env::var(MYSQL_URL_ENV) {
            Ok(url) if !url.is_empty() => {
                url::parse(&url)?;
                let client = find_program("mariadb").unwrap_or_else(|| PathBuf::from("mariadb"));
                Ok(TestMariaDb { server: Server::External { url }, client })
            }
            _ => {
                let found =
                    ["mariadbd", "mariadb-install-db", "mariadb"].map(|name| (name, find_program(name)));
                let missing: Vec<&str> =
                    found.iter().filter(|(_, path)| path.is_none()).map(|(name, _)| *name).collect();
                let [(_, Some(mariadbd)), (_, Some(install_db)), (_, Some(client))] = found else {
                    return Err(Error::MissingPrograms { searched: searched(&missing) });
                };
                let server = OwnedServer::start(Programs { mariadbd, install_db })?;
                Ok(TestMariaDb { server: Server::Owned(server), client })
            }
        }
    }

    /// The server every test of this process shares, started by the first call. It is
    /// killed and its temp dir removed when the test process exits (by the watchdog, since a
    /// static is never dropped). Fault tests cannot kill it (the fault controls take
    /// `&mut self`): they [`start`](Self::start) a server of their own.
    ///
    /// # Panics
    /// When the server cannot start; the message says why (each later call panics alike).
    pub fn shared() -> &'static TestMariaDb {
        static SHARED: OnceLock<Result<TestMariaDb, String>> = OnceLock::new();
        match SHARED.get_or_init(|| TestMariaDb::start().map_err(|error| error.to_string())) {
            Ok(mariadb) => mariadb,
            Err(error) => panic!("the shared test MariaDB did not start: {error}"),
        }
    }

    /// Creates a new, empty utf8mb4 database with a name unique to this call
    /// (`chatd_test_…`) and returns its URL: one database per test, so tests sharing a
    /// server do not see each other's rows.
    pub fn fresh_database(&self) -> Result<String, Error> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let name = format!(
            "chatd_test_{}_{}_{}",
            std::process::id(),
            since_epoch.as_micros(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let sql = format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci");
        self.execute(&self.url_of(""), &sql)?;
        Ok(self.url_of(&name))
    }

    /// The URL of database `database` on this server (which need not exist; empty: none).
    /// The name goes into the URL as it is, so it should be a plain identifier.
    pub fn url_of(&self, database: &str) -> String {
        match &self.server {
            Server::External { url } => url::with_database(url, database),
            Server::Owned(server) => {
                format!("mysql://root:{}@127.0.0.1:{}/{database}", server.password(), server.port())
            }
        }
    }

    /// The URL of database `database` on this server as `user` with `password`
    /// (percent-encoded), for tests of wrong credentials.
    pub fn url_as(&self, database: &str, user: &str, password: &str) -> String {
        let url = self.url_of(database);
        let Some((scheme, rest)) = url.split_once("://") else { return url };
        let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
        let encode = |part| utf8_percent_encode(part, NON_ALPHANUMERIC);
        format!("{scheme}://{}:{}@{host_and_path}", encode(user), encode(password))
    }

    /// The password of the server's URLs (decoded), so that tests can check that it appears
    /// in no message; `None` when the URL has none.
    pub fn password(&self) -> Option<String> {
        match &self.server {
            Server::External { url } => url::parse(url).ok()?.password,
            Server::Owned(server) => Some(server.password().to_owned()),
        }
    }

    /// Runs `sql` (any number of `;`-separated statements, a few MB at once if need be) with
    /// the `mariadb` client against `url`, stopping at the first error, and returns what it
    /// printed: rows one per line, columns separated by tabs, no header, `NULL` for null,
    /// and tab, newline and backslash in values escaped as `\t`, `\n` and `\\`.
    pub fn execute(&self, url: &str, sql: &str) -> Result<String, Error> {
        let endpoint = url::parse(url)?;
        let mut command = Command::new(&self.client);
        command
            .arg("--no-defaults")
            .args(["--protocol=TCP", "--batch", "--skip-column-names", "--default-character-set=utf8mb4"])
            .arg("--connect-timeout=10")
            .arg(format!("--host={}", endpoint.host))
            .arg(format!("--port={}", endpoint.port))
            .arg(format!("--user={}", endpoint.user))
            .args(endpoint.database.map(|database| format!("--database={database}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The password through the environment: a command line is visible to every user.
        match endpoint.password {
            Some(password) => command.env("MYSQL_PWD", password),
            None => command.env_remove("MYSQL_PWD"),
        };
        let doing = format!("mariadb {:?}", shortened(sql, 200));
        let mut child = command.spawn().map_err(|source| spawn_error(&self.client, &doing, source))?;
        let stdin = child.stdin.take();
        let sql = sql.as_bytes();
        // Written while the output is read, so that neither pipe can fill and stop the other;
        // closed when written. A write error means the client stopped: its output says why.
        let out = std::thread::scope(|scope| {
            scope.spawn(move || stdin.map(|mut stdin| stdin.write_all(sql)));
            child.wait_with_output()
        });
        finished(out, &doing)
    }

    /// Kills the server with SIGKILL, as a crash would, for fault tests; returns once it is
    /// gone. [`Error::NotOwned`] for the server of `CHATD_TEST_MYSQL_URL`.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.owned("kill")?.kill()
    }

    /// Starts the server again after [`kill`](Self::kill): same data, same port, same
    /// password, so URLs handed out before stay valid. Returns once it accepts connections.
    pub fn start_again(&mut self) -> Result<(), Error> {
        self.owned("start")?.start_again()
    }

    /// The server's process id while a server this crate started runs; `None` when it is
    /// killed or is the server of `CHATD_TEST_MYSQL_URL`. For tests of clean-up.
    pub fn server_pid(&self) -> Option<u32> {
        match &self.server {
            Server::External { .. } => None,
            Server::Owned(server) => server.pid(),
        }
    }

    fn owned(&mut self, operation: &'static str) -> Result<&mut OwnedServer, Error> {
        match &mut self.server {
            Server::External { .. } => Err(Error::NotOwned { operation }),
            Server::Owned(server) => Ok(server),
        }
    }
}

/// `name` in the directories of `PATH`, then in [`PROGRAM_DIRS`].
fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(PROGRAM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Which programs were not found where, for [`Error::MissingPrograms`].
fn searched(missing: &[&str]) -> String {
    format!("no {} on PATH nor in {}", missing.join(", "), PROGRAM_DIRS.join(", "))
}

/// A program that could not be started: [`Error::MissingPrograms`] when it is not there.
fn spawn_error(program: &Path, doing: &str, source: std::io::Error) -> Error {
    match source.kind() {
        std::io::ErrorKind::NotFound => {
            Error::MissingPrograms { searched: searched(&[&program.to_string_lossy()]) }
        }
        _ => Error::Io { doing: doing.to_owned(), source },
    }
}

/// Runs `command` to completion; its standard output, or [`Error::Failed`] with everything
/// it printed.
pub(crate) fn output(command: &mut Command, doing: &str) -> Result<String, Error> {
    let program = PathBuf::from(command.get_program());
    let out = command.output().map_err(|source| spawn_error(&program, doing, source))?;
    finished(Ok(out), doing)
}

/// A finished program's standard output, or [`Error::Failed`] with everything it printed.
fn finished(out: std::io::Result<Output>, doing: &str) -> Result<String, Error> {
    let out = out.map_err(Error::io(doing))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Error::Failed {
        doing: doing.to_owned(),
        status: Some(out.status),
        output: format!("{stdout}{stderr}"),
    })
}

/// The first `max` characters of `text`, with `…` when cut.
fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, searched};

    #[test]
    fn missing_programs_say_how_to_install_them() {
        let message = Error::MissingPrograms { searched: searched(&["mariadbd"]) }.to_string();
        assert!(message.contains("apt-get install -y mariadb-server"), "{message}");
        assert!(message.contains("CHATD_TEST_MYSQL_URL"), "{message}");
        assert!(message.contains("mariadbd"), "{message}");
    }
}
