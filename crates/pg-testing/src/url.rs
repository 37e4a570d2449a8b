//! `postgres://` URLs: the same server, another database.

/// `url` with its database (the path) replaced by `database`; user, password, host, port and
/// query parameters stay. `database` goes in as it is, so it should need no percent-encoding.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |at| at + 3);
    let path = base[authority..].find('/').map_or(base.len(), |at| authority + at);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced_and_everything_else_kept() {
        let cases = [
            ("postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/t1"),
            (
                "postgres://u:p%2Fw@db.example:6000/app?sslmode=disable",
                "postgres://u:p%2Fw@db.example:6000/t1?sslmode=disable",
            ),
            ("postgresql://localhost", "postgresql://localhost/t1"),
            ("postgresql://localhost/", "postgresql://localhost/t1"),
            ("postgres://h:1?application_name=x/y", "postgres://h:1/t1?application_name=x/y"),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "t1"), expected, "for {url}");
        }
    }
}
