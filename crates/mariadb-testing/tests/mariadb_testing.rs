//! Against a real MariaDB: databases from the shared server, SQL loaded on the client's
//! standard input, a wrong password refused, a kill as a crash and a start again, and no
//! process or directory left behind, neither by a dropped server nor by the shared one when
//! its test process exits.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chatd_mariadb_testing::{Error, MYSQL_URL_ENV, TestMariaDb};

/// Set in the child process of `the_shared_server_stops_when_the_test_process_exits`.
const CHILD_ENV: &str = "CHATD_MARIADB_TESTING_CHILD";

fn external_server() -> bool {
    std::env::var(MYSQL_URL_ENV).is_ok_and(|url| !url.is_empty())
}

#[test]
fn fresh_databases_are_distinct_and_reachable() {
    let mariadb = TestMariaDb::shared();

    let first = mariadb.fresh_database().expect("a first database");
    let second = mariadb.fresh_database().expect("a second database");

    assert_ne!(first, second);
    for url in [&first, &second] {
        let name = url.rsplit('/').next().expect("a database in the URL");
        let current =
            mariadb.execute(url, "SELECT DATABASE(), @@character_set_database").expect("it answers");
        assert_eq!(current, format!("{name}\tutf8mb4\n"));
    }
    mariadb.execute(&first, "CREATE TABLE only_here (id int)").expect("a table in the first");
    let error = mariadb.execute(&second, "SELECT * FROM only_here").expect_err("not in the second");
    assert!(error.to_string().contains("only_here"), "{error}");
}

#[test]
fn megabytes_of_inserts_load_through_standard_input() {
    let mariadb = TestMariaDb::shared();
    let url = mariadb.fresh_database().expect("a database");
    let mut sql = String::from("CREATE TABLE t (id int primary key, body text) CHARACTER SET utf8mb4;\n");
    for chunk in 0..40 {
        sql.push_str("INSERT INTO t VALUES ");
        for row in 0..1_000 {
            let id = chunk * 1_000 + row;
            let separator = if row == 0 { "" } else { "," };
            write!(sql, "{separator}({id}, '{}🦀')", "x".repeat(100)).expect("written");
        }
        sql.push_str(";\n");
    }
    assert!(sql.len() > 4 << 20, "{} bytes", sql.len());

    let started = Instant::now();
    mariadb.execute(&url, &sql).expect("loaded");
    let elapsed = started.elapsed();

    let counted =
        mariadb.execute(&url, "SELECT COUNT(*), MAX(id), MIN(CHAR_LENGTH(body)) FROM t").expect("read");
    assert_eq!(counted, "40000\t39999\t101\n");
    let crab = mariadb
        .execute(&url, "SELECT RIGHT(body, 1), HEX(RIGHT(body, 1)) FROM t WHERE id = 7")
        .expect("read");
    assert_eq!(crab, "🦀\tF09FA680\n");
    assert!(elapsed < Duration::from_secs(60), "loading took {elapsed:?}");
}

#[test]
fn a_wrong_password_is_refused_and_not_printed() {
    let mariadb = TestMariaDb::shared();
    let url = mariadb.fresh_database().expect("a database");
    let name = url.rsplit('/').next().expect("a database in the URL");

    let wrong = mariadb.url_as(name, "root", "not-the-password");
    let error = mariadb.execute(&wrong, "SELECT 1").expect_err("refused");

    let message = error.to_string();
    assert!(message.contains("Access denied for user 'root'"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
    let password = mariadb.password().expect("the server has a password");
    assert!(!message.contains(&password), "{message}");
    let right = mariadb.url_as(name, "root", &password);
    assert_eq!(mariadb.execute(&right, "SELECT 1").expect("accepted"), "1\n");
}

#[test]
fn a_killed_server_starts_again_with_its_data_and_a_dropped_one_leaves_nothing() {
    let mut mariadb = TestMariaDb::start().expect("a server of this test's own");
    if external_server() {
        assert!(matches!(mariadb.kill(), Err(Error::NotOwned { .. })));
        assert!(matches!(mariadb.start_again(), Err(Error::NotOwned { .. })));
        return;
    }
    let url = mariadb.fresh_database().expect("a database");
    let table = "CREATE TABLE kept (id int) ENGINE=InnoDB; INSERT INTO kept VALUES (42)";
    mariadb.execute(&url, table).expect("a committed row");
    let first_pid = mariadb.server_pid().expect("running");
    let temp_dir = temp_dir_of(first_pid);
    assert!(temp_dir.is_dir());

    mariadb.kill().expect("killed");
    assert_eq!(mariadb.server_pid(), None);
    assert!(!is_alive(first_pid));
    mariadb.execute(&url, "SELECT 1").expect_err("nothing answers while killed");
    mariadb.start_again().expect("started again");
    assert_eq!(mariadb.execute(&url, "SELECT id FROM kept").expect("the same URL answers again"), "42\n");

    let pid = mariadb.server_pid().expect("running again");
    drop(mariadb);

    assert!(!is_alive(pid), "mariadbd {pid} still runs after the drop");
    assert!(!temp_dir.exists(), "{} is still there", temp_dir.display());
}

#[test]
fn the_shared_server_stops_when_the_test_process_exits() {
    if external_server() {
        eprintln!("{MYSQL_URL_ENV} is set: the shared server is not the harness's own");
        return;
    }
    let child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "shared_server_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("the child test process runs");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "the child failed: {stdout}{}", String::from_utf8_lossy(&child.stderr));
    // The harness prints "test shared_server_child ... " before the child's first line.
    let printed = |key: &str| stdout.lines().find_map(|line| Some(line.split_once(key)?.1.to_owned()));
    let pid: u32 =
        printed("SERVER_PID=").expect("the child printed its server's pid").parse().expect("a pid");
    let temp_dir = PathBuf::from(printed("TEMP_DIR=").expect("the child printed its dir"));

    // The watchdog kills the server after the child has exited: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (is_alive(pid) || temp_dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_alive(pid), "mariadbd {pid} still runs after the test process exited");
    assert!(!temp_dir.exists(), "{} is still there", temp_dir.display());
}

/// Run by `the_shared_server_stops_when_the_test_process_exits` in a child process: starts
/// the shared server, prints its pid and directory, and exits without stopping it.
#[test]
#[ignore = "a child process of the_shared_server_stops_when_the_test_process_exits"]
fn shared_server_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        eprintln!("shared_server_child does its work only as the child of its test");
        return;
    }
    let mariadb = TestMariaDb::shared();
    let url = mariadb.fresh_database().expect("a database");
    mariadb.execute(&url, "SELECT 1").expect("it answers");
    let pid = mariadb.server_pid().expect("a running server");
    println!("SERVER_PID={pid}");
    println!("TEMP_DIR={}", temp_dir_of(pid).display());
}

/// The temp dir of a server: the parent of the `--datadir` on its command line.
fn temp_dir_of(pid: u32) -> PathBuf {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).expect("the server's command line");
    let datadir = cmdline
        .split(|byte| *byte == 0)
        .find_map(|arg| arg.strip_prefix(b"--datadir="))
        .expect("a --datadir argument");
    let datadir = PathBuf::from(String::from_utf8_lossy(datadir).into_owned());
    datadir.parent().expect("the data dir is in the temp dir").to_path_buf()
}

/// Running, or killed but not yet reaped (a zombie holds no resources).
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, after)| after.split_whitespace().next());
    state.is_some_and(|state| state != "Z")
}
