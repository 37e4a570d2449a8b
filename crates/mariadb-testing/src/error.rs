//! The one error type of this crate: what went wrong, with the output of the program that
//! failed, so that a test's panic message says why MariaDB is not there.

use std::fmt;
use std::io;
use std::process::ExitStatus;

/// Why a test MariaDB could not be started, stopped or used.
///
/// `Debug` prints the same text as `Display`, so a test's `.expect(…)` shows what to do.
#[non_exhaustive]
pub enum Error {
    /// A MariaDB program is not on this machine. Tests never skip silently: the message says
    /// how to install it or how to point the tests at a server.
    MissingPrograms {
        /// The programs that were not found, and where they were looked for.
        searched: String,
    },
    /// Killing or starting the server was asked of a server from `CHATD_TEST_MYSQL_URL`:
    /// fault tests need a server this crate started itself.
    NotOwned {
        /// The operation that was refused.
        operation: &'static str,
    },
    /// The test process runs as root and there is no `mysql` user to run MariaDB as.
    NoMysqlUser,
    /// `CHATD_TEST_MYSQL_URL` is not a `mysql://` URL this crate can read.
    BadUrl {
        /// What is wrong with it (never the URL itself: it holds a password).
        reason: String,
    },
    /// A file or process operation failed.
    Io {
        /// What was being done.
        doing: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A MariaDB program ran and failed.
    Failed {
        /// The program and what it was asked to do.
        doing: String,
        /// How it exited (`None`: it did not exit, it was waited for too long).
        status: Option<ExitStatus>,
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
                "MariaDB's programs are not installed ({searched}): install Debian's mariadb-server \
                 (`apt-get install -y mariadb-server mariadb-client`), or set CHATD_TEST_MYSQL_URL \
                 to the URL of a MySQL or MariaDB server the tests may use"
            ),
            Error::NotOwned { operation } => write!(
                f,
                "cannot {operation} a server given by CHATD_TEST_MYSQL_URL: fault tests need the \
                 harness's own server (unset CHATD_TEST_MYSQL_URL)"
            ),
            Error::NoMysqlUser => write!(
                f,
                "the tests run as root and MariaDB must not, but there is no `mysql` user to run \
                 it as (the mariadb-server package creates one)"
            ),
            Error::BadUrl { reason } => write!(f, "CHATD_TEST_MYSQL_URL: {reason}"),
            Error::Io { doing, source } => write!(f, "{doing}: {source}"),
            Error::Failed { doing, status: Some(status), output } => {
                write!(f, "{doing} failed ({status}):\n{}", output.trim_end())
            }
            Error::Failed { doing, status: None, output } => {
                write!(f, "{doing} did not finish in time:\n{}", output.trim_end())
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
