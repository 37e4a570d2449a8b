//! The one error type of this crate: what went wrong, with the output of the program that
//! failed, so that a test's panic message says why PostgreSQL is not there.

use std::fmt;
use std::io;
use std::process::ExitStatus;

/// Why a test PostgreSQL could not be started, stopped or used.
///
/// `Debug` prints the same text as `Display`, so a test's `.expect(…)` shows what to do.
#[non_exhaustive]
pub enum Error {
    /// A PostgreSQL program is not on this machine. Tests never skip silently: the message
    /// says how to install it or how to point the tests at a server.
    MissingPrograms {
        /// Where the programs were looked for.
        searched: String,
    },
    /// Stopping or starting the server was asked of a server from
    /// `CHATD_TEST_DATABASE_URL`: fault tests need a server this crate started itself.
    NotOwned {
        /// The operation that was refused.
        operation: &'static str,
    },
    /// The test process runs as root and there is no `postgres` user to run PostgreSQL as
    /// (PostgreSQL refuses to run as root).
    NoPostgresUser,
    /// A file or process operation failed.
    Io {
        /// What was being done.
        doing: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A PostgreSQL program ran and failed.
    Failed {
        /// The program and what it was asked to do.
        doing: String,
        /// How it exited.
        status: ExitStatus,
        /// Its standard output and error (and the server log's end, for a start).
        output: String,
    },
}

impl Error {
    pub(crate) fn io(doing: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { doing: doing.into(), source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingPrograms { searched } => write!(
                f,
                "PostgreSQL's programs are not installed (looked in {searched}): install them with \
                 `apt-get install -y postgresql-15 postgresql-contrib-15`, or set \
                 CHATD_TEST_PG_BIN to the directory that holds initdb, pg_ctl and psql, or set \
                 CHATD_TEST_DATABASE_URL to the URL of a PostgreSQL server the tests may use"
            ),
            Error::NotOwned { operation } => write!(
                f,
                "cannot {operation} a server given by CHATD_TEST_DATABASE_URL: fault tests need \
                 the harness's own server (unset CHATD_TEST_DATABASE_URL)"
            ),
            Error::NoPostgresUser => write!(
                f,
                "the tests run as root and PostgreSQL refuses to run as root, but there is no \
                 `postgres` user to run it as (the postgresql-15 package creates one)"
            ),
            Error::Io { doing, source } => write!(f, "{doing}: {source}"),
            Error::Failed { doing, status, output } => {
                write!(f, "{doing} failed ({status}):\n{}", output.trim_end())
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
