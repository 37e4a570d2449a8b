//! The HTTP suite of `tests/api` again, with chatd in its scale-out mode: each test's server
//! runs with `--database-url` on a database of its own, on a throwaway PostgreSQL started by
//! `chatd-pg-testing` (or the server `CHATD_TEST_DATABASE_URL` names). The helpers tell the
//! two binaries apart by crate name; a test's data directory names its database, so a
//! restart (in process, or of the `chatd` binary after `kill -9`) finds the same data. Left
//! out: the embedded mode's own (a full disk, `chatd reindex`). Added: the faults of this
//! mode and three instances on one database. Two binary tests (`.env`, the admin-key
//! warning) start chatd without a database URL and so run embedded here too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/applications.rs"]
mod applications;
#[path = "../api/chats.rs"]
mod chats;
#[path = "../api/concurrency.rs"]
mod concurrency;
#[path = "../api/console.rs"]
mod console;
#[path = "../api/cors.rs"]
mod cors;
#[path = "../api/crash.rs"]
mod crash;
#[path = "../api/errors.rs"]
mod errors;
mod faults;
mod instances;
// Helpers of the binary-running tests left out above are unused here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../api/hostile.rs"]
mod hostile;
#[path = "../api/idempotency.rs"]
mod idempotency;
#[path = "../api/jepsen.rs"]
mod jepsen;
#[path = "../api/limits.rs"]
mod limits;
#[path = "../api/messages.rs"]
mod messages;
#[path = "../api/metrics.rs"]
mod metrics;
#[path = "../api/openapi.rs"]
mod openapi;
#[path = "../api/process.rs"]
mod process;
#[path = "../api/restart.rs"]
mod restart;
#[path = "../api/search.rs"]
mod search;
#[path = "../api/streams.rs"]
mod streams;
