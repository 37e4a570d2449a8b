//! The load generator: keep-alive HTTP/1.1 connections driven in a closed loop (as fast as
//! answers come back) or an open loop (at a fixed schedule, with latency measured from the
//! scheduled time so a slow answer cannot hide by lowering the offered load).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// One keep-alive connection.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Conn { sender, host: addr.to_string() })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        json: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send_keyed(method, path, json, None).await
    }

    /// [`Conn::send`], with an `Idempotency-Key` when `key` is given.
    pub async fn send_keyed(
        &mut self,
        method: Method,
        path: &str,
        json: Option<&str>,
        key: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder().method(method).uri(path).header("host", &self.host);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let body = match json {
            Some(j) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::copy_from_slice(j.as_bytes()))
            }
            None => Full::new(Bytes::new()),
        };
        self.sender.ready().await?;
        let response = self.sender.send_request(request.body(body)?).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// What one request of a workload is: method, path, JSON body, `Idempotency-Key`.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub json: Option<String>,
    /// An `Idempotency-Key` to send with it.
    pub key: Option<String>,
    /// Which target (chat or application) the call is for, kept with its outcome.
    pub tag: i64,
}

/// Builds request `i` of connection `conn`.
pub type MakeCall = Arc<dyn Fn(usize, u64) -> Call + Send + Sync>;
/// Checks an answer; returns what to keep of it (e.g. an acknowledged number), or an error.
pub type Check = Arc<dyn Fn(&Call, StatusCode, &[u8]) -> Result<Option<(i64, i64)>, String> + Send + Sync>;

/// The outcome of a load run.
#[derive(Debug)]
pub struct RunStats {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Microseconds.
    pub latency: Histogram<u64>,
    /// What the checks kept, e.g. (chat, number) of every acknowledged create.
    pub kept: Vec<(i64, i64)>,
    /// When each request of `kept` was sent (open loop: its scheduled time), in its order.
    pub kept_at: Vec<Instant>,
    /// Requests, and those of them slower than [`LATE`], by [`WINDOW`] of their start.
    pub windows: Vec<Window>,
    /// When the run's schedule started, on the system's monotonic clock (`CLOCK_MONOTONIC`,
    /// the clock of `perf record -k CLOCK_MONOTONIC`), to line windows up with a trace.
    pub started: Duration,
}

/// A request slower than this is late (the half-rate latency goal).
pub const LATE: Duration = Duration::from_millis(10);
/// The span by which [`RunStats::windows`] counts requests.
pub const WINDOW: Duration = Duration::from_millis(100);

/// Requests that started in one [`WINDOW`] of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub requests: u64,
    pub late: u64,
    /// The slowest request's latency, in microseconds.
    pub max_us: u64,
    /// The client's own slowest start, in microseconds: how long after its scheduled time
    /// a request was sent although its connection was idle and waiting for that time (the
    /// client's timer and its threads' turn for a CPU, nothing of the server's).
    pub wake_max_us: u64,
}

impl Window {
    /// A request of `latency` whose sending the client itself delayed by `wake`.
    fn record(&mut self, latency: Duration, wake: Duration) {
        self.add(&Window {
            requests: 1,
            late: u64::from(latency > LATE),
            max_us: latency.as_micros() as u64,
            wake_max_us: wake.as_micros() as u64,
        });
    }

    fn add(&mut self, other: &Window) {
        self.requests += other.requests;
        self.late += other.late;
        self.max_us = self.max_us.max(other.max_us);
        self.wake_max_us = self.wake_max_us.max(other.wake_max_us);
    }
}

/// How a run's late requests are spread over time: a stall (everything waits at once)
/// shows as a few windows where most requests were late; jitter as a few late requests in
/// many windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lateness {
    pub requests: u64,
    pub late: u64,
    /// Windows of at least [`STALL_MIN_REQUESTS`] requests of which at least half were late.
    pub stalled_windows: usize,
    pub windows: usize,
    /// Late requests that started in those windows.
    pub late_in_stalls: u64,
    /// The client's slowest start in those windows ([`Window::wake_max_us`]): small when the
    /// stalls were the server's.
    pub stall_wake_max_us: u64,
}

/// Fewest requests a window needs to count as stalled: one late request alone is no stall.
pub const STALL_MIN_REQUESTS: u64 = 10;

impl Lateness {
    pub fn of(windows: &[Window]) -> Self {
        let stalled: Vec<&Window> =
            windows.iter().filter(|w| w.requests >= STALL_MIN_REQUESTS && 2 * w.late >= w.requests).collect();
        Lateness {
            requests: windows.iter().map(|w| w.requests).sum(),
            late: windows.iter().map(|w| w.late).sum(),
            stalled_windows: stalled.len(),
            windows: windows.len(),
            late_in_stalls: stalled.iter().map(|w| w.late).sum(),
            stall_wake_max_us: stalled.iter().map(|w| w.wake_max_us).max().unwrap_or(0),
        }
    }
}

impl std::fmt::Display for Lateness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |part: u64, whole: u64| if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 };
        write!(
            f,
            "{:.1} % of requests over {} ms; {:.0} % of those in {} of {} windows of {} ms in which at least half were late",
            pct(self.late, self.requests),
            LATE.as_millis(),
            pct(self.late_in_stalls, self.late),
            self.stalled_windows,
            self.windows,
            WINDOW.as_millis(),
        )?;
        if self.stalled_windows > 0 {
            let ms = self.stall_wake_max_us as f64 / 1000.0;
            write!(f, " (the client's own slowest start in them: {ms:.1} ms)")?;
        }
        Ok(())
    }
}

impl RunStats {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each connection sends its next request as soon as the previous is answered.
    Closed,
    /// Requests start on a fixed schedule, `rate` per second over all connections.
    Open { rate: f64 },
}

/// Drives `connections` keep-alive connections for `duration`.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    pace: Pace,
    make: MakeCall,
    check: Check,
) -> anyhow::Result<RunStats> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::open(addr).await?);
    }
    // The schedule starts once every connection is open: setup is not request latency.
    let start = Instant::now();
    let started = monotonic_now();
    let mut tasks = Vec::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let (make, check) = (make.clone(), check.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut requests, mut errors, mut first_error) = (0u64, 0u64, None);
            let (mut kept, mut kept_at) = (Vec::new(), Vec::new());
            let mut windows: Vec<Window> = Vec::new();
            for i in 0u64.. {
                let (began, wake) = match pace {
                    Pace::Closed => (Instant::now(), Duration::ZERO),
                    Pace::Open { rate } => {
                        let slot = (i * connections as u64 + c as u64) as f64 / rate;
                        let at = start + Duration::from_secs_f64(slot);
                        // Only a connection that waits for its slot tells the client's own
                        // delay; one still busy with a late answer is behind by the server.
                        let idle = Instant::now() < at;
                        tokio::time::sleep_until(at.into()).await;
                        (at, if idle { at.elapsed() } else { Duration::ZERO })
                    }
                };
                if began.duration_since(start) >= duration {
                    break;
                }
                let call = make(c, i);
                let outcome = conn
                    .send_keyed(call.method.clone(), &call.path, call.json.as_deref(), call.key.as_deref())
                    .await;
                let latency = began.elapsed();
                requests += 1;
                let _ = hist.record((latency.as_micros() as u64).max(1));
                let w = window_of(began.duration_since(start));
                if windows.len() <= w {
                    windows.resize(w + 1, Window::default());
                }
                windows[w].record(latency, wake);
                let verdict = match outcome {
                    Ok((status, body)) => check(&call, status, &body),
                    Err(e) => Err(e.to_string()),
                };
                match verdict {
                    Ok(Some(k)) => {
                        kept.push(k);
                        kept_at.push(began);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (hist, requests, errors, first_error, (kept, kept_at), windows)
        }));
    }
    let mut stats = RunStats {
        requests: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        kept: Vec::new(),
        kept_at: Vec::new(),
        windows: Vec::new(),
        started,
    };
    for t in tasks {
        let (hist, requests, errors, first_error, (kept, kept_at), windows) = t.await?;
        if stats.windows.len() < windows.len() {
            stats.windows.resize(windows.len(), Window::default());
        }
        for (all, w) in stats.windows.iter_mut().zip(&windows) {
            all.add(w);
        }
        stats.latency.add(&hist)?;
        stats.requests += requests;
        stats.errors += errors;
        if stats.first_error.is_none() {
            stats.first_error = first_error;
        }
        stats.kept.extend(kept);
        stats.kept_at.extend(kept_at);
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

/// The [`WINDOW`] a request started in, by its start since the run's.
fn window_of(since_start: Duration) -> usize {
    (since_start.as_micros() / WINDOW.as_micros()) as usize
}

/// The system's monotonic clock.
pub fn monotonic_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The header of the lines [`timeline_csv`] writes.
pub const TIMELINE_HEADER: &str = "run,start_s,requests,late,max_ms,client_wake_max_ms";

/// A run's windows as CSV lines under [`TIMELINE_HEADER`], where `start_s` is the window's
/// start on the monotonic clock.
pub fn timeline_csv(run: &str, stats: &RunStats) -> String {
    let mut out = String::new();
    for (i, w) in stats.windows.iter().enumerate() {
        let at = stats.started + WINDOW * i as u32;
        out.push_str(&format!(
            "{run},{:.3},{},{},{:.1},{:.1}\n",
            at.as_secs_f64(),
            w.requests,
            w.late,
            w.max_us as f64 / 1000.0,
            w.wake_max_us as f64 / 1000.0
        ));
    }
    out
}

/// Keeps (tag, number) of a creation answer.
pub fn created(call: &Call, status: StatusCode, body: &[u8]) -> Result<Option<(i64, i64)>, String> {
    if status != StatusCode::CREATED {
        return Err(format!("{status}: {}", String::from_utf8_lossy(body)));
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let number = v["number"].as_i64().ok_or("no number")?;
    Ok(Some((call.tag, number)))
}

/// Accepts any 200.
pub fn ok(_: &Call, status: StatusCode, body: &[u8]) -> Result<Option<(i64, i64)>, String> {
    if status == StatusCode::OK {
        Ok(None)
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(body)))
    }
}

/// Checks acknowledged numbers: unique, and consecutive within each tag. Returns how many
/// tags were seen, or what is wrong.
pub fn check_dense(kept: &[(i64, i64)]) -> Result<usize, String> {
    let mut by_tag: std::collections::BTreeMap<i64, Vec<i64>> = std::collections::BTreeMap::new();
    for &(tag, n) in kept {
        by_tag.entry(tag).or_default().push(n);
    }
    for (tag, numbers) in &mut by_tag {
        numbers.sort_unstable();
        if let Some(w) = numbers.windows(2).find(|w| w[1] != w[0] + 1) {
            return Err(format!("target {tag}: {} then {} (duplicate or gap)", w[0], w[1]));
        }
    }
    Ok(by_tag.len())
}

#[cfg(test)]
mod tests {
    use super::{Lateness, Window};

    #[test]
    fn lateness_tells_a_stall_from_spread_jitter() {
        let w = |requests, late| Window { requests, late, max_us: 0, wake_max_us: 100 * late };
        // Two windows where everything waited, jitter in two more, one calm, one empty, and
        // one with a lone late request, which is no stall.
        let l = Lateness::of(&[w(100, 100), w(100, 2), w(100, 60), w(100, 0), w(100, 1), w(0, 0), w(1, 1)]);
        assert_eq!(
            l,
            Lateness {
                requests: 501,
                late: 164,
                stalled_windows: 2,
                windows: 7,
                late_in_stalls: 160,
                stall_wake_max_us: 10_000
            }
        );
        assert_eq!(
            l.to_string(),
            "32.7 % of requests over 10 ms; 98 % of those in 2 of 7 windows of 100 ms in which at least half \
             were late (the client's own slowest start in them: 10.0 ms)"
        );
        let none = Lateness::of(&[]);
        assert_eq!((none.late, none.stalled_windows), (0, 0));
        assert_eq!(
            none.to_string(),
            "0.0 % of requests over 10 ms; 0 % of those in 0 of 0 windows of 100 ms in which at least half were late"
        );
    }

    #[test]
    fn a_request_counts_in_the_window_it_was_scheduled_in() {
        use std::time::Duration;
        assert_eq!(super::window_of(Duration::ZERO), 0);
        assert_eq!(super::window_of(Duration::from_micros(99_999)), 0);
        assert_eq!(super::window_of(Duration::from_millis(100)), 1);
        assert_eq!(super::window_of(Duration::from_millis(4_999)), 49);
    }

    #[test]
    fn the_timeline_gives_each_window_its_start_on_the_monotonic_clock() {
        let stats = super::RunStats {
            requests: 3,
            errors: 0,
            first_error: None,
            elapsed: std::time::Duration::from_millis(200),
            latency: hdrhistogram::Histogram::new(3).unwrap(),
            kept: Vec::new(),
            kept_at: Vec::new(),
            windows: vec![
                Window { requests: 2, late: 1, max_us: 12_345, wake_max_us: 1_260 },
                Window { requests: 1, late: 0, max_us: 800, wake_max_us: 0 },
            ],
            started: std::time::Duration::from_millis(17_143_250),
        };
        assert_eq!(
            super::timeline_csv("chatd", &stats),
            "chatd,17143.250,2,1,12.3,1.3\nchatd,17143.350,1,0,0.8,0.0\n"
        );
    }
}
