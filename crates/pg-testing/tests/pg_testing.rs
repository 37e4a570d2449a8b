//! Against a real PostgreSQL: databases from the shared server, pg_trgm, a stop as a crash
//! and a start again, and no process or directory left behind, neither by a dropped server
//! nor by the shared one when its test process exits.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chatd_pg_testing::{DATABASE_URL_ENV, Error, TestPostgres};

/// Set in the child process of `the_shared_server_stops_when_the_test_process_exits`.
const CHILD_ENV: &str = "CHATD_PG_TESTING_CHILD";

fn external_server() -> bool {
    std::env::var(DATABASE_URL_ENV).is_ok_and(|url| !url.is_empty())
}

#[test]
fn fresh_databases_are_distinct_and_reachable() {
    let postgres = TestPostgres::shared();

    let first = postgres.fresh_database().expect("a first database");
    let second = postgres.fresh_database().expect("a second database");

    assert_ne!(first, second);
    for url in [&first, &second] {
        let path = url.split('?').next().expect("a URL");
        let name = path.rsplit('/').next().expect("a database in the URL");
        let current = postgres.psql(url, "select current_database()").expect("the database answers");
        assert_eq!(current.trim(), name);
    }
    postgres.psql(&first, "create table only_here (id int)").expect("a table in the first");
    let error = postgres.psql(&second, "select * from only_here").expect_err("not in the second");
    assert!(error.to_string().contains("only_here"), "{error}");
}

#[test]
fn pg_trgm_can_be_created_in_a_fresh_database() {
    let postgres = TestPostgres::shared();
    let url = postgres.fresh_database().expect("a database");

    postgres.psql(&url, "CREATE EXTENSION pg_trgm").expect("pg_trgm is installed");

    let trigrams = postgres.psql(&url, "select show_trgm('cat')").expect("pg_trgm works");
    assert_eq!(trigrams.trim(), r#"{"  c"," ca","at ",cat}"#);
}

#[test]
fn a_committed_row_survives_stop_immediately_and_start_again() {
    let mut postgres = TestPostgres::start().expect("a server of this test's own");
    if external_server() {
        let error = postgres.stop_immediately().expect_err("not the harness's server");
        assert!(matches!(error, Error::NotOwned { .. }), "{error:?}");
        assert!(matches!(postgres.start_again(), Err(Error::NotOwned { .. })));
        return;
    }
    let url = postgres.fresh_database().expect("a database");
    postgres.psql(&url, "create table kept (id int); insert into kept values (42)").expect("a committed row");

    postgres.stop_immediately().expect("stopped");
    assert_eq!(postgres.postmaster_pid(), None);
    postgres.psql(&url, "select 1").expect_err("nothing answers while stopped");
    postgres.start_again().expect("started again");

    let kept = postgres.psql(&url, "select id from kept").expect("the same URL answers again");
    assert_eq!(kept.trim(), "42");
}

#[test]
fn dropping_a_server_leaves_no_process_and_no_directory() {
    if external_server() {
        eprintln!("{DATABASE_URL_ENV} is set: this test needs a server of the harness's own");
        return;
    }
    let postgres = TestPostgres::start().expect("a server of this test's own");
    let url = postgres.fresh_database().expect("a database");
    postgres.psql(&url, "select 1").expect("it answers");
    let postmaster = postgres.postmaster_pid().expect("a running postmaster");
    let processes = server_processes(postmaster);
    assert!(processes.len() > 1, "the postmaster has its background processes: {processes:?}");
    let temp_dir = temp_dir_of(postmaster);
    assert!(temp_dir.is_dir());

    drop(postgres);

    let alive: Vec<u32> = processes.into_iter().filter(|pid| is_alive(*pid)).collect();
    assert!(alive.is_empty(), "still running after the drop: {alive:?}");
    assert!(!temp_dir.exists(), "{} is still there", temp_dir.display());
}

#[test]
fn the_shared_server_stops_when_the_test_process_exits() {
    if external_server() {
        eprintln!("{DATABASE_URL_ENV} is set: the shared server is not the harness's own");
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
    let pids: Vec<u32> = printed("SERVER_PROCESSES=")
        .expect("the child printed its server's processes")
        .split(',')
        .map(|pid| pid.parse().expect("a pid"))
        .collect();
    let temp_dir = PathBuf::from(printed("TEMP_DIR=").expect("the child printed its dir"));

    // The watchdog stops the server after the child has exited: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (pids.iter().any(|pid| is_alive(*pid)) || temp_dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive: Vec<u32> = pids.into_iter().filter(|pid| is_alive(*pid)).collect();
    assert!(alive.is_empty(), "still running after the test process exited: {alive:?}");
    assert!(!temp_dir.exists(), "{} is still there", temp_dir.display());
}

/// Run by `the_shared_server_stops_when_the_test_process_exits` in a child process: starts
/// the shared server, prints its processes and directory, and exits without stopping it.
#[test]
#[ignore = "a child process of the_shared_server_stops_when_the_test_process_exits"]
fn shared_server_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        eprintln!("shared_server_child does its work only as the child of its test");
        return;
    }
    let postgres = TestPostgres::shared();
    let url = postgres.fresh_database().expect("a database");
    postgres.psql(&url, "select 1").expect("it answers");
    let postmaster = postgres.postmaster_pid().expect("a running postmaster");
    let pids: Vec<String> = server_processes(postmaster).iter().map(u32::to_string).collect();
    println!("SERVER_PROCESSES={}", pids.join(","));
    println!("TEMP_DIR={}", temp_dir_of(postmaster).display());
}

/// The postmaster and its children (checkpointer, WAL writer, backends, …).
fn server_processes(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if stat_fields(pid).is_some_and(|fields| fields.get(1) == Some(&postmaster.to_string())) {
            pids.push(pid);
        }
    }
    pids
}

/// The temp dir of a server: the parent of the postmaster's working directory (its data dir).
fn temp_dir_of(postmaster: u32) -> PathBuf {
    let data = fs::read_link(format!("/proc/{postmaster}/cwd")).expect("the postmaster's data dir");
    data.parent().expect("the data dir is in the temp dir").to_path_buf()
}

/// Running, or stopped but not yet reaped (a zombie holds no resources).
fn is_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// The fields of `/proc/<pid>/stat` after the command name: state, parent pid, ….
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}
