//! chatd's HTTP tests: every test talks to a real server over a real socket, on a real
//! SQLite file in a temporary directory. `crash` runs the real `chatd` binary and kills it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod applications;
mod chats;
mod concurrency;
mod console;
mod cors;
mod crash;
mod disk_full;
mod errors;
mod helpers;
mod hostile;
mod idempotency;
mod jepsen;
mod limits;
mod messages;
mod metrics;
mod openapi;
mod process;
mod reindex;
mod restart;
mod search;
mod streams;
