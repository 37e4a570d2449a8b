//! The domain of chatd, and the ports every backend implements.
//!
//! chatd stores applications, their numbered chats and the chats' numbered messages. This
//! crate knows nothing about HTTP, SQL or search engines: it holds
//!
//! - [`domain`]: validated input types (`AppToken`, `ChatNumber`, `MessageNumber`, `AppName`,
//!   `MessageBody`, …). Handlers parse raw input into these once; everything behind them can
//!   rely on the invariants ("parse, don't validate").
//! - [`records`]: what reads return (`Application`, `Chat`, `Message`, `Timestamp`).
//! - [`page`]: keyset pagination requests and results.
//! - [`error`]: [`StoreError`], the typed outcomes a backend reports.
//! - [`ports`]: the traits the server calls.
//! - [`feed`]: live events of a chat, the hub a backend publishes them through, and the
//!   subscription the [`ports::Feed`] port hands streams.
//! - [`search`]: partial-text matching (SPEC §5) and the ports a search index and its
//!   store implement.
//! - [`idempotency`]: `Idempotency-Key`s and the fingerprints stored with them (SPEC §8).
//! - [`import`]: `chatd import` from the old system (SPEC §9): its rules, the ports of its
//!   source and target, and the run that drives them.
//! - [`progress`]: a counter threads wait on (commit → index).
//! - [`stats`]: counters of a writer's group commits.
//!
//! # Why the ports are split the way they are
//!
//! Writes and reads go through different traits on purpose. [`ports::Ingest`] accepts creates
//! and edits and answers only once they are durable; [`ports::Catalog`] answers reads;
//! [`ports::Search`] answers searches. In the embedded mode one SQLite adapter implements
//! the first two (a single writer thread assigns numbers and group-commits, a pool of
//! read-only connections serves reads) and search runs over a tantivy index fed by the
//! store's change feed ([`search::ChangeFeed`], [`search::MessageSource`],
//! [`search::CandidateIndex`]: the embedded mode's own ports). In the scale-out mode
//! (SPEC §2) one PostgreSQL adapter implements all three, each instance batching its
//! writes into transactions that lock the parents' counters. The HTTP layer holds one
//! `Arc<dyn …>` of each, chosen at start, so no route knows which mode runs. Existence
//! checks (SPEC §4.2) are the `Ingest` implementor's job because only it can make them
//! atomic with number assignment.
#![forbid(unsafe_code)]

pub mod domain;
pub mod error;
pub mod feed;
pub mod idempotency;
pub mod import;
pub mod page;
pub mod ports;
pub mod progress;
pub mod records;
pub mod search;
pub mod stats;

pub use domain::{AppName, AppToken, ChatNumber, InvalidInput, MessageBody, MessageNumber};
pub use error::StoreError;
pub use idempotency::{Fingerprint, IdempotencyKey, Idempotent};
pub use page::{Limit, Listed, NumberBound, Order, Page};
pub use ports::{Catalog, Feed, Ingest, Search};
pub use records::{Application, Chat, Message, Timestamp};
