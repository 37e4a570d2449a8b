//! The old system's schema: as its Rails migrations create it ([`RAILS_SCHEMA`]), and the
//! check that a database holds every column the import reads, with a type it can read.
//!
//! The check reads `information_schema.COLUMNS` once and names the first thing wrong, in
//! import order: a missing table, then a missing column, then a column of another kind of
//! type. Other columns, indexes, keys, nullability and widths are not checked: the import
//! reads nulls as nulls and every integer and text width the same way.

use sqlx::{MySqlConnection, Row};

/// The old system's tables as its Rails migrations leave them (MySQL/MariaDB, InnoDB,
/// utf8mb4): `bigint` auto-increment ids, `datetime(6)` times, counters added by later
/// migrations, the unique token index, and the foreign keys with the index Rails gives each
/// (the only indexes besides the primary keys). For tests and the benchmark, which load it
/// into a fresh database; the import itself only reads.
pub const RAILS_SCHEMA: &str = "\
CREATE TABLE `applications` (
  `id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `name` varchar(255),
  `access_token` varchar(255),
  `created_at` datetime(6) NOT NULL,
  `updated_at` datetime(6) NOT NULL,
  `chat_count` int,
  UNIQUE INDEX `index_applications_on_access_token` (`access_token`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE `chats` (
  `id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `number` int,
  `application_id` bigint NOT NULL,
  `created_at` datetime(6) NOT NULL,
  `updated_at` datetime(6) NOT NULL,
  `message_count` int,
  INDEX `index_chats_on_application_id` (`application_id`),
  CONSTRAINT `fk_rails_3b5054ba3a` FOREIGN KEY (`application_id`) REFERENCES `applications` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE `messages` (
  `id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `number` int,
  `body` text,
  `chat_id` bigint NOT NULL,
  `created_at` datetime(6) NOT NULL,
  `updated_at` datetime(6) NOT NULL,
  INDEX `index_messages_on_chat_id` (`chat_id`),
  CONSTRAINT `fk_rails_0f670de7ba` FOREIGN KEY (`chat_id`) REFERENCES `chats` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
";

/// The kinds of column type the import can read.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Ids, numbers, foreign keys, counters: read as `i64` whatever the width and sign.
    Integer,
    /// Names, tokens, bodies.
    Text,
    /// Times, stored in UTC: read as milliseconds since the epoch.
    Time,
}

impl Kind {
    fn accepts(self, data_type: &str) -> bool {
        let accepted: &[&str] = match self {
            Kind::Integer => &["tinyint", "smallint", "mediumint", "int", "integer", "bigint"],
            Kind::Text => &["char", "varchar", "tinytext", "text", "mediumtext", "longtext"],
            Kind::Time => &["datetime", "timestamp"],
        };
        accepted.contains(&data_type)
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Integer => "an integer type",
            Kind::Text => "a text type",
            Kind::Time => "datetime or timestamp",
        }
    }
}

/// Each table the import reads, in import order, with the columns it reads.
const EXPECTED: [(&str, &[(&str, Kind)]); 3] = [
    (
        "applications",
        &[
            ("id", Kind::Integer),
            ("name", Kind::Text),
            ("access_token", Kind::Text),
            ("chat_count", Kind::Integer),
            ("created_at", Kind::Time),
            ("updated_at", Kind::Time),
        ],
    ),
    (
        "chats",
        &[
            ("id", Kind::Integer),
            ("number", Kind::Integer),
            ("application_id", Kind::Integer),
            ("message_count", Kind::Integer),
            ("created_at", Kind::Time),
            ("updated_at", Kind::Time),
        ],
    ),
    (
        "messages",
        &[
            ("id", Kind::Integer),
            ("number", Kind::Integer),
            ("body", Kind::Text),
            ("chat_id", Kind::Integer),
            ("created_at", Kind::Time),
            ("updated_at", Kind::Time),
        ],
    ),
];

/// The columns of the three tables in the connection's database: table, column, data type.
const COLUMNS: &str = "SELECT CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR) \
     FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('applications', 'chats', 'messages')";

/// What is wrong with the database `database` (the connection's) for the import, as one
/// line; `None` when it has everything the import reads.
pub(crate) async fn problem_in(
    conn: &mut MySqlConnection,
    database: &str,
) -> Result<Option<String>, sqlx::Error> {
    let rows = sqlx::query(COLUMNS).fetch_all(conn).await?;
    let found = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<Vec<(String, String, String)>, sqlx::Error>>()?;
    Ok(problem(&found, database))
}

/// The first thing wrong with the columns found, if any.
fn problem(found: &[(String, String, String)], database: &str) -> Option<String> {
    for (table, columns) in EXPECTED {
        if !found.iter().any(|(t, _, _)| t == table) {
            return Some(format!("the database {database} has no table `{table}`: is it the old system's?"));
        }
        for (column, kind) in columns {
            let Some((_, _, data_type)) =
                found.iter().find(|(t, c, _)| t == table && c.eq_ignore_ascii_case(column))
            else {
                return Some(format!(
                    "the table `{table}` of the database {database} has no column `{column}`: \
                     is it the old system's?"
                ));
            };
            let data_type = data_type.to_ascii_lowercase();
            if !kind.accepts(&data_type) {
                return Some(format!("`{table}`.`{column}` is {data_type}, expected {}", kind.expected()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{EXPECTED, problem};

    fn rails_columns() -> Vec<(String, String, String)> {
        let data_type = |column: &str| match column {
            "name" | "access_token" => "varchar",
            "body" => "text",
            "created_at" | "updated_at" => "datetime",
            "id" | "application_id" | "chat_id" => "bigint",
            _ => "int",
        };
        let columns =
            EXPECTED.iter().flat_map(|(table, columns)| columns.iter().map(move |(c, _)| (*table, *c)));
        columns
            .map(|(table, column)| (table.to_owned(), column.to_owned(), data_type(column).to_owned()))
            .collect()
    }

    #[test]
    fn the_rails_schema_has_no_problem_and_wider_types_none_either() {
        assert_eq!(problem(&rails_columns(), "old"), None);
        let mut wider = rails_columns();
        for (_, column, data_type) in &mut wider {
            *data_type = match column.as_str() {
                "body" => "LONGTEXT",
                "name" => "char",
                "number" => "smallint",
                "created_at" => "timestamp",
                _ => data_type.as_str(),
            }
            .to_owned();
        }
        assert_eq!(problem(&wider, "old"), None);
    }

    #[test]
    fn each_problem_is_named() {
        let without = |table: &str, column: Option<&str>| {
            let columns = rails_columns().into_iter();
            let kept = columns.filter(|(t, c, _)| !(t == table && column.is_none_or(|column| c == column)));
            problem(&kept.collect::<Vec<_>>(), "old").expect("a problem")
        };
        assert_eq!(
            without("messages", None),
            "the database old has no table `messages`: is it the old system's?"
        );
        assert_eq!(
            without("chats", Some("number")),
            "the table `chats` of the database old has no column `number`: is it the old system's?"
        );
        let mut retyped = rails_columns();
        retyped
            .iter_mut()
            .filter(|(t, c, _)| t == "messages" && c == "body")
            .for_each(|(_, _, d)| *d = "int".into());
        let line = problem(&retyped, "old").expect("a problem");
        assert_eq!(line, "`messages`.`body` is int, expected a text type");
    }
}
