//! This process's memory and CPU over a run, from `/proc/self`: a sampler thread records the
//! peak resident set of each phase, split into anonymous memory (heaps, tantivy's indexing
//! buffers, SQLite's caches) and file-backed pages (the memory-mapped index segments, which
//! the kernel can drop and read again); a [`CpuMeter`] measures the CPU a run used, this
//! process's and the whole machine's.

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

/// Waits until this process uses less than a tenth of a core over a second (background
/// work such as index merges has finished), at most `limit`; returns how long it waited.
pub fn wait_until_quiet(limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        let before = process_cpu_time();
        std::thread::sleep(Duration::from_secs(1));
        if process_cpu_time().saturating_sub(before) < Duration::from_millis(100) {
            break;
        }
    }
    started.elapsed()
}

/// Measures the CPU a run used ([`CpuMeter::measure`]): this process's CPU time (every
/// thread, including ones that ended) and how busy the whole machine was.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    process: Duration,
    machine: Option<Jiffies>,
}

/// What a [`CpuMeter`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// This process's CPU time.
    pub process: Duration,
    /// The share of all CPUs' time that was not idle (nor waiting for I/O), 0 to 1; `None`
    /// where `/proc/stat` cannot be read.
    pub machine_busy: Option<f64>,
}

impl CpuUse {
    /// This process's CPU time per request, in microseconds.
    pub fn process_us_per(&self, requests: u64) -> f64 {
        self.process.as_secs_f64() * 1e6 / requests.max(1) as f64
    }
}

impl CpuMeter {
    /// Runs `f` and measures the CPU it used (with the rest of the process, and the machine).
    pub fn measure<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<(T, CpuUse), E> {
        let meter = CpuMeter::start();
        let value = f()?;
        Ok((value, meter.stop()))
    }

    fn start() -> Self {
        CpuMeter { process: process_cpu_time(), machine: machine_jiffies() }
    }

    fn stop(&self) -> CpuUse {
        let busy = match (self.machine, machine_jiffies()) {
            (Some(a), Some(b)) if b.total > a.total => {
                Some((b.busy - a.busy) as f64 / (b.total - a.total) as f64)
            }
            _ => None,
        };
        CpuUse { process: process_cpu_time().saturating_sub(self.process), machine_busy: busy }
    }
}

/// This process's CPU time, to the nanosecond (`/proc/self/stat` counts in 10 ms ticks).
fn process_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The CPU time so far of this process's live threads whose name starts with `name` (a
/// tokio runtime's workers carry its thread name), from `/proc/self/task`, to the kernel's
/// tick (`USER_HZ`, 100 per second on Linux).
pub fn threads_cpu_time(name: &str) -> Duration {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
    let ticks: u64 = tasks
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(name)))
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            // Fields after the name (which is in parentheses and may hold spaces); utime
            // and stime are the 14th and 15th of the line.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    Duration::from_millis(ticks * 10)
}

/// All CPUs' time since boot, in the kernel's ticks: busy and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Jiffies {
    busy: u64,
    total: u64,
}

fn machine_jiffies() -> Option<Jiffies> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line of `/proc/stat`: user, nice, system, idle, iowait, irq, softirq, steal
/// (guest time is already inside user). Idle and iowait are not busy; steal (time the
/// hypervisor gave the CPU to someone else) is counted as busy, since this machine could
/// not use it.
fn parse_proc_stat(stat: &str) -> Option<Jiffies> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> =
        line.split_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = fields[..] else { return None };
    let busy = user + nice + system + irq + softirq + steal;
    Some(Jiffies { busy, total: busy + idle + iowait })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_busy_share_leaves_out_idle_and_io_wait() {
        let stat = "cpu  100 5 20 800 50 1 4 20 7 0\ncpu0 50 2 10 400 25 0 2 10 0 0\nintr 1 2 3\n";
        // busy: 100 + 5 + 20 + 1 + 4 + 20; all: that + 800 idle + 50 iowait.
        assert_eq!(parse_proc_stat(stat), Some(Jiffies { busy: 150, total: 1000 }));
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 3\n"), None);
    }

    #[test]
    fn a_meter_sees_this_process_spend_cpu() {
        let meter = CpuMeter::start();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = meter.stop();
        // 50 ms of spinning is at least 10 ms of CPU even on a machine this busy.
        assert!(used.process >= Duration::from_millis(10), "{used:?}");
        assert!(used.machine_busy.is_some_and(|b| b > 0.0 && b <= 1.0), "{used:?}");
        assert!((used.process_us_per(1000) - used.process.as_secs_f64() * 1e3).abs() < 1e-6);
    }

    #[test]
    fn a_named_thread_s_cpu_time_is_counted_and_others_are_not() {
        let spin = |name: &str| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(|| {
                    let started = Instant::now();
                    let mut x = 0u64;
                    while started.elapsed() < Duration::from_millis(300) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    std::thread::park();
                })
                .unwrap()
        };
        let spinner = spin("cputest-spinner");
        std::thread::sleep(Duration::from_millis(400));
        let counted = threads_cpu_time("cputest-spin");
        assert!(counted >= Duration::from_millis(50) && counted <= Duration::from_millis(500), "{counted:?}");
        assert_eq!(threads_cpu_time("cputest-nobody"), Duration::ZERO);
        spinner.thread().unpark();
        spinner.join().unwrap();
    }
}
