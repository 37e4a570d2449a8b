//! This process's memory and CPU over a run, from `/proc/self`: a sampler thread records the
//! peak resident set of each phase, split into anonymous memory (heaps, tantivy's indexing
//! buffers, SQLite's caches) and file-backed pages (the memory-mapped index segments, which
//! the kernel can drop and read again).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The resident set at one moment, in MB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rss {
    pub anon: f64,
    pub file: f64,
}

impl Rss {
    pub fn total(&self) -> f64 {
        self.anon + self.file
    }

    /// Reads `RssAnon` and `RssFile` of this process.
    pub fn now() -> Rss {
        Rss { anon: status_mb("RssAnon:"), file: status_mb("RssFile:") }
    }
}

/// The largest resident set seen during one phase, and the largest anonymous part.
#[derive(Debug, Clone, Default)]
pub struct PhasePeak {
    pub phase: String,
    /// The sample with the largest total.
    pub at_peak: Rss,
    /// The largest anonymous part seen (not necessarily at the same moment).
    pub max_anon: f64,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    peaks: Mutex<Vec<PhasePeak>>,
}

/// Samples the resident set every 50 ms until dropped.
#[derive(Debug)]
pub struct MemorySampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl MemorySampler {
    pub fn start(first_phase: &str) -> Self {
        let shared = Arc::new(Shared::default());
        shared
            .peaks
            .lock()
            .expect("not poisoned")
            .push(PhasePeak { phase: first_phase.into(), ..Default::default() });
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                while !shared.stop.load(Ordering::Relaxed) {
                    let rss = Rss::now();
                    if let Some(p) = shared.peaks.lock().expect("not poisoned").last_mut() {
                        if rss.total() > p.at_peak.total() {
                            p.at_peak = rss;
                        }
                        p.max_anon = p.max_anon.max(rss.anon);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        MemorySampler { shared, thread: Some(thread) }
    }

    /// Starts a new phase: later samples count towards it.
    pub fn phase(&self, name: &str) {
        let rss = Rss::now();
        self.shared.peaks.lock().expect("not poisoned").push(PhasePeak {
            phase: name.into(),
            at_peak: rss,
            max_anon: rss.anon,
        });
    }

    /// Every phase's peaks so far, in order.
    pub fn peaks(&self) -> Vec<PhasePeak> {
        self.shared.peaks.lock().expect("not poisoned").clone()
    }
}

impl Drop for MemorySampler {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A memory figure of this process from /proc/self/status (e.g. `VmHWM:`, the peak
/// resident set), in MB.
pub fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time this process has used (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    // Linux reports them in USER_HZ, 100 per second on every architecture chatd runs on.
    Duration::from_millis(ticks * 10)
}

/// Waits until this process uses less than a tenth of a core over a second (background
/// work such as index merges has finished), at most `limit`; returns how long it waited.
pub fn wait_until_quiet(limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        let before = cpu_time();
        std::thread::sleep(Duration::from_secs(1));
        if cpu_time().saturating_sub(before) < Duration::from_millis(100) {
            break;
        }
    }
    started.elapsed()
}
