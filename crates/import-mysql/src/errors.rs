//! Failures of the source as one line each: which server, user, database, table or column
//! is wrong, and never the password (it is also scrubbed from whatever the driver or the
//! server said, in case one of them quotes it).

use std::fmt::Display;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError};

/// MySQL's error numbers that connecting can meet and the import names.
const ACCESS_DENIED: u16 = 1045;
const DATABASE_ACCESS_DENIED: u16 = 1044;
const UNKNOWN_DATABASE: u16 = 1049;

/// Why a connection could not be opened.
pub(crate) enum ConnectError {
    Sqlx(sqlx::Error),
    Timeout(Duration),
}

/// The server and user a URL names, for messages.
pub(crate) struct Endpoint {
    /// `host:port` (`[v6]:port`), or the socket's path.
    pub(crate) server: String,
    user: String,
}

impl Endpoint {
    pub(crate) fn of(options: &MySqlConnectOptions) -> Endpoint {
        let server = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => {
                let host = options.get_host();
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                };
                format!("{host}:{}", options.get_port())
            }
        };
        Endpoint { server, user: options.get_username().to_owned() }
    }

    /// Why connecting to this server failed, as one line.
    pub(crate) fn connect_error(&self, error: ConnectError, database: &str) -> String {
        let Endpoint { server, user } = self;
        let line = match error {
            ConnectError::Timeout(after) => {
                format!("cannot reach the MySQL server at {server}: no answer within {} s", after.as_secs())
            }
            ConnectError::Sqlx(sqlx::Error::Io(error)) => {
                format!("cannot reach the MySQL server at {server}: {error}")
            }
            ConnectError::Sqlx(sqlx::Error::Database(error)) => {
                let number = error.try_downcast_ref::<MySqlDatabaseError>().map(MySqlDatabaseError::number);
                match number {
                    Some(ACCESS_DENIED) => format!(
                        "the MySQL server at {server} refused the user `{user}`: wrong user name or password"
                    ),
                    Some(DATABASE_ACCESS_DENIED) => format!(
                        "the MySQL server at {server} does not let the user `{user}` use the database `{database}`"
                    ),
                    Some(UNKNOWN_DATABASE) => {
                        format!("the MySQL server at {server} has no database `{database}`")
                    }
                    _ => format!("the MySQL server at {server} refused the connection: {}", error.message()),
                }
            }
            ConnectError::Sqlx(sqlx::Error::Tls(error)) => {
                format!("TLS with the MySQL server at {server} failed: {error}")
            }
            ConnectError::Sqlx(error) => {
                format!("connecting to the MySQL server at {server} failed: {error}")
            }
        };
        one_line(&line)
    }
}

/// `text` on one line: its lines trimmed and joined with spaces.
pub(crate) fn one_line(text: &impl Display) -> String {
    let text = text.to_string();
    text.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The password of a `scheme://user:password@host/…` URL, as written and decoded, found
/// without parsing the rest (so that it can be scrubbed even from a URL that does not parse).
pub(crate) fn password_in(url: &str) -> Vec<String> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else { return Vec::new() };
    let Some((_, password)) = userinfo.split_once(':') else { return Vec::new() };
    let decoded = percent_decode_str(password).decode_utf8_lossy().into_owned();
    let mut forms = vec![password.to_owned(), decoded];
    forms.retain(|form| !form.is_empty());
    forms.dedup();
    forms
}

/// `line` with each form of the password replaced by `***`.
pub(crate) fn scrub(line: &str, password: &[String]) -> String {
    // Longest first, so that a decoded form inside the written one leaves no piece behind.
    let mut forms: Vec<&String> = password.iter().collect();
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.iter().fold(line.to_owned(), |line, form| line.replace(form.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::{one_line, password_in, scrub};

    #[test]
    fn the_password_is_found_as_written_and_decoded() {
        assert_eq!(password_in("mysql://u:p%40ss@h:1/db"), ["p%40ss", "p@ss"]);
        assert_eq!(password_in("mysql://u:plain@h/db?x=y"), ["plain"]);
        assert!(password_in("mysql://u@h/db").is_empty());
        assert!(password_in("mysql://h/db:x@y").is_empty());
    }

    #[test]
    fn scrubbed_lines_hold_no_form_of_the_password() {
        let forms = password_in("mysql://u:p%40ss@h/db");
        assert_eq!(scrub("bad p%40ss or p@ss", &forms), "bad *** or ***");
    }

    #[test]
    fn lines_are_joined() {
        assert_eq!(one_line(&"a\n  b\r\n\nc "), "a b c");
    }
}
