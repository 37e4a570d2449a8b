//! A MariaDB server this crate starts and kills.
//!
//! Everything lives in one temp dir: the data directory (`data/`), the server log
//! (`server.log`), what the server printed before it opened its log (`console.log`), the
//! Unix socket, the pid file, and `init.sql`, which the server runs at each start (it gives
//! `root@127.0.0.1` the server's password). The server is `mariadbd --no-defaults`, so no
//! configuration file of the machine changes it; its settings are the arguments of
//! [`OwnedServer::launch`].
//!
//! MariaDB must not run as root. When the test process is root (the temp dir it creates is
//! owned by uid 0), the dir is handed to the `mysql` user and `mariadb-install-db` and
//! `mariadbd` are told `--user=mysql` (the server drops to that user itself, in the same
//! process); otherwise they run as the caller.
//!
//! Clean-up does not depend on `Drop` running. Before anything else, a watchdog (`sh`, in a
//! process group of its own so that a Ctrl-C to the tests does not reach it) reads a pipe
//! whose only writer is the test process: each line is the pid of the running server, an
//! empty line means none runs. At end-of-file, which comes when [`OwnedServer`] is dropped
//! and also when the test process exits however it exits (the kernel closes its
//! descriptors, which std opens close-on-exec, so no other child holds them), it kills the
//! last pid it was told with SIGKILL, waits until that process is gone (or a zombie, which
//! holds nothing) and removes the temp dir. It runs as the test process's user, so it can
//! remove the dir wherever `TMPDIR` points. Drop waits for it, so after the drop no process
//! of that server remains.
//!
//! One window is left: a test process killed while `mariadb-install-db` runs (the first
//! seconds of a start) leaves that program to finish on a directory the watchdog removes.

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Programs};

/// At end-of-file on its standard input, kills the last pid read (unless the last line was
/// empty) and removes the dir in its first argument. Terminal signals are ignored: only the
/// pipe decides.
const WATCHDOG: &str = r#"trap '' INT HUP
dir=$1
pid=
while read -r line; do pid=$line; done
if [ -n "$pid" ]; then
    kill -KILL "$pid" 2>/dev/null
    while state=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$pid/stat" 2>/dev/null) &&
        [ -n "$state" ] && [ "$state" != Z ]; do
        sleep 0.05
    done
fi
rm -rf "$dir""#;

/// How many times a start may find its chosen port taken (between the probe and the bind,
/// another process can take it) before giving up.
const PORT_ATTEMPTS: usize = 5;
/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// What the server logs once it accepts connections (after running its init file).
const READY: &str = "ready for connections";

/// A server started by this crate: its directory, port, password, process and watchdog.
#[derive(Debug)]
pub(crate) struct OwnedServer {
    mariadbd: PathBuf,
    /// The temp dir: `data/`, the logs, the socket. Removed by the watchdog.
    dir: PathBuf,
    port: u16,
    password: String,
    /// The test process is root: the server runs as the `mysql` user.
    as_mysql: bool,
    /// The running server; `None` after [`OwnedServer::kill`].
    process: Option<Child>,
    /// Held for its `Drop`: dropping it removes `dir` (and kills a server still running).
    watchdog: Watchdog,
}

impl OwnedServer {
    /// `mariadb-install-db` on a fresh temp dir, then a start on a free loopback port.
    pub(crate) fn start(programs: Programs) -> Result<OwnedServer, Error> {
        let tmp = tempfile::Builder::new()
            .prefix("chatd-mariadb-")
            .tempdir()
            .map_err(Error::io("creating a temp dir for MariaDB"))?;
        let owner = tmp.path().metadata().map_err(Error::io("reading the temp dir's owner"))?.uid();
        let as_mysql = owner == 0;
        if as_mysql {
            let (uid, gid) = mysql_user()?;
            std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid))
                .map_err(Error::io("handing the temp dir to the mysql user"))?;
        }
        let watchdog = Watchdog::spawn(tmp.path())?;
        // From here on the watchdog removes the dir, also if a step below fails.
        let dir = tmp.keep();
        let password = format!("chatd-{:016x}", RandomState::new().build_hasher().finish());
        let mut server = OwnedServer {
            mariadbd: programs.mariadbd,
            dir,
            port: 0,
            password,
            as_mysql,
            process: None,
            watchdog,
        };
        server.install(&programs.install_db)?;
        server.start_on_a_free_port()?;
        Ok(server)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// The server's process id while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// SIGKILL, as in a crash; returns once the process is gone.
    pub(crate) fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut process) = self.process.take() {
            process.kill().map_err(Error::io("killing mariadbd"))?;
            process.wait().map_err(Error::io("waiting for mariadbd to die"))?;
            // Reaped: its pid may be reused, so the watchdog must no longer kill it.
            self.watchdog.watch(None)?;
        }
        Ok(())
    }

    /// Starts the server again on the same data dir and port (InnoDB recovers what a kill
    /// left). Returns once it accepts connections.
    pub(crate) fn start_again(&mut self) -> Result<(), Error> {
        if self.process.is_some() {
            return Ok(());
        }
        self.launch()
    }

    /// `mariadb-install-db`: the system tables, `root` with password authentication, no test
    /// database; then the init file that sets root's password at each start.
    fn install(&self, install_db: &Path) -> Result<(), Error> {
        // Temporary files of its own: concurrent installs sharing /tmp failed on each
        // other's temporary tables.
        let tmp = self.dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(Error::io("creating the server's tmpdir"))?;
        if self.as_mysql {
            let (uid, gid) = mysql_user()?;
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))
                .map_err(Error::io("handing the tmpdir to the mysql user"))?;
        }
        let mut install = Command::new(install_db);
        install
            .arg("--no-defaults")
            .args(self.as_mysql.then_some("--user=mysql"))
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        crate::output(&mut install, "mariadb-install-db")?;
        let sql = format!(
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{password}';\n\
             ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{password}';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n",
            password = self.password
        );
        fs::write(self.dir.join("init.sql"), sql).map_err(Error::io("writing init.sql"))
    }

    /// Chooses a free loopback port (bind port 0, read it, let it go) and starts there; if
    /// another process took the port in between, tries another.
    fn start_on_a_free_port(&mut self) -> Result<(), Error> {
        let mut attempt = 1;
        loop {
            self.port = free_port()?;
            match self.launch() {
                Err(Error::Failed { output, .. })
                    if output.contains(PORT_TAKEN) && attempt < PORT_ATTEMPTS =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Starts `mariadbd` and waits until its log says it is ready, or it exits.
    fn launch(&mut self) -> Result<(), Error> {
        let dir = &self.dir;
        let log = dir.join("server.log");
        let log_before = fs::metadata(&log).map_or(0, |meta| meta.len());
        let console = File::options()
            .create(true)
            .append(true)
            .open(dir.join("console.log"))
            .map_err(Error::io("opening console.log"))?;
        let mut command = Command::new(&self.mariadbd);
        command
            .arg("--no-defaults")
            .args(self.as_mysql.then_some("--user=mysql"))
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--init-file={}", dir.join("init.sql").display()))
            .args([
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--max-allowed-packet=64M",
                "--innodb-buffer-pool-size=64M",
                // A source of imports, never tested for its own durability: commits need not
                // wait for the disk.
                "--innodb-flush-log-at-trx-commit=2",
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(console);
        let mut process = command.spawn().map_err(Error::io("starting mariadbd"))?;
        // Told before anything can fail, so that the watchdog kills even a half-started server.
        self.watchdog.watch(Some(process.id()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let new_lines = fs::read(&log).unwrap_or_default().get(log_before as usize..).map(<[u8]>::to_vec);
            let new_lines = String::from_utf8_lossy(&new_lines.unwrap_or_default()).into_owned();
            if new_lines.contains(READY) {
                self.process = Some(process);
                return Ok(());
            }
            let exited = process.try_wait().map_err(Error::io("waiting for mariadbd"))?;
            if exited.is_some() || Instant::now() >= deadline {
                let _ = process.kill();
                let status = process.wait().ok().filter(|_| exited.is_some());
                self.watchdog.watch(None)?;
                let output = format!(
                    "the server log ends with:\n{}\nit printed:\n{}",
                    tail(&new_lines, 20),
                    tail(&fs::read_to_string(dir.join("console.log")).unwrap_or_default(), 10)
                );
                return Err(Error::Failed {
                    doing: format!("mariadbd on port {}", self.port),
                    status,
                    output,
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for OwnedServer {
    fn drop(&mut self) {
        // The watchdog would kill it too; killing it here reaps it (it is our child).
        let _ = self.kill();
    }
}

/// What mariadbd logs when its port is taken.
const PORT_TAKEN: &str = "Address already in use";

/// The watchdog process and the write end of its pipe.
#[derive(Debug)]
struct Watchdog {
    child: Child,
    /// Each line written is the server's pid (or none); closing it (or the test process
    /// exiting) tells the watchdog to kill that pid and remove the dir.
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    fn spawn(dir: &Path) -> Result<Watchdog, Error> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("chatd-mariadb-watchdog")
            .arg(dir)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(Error::io("starting the MariaDB watchdog"))?;
        let pipe = child.stdin.take();
        Ok(Watchdog { child, pipe })
    }

    /// Tells the watchdog which process to kill at the end (`None`: none).
    fn watch(&mut self, pid: Option<u32>) -> Result<(), Error> {
        let line = pid.map(|pid| pid.to_string()).unwrap_or_default();
        let pipe = self.pipe.as_mut().ok_or_else(|| Error::Io {
            doing: "telling the watchdog the server's pid".to_owned(),
            source: io::ErrorKind::BrokenPipe.into(),
        })?;
        writeln!(pipe, "{line}").map_err(Error::io("telling the watchdog the server's pid"))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.pipe.take());
        // The watchdog has killed the server and removed its dir when it exits.
        let _ = self.child.wait();
    }
}

/// The `mysql` user's uid and gid, from `getent passwd mysql`.
fn mysql_user() -> Result<(u32, u32), Error> {
    let entry = Command::new("getent").args(["passwd", "mysql"]).output().ok();
    let entry = entry.filter(|out| out.status.success()).ok_or(Error::NoMysqlUser)?;
    let entry = String::from_utf8_lossy(&entry.stdout);
    let mut fields = entry.trim().split(':').skip(2).map(str::parse::<u32>);
    match (fields.next(), fields.next()) {
        (Some(Ok(uid)), Some(Ok(gid))) => Ok((uid, gid)),
        _ => Err(Error::NoMysqlUser),
    }
}

/// A loopback port nothing listens on at the moment of asking.
fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding 127.0.0.1:0 to find a free port"))?;
    Ok(listener.local_addr().map_err(Error::io("reading the free port"))?.port())
}

/// The last `lines` lines of a text, for error messages.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
