//! A PostgreSQL server this crate starts and stops.
//!
//! Everything lives in one temp dir: the data directory (`data/`), the server log
//! (`server.log`) and the Unix socket. The settings (loopback only, the port, the socket
//! directory, `max_connections = 200`, `fsync = on`) are appended to `data/postgresql.conf`,
//! so a start after a stop uses the same port and data without repeating them.
//!
//! PostgreSQL refuses to run as root. When the test process is root (the temp dir it creates
//! is owned by uid 0), the dir is handed to the `postgres` user and initdb and pg_ctl run
//! with that user's uid and gid; `psql` is a client and runs as the caller.
//!
//! Clean-up does not depend on `Drop` running. Before initdb, a watchdog (`sh`, in a process
//! group of its own so a Ctrl-C to the tests does not reach it) blocks reading a pipe whose
//! only writer is the test process. The pipe reaches end-of-file when [`OwnedServer`] is
//! dropped, and also when the test process exits however it exits (the kernel closes its
//! descriptors, which std opens close-on-exec, so no other child holds them). The watchdog
//! then runs `pg_ctl stop -m immediate` (through `setpriv` as the server's user when root)
//! and removes the temp dir; it runs as the test process's user, so it can remove the dir
//! wherever `TMPDIR` points. Drop waits for it, so after the drop no process of that server
//! remains.
//!
//! One window is left: a test process killed while its `pg_ctl start` runs (the second or
//! so a start takes) can leave a postmaster that writes its pid file after the watchdog's
//! stop. Its data dir is gone by then, and PostgreSQL checks its lock file once a minute and
//! shuts itself down when the file is missing, so such a server lives about a minute.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::Error;

/// Once its standard input reaches EOF, runs the command in its arguments after the first
/// (the stop) and removes the first (the temp dir). Terminal signals are ignored: only the
/// pipe decides.
const WATCHDOG: &str = r#"trap '' INT HUP
dir=$1
shift
cat >/dev/null
"$@" >/dev/null 2>&1
rm -rf "$dir""#;

/// pg_ctl's arguments for a stop as in a crash: the postmaster and its backends quit at once,
/// and the next start recovers from the WAL. `-w`: returns when the postmaster has exited.
const STOP_IMMEDIATELY: [&str; 6] = ["-m", "immediate", "-w", "-t", "60", "-s"];

/// How many times a start may find its chosen port taken (between the probe and the bind,
/// another process can take it) before giving up.
const PORT_ATTEMPTS: usize = 5;

/// A uid and gid to run the server programs as.
#[derive(Debug, Clone, Copy)]
struct User {
    uid: u32,
    gid: u32,
}

/// A server started by this crate: its directory, port, and the watchdog that stops it.
#[derive(Debug)]
pub(crate) struct OwnedServer {
    /// The directory of initdb, pg_ctl and psql.
    bin: PathBuf,
    /// The temp dir: `data/`, `server.log`, the socket. Removed by the watchdog.
    dir: PathBuf,
    port: u16,
    /// `Some` when the test process is root: the `postgres` user.
    user: Option<User>,
    /// Held for its `Drop`: dropping it stops the server and removes `dir`.
    _watchdog: Watchdog,
}

impl OwnedServer {
    /// initdb on a fresh temp dir, then a start on a free loopback port.
    pub(crate) fn start(bin: PathBuf) -> Result<OwnedServer, Error> {
        let tmp = tempfile::Builder::new()
            .prefix("chatd-pg-")
            .tempdir()
            .map_err(Error::io("creating a temp dir for PostgreSQL"))?;
        let owner = tmp.path().metadata().map_err(Error::io("reading the temp dir's owner"))?.uid();
        let user = if owner == 0 {
            let user = postgres_user()?;
            std::os::unix::fs::chown(tmp.path(), Some(user.uid), Some(user.gid))
                .map_err(Error::io("handing the temp dir to the postgres user"))?;
            Some(user)
        } else {
            None
        };
        let watchdog = Watchdog::spawn(&bin.join("pg_ctl"), tmp.path(), user)?;
        // From here on the watchdog removes the dir, also if a step below fails.
        let dir = tmp.keep();
        let mut server = OwnedServer { bin, dir, port: 0, user, _watchdog: watchdog };
        server.initdb()?;
        server.start_on_a_free_port()?;
        Ok(server)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn bin(&self) -> &Path {
        &self.bin
    }

    /// `pg_ctl stop -m immediate`.
    pub(crate) fn stop_immediately(&self) -> Result<(), Error> {
        let mut stop = self.command("pg_ctl");
        stop.arg("stop").arg("-D").arg(self.data()).args(STOP_IMMEDIATELY);
        crate::output(&mut stop, "pg_ctl stop -m immediate").map(drop)
    }

    /// Starts the server again on the same data dir and port.
    pub(crate) fn start_again(&self) -> Result<(), Error> {
        self.pg_ctl_start()
    }

    /// The postmaster's process id, from `postmaster.pid`; `None` while it is stopped.
    pub(crate) fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    fn initdb(&self) -> Result<(), Error> {
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(self.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        crate::output(&mut initdb, "initdb")?;
        let socket_dir = self.dir.to_str().ok_or_else(|| Error::Io {
            doing: format!("using {} as the socket directory", self.dir.display()),
            source: std::io::Error::other("the path is not UTF-8"),
        })?;
        self.append_settings(&format!(
            "\n# chatd-pg-testing\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = 200\nfsync = on\n",
            socket_dir.replace('\'', "''")
        ))
    }

    /// Chooses a free loopback port (bind port 0, read it, let it go) and starts there; if
    /// another process took the port in between, tries another.
    fn start_on_a_free_port(&mut self) -> Result<(), Error> {
        let log = self.dir.join("server.log");
        let mut attempt = 1;
        loop {
            self.port = free_port()?;
            self.append_settings(&format!("port = {}\n", self.port))?;
            let log_before = fs::metadata(&log).map_or(0, |meta| meta.len());
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let log_text = fs::read(&log).unwrap_or_default();
                    let new_lines = log_text.get(log_before as usize..).unwrap_or_default();
                    let port_taken = String::from_utf8_lossy(new_lines).contains("could not bind");
                    if !port_taken || attempt == PORT_ATTEMPTS {
                        return Err(error);
                    }
                }
            }
            attempt += 1;
        }
    }

    /// `pg_ctl start -w`: returns once the server accepts connections.
    fn pg_ctl_start(&self) -> Result<(), Error> {
        let log = self.dir.join("server.log");
        let mut start = self.command("pg_ctl");
        start.arg("start").arg("-D").arg(self.data()).arg("-l").arg(&log).args(["-w", "-t", "60", "-s"]);
        crate::output(&mut start, "pg_ctl start").map(drop).map_err(|error| match error {
            Error::Failed { doing, status, mut output } => {
                output.push_str("\nthe server log ends with:\n");
                output.push_str(&tail(&log, 20));
                Error::Failed { doing, status, output }
            }
            other => other,
        })
    }

    fn append_settings(&self, settings: &str) -> Result<(), Error> {
        OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .map_err(Error::io("writing the settings to postgresql.conf"))
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// One of the server programs, to run as the server's user in the temp dir.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(&self.dir).stdin(Stdio::null());
        if let Some(user) = self.user {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }
}

/// The watchdog process and the write end of its pipe.
#[derive(Debug)]
struct Watchdog {
    child: Child,
    /// Closing this (or the test process exiting) tells the watchdog to stop the server.
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    fn spawn(pg_ctl: &Path, dir: &Path, user: Option<User>) -> Result<Watchdog, Error> {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(WATCHDOG).arg("chatd-pg-watchdog").arg(dir);
        if let Some(user) = user {
            // pg_ctl refuses root; setpriv (util-linux) runs it as the server's user.
            let setpriv = find_in_path("setpriv").ok_or_else(|| Error::Io {
                doing: "finding setpriv (util-linux) to run pg_ctl as postgres".to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
            command.arg(setpriv).arg(format!("--reuid={}", user.uid));
            command.arg(format!("--regid={}", user.gid)).arg("--clear-groups");
        }
        command.arg(pg_ctl).arg("stop").arg("-D").arg(dir.join("data")).args(STOP_IMMEDIATELY);
        command
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = command.spawn().map_err(Error::io("starting the PostgreSQL watchdog"))?;
        let pipe = child.stdin.take();
        Ok(Watchdog { child, pipe })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.pipe.take());
        // The watchdog has stopped the server and removed its dir when it exits.
        let _ = self.child.wait();
    }
}

/// The `postgres` user's uid and gid, from `getent passwd postgres`.
fn postgres_user() -> Result<User, Error> {
    let entry = Command::new("getent").args(["passwd", "postgres"]).output().ok();
    let entry = entry.filter(|out| out.status.success()).ok_or(Error::NoPostgresUser)?;
    let entry = String::from_utf8_lossy(&entry.stdout);
    let fields: Vec<&str> = entry.trim().split(':').collect();
    match (fields.get(2).and_then(|uid| uid.parse().ok()), fields.get(3).and_then(|gid| gid.parse().ok())) {
        (Some(uid), Some(gid)) => Ok(User { uid, gid }),
        _ => Err(Error::NoPostgresUser),
    }
}

/// The first `program` in the directories of `PATH`.
fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// A loopback port nothing listens on at the moment of asking.
fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener.local_addr().map_err(Error::io("reading the free port"))?.port();
    Ok(port)
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|error| format!("({}: {error})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
