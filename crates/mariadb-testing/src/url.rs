//! `mysql://user:password@host:port/database` URLs: read into what the `mariadb` client
//! takes, and rewritten for another database on the same server.

use percent_encoding::percent_decode_str;

use crate::Error;

/// The MySQL protocol's port, when a URL names none.
const DEFAULT_PORT: u16 = 3306;

/// Where and as whom a URL connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
    pub(crate) database: Option<String>,
}

/// Reads a `mysql://` (or `mariadb://`) URL; user, password and database are
/// percent-decoded. Errors never quote the URL, which may hold a password.
pub(crate) fn parse(url: &str) -> Result<Endpoint, Error> {
    let bad = |reason: &str| Error::BadUrl { reason: reason.to_owned() };
    let rest = ["mysql://", "mariadb://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| bad("not a mysql:// URL"))?;
    let rest = rest.split_once('?').map_or(rest, |(base, _query)| base);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            (host, port.parse().map_err(|_| bad("the port is not a number"))?)
        }
        _ => (host_port, DEFAULT_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("the URL names no host"));
    }
    let decode = |part: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .map_err(|_| bad("a percent-encoded part is not UTF-8"))
    };
    Ok(Endpoint {
        host: host.to_owned(),
        port,
        user: if user.is_empty() { "root".to_owned() } else { decode(user)? },
        password: password.map(decode).transpose()?,
        database: Some(decode(path)?).filter(|database| !database.is_empty()),
    })
}

/// `url` with its database (the path) replaced by `database`; everything else stays.
/// `database` goes in as it is, so it should need no percent-encoding.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let after_scheme = base.find("://").map_or(0, |at| at + 3);
    let authority_end = base[after_scheme..].find('/').map_or(base.len(), |at| after_scheme + at);
    let query = query.map(|query| format!("?{query}")).unwrap_or_default();
    format!("{}/{database}{query}", &base[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::{Endpoint, parse, with_database};

    #[test]
    fn a_full_url_is_read_and_decoded() {
        let endpoint =
            parse("mysql://u%40x:p%2Fw%3A@db.example:3307/old_app?ssl-mode=disabled").expect("a URL");
        assert_eq!(
            endpoint,
            Endpoint {
                host: "db.example".to_owned(),
                port: 3307,
                user: "u@x".to_owned(),
                password: Some("p/w:".to_owned()),
                database: Some("old_app".to_owned()),
            }
        );
    }

    #[test]
    fn defaults_fill_what_a_short_url_leaves_out() {
        let endpoint = parse("mariadb://[::1]").expect("a URL");
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("::1", 3306));
        assert_eq!((endpoint.user.as_str(), endpoint.password, endpoint.database), ("root", None, None));
        assert_eq!(parse("mysql://h:1/").expect("a URL").database, None);
    }

    #[test]
    fn errors_do_not_quote_the_url() {
        for url in ["postgres://u:secret@h/db", "mysql://u:secret@h:port/db", "mysql://u:secret@/db"] {
            let error = parse(url).expect_err("not readable");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn the_database_is_replaced_and_everything_else_kept() {
        let cases = [
            ("mysql://root:pw@127.0.0.1:3307/chatd_test_1", "mysql://root:pw@127.0.0.1:3307/t1"),
            ("mysql://u:p%2Fw@h:6000/app?ssl-mode=disabled", "mysql://u:p%2Fw@h:6000/t1?ssl-mode=disabled"),
            ("mysql://localhost", "mysql://localhost/t1"),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "t1"), expected, "for {url}");
        }
    }
}
