//! Configuration: flags, `CHATD_*` environment variables and an optional `.env` file (read
//! by `main` before parsing, so variables it sets count as environment). The README's
//! configuration table is this file in prose.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chatd_store_sqlite::Durability;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cors::CorsOrigins;
use crate::limits::{RateLimit, RequestLimits};

/// chatd: a chat-storage HTTP API.
#[derive(Debug, Parser)]
#[command(name = "chatd", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Running `chatd` with no subcommand is `chatd serve`.
    #[command(flatten)]
    pub serve: Config,
}

// Parsed once at start and taken apart at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve(Config),
    /// Rebuild the search index from the database. Stop the server first: the index
    /// allows one writer, so this refuses to run while chatd serves the same directory.
    Reindex(ReindexArgs),
    /// Print the OpenAPI document of the API (what `GET /openapi.json` serves).
    Openapi,
    /// Copy the old Rails + Go system's MySQL database into chatd, tokens and numbers kept,
    /// into the data directory or, with `--database-url`, PostgreSQL. Run it again to resume
    /// or to add what the source gained; it writes nothing twice.
    Import(ImportArgs),
}

/// Arguments of `chatd import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The old system's database: `mysql://user:password@host:port/database`. Stop the old
    /// system's writers first: the import reads one snapshot.
    #[arg(long, env = "CHATD_IMPORT_FROM", hide_env_values = true)]
    pub from: String,

    /// The embedded target (created if missing); unused with `--database-url`. No server may
    /// run on it meanwhile (the import refuses to start while one does).
    #[arg(long, env = "CHATD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// `postgres://…`: import into the scale-out mode's database instead.
    #[arg(long, env = "CHATD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Read the whole source and report what an import would do, through a scratch
    /// directory in the system's temp dir; the target is only read, for what would refuse
    /// the import (other data without `--merge`, tokens it already has).
    #[arg(long)]
    pub dry_run: bool,

    /// Import into a target that holds data that did not come from this source. Tokens
    /// that collide are then an error, checked before anything is written.
    #[arg(long)]
    pub merge: bool,

    /// The API's largest message body in bytes: longer bodies are imported whole, and
    /// reported.
    #[arg(long, env = "CHATD_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Rows per transaction: a stopped import redoes at most one batch.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_rows: u64,

    /// Log filter (tracing's EnvFilter syntax); progress bars and the report are apart.
    #[arg(long, env = "CHATD_LOG", default_value = "warn")]
    pub log: String,
}

/// Arguments of `chatd reindex`.
#[derive(Debug, Clone, Args)]
pub struct ReindexArgs {
    /// Directory holding the database and the index.
    #[arg(long, env = "CHATD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

impl Cli {
    /// The command to run; no subcommand means `serve`.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

/// A listener address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.parse().map(Listen::On).map_err(|e| format!("expected host:port or 'off': {e}"))
    }
}

/// SQLite's `synchronous` setting, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged write survives power loss.
    Full,
    /// Survives a crash of chatd; the newest commits may be lost on power loss.
    Normal,
}

impl From<Synchronous> for Durability {
    fn from(s: Synchronous) -> Self {
        match s {
            Synchronous::Full => Durability::Full,
            Synchronous::Normal => Durability::Normal,
        }
    }
}

/// Whether the console page is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Console {
    /// `GET /` on the API listener serves the console.
    On,
    /// No console: `/` is 404 like any unknown path.
    Off,
}

/// Everything `chatd serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Directory holding the database and search index (created if missing); unused when
    /// `--database-url` is set.
    #[arg(long, env = "CHATD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// `postgres://user:password@host:port/database`: the scale-out mode, any number of
    /// instances on one PostgreSQL, nothing kept on local disk. Unset: the embedded mode.
    #[arg(long, env = "CHATD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Address of the full API.
    #[arg(long, env = "CHATD_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Address of the creation routes (POST chats, POST messages), or `off`.
    #[arg(long, env = "CHATD_CREATION_LISTEN", default_value = "127.0.0.1:8080")]
    pub creation_listen: Listen,

    /// The console, a small page at `GET /` of the API listener for trying chatd in a
    /// browser (`off` removes it).
    #[arg(long, env = "CHATD_CONSOLE", value_enum, default_value_t = Console::On)]
    pub console: Console,

    /// When set, `GET /applications` requires `Authorization: Bearer <key>`.
    #[arg(long, env = "CHATD_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,

    /// Web pages of other origins that may call the API from a browser (CORS): `*` for any,
    /// or a comma-separated list such as `https://app.example.com,http://localhost:5173`.
    /// Unset: none (pages of chatd's own origin only).
    #[arg(long, env = "CHATD_CORS_ORIGINS")]
    pub cors_origins: Option<CorsOrigins>,

    /// How hard each commit waits for the disk (embedded mode; PostgreSQL always commits
    /// with `synchronous_commit` on).
    #[arg(long, env = "CHATD_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    pub synchronous: Synchronous,

    /// Writes waiting for the writer before new ones get 503 `overloaded`.
    #[arg(long, env = "CHATD_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,

    /// Most writes carried by one transaction.
    #[arg(long, env = "CHATD_MAX_BATCH", default_value_t = 512)]
    pub max_batch: usize,

    /// List pages read at once, each on a read-only database connection of the blocking pool;
    /// and, apart, up to as many lookups by key while lookups run on the pool (while they are
    /// quick they run on the request's thread and do not count). Scale-out mode: the
    /// instance's PostgreSQL connections are four times this.
    #[arg(long, env = "CHATD_READ_CONNECTIONS", default_value_t = 4)]
    pub read_connections: usize,

    /// Least milliseconds between two commits of the search index: a longer interval makes
    /// fewer, larger index segments (less merging and fewer fsyncs) and new messages
    /// searchable later (embedded mode).
    #[arg(long, env = "CHATD_INDEX_COMMIT_INTERVAL", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub index_commit_interval: u64,

    /// Largest request body in bytes (413 beyond).
    #[arg(long, env = "CHATD_MAX_REQUEST_BYTES", default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Largest message body in bytes (413 beyond).
    #[arg(long, env = "CHATD_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Seconds a request may take, reading its body included (408 beyond); also how long
    /// an answer waits for its client to read any of it before the connection is closed.
    #[arg(long, env = "CHATD_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,

    /// Seconds a client has to send a whole request head; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "CHATD_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,

    /// Connections open at once over both listeners; more are answered 503 and closed.
    /// chatd raises its soft open-file limit to the hard one at start; keep this well below
    /// that (`ulimit -Hn`), which the search index's open files share.
    #[arg(long, env = "CHATD_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Live streams open at once (503 `overloaded` beyond); by default half of
    /// `--max-connections`, each stream holding one connection.
    #[arg(long, env = "CHATD_MAX_STREAMS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams: Option<u64>,

    /// Requests per second one client IP may sustain (429 beyond); 0 turns the limit off.
    #[arg(long, env = "CHATD_IP_RATE", default_value_t = 1000)]
    pub ip_rate: u32,

    /// Requests one client IP may send at once above its sustained rate.
    #[arg(long, env = "CHATD_IP_BURST", default_value_t = 2000)]
    pub ip_burst: u32,

    /// Requests per second one application token may sustain (429 beyond); 0 turns the
    /// limit off.
    #[arg(long, env = "CHATD_TOKEN_RATE", default_value_t = 5000)]
    pub token_rate: u32,

    /// Requests one application token may see at once above its sustained rate.
    #[arg(long, env = "CHATD_TOKEN_BURST", default_value_t = 10000)]
    pub token_burst: u32,

    /// Seconds that shutdown waits for open requests before it stops waiting.
    #[arg(long, env = "CHATD_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout: u64,

    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `chatd_server=debug`.
    #[arg(long, env = "CHATD_LOG", default_value = "info")]
    pub log: String,

    /// How long an `Idempotency-Key` is honoured after its create: SPEC §8's 24 hours. Not
    /// a flag; tests shorten it to see keys expire.
    #[arg(skip = chatd_core::idempotency::DEFAULT_WINDOW)]
    pub idempotency_window: Duration,
}

impl Config {
    /// Live streams open at once.
    pub fn max_streams(&self) -> usize {
        let max = self.max_streams.unwrap_or((self.max_connections / 2).max(1));
        usize::try_from(max).unwrap_or(usize::MAX)
    }

    /// The per-request limits.
    pub fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            timeout: Duration::from_secs(self.request_timeout),
            per_ip: RateLimit { per_second: self.ip_rate, burst: self.ip_burst },
            per_token: RateLimit { per_second: self.token_rate, burst: self.token_burst },
        }
    }

    /// The defaults on `data_dir`, with both listeners on loopback port 0 and the rate limits
    /// off (tests, benchmarks: every request comes from one IP and few tokens; the tests of
    /// the limits turn them on).
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        // The defaults alone: `CHATD_*` variables of the caller's environment are ignored.
        let command = <Cli as clap::CommandFactory>::command().mut_args(|a| a.env(None));
        let matches = command.get_matches_from(["chatd"]);
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).expect("the defaults parse");
        let Command::Serve(mut config) = cli.into_command() else {
            unreachable!("no subcommand means serve")
        };
        config.data_dir = data_dir.into();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.creation_listen = Listen::On(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.ip_rate = 0;
        config.token_rate = 0;
        config
    }
}
