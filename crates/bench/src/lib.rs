//! chatd's benchmark (see BENCHMARKS.md): drives chatd, a bare axum baseline and a durable
//! floor with the same client and connections in one run, and prints every figure as a
//! Markdown table. With `--postgres` or `--database-url` it drives chatd's scale-out mode
//! instead, beside the baseline and pgbench running the per-request transaction that chatd's
//! batched writer replaces (see [`postgres`]).
#![forbid(unsafe_code)]

pub mod client;
pub mod data;
pub mod import;
pub mod memory;
pub mod postgres;
pub mod servers;
pub mod streams;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use serde_json::Value;

use chatd_core::stats::WriterStatsSnapshot;
use chatd_core::{AppToken, ChatNumber};
use chatd_server::config::Synchronous;
use client::{Call, Conn, Lateness, Pace, RunStats};
use data::{Rng, Words};
use memory::{CpuMeter, CpuUse, MemorySampler, status_mb};

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(name = "chatd-bench", about = "Benchmark chatd against a bare axum baseline on this machine")]
pub struct Opts {
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Messages preloaded for the scale figures (0 skips them).
    #[arg(long, default_value_t = 1_000_000)]
    pub preload: u64,
    /// Chats the preloaded messages are spread over (plus one chat holding a tenth of them).
    #[arg(long, default_value_t = 1000)]
    pub chats: usize,
    /// Worker threads of the server's runtime (chatd, the baseline and the durable floor alike).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// chatd's and the durable floor's `synchronous` setting (`full` fsyncs every commit;
    /// `normal` does not).
    #[arg(long, value_enum, default_value_t = Synchronous::Full)]
    pub synchronous: Synchronous,
    /// chatd's `--index-commit-interval` (milliseconds).
    #[arg(long, default_value_t = 200)]
    pub index_commit_interval: u64,
    /// A seconds-long run with tiny data that only proves the benchmark works (for CI).
    #[arg(long)]
    pub smoke: bool,
    /// Drive the chatd already serving its full API at this address (`http://host:port`)
    /// instead of starting one in this process: the load generator then has its own process.
    /// Start that chatd with `--ip-rate 0 --token-rate 0` (the benchmark's requests come from
    /// one address and few tokens). Its own settings apply, so `--synchronous`, the index
    /// options and `--server-threads` (which then sizes only the baseline, still in this
    /// process) do not reach it; figures that need chatd's insides (rows per commit, index
    /// segments, its memory) and the preloaded scale figures are skipped.
    #[arg(long, value_parser = parse_url)]
    pub url: Option<ServerUrl>,
    /// Write the half-rate runs' requests by 100 ms window to this CSV file, with the
    /// columns `run,start_s,requests,late,max_ms,client_wake_max_ms` (`start_s` on
    /// CLOCK_MONOTONIC, as `perf record -k CLOCK_MONOTONIC` stamps its samples), to line
    /// stalls up with a trace.
    #[arg(long)]
    pub timeline: Option<std::path::PathBuf>,
    /// Run chatd in its scale-out mode on a throwaway PostgreSQL that this benchmark starts
    /// (initdb on a temp dir, a free loopback port; a fresh database for each phase), and
    /// pgbench beside it. Without the embedded mode's durable floor, CPU note and stored ÷
    /// empty figure.
    #[arg(long, conflicts_with_all = ["url", "database_url"])]
    pub postgres: bool,
    /// As `--postgres`, on the PostgreSQL server at this URL (`postgres://user@host:port/db`;
    /// its user must be allowed to create databases): the benchmark creates a database for each phase there
    /// (`chatd_bench_<pid>_<n>`) and drops them at the end of a run that succeeds.
    #[arg(long, conflicts_with = "url", value_parser = parse_database_url)]
    pub database_url: Option<DatabaseUrl>,
    /// Also measure live streams: create-message with this many subscribers following a
    /// chat being written (1,000 when no number is given), against plain create-message,
    /// and the create-to-delivered latency while the other chats get a quarter of the
    /// maximum rate. Off by default: the subscribers hold two sockets each in this process,
    /// and their deliveries load the cores that every other figure shares.
    #[arg(long, num_args = 0..=1, default_missing_value = "1000", value_name = "SUBSCRIBERS")]
    pub streams: Option<usize>,
    /// Measure `chatd import` instead of the API: a throwaway MariaDB holding the old
    /// system's schema with this many messages over `--chats` chats, imported into the
    /// embedded store (with `--postgres`: into a throwaway PostgreSQL).
    #[arg(long, value_name = "MESSAGES", conflicts_with_all = ["url", "database_url", "streams", "smoke"])]
    pub import: Option<u64>,
    /// pgbench, run with `--postgres` or `--database-url`.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin/pgbench")]
    pub pgbench: std::path::PathBuf,
}

/// A PostgreSQL URL, printed without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", postgres::redacted(&self.0))
    }
}

fn parse_database_url(url: &str) -> Result<DatabaseUrl, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseUrl(url.to_owned()))
    } else {
        Err("give a postgres:// URL".into())
    }
}

/// Where `--url` points: every address its host resolves to, in the resolver's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(pub Vec<SocketAddr>);

impl ServerUrl {
    /// The first of its addresses that accepts a connection (`localhost` may resolve to
    /// `::1` first while chatd listens on 127.0.0.1).
    fn reachable(&self) -> anyhow::Result<SocketAddr> {
        for addr in &self.0 {
            if std::net::TcpStream::connect_timeout(addr, Duration::from_secs(2)).is_ok() {
                return Ok(*addr);
            }
        }
        anyhow::bail!("nothing accepts connections at {:?}", self.0)
    }
}

/// The addresses of an `http://host:port` URL (or of a bare `host:port`).
fn parse_url(url: &str) -> Result<ServerUrl, String> {
    use std::net::ToSocketAddrs;
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.contains("://") {
        return Err("only http:// is supported".into());
    }
    let host_port = rest.trim_end_matches('/');
    if host_port.contains('/') {
        return Err("give the server's address only, without a path".into());
    }
    let addrs: Vec<SocketAddr> =
        host_port.to_socket_addrs().map_err(|e| format!("cannot resolve {host_port}: {e}"))?.collect();
    if addrs.is_empty() {
        return Err(format!("{host_port} resolves to no address"));
    }
    Ok(ServerUrl(addrs))
}

impl Opts {
    /// The smoke settings: every scenario, tiny and short.
    pub fn smoke() -> Self {
        let mut o = Opts::parse_from(["chatd-bench"]);
        o.smoke = true;
        o.apply_smoke();
        o
    }

    fn apply_smoke(&mut self) {
        if self.smoke {
            self.connections = self.connections.min(8);
            self.seconds = 1;
            self.preload = self.preload.min(3_000);
            self.chats = self.chats.min(20);
            self.streams = Some(self.streams.unwrap_or(20).min(20));
        }
    }
}

/// One line of the report.
#[derive(Debug)]
pub struct Row {
    pub figure: String,
    pub value: String,
    pub goal: String,
}

/// Every figure of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Every check the run made passed (numbers unique and dense, no failed request).
    pub checks_passed: bool,
}

impl Report {
    fn add(&mut self, figure: &str, value: String, goal: &str) {
        println!("  {figure}: {value}");
        self.rows.push(Row { figure: figure.into(), value, goal: goal.into() });
    }

    fn note(&mut self, note: String) {
        println!("  note: {note}");
        self.notes.push(note);
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("| figure | measured | goal |\n|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&format!("| {} | {} | {} |\n", r.figure, r.value, r.goal));
        }
        for n in &self.notes {
            out.push_str(&format!("\n- {n}"));
        }
        out
    }
}

/// Segments in chatd's search index under `data_dir` (one term dictionary file each), which
/// grow while merges wait for the CPU.
fn index_segments(data_dir: &std::path::Path) -> usize {
    let files = std::fs::read_dir(data_dir.join("search")).into_iter().flatten().flatten();
    files.filter(|f| f.path().extension().is_some_and(|e| e == "term")).count()
}

/// Creates per second in the chat that subscribers follow while the delivery latency is
/// measured (with a quarter of the maximum rate in the other chats): 100,000 deliveries a second
/// to 1,000 subscribers.
const FOLLOWED_RATE: f64 = 100.0;

/// Chats chatd's creates and pgbench's transactions spread over in the scale-out run.
const PG_WRITE_CHATS: usize = 1000;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs every scenario and returns the report: chatd's runs, then the baseline's and the
/// durable floor's at the same offered rates, then the figures that compare them, the scale
/// figures and the memory.
pub fn run(mut opts: Opts) -> anyhow::Result<Report> {
    opts.apply_smoke();
    // Created now, so that a path that cannot be written fails before the runs, not after.
    let timeline = match &opts.timeline {
        Some(path) => {
            Some(std::fs::File::create(path).with_context(|| format!("--timeline {}", path.display()))?)
        }
        None => None,
    };
    if let Some(messages) = opts.import {
        return import::run(&opts, messages);
    }
    let bench = Bench::new(&opts)?;
    if let Some(pg) = &bench.pg {
        return postgres_run(&bench, pg, timeline);
    }
    let mut report = Report { checks_passed: true, ..Report::default() };

    let (chatd, page) = chatd_runs(&bench, &mut report)?;
    let baseline = baseline_runs(&bench, page, chatd.half_rate, &mut report)?;
    let floor = floor_runs(&bench, chatd.half_rate, &mut report)?;

    report_creates(&mut report, &chatd, &baseline, &floor);
    report_keyed(&mut report, &chatd);
    report_streams(&mut report, &chatd);
    report_half_rate(&mut report, &chatd, &baseline, timeline, "p99 ≤ 10 ms")?;
    report_cpu(&mut report, &opts, &chatd, &baseline, &floor);
    report_reads(&mut report, &chatd.reads, &baseline.reads);
    report_lag(&mut report, &chatd.lag);
    if opts.url.is_some() {
        report.note(
            "chatd ran in another process (with its own settings and worker threads; the \
             baseline in this one): its memory, rows per commit, index segments and the \
             preloaded scale figures were not measured"
                .into(),
        );
    } else if opts.preload > 0 {
        scale(&bench, &mut report)?;
    }
    memory_figures(&bench.memory, &mut report);
    Ok(report)
}

/// The scale-out mode's run: chatd on PostgreSQL (create-message and create-chat in a
/// closed loop and at half rate, the lag probes with its rows per commit, the reads), the
/// bare baseline at the same rates, pgbench with the per-request transaction chatd's batched
/// writer replaces, then search in the big chat of the preloaded data. PostgreSQL's own CPU
/// and memory are in none of the figures.
fn postgres_run(
    bench: &Bench,
    pg: &postgres::Server,
    timeline: Option<std::fs::File>,
) -> anyhow::Result<Report> {
    let mut report = Report { checks_passed: true, ..Report::default() };
    let (chatd, page) = chatd_runs(bench, &mut report)?;
    let baseline = baseline_runs(bench, page, chatd.half_rate, &mut report)?;
    let pgbench = pgbench_runs(bench, pg)?;
    report_pg_creates(&mut report, &chatd, &baseline, &pgbench);
    report_keyed(&mut report, &chatd);
    report_streams(&mut report, &chatd);
    report_half_rate(&mut report, &chatd, &baseline, timeline, "p99 ≤ 20 ms")?;
    report_reads(&mut report, &chatd.reads, &baseline.reads);
    report_lag(&mut report, &chatd.lag);
    if bench.opts.preload > 0 {
        scale_postgres(bench, pg, &mut report)?;
    }
    memory_figures(&bench.memory, &mut report);
    report.note(
        "PostgreSQL and pgbench ran in processes of their own: their CPU and memory are in none \
         of the figures"
            .into(),
    );
    pg.drop_databases(&bench.client)?;
    Ok(report)
}

/// What every scenario shares: the options, the load generator's runtime, the words message
/// bodies are made of, how long a measured run lasts, the memory sampler, and the PostgreSQL
/// server of the scale-out mode.
struct Bench<'a> {
    opts: &'a Opts,
    client: tokio::runtime::Runtime,
    words: Words,
    duration: Duration,
    memory: MemorySampler,
    pg: Option<postgres::Server>,
}

/// A server as the scenarios drive it.
#[derive(Clone, Copy)]
struct Subject<'a> {
    /// Its name in the notes of failed checks.
    name: &'a str,
    addr: SocketAddr,
    /// Its chats: the path to create messages in (and to list them), and the path to
    /// create chats in its application.
    targets: &'a [(String, String)],
    /// Whether it numbers each chat's messages (and each application's chats) 1, 2, 3…; the
    /// baseline counts them all with one counter.
    numbered: bool,
}

/// A create-message run and the CPU it used.
struct Creates {
    stats: RunStats,
    cpu: CpuUse,
}

/// GET of one message, and of one page of a chat's list.
struct Reads {
    message: RunStats,
    page: RunStats,
}

/// What the lag probes measured during a closed-loop create flood.
struct Lag {
    flood: RunStats,
    /// Microseconds from a probe's 201 to the first GET that returned its message.
    readable: Histogram<u64>,
    /// Microseconds from a probe's 201 to the first search that found its message.
    searchable: Histogram<u64>,
    /// Segments of chatd's search index at the end (chatd in this process only).
    segments: Option<usize>,
    /// chatd's writer statistics before and after the flood (chatd in this process only).
    writer: Option<(WriterStatsSnapshot, WriterStatsSnapshot)>,
}

/// chatd's runs, in the order they ran.
struct ChatdRuns {
    closed: Creates,
    /// Create-message in a closed loop, each request with its own `Idempotency-Key`.
    keyed: Creates,
    chats: RunStats,
    /// Half of `closed`'s rate: the rate offered in every open-loop run.
    half_rate: f64,
    /// Create-message at `half_rate`, open loop.
    half: Creates,
    /// Create-chat at `half_rate`, open loop.
    half_chats: RunStats,
    lag: Lag,
    reads: Reads,
    /// With `--streams`: create-message in a closed loop, then at [`FOLLOWED_RATE`] in one
    /// chat and half `half_rate` in the others, while subscribers follow a chat being written.
    streamed: Option<(Streamed, Streamed)>,
}

/// A create-message run while subscribers follow the first of its chats.
struct Streamed {
    creates: Creates,
    delivered: streams::Delivered,
    /// Creates acknowledged in the followed chat.
    followed: usize,
    /// CPU time of the load generator's threads (the creates' and the subscribers').
    client_cpu: Duration,
    /// The followed chat's own creates, when they ran apart from the others'.
    followed_creates: Option<RunStats>,
}

/// The baseline's runs, the same as chatd's but the lag probes and the half-rate chats.
struct BaselineRuns {
    closed: Creates,
    chats: RunStats,
    half: Creates,
    reads: Reads,
}

/// The durable floor's create-message runs.
struct FloorRuns {
    closed: Creates,
    half: Creates,
}

impl<'a> Bench<'a> {
    fn new(opts: &'a Opts) -> anyhow::Result<Self> {
        let client = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.client_threads)
            .thread_name("client")
            .enable_all()
            .build()?;
        let memory = MemorySampler::start(if opts.url.is_some() {
            "load generator (chatd in another process)"
        } else {
            "chatd, empty database"
        });
        let (words, duration) = (Words::new(5000), Duration::from_secs(opts.seconds));
        let pg = match (&opts.database_url, opts.postgres) {
            (Some(url), _) => {
                println!("PostgreSQL at {}", postgres::redacted(&url.0));
                Some(postgres::Server::start(Some(&url.0))?)
            }
            (None, true) => {
                println!("PostgreSQL: a throwaway server");
                Some(postgres::Server::start(None)?)
            }
            (None, false) => None,
        };
        Ok(Bench { opts, client, words, duration, memory, pg })
    }

    /// The applications, and chats in each, that chatd's create runs write to: few in the
    /// embedded mode (as its figures have always been taken); on PostgreSQL as many chats as
    /// pgbench spreads its transactions over, so that both lock as many counter rows.
    fn write_spread(&self) -> (usize, usize) {
        match (&self.pg, self.opts.smoke) {
            (Some(_), false) => (data::Layout::APPS, PG_WRITE_CHATS / data::Layout::APPS),
            _ => (2, 5),
        }
    }

    /// Create-message at `pace` over every chat of `s`, with the CPU it used; checked.
    fn creates(&self, s: Subject, pace: Pace, report: &mut Report) -> anyhow::Result<Creates> {
        self.keyed_creates(s, pace, Keys::None, report)
    }

    /// [`Bench::creates`], each request with an `Idempotency-Key` when `keys` says so.
    fn keyed_creates(
        &self,
        s: Subject,
        pace: Pace,
        keys: Keys,
        report: &mut Report,
    ) -> anyhow::Result<Creates> {
        let (stats, cpu) =
            CpuMeter::measure(|| self.client.block_on(create_messages(self, s.addr, s.targets, pace, keys)))?;
        let keyed = if keys == Keys::Unique { " with Idempotency-Keys" } else { "" };
        check(report, &format!("{} create-message{keyed}, {}", s.name, pace_name(pace)), &stats, s.numbered);
        Ok(Creates { stats, cpu })
    }

    /// Create-chat at `pace` in every application of `s`; checked.
    fn chat_creates(&self, s: Subject, pace: Pace, report: &mut Report) -> anyhow::Result<RunStats> {
        let stats = self.client.block_on(create_chats(self, s.addr, s.targets, pace))?;
        check(report, &format!("{} create-chat, {}", s.name, pace_name(pace)), &stats, s.numbered);
        Ok(stats)
    }

    /// Create-message at `pace` over every chat of `s` while `subscribers` streams follow
    /// the first of them; or, with a `followed_rate`, at `pace` over the others and at that
    /// rate in the followed one (open loop), both at once. Checked, with the delivery
    /// latency of the followed chat's messages.
    fn streamed_creates(
        &self,
        s: Subject,
        pace: Pace,
        followed_rate: Option<f64>,
        subscribers: usize,
        report: &mut Report,
    ) -> anyhow::Result<Streamed> {
        // Two sockets per subscriber when chatd runs in this process.
        chatd_server::process::prepare((2 * subscribers + self.opts.connections) as u64);
        let path = format!("{}/stream", s.targets[0].0);
        let origin = Instant::now();
        let subs = self.client.block_on(streams::Subscribers::open(s.addr, &path, subscribers, origin))?;
        let client_before = memory::threads_cpu_time("client");
        let ((stats, followed), cpu) = CpuMeter::measure(|| {
            self.client.block_on(async {
                let Some(rate) = followed_rate else {
                    return anyhow::Ok((
                        create_messages(self, s.addr, s.targets, pace, Keys::None).await?,
                        None,
                    ));
                };
                let (others, followed) = tokio::join!(
                    create_messages(self, s.addr, &s.targets[1..], pace, Keys::None),
                    create_messages(self, s.addr, &s.targets[..1], Pace::Open { rate }, Keys::None)
                );
                Ok((others?, Some(followed?)))
            })
        })?;
        let client_cpu = memory::threads_cpu_time("client").saturating_sub(client_before);
        let name = format!("{} create-message with stream subscribers, {}", s.name, pace_name(pace));
        check(report, &name, &stats, s.numbered);
        if let Some(f) = &followed {
            check(report, &format!("{name}, the followed chat"), f, s.numbered);
        }
        let mut sent = std::collections::HashMap::new();
        let in_followed = followed.as_ref().unwrap_or(&stats);
        for (&(tag, number), at) in in_followed.kept.iter().zip(&in_followed.kept_at) {
            if tag == 0 {
                sent.insert(number, subs.micros(*at));
            }
        }
        let last = sent.keys().max().copied();
        let delivered = self.client.block_on(subs.finish(last, Duration::from_secs(2), &sent))?;
        if delivered.out_of_order > 0 {
            report.checks_passed = false;
            report.note(format!(
                "{} stream subscribers, {}: {} events out of number order (a gap or a duplicate)",
                s.name,
                pace_name(pace),
                delivered.out_of_order
            ));
        }
        Ok(Streamed {
            creates: Creates { stats, cpu },
            delivered,
            followed: sent.len(),
            client_cpu,
            followed_creates: followed,
        })
    }

    /// GET of one message (numbered 1 to `messages` in each chat), then of one list page,
    /// each in a closed loop; checked.
    fn reads(&self, s: Subject, messages: u64, report: &mut Report) -> anyhow::Result<Reads> {
        let message = self.client.block_on(gets(self, s.addr, s.targets, Some(messages)))?;
        check(report, &format!("{} GET message", s.name), &message, false);
        let page = self.client.block_on(gets(self, s.addr, s.targets, None))?;
        check(report, &format!("{} GET list page", s.name), &page, false);
        Ok(Reads { message, page })
    }

    /// A closed-loop create flood on `chatd` while two probes in `probe_chat` time how long
    /// a new message takes to be readable and searchable; with chatd's writer statistics
    /// over the flood and its index segments after it, when chatd runs in this process.
    fn lag_probes(
        &self,
        chatd: &servers::Running,
        dir: &Path,
        s: Subject,
        probe_chat: (String, String),
        report: &mut Report,
    ) -> anyhow::Result<Lag> {
        let before = chatd.writer_stats();
        let (flood, (readable, searchable)) =
            self.client.block_on(sustained_with_lag(self, s.addr, s.targets, probe_chat))?;
        check(report, &format!("{} create-message, sustained", s.name), &flood, s.numbered);
        let segments = chatd.chatd.is_some().then(|| index_segments(dir));
        let writer = before.zip(chatd.writer_stats());
        Ok(Lag { flood, readable, searchable, segments, writer })
    }
}

fn pace_name(pace: Pace) -> &'static str {
    match pace {
        Pace::Closed => "closed loop",
        Pace::Open { .. } => "open loop",
    }
}

/// chatd on an empty database (embedded, on PostgreSQL, or the one at `--url`):
/// create-message and create-chat in a closed loop, then both at half the create-message
/// rate, the lag probes, and the reads. Returns them with a page of 100 messages as chatd
/// lists it, for the baseline to answer with.
fn chatd_runs(bench: &Bench, report: &mut Report) -> anyhow::Result<(ChatdRuns, Value)> {
    let dir = tempfile::tempdir()?;
    let chatd = match (&bench.opts.url, &bench.pg) {
        (Some(url), _) => {
            let addr = url.reachable()?;
            println!("chatd at {addr} (another process)");
            servers::Running::external(addr)
        }
        (None, Some(pg)) => {
            println!("chatd on an empty PostgreSQL database");
            servers::start_chatd_postgres(dir.path(), &pg.fresh_database(&bench.client)?, bench.opts)?
        }
        (None, None) => {
            println!("chatd on an empty database");
            servers::start_chatd(dir.path(), bench.opts)?
        }
    };
    let (apps, chats) = bench.write_spread();
    let (targets, probe_chat) = bench.client.block_on(setup(chatd.addr, apps, chats))?;
    let s = Subject { name: "chatd", addr: chatd.addr, targets: &targets, numbered: true };
    let closed = bench.creates(s, Pace::Closed, report)?;
    let keyed = bench.keyed_creates(s, Pace::Closed, Keys::Unique, report)?;
    let streamed_closed =
        bench.opts.streams.map(|n| bench.streamed_creates(s, Pace::Closed, None, n, report)).transpose()?;
    let chats = bench.chat_creates(s, Pace::Closed, report)?;
    let half_rate = closed.stats.rate() / 2.0;
    let half = bench.creates(s, Pace::Open { rate: half_rate }, report)?;
    // The same offered rate of chat creates, which the search index never sees: tells the
    // index's share of the tail from the rest.
    let half_chats = bench.chat_creates(s, Pace::Open { rate: half_rate }, report)?;
    let streamed = match (streamed_closed, bench.opts.streams) {
        (Some(closed), Some(n)) => {
            // Half the half rate: with the deliveries, the whole half rate is more than chatd
            // keeps up with (its creates fall seconds behind), and the load is no longer sustained.
            let pace = Pace::Open { rate: half_rate / 2.0 };
            Some((closed, bench.streamed_creates(s, pace, Some(FOLLOWED_RATE), n, report)?))
        }
        _ => None,
    };
    let lag = bench.lag_probes(&chatd, dir.path(), s, probe_chat, report)?;
    let reads = bench.reads(s, fewest_created(&closed.stats.kept, targets.len()).clamp(1, 50), report)?;
    let page = bench.client.block_on(async {
        let mut c = Conn::open(chatd.addr).await?;
        let (_, body) = c.send(Method::GET, &format!("{}?limit=100", targets[0].0), None).await?;
        anyhow::Ok(serde_json::from_slice(&body)?)
    })?;
    chatd.stop();
    Ok((ChatdRuns { closed, keyed, chats, half_rate, half, half_chats, lag, reads, streamed }, page))
}

/// The bare baseline, answering list pages with chatd's `page`: create-message and
/// create-chat in a closed loop, create-message at chatd's half `rate` and schedule (the
/// machine's own tail: same client, no storage), and the reads.
fn baseline_runs(bench: &Bench, page: Value, rate: f64, report: &mut Report) -> anyhow::Result<BaselineRuns> {
    println!("bare axum baseline");
    bench.memory.phase("baseline");
    let baseline = servers::start_baseline(bench.opts.server_threads, page)?;
    let targets = fake_targets(2, 5);
    let s = Subject { name: "baseline", addr: baseline.addr, targets: &targets, numbered: false };
    let closed = bench.creates(s, Pace::Closed, report)?;
    let chats = bench.chat_creates(s, Pace::Closed, report)?;
    let half = bench.creates(s, Pace::Open { rate }, report)?;
    let reads = bench.reads(s, 50, report)?;
    baseline.stop();
    Ok(BaselineRuns { closed, chats, half, reads })
}

/// The durable floor: create-message in a closed loop and at chatd's half `rate` and schedule.
fn floor_runs(bench: &Bench, rate: f64, report: &mut Report) -> anyhow::Result<FloorRuns> {
    println!("durable floor");
    bench.memory.phase("durable floor");
    let dir = tempfile::tempdir()?;
    let floor = servers::start_floor(bench.opts.server_threads, dir.path(), bench.opts.synchronous)?;
    let targets = fake_targets(2, 5);
    let s = Subject { name: "durable floor", addr: floor.addr, targets: &targets, numbered: true };
    let closed = bench.creates(s, Pace::Closed, report)?;
    let half = bench.creates(s, Pace::Open { rate }, report)?;
    floor.stop();
    Ok(FloorRuns { closed, half })
}

fn ratio(a: &RunStats, b: &RunStats) -> f64 {
    a.rate() / b.rate()
}

/// Closed-loop creates: chatd's message rate against the baseline's and the floor's, its
/// latency, and its chat rate against the baseline's.
fn report_creates(report: &mut Report, chatd: &ChatdRuns, baseline: &BaselineRuns, floor: &FloorRuns) {
    let (messages, b_messages, f_messages) =
        (&chatd.closed.stats, &baseline.closed.stats, &floor.closed.stats);
    report.add(
        "create-message throughput",
        format!(
            "{:.0} req/s (baseline {:.0}; ratio {:.2})",
            messages.rate(),
            b_messages.rate(),
            ratio(messages, b_messages)
        ),
        "ratio ≥ 0.6",
    );
    report.add(
        "durable floor: the baseline's create-message plus a durable SQLite insert, group-committed",
        format!(
            "{:.0} req/s (ratio {:.2} of the baseline; chatd is {:.2} of it); p99 {:.2} ms at chatd's half rate, {}",
            f_messages.rate(),
            ratio(f_messages, b_messages),
            ratio(messages, f_messages),
            floor.half.stats.ms(0.99),
            Lateness::of(&floor.half.stats.windows)
        ),
        "",
    );
    report_closed_latency_and_chats(report, chatd, baseline);
}

/// Closed-loop creates on PostgreSQL: chatd's message rate against the baseline's and
/// against pgbench's, and the rows the closed loop shares with the embedded run.
fn report_pg_creates(
    report: &mut Report,
    chatd: &ChatdRuns,
    baseline: &BaselineRuns,
    pgbench: &postgres::PgbenchRun,
) {
    let (messages, b_messages) = (&chatd.closed.stats, &baseline.closed.stats);
    report.add(
        "create-message throughput",
        format!(
            "{:.0} req/s over {} chats (baseline {:.0}; ratio {:.2})",
            messages.rate(),
            chats_written(messages),
            b_messages.rate(),
            ratio(messages, b_messages)
        ),
        "",
    );
    report.add(
        "pgbench: one transaction per create (lock the chat's count, insert the message, commit)",
        format!(
            "{:.0} tps: {} clients over {} chats for {} s, {} transactions ({} failed), latency average {:.2} ms",
            pgbench.tps,
            pgbench.clients,
            pgbench.chats,
            pgbench.seconds,
            pgbench.transactions,
            pgbench.failed,
            pgbench.latency_ms
        ),
        "",
    );
    if pgbench.failed > 0 {
        report.checks_passed = false;
        report.note(format!("pgbench: {} transactions failed", pgbench.failed));
    }
    report.add(
        "create-message throughput ÷ pgbench's",
        format!("{:.0} ÷ {:.0} = {:.2}", messages.rate(), pgbench.tps, messages.rate() / pgbench.tps),
        "≥ 3",
    );
    report_closed_latency_and_chats(report, chatd, baseline);
}

/// Closed-loop creates with an `Idempotency-Key` on every request against plain ones, in
/// the same run: what storing the keys costs.
fn report_keyed(report: &mut Report, chatd: &ChatdRuns) {
    let (keyed, plain) = (&chatd.keyed.stats, &chatd.closed.stats);
    report.add(
        "create-message with an Idempotency-Key on every request ÷ plain create-message",
        format!("{:.0} ÷ {:.0} req/s = {:.2}", keyed.rate(), plain.rate(), ratio(keyed, plain)),
        "≥ 0.9",
    );
}

/// With `--streams`: closed-loop creates while subscribers follow a chat being written,
/// against plain ones in the same run, with what the subscribers received; and the
/// create-to-delivered latency under a sustained load.
fn report_streams(report: &mut Report, chatd: &ChatdRuns) {
    let Some((closed, half)) = &chatd.streamed else { return };
    let received = |run: &Streamed| {
        let d = &run.delivered;
        let server = run.creates.cpu.process.saturating_sub(run.client_cpu);
        format!(
            "{} of the creates in the followed chat; {} events delivered ({:.0}/s, {:.1} per read); {} of {} \
             subscribers ended by chatd ({} `end` events){}; the creates' own latency (to the 201) p50 {:.2} / \
             p99 {:.2} ms{}; CPU: load generator {:.1} s, chatd {:.1} s",
            run.followed,
            d.events,
            d.events as f64 / run.creates.stats.elapsed.as_secs_f64(),
            d.events as f64 / d.reads.max(1) as f64,
            d.subscribers_ended,
            d.subscribers,
            d.ended,
            if d.short > 0 {
                format!(", {} short of the last message at the end", d.short)
            } else {
                String::new()
            },
            run.creates.stats.ms(0.5),
            run.creates.stats.ms(0.99),
            run.followed_creates.as_ref().map_or(String::new(), |f| format!(
                " in the other chats, p50 {:.2} / p99 {:.2} ms in the followed one",
                f.ms(0.5),
                f.ms(0.99)
            )),
            run.client_cpu.as_secs_f64(),
            server.as_secs_f64()
        )
    };
    let (streamed, plain) = (&closed.creates.stats, &chatd.closed.stats);
    let n = closed.delivered.subscribers;
    report.add(
        &format!("create-message with {n} stream subscribers on a chat being written ÷ plain create-message"),
        format!(
            "{:.0} ÷ {:.0} req/s = {:.2}; {}",
            streamed.rate(),
            plain.rate(),
            ratio(streamed, plain),
            received(closed)
        ),
        "≥ 0.8",
    );
    let latency = &half.delivered.latency;
    report.add(
        &format!(
            "create-to-delivered latency, {n} subscribers, {FOLLOWED_RATE} creates/s in their chat \
             while the other chats get a quarter of the max rate (open loop)"
        ),
        format!(
            "{:.0} req/s offered in the others: p50 {:.2} / p99 {:.2} / p99.9 {:.2} / max {:.2} ms over {} deliveries; {}",
            chatd.half_rate / 2.0,
            ms(latency, 0.5),
            ms(latency, 0.99),
            ms(latency, 0.999),
            latency.max() as f64 / 1000.0,
            latency.len(),
            received(half)
        ),
        "p99 ≤ 50 ms",
    );
}

/// How many chats a create run wrote to.
fn chats_written(run: &RunStats) -> usize {
    run.kept.iter().map(|k| k.0).collect::<std::collections::BTreeSet<_>>().len()
}

/// Closed-loop latency of chatd's message creates, and its chat rate against the baseline's.
fn report_closed_latency_and_chats(report: &mut Report, chatd: &ChatdRuns, baseline: &BaselineRuns) {
    let messages = &chatd.closed.stats;
    report.add(
        "create-message latency, closed loop",
        format!(
            "p50 {:.2} / p99 {:.2} / p99.9 {:.2} ms",
            messages.ms(0.5),
            messages.ms(0.99),
            messages.ms(0.999)
        ),
        "",
    );
    let chats = &chatd.chats;
    report.add(
        "create-chat throughput",
        format!(
            "{:.0} req/s (baseline {:.0}; ratio {:.2}); p50 {:.2} / p99 {:.2} / p99.9 {:.2} ms",
            chats.rate(),
            baseline.chats.rate(),
            ratio(chats, &baseline.chats),
            chats.ms(0.5),
            chats.ms(0.99),
            chats.ms(0.999)
        ),
        "",
    );
}

/// The half-rate runs: chatd's latency against the baseline's at the same schedule, its chat
/// creates at the same rate, when the late requests started, and the `--timeline` file.
fn report_half_rate(
    report: &mut Report,
    chatd: &ChatdRuns,
    baseline: &BaselineRuns,
    timeline: Option<std::fs::File>,
    goal: &str,
) -> anyhow::Result<()> {
    let (half, open, open_chats, b_open) =
        (chatd.half_rate, &chatd.half.stats, &chatd.half_chats, &baseline.half.stats);
    report.add(
        "create-message latency at half the max rate (open loop)",
        format!(
            "{half:.0} req/s offered: p50 {:.2} / p99 {:.2} / p99.9 {:.2} ms (baseline at the same rate: p50 {:.2} / p99 {:.2} / p99.9 {:.2} ms)",
            open.ms(0.5),
            open.ms(0.99),
            open.ms(0.999),
            b_open.ms(0.5),
            b_open.ms(0.99),
            b_open.ms(0.999)
        ),
        goal,
    );
    report.add(
        "create-chat latency at the same offered rate (open loop; chats are not indexed)",
        format!(
            "{half:.0} req/s offered: p50 {:.2} / p99 {:.2} / p99.9 {:.2} ms",
            open_chats.ms(0.5),
            open_chats.ms(0.99),
            open_chats.ms(0.999)
        ),
        "",
    );
    if let Some(mut file) = timeline {
        use std::io::Write;
        let mut csv = format!("{}\n", client::TIMELINE_HEADER);
        for (run, stats) in
            [("chatd-messages", open), ("chatd-chats", open_chats), ("baseline-messages", b_open)]
        {
            csv.push_str(&client::timeline_csv(run, stats));
        }
        file.write_all(csv.as_bytes())?;
    }
    // A stall (everything waits at once) and scheduling jitter give the same p99; they are
    // told apart by when the late requests started.
    report.note(format!(
        "when the half-rate requests were late: create-message: {}; create-chat: {}; baseline: {}",
        Lateness::of(&open.windows),
        Lateness::of(&open_chats.windows),
        Lateness::of(&b_open.windows)
    ));
    Ok(())
}

/// What a create costs this process in CPU, and how busy the machine was: at full load and at
/// the half rate (the wake-ups that full load shares among many requests, each request pays
/// alone at half the rate), for chatd, the baseline and the floor.
fn report_cpu(
    report: &mut Report,
    opts: &Opts,
    chatd: &ChatdRuns,
    baseline: &BaselineRuns,
    floor: &FloorRuns,
) {
    let cost = |run: &Creates| {
        let busy =
            run.cpu.machine_busy.map_or(String::new(), |b| format!(", machine {:.0} % busy", b * 100.0));
        format!("{:.0} µs{busy}", run.cpu.process_us_per(run.stats.requests))
    };
    report.note(format!(
        "CPU per create-message request of this process ({}): closed loop {}, half rate {}; baseline \
         (its server and the load generator): closed loop {}, half rate {}; durable floor: closed loop {}",
        if opts.url.is_some() {
            "the load generator; chatd runs in another process"
        } else {
            "chatd and the load generator"
        },
        cost(&chatd.closed),
        cost(&chatd.half),
        cost(&baseline.closed),
        cost(&baseline.half),
        cost(&floor.closed)
    ));
}

/// GET of one message and of one list page, against the baseline's.
fn report_reads(report: &mut Report, chatd: &Reads, baseline: &Reads) {
    for (figure, run, b_run) in [
        ("GET one message", &chatd.message, &baseline.message),
        ("GET one list page (100 messages)", &chatd.page, &baseline.page),
    ] {
        report.add(
            figure,
            format!("{:.0} req/s (baseline {:.0}; ratio {:.2})", run.rate(), b_run.rate(), ratio(run, b_run)),
            "",
        );
    }
}

/// The lag probes: create-to-readable, create-to-searchable, and chatd's rows per commit
/// during the flood.
fn report_lag(report: &mut Report, lag: &Lag) {
    let (readable, searchable) = (&lag.readable, &lag.searchable);
    report.add(
        "create-to-readable under sustained max load (the first GET after the 201)",
        format!(
            "p50 {:.2} / p99 {:.2} ms ({} samples)",
            ms(readable, 0.5),
            ms(readable, 0.99),
            readable.len()
        ),
        "",
    );
    report.add(
        "create-to-searchable lag under sustained max load",
        format!(
            "p50 {:.0} / p99 {:.0} ms ({} samples, {:.0} creates/s{})",
            ms(searchable, 0.5),
            ms(searchable, 0.99),
            searchable.len(),
            lag.flood.rate(),
            lag.segments.map(|n| format!("; {n} index segments at the end")).unwrap_or_default()
        ),
        "p99 ≤ 1000 ms",
    );
    if let Some((a, b)) = lag.writer {
        let (commits, jobs) = (b.commits - a.commits, b.jobs - a.jobs);
        report.add(
            "rows per commit under sustained max load",
            format!(
                "average {:.1} ({jobs} writes in {commits} commits); largest batch so far {}",
                jobs as f64 / commits.max(1) as f64,
                b.largest_batch
            ),
            "",
        );
    }
}

/// The peak resident set of every phase in which chatd ran (the preload is the benchmark's
/// own loader writing SQLite directly, so it is shown apart), anonymous and file-backed.
fn memory_figures(memory: &MemorySampler, report: &mut Report) {
    let peaks = memory.peaks();
    let chatd = peaks.iter().filter(|p| p.phase.starts_with("chatd"));
    if let Some(top) = chatd.clone().max_by(|a, b| a.at_peak.total().total_cmp(&b.at_peak.total())) {
        let max_anon = chatd.map(|p| p.max_anon).fold(0.0, f64::max);
        report.add(
            "peak RSS while chatd ran (whole process: chatd + load generator)",
            format!(
                "{:.0} MB ({:.0} MB anonymous + {:.0} MB file-backed, during \"{}\"); largest anonymous part {:.0} MB",
                top.at_peak.total(),
                top.at_peak.anon,
                top.at_peak.file,
                top.phase,
                max_anon
            ),
            "≤ 300 MB",
        );
    }
    let by_phase: Vec<String> = peaks
        .iter()
        .map(|p| {
            format!(
                "{}: {:.0} MB ({:.0} anon + {:.0} file)",
                p.phase,
                p.at_peak.total(),
                p.at_peak.anon,
                p.at_peak.file
            )
        })
        .collect();
    report.note(format!("peak RSS by phase: {}; VmHWM {:.0} MB", by_phase.join("; "), status_mb("VmHWM:")));
}

/// Records a run's failures: errors, and (for creates) numbers that are not unique and dense.
fn check(report: &mut Report, name: &str, stats: &RunStats, dense: bool) {
    if stats.errors > 0 {
        report.checks_passed = false;
        report.note(format!(
            "{name}: {} of {} requests failed, first: {:?}",
            stats.errors, stats.requests, stats.first_error
        ));
    }
    if stats.requests == 0 {
        report.checks_passed = false;
        report.note(format!("{name}: no request completed"));
    }
    if dense {
        match client::check_dense(&stats.kept) {
            Ok(_) => {}
            Err(e) => {
                report.checks_passed = false;
                report.note(format!("{name}: numbering check failed: {e}"));
            }
        }
    }
}

/// Creates `apps` applications with `chats` chats each; returns the message paths of the
/// chats (with their tokens) and a separate chat for lag probes.
async fn setup(
    addr: SocketAddr,
    apps: usize,
    chats: usize,
) -> anyhow::Result<(Vec<(String, String)>, (String, String))> {
    let mut c = Conn::open(addr).await?;
    let mut targets = Vec::new();
    let mut probe = None;
    for a in 0..apps {
        let (_, body) =
            c.send(Method::POST, "/applications", Some(&format!("{{\"name\": \"bench {a}\"}}"))).await?;
        let token =
            serde_json::from_slice::<Value>(&body)?["access_token"].as_str().unwrap_or_default().to_owned();
        for _ in 0..=chats {
            let (status, body) = c.send(Method::POST, &format!("/applications/{token}/chats"), None).await?;
            anyhow::ensure!(status == StatusCode::CREATED, "chat create failed: {status}");
            let n = serde_json::from_slice::<Value>(&body)?["number"].as_i64().unwrap_or_default();
            let target =
                (format!("/applications/{token}/chats/{n}/messages"), format!("/applications/{token}/chats"));
            if probe.is_none() {
                probe = Some(target)
            } else if targets.len() < apps * chats {
                targets.push(target)
            }
        }
    }
    Ok((targets, probe.ok_or_else(|| anyhow::anyhow!("no chat"))?))
}

/// The fewest creates a run acknowledged in any one of its `targets` chats (tags `0..targets`).
fn fewest_created(kept: &[(i64, i64)], targets: usize) -> u64 {
    let mut created = vec![0u64; targets];
    for &(tag, _) in kept {
        if let Some(n) = usize::try_from(tag).ok().and_then(|t| created.get_mut(t)) {
            *n += 1;
        }
    }
    created.into_iter().min().unwrap_or(0)
}

/// The baseline's targets: the same shape of paths as `setup` makes (tokens of the same length).
fn fake_targets(apps: usize, chats: usize) -> Vec<(String, String)> {
    (0..apps)
        .flat_map(|a| {
            let token = format!("BaselineToken{a:011}");
            (1..=chats).map(move |c| {
                (format!("/applications/{token}/chats/{c}/messages"), format!("/applications/{token}/chats"))
            })
        })
        .collect()
}

/// The target of request `i` of connection `c` of `connections`: each connection starts at a
/// place of its own among the `targets` and goes round them one by one, so that the requests
/// in flight at once go to as many targets as there are connections and a run reaches every
/// target. With fewer targets than connections that is `c + i` (`c`'s own place).
fn target_of(c: usize, i: u64, targets: usize, connections: usize) -> usize {
    (c * targets.div_ceil(connections.max(1)) + i as usize) % targets
}

/// How a create-message run names its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// No `Idempotency-Key`.
    None,
    /// A new `Idempotency-Key` on every request, time-ordered as UUIDv7 keys are: the run's
    /// start, then the request's place in its connection, then the connection. Keys then
    /// arrive in about the order of chatd's index of keys, as a client's UUIDv7 keys do;
    /// random keys (UUIDv4) each land on a page of their own, which costs more.
    Unique,
}

async fn create_messages(
    bench: &Bench<'_>,
    addr: SocketAddr,
    targets: &[(String, String)],
    pace: Pace,
    keys: Keys,
) -> anyhow::Result<RunStats> {
    let targets: Arc<Vec<(String, String)>> = Arc::new(targets.to_vec());
    let (words, connections) = (bench.words.clone(), bench.opts.connections);
    // Keys of one run never meet another's (a chatd at `--url` sees many runs): each run's
    // keys begin with the time it started (see `Keys::Unique`).
    let run =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let make: client::MakeCall = Arc::new(move |c, i| {
        let tag = target_of(c, i, targets.len(), connections);
        let mut rng = Rng::new((c as u64) << 32 | i);
        Call {
            method: Method::POST,
            path: targets[tag].0.clone(),
            json: Some(serde_json::json!({ "body": words.body(&mut rng) }).to_string()),
            key: (keys == Keys::Unique).then(|| format!("{run:x}-{i:012}-{c:04}")),
            tag: tag as i64,
        }
    });
    client::run(addr, bench.opts.connections, bench.duration, pace, make, Arc::new(client::created)).await
}

async fn create_chats(
    bench: &Bench<'_>,
    addr: SocketAddr,
    targets: &[(String, String)],
    pace: Pace,
) -> anyhow::Result<RunStats> {
    // One chat-creation path per application; tags are applications.
    let mut apps: Vec<String> = targets.iter().map(|t| t.1.clone()).collect();
    apps.dedup();
    let apps = Arc::new(apps);
    let make: client::MakeCall = Arc::new(move |c, i| {
        let tag = (c + i as usize) % apps.len();
        Call { method: Method::POST, path: apps[tag].clone(), json: None, key: None, tag: tag as i64 }
    });
    client::run(addr, bench.opts.connections, bench.duration, pace, make, Arc::new(client::created)).await
}

/// GETs over every chat of `targets`: of one message, numbered 1 to `messages`, or (`None`)
/// of the chat's first list page.
async fn gets(
    bench: &Bench<'_>,
    addr: SocketAddr,
    targets: &[(String, String)],
    messages: Option<u64>,
) -> anyhow::Result<RunStats> {
    let targets: Arc<Vec<(String, String)>> = Arc::new(targets.to_vec());
    let connections = bench.opts.connections;
    let make: client::MakeCall = Arc::new(move |c, i| {
        let tag = target_of(c, i, targets.len(), connections);
        let path = match messages {
            Some(n) => format!("{}/{}", targets[tag].0, 1 + (i % n)),
            None => targets[tag].0.clone(),
        };
        Call { method: Method::GET, path, json: None, key: None, tag: tag as i64 }
    });
    client::run(addr, bench.opts.connections, bench.duration, Pace::Closed, make, Arc::new(client::ok)).await
}

/// A closed-loop create flood, while probes measure how long a new message takes to be
/// readable by GET and found by search. Returns the flood's stats and the (readable,
/// searchable) lag histograms in microseconds.
async fn sustained_with_lag(
    bench: &Bench<'_>,
    addr: SocketAddr,
    targets: &[(String, String)],
    probe_chat: (String, String),
) -> anyhow::Result<(RunStats, (Histogram<u64>, Histogram<u64>))> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut probes = Vec::new();
    for p in 0..2u64 {
        let (stop, path) = (stop.clone(), probe_chat.0.clone());
        probes.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let (mut readable, mut searchable) = (hist(), hist());
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let marker = format!("lagprobe{p}n{n}x");
                let (status, body) = conn
                    .send(Method::POST, &path, Some(&format!("{{\"body\": \"{marker} probe\"}}")))
                    .await?;
                let acked = Instant::now();
                anyhow::ensure!(status == StatusCode::CREATED, "probe create: {status}");
                let number = serde_json::from_slice::<Value>(&body)?["number"].as_i64().unwrap_or_default();
                // Read-your-writes: the first GET after the 201 must find it.
                let (status, _) = conn.send(Method::GET, &format!("{path}/{number}"), None).await?;
                anyhow::ensure!(
                    status == StatusCode::OK,
                    "probe {marker} not readable right after its 201: {status}"
                );
                readable.record((acked.elapsed().as_micros() as u64).max(1))?;
                let search = format!("{path}/search?keyword={marker}");
                loop {
                    let (_, body) = conn.send(Method::GET, &search, None).await?;
                    if serde_json::from_slice::<Value>(&body)?.as_array().is_some_and(|a| !a.is_empty()) {
                        searchable.record((acked.elapsed().as_micros() as u64).max(1))?;
                        break;
                    }
                    anyhow::ensure!(
                        acked.elapsed() < Duration::from_secs(30),
                        "probe {marker} never became searchable"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            Ok((readable, searchable))
        }));
    }
    let flood = create_messages(bench, addr, targets, Pace::Closed, Keys::None).await;
    stop.store(true, Ordering::Relaxed);
    let (mut readable, mut searchable) = (hist(), hist());
    for p in probes {
        let (r, s) = p.await??;
        readable.add(&r)?;
        searchable.add(&s)?;
    }
    Ok((flood?, (readable, searchable)))
}

/// The figures at scale, on a database preloaded with `--preload` messages: how long the
/// preload and chatd's index build at start took, the sizes, search latency in the big chat,
/// and create throughput with the data stored against an empty database.
fn scale(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let (opts, n) = (bench.opts, bench.opts.preload);
    println!("chatd with {n} messages preloaded");
    bench.memory.phase("preload (the benchmark's loader, not chatd)");
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let loaded = data::preload(dir.path(), n, opts.chats, &bench.words)?;
    let load_time = started.elapsed();
    bench.memory.phase("chatd, indexing the preloaded messages at start");
    let chatd = servers::start_chatd(dir.path(), opts)?;
    let index_time = chatd.wait_indexed();
    let quiet = memory::wait_until_quiet(Duration::from_secs(if opts.smoke { 5 } else { 300 }));
    report.note(format!(
        "preloading {n} messages took {load_time:.1?}; indexing them at start took {index_time:.1?}, \
         then {quiet:.1?} until the process was idle (index merges)"
    ));
    bench.memory.phase("chatd, searching and creating with the data stored");
    report_sizes(report, dir.path(), n);
    search_latency(bench, &chatd, &loaded.big_chat, report)?;
    stored_vs_empty(bench, &chatd, &loaded.small_chats, report)?;
    chatd.stop();
    Ok(())
}

/// The database's and the search index's size under `dir`, per million of the `n` messages.
fn report_sizes(report: &mut Report, dir: &Path, n: u64) {
    let per_million = 1_000_000.0 / n as f64;
    let db = file_size(&dir.join(chatd_store_sqlite::DB_FILE))
        + file_size(&dir.join(format!("{}-wal", chatd_store_sqlite::DB_FILE)));
    let index = dir_size(&dir.join(chatd_server::backend::SEARCH_DIR));
    report.add(
        "database / index size per million messages",
        format!("{:.0} MB / {:.0} MB", db as f64 * per_million / 1e6, index as f64 * per_million / 1e6),
        "",
    );
}

/// The keywords searched for, each with its kind: frequent, rare and absent words, 1-, 2-
/// and 3-character fragments, a quoted phrase, two words.
fn search_keywords(words: &Words) -> Vec<(&'static str, String)> {
    let w = |r: usize| words.word(r).to_owned();
    vec![
        ("the most frequent word", w(0)),
        ("a frequent word", w(40)),
        ("a rare word", w(1500)),
        ("the rarest word", w(4999)),
        ("a 2-character fragment", w(0)[..2].to_owned()),
        ("a 3-character fragment", w(3)[1..4].to_owned()),
        ("a 1-character fragment", "a".into()),
        ("a quoted phrase", format!("\"{} {}\"", w(0), w(1))),
        ("two words", format!("{} {}", w(2), w(7))),
        ("an absent word", "qqxqq".into()),
        ("an absent 2-character fragment", "zz".into()),
    ]
}

/// Searches in one chat, one at a time, round after round over [`search_keywords`].
struct Searches {
    keywords: Vec<(&'static str, String)>,
    /// Every search's latency, in microseconds.
    all: Histogram<u64>,
    /// Each keyword's, in the order of `keywords`.
    by_keyword: Vec<Histogram<u64>>,
}

/// Searches the chat `(token, chat)` of the chatd at `addr` for every keyword kind.
fn searches(
    bench: &Bench,
    addr: SocketAddr,
    (token, chat): &(AppToken, ChatNumber),
) -> anyhow::Result<Searches> {
    let path = format!("/applications/{}/chats/{chat}/messages/search", token.as_str());
    let keywords = search_keywords(&bench.words);
    let (all, by_keyword) = bench.client.block_on(async {
        let mut conn = Conn::open(addr).await?;
        let mut h = hist();
        let mut by_keyword: Vec<_> = keywords.iter().map(|_| hist()).collect();
        let rounds = if bench.opts.smoke { 3 } else { 40 };
        for _ in 0..rounds {
            for ((_, k), kh) in keywords.iter().zip(&mut by_keyword) {
                let began = Instant::now();
                let (status, _) =
                    conn.send(Method::GET, &format!("{path}?keyword={}", encode(k)), None).await?;
                anyhow::ensure!(status == StatusCode::OK, "search {k}: {status}");
                let micros = (began.elapsed().as_micros() as u64).max(1);
                h.record(micros)?;
                kh.record(micros)?;
            }
        }
        anyhow::Ok((h, by_keyword))
    })?;
    Ok(Searches { keywords, all, by_keyword })
}

/// Search latency in the preloaded chat holding a tenth of the messages, over keywords of
/// every kind ([`search_keywords`]).
fn search_latency(
    bench: &Bench,
    chatd: &servers::Running,
    big_chat: &(AppToken, ChatNumber),
    report: &mut Report,
) -> anyhow::Result<()> {
    let Searches { keywords, all: search, by_keyword } = searches(bench, chatd.addr, big_chat)?;
    let each: Vec<String> = keywords
        .iter()
        .zip(&by_keyword)
        .map(|((_, k), h)| format!("{k:?} {:.1}/{:.1}", ms(h, 0.5), h.max() as f64 / 1000.0))
        .collect();
    report.note(format!("search by keyword, p50/max ms: {}", each.join(", ")));
    let n = bench.opts.preload;
    report.add(
        &format!("search latency, one chat of {} among {n} messages", n / 10),
        format!(
            "p50 {:.2} / p99 {:.2} / max {:.2} ms ({} searches, {} keywords)",
            ms(&search, 0.5),
            ms(&search, 0.99),
            search.max() as f64 / 1000.0,
            search.len(),
            keywords.len()
        ),
        "p99 ≤ 20 ms",
    );
    Ok(())
}

/// Search latency on PostgreSQL: of all searches, then of each keyword kind, whose p99 the
/// goal bounds one by one.
fn report_search_by_kind(report: &mut Report, preloaded: u64, searches: &Searches) {
    let Searches { keywords, all, by_keyword } = searches;
    let slowest = keywords.iter().zip(by_keyword).max_by_key(|(_, h)| h.value_at_quantile(0.99));
    let slowest = slowest.map_or(String::new(), |((kind, k), h)| {
        format!("; slowest p99: {kind} ({k:?}) {:.2} ms", ms(h, 0.99))
    });
    report.add(
        &format!("search latency, one chat of {} among {preloaded} messages", preloaded / 10),
        format!(
            "p50 {:.2} / p99 {:.2} / max {:.2} ms ({} searches, {} keywords{slowest})",
            ms(all, 0.5),
            ms(all, 0.99),
            all.max() as f64 / 1000.0,
            all.len(),
            keywords.len()
        ),
        "p99 ≤ 50 ms, every keyword kind",
    );
    for ((kind, k), h) in keywords.iter().zip(by_keyword) {
        report.add(
            &format!("search, {kind} ({k:?})"),
            format!(
                "p50 {:.2} / p99 {:.2} / max {:.2} ms ({} searches)",
                ms(h, 0.5),
                ms(h, 0.99),
                h.max() as f64 / 1000.0,
                h.len()
            ),
            "p99 ≤ 50 ms",
        );
    }
}

/// pgbench on a database of its own with the per-request transaction chatd's batched writer
/// replaces ([`postgres::pgbench`]): as many clients as the load generator has connections,
/// over as many chats as chatd's creates, for as long.
fn pgbench_runs(bench: &Bench, pg: &postgres::Server) -> anyhow::Result<postgres::PgbenchRun> {
    println!("pgbench");
    bench.memory.phase("pgbench (another process)");
    let url = pg.fresh_database(&bench.client)?;
    let (apps, chats) = bench.write_spread();
    let ids = bench.client.block_on(postgres::prepare_pgbench(&url, apps * chats, &bench.words))?;
    postgres::pgbench(&bench.opts.pgbench, &url, ids, bench.opts.connections, bench.opts.seconds)
}

/// The figures at scale on PostgreSQL, on a database preloaded with `--preload` messages
/// (the embedded run's applications, chats and bodies): how long the preload took, the
/// messages' table and index sizes, and search latency of every keyword kind in the big chat.
fn scale_postgres(bench: &Bench, pg: &postgres::Server, report: &mut Report) -> anyhow::Result<()> {
    let (opts, n) = (bench.opts, bench.opts.preload);
    println!("chatd on PostgreSQL with {n} messages preloaded");
    bench.memory.phase("preload (the benchmark's loader, not chatd)");
    let url = pg.fresh_database(&bench.client)?;
    let (loaded, times) = bench.client.block_on(postgres::preload(&url, n, opts.chats, &bench.words))?;
    report.note(format!(
        "preloading {n} messages into PostgreSQL took {:.1?} (rows by COPY) + {:.1?} (the trigram \
         index built again, the tables analysed)",
        times.rows, times.indexes
    ));
    bench.memory.phase("chatd, searching with the data stored");
    let dir = tempfile::tempdir()?;
    let chatd = servers::start_chatd_postgres(dir.path(), &url, opts)?;
    let (table, indexes) = bench.client.block_on(postgres::message_sizes(&url))?;
    let per_million = 1_000_000.0 / n as f64;
    report.add(
        "PostgreSQL messages table / its indexes per million messages",
        format!("{:.0} MB / {:.0} MB", table as f64 * per_million / 1e6, indexes as f64 * per_million / 1e6),
        "",
    );
    let searches = searches(bench, chatd.addr, &loaded.big_chat)?;
    report_search_by_kind(report, n, &searches);
    chatd.stop();
    Ok(())
}

/// Create-message throughput in ten of the preloaded `chats` against a fresh empty chatd,
/// measured side by side: the two take turns, so that this machine's drift over minutes falls
/// on both.
fn stored_vs_empty(
    bench: &Bench,
    chatd: &servers::Running,
    chats: &[(AppToken, ChatNumber)],
    report: &mut Report,
) -> anyhow::Result<()> {
    let targets: Vec<(String, String)> = chats
        .iter()
        .take(10)
        .map(|(t, c)| {
            (
                format!("/applications/{}/chats/{c}/messages", t.as_str()),
                format!("/applications/{}/chats", t.as_str()),
            )
        })
        .collect();
    let empty_dir = tempfile::tempdir()?;
    let empty_chatd = servers::start_chatd(empty_dir.path(), bench.opts)?;
    let (empty_targets, _) = bench.client.block_on(setup(empty_chatd.addr, 2, 5))?;
    let n = bench.opts.preload;
    let stored_name = format!("chatd with {n} stored");
    let turns = [
        (
            &empty_chatd,
            Subject { name: "empty chatd", addr: empty_chatd.addr, targets: &empty_targets, numbered: true },
        ),
        (chatd, Subject { name: &stored_name, addr: chatd.addr, targets: &targets, numbered: true }),
    ];
    let (mut on_empty, mut on_loaded) = (Vec::new(), Vec::new());
    for _ in 0..if bench.opts.smoke { 1 } else { 3 } {
        for ((server, s), rates) in turns.iter().zip([&mut on_empty, &mut on_loaded]) {
            rates.push(bench.creates(*s, Pace::Closed, report)?.stats.rate());
            // Each turn starts with both indexes caught up.
            server.wait_indexed();
        }
    }
    empty_chatd.stop();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let rates = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    report.add(
        &format!("create-message throughput with {n} stored ÷ empty (alternating turns, same minutes)"),
        format!(
            "{:.0} req/s ÷ {:.0} = {:.2} (turns: stored {}; empty {})",
            mean(&on_loaded),
            mean(&on_empty),
            mean(&on_loaded) / mean(&on_empty),
            rates(&on_loaded),
            rates(&on_empty)
        ),
        "≥ 0.9 (goal is for 10M)",
    );
    Ok(())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p).map(|d| d.flatten().map(|e| file_size(&e.path())).sum()).unwrap_or(0)
}

/// The machine, for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']))
        .unwrap_or("unknown");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {model}")
}

#[cfg(test)]
mod tests {
    use super::target_of;

    #[test]
    fn requests_in_flight_go_to_distinct_targets_and_a_run_reaches_them_all() {
        // Fewer targets than connections: connection c's i-th request goes to c + i.
        for (c, i) in [(0, 0), (3, 0), (63, 5), (7, 1000)] {
            assert_eq!(target_of(c, i, 10, 64), (c + i as usize) % 10);
        }
        let (targets, connections) = (1000, 64);
        let mut reached = vec![false; targets];
        for i in 0..16 {
            let at_once: std::collections::BTreeSet<usize> =
                (0..connections).map(|c| target_of(c, i, targets, connections)).collect();
            assert_eq!(at_once.len(), connections);
            for t in at_once {
                reached[t] = true;
            }
        }
        assert!(reached.iter().all(|r| *r));
    }
}
