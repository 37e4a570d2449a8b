//! Process-wide settings chatd makes as it starts (each is idempotent, so an application
//! built twice in one process, as in tests and the benchmark, is fine).
//!
//! **Memory given back.** glibc's malloc, by default, raises its mmap threshold each time a
//! large block is freed (up to 32 MB), after which large blocks come from its arenas and
//! freed ones stay there.
//! tantivy's indexing allocates and frees megabyte blocks in a thread that ends at each
//! index commit, and each arena kept what it had once held, so most of chatd's resident
//! memory could be blocks already freed. Fixed thresholds make large blocks separate
//! mappings, returned to the system when freed, and trim the arenas' tops.

/// Blocks of at least this size are mapped on their own and unmapped when freed; arenas
/// return free space above this at their top.
const RETURN_AT: i32 = 128 * 1024;

/// Makes the process-wide settings: malloc's thresholds and the open-file limit.
pub fn prepare(max_connections: u64) {
    return_freed_memory();
    raise_open_file_limit(max_connections);
}

/// Fixes malloc's thresholds (glibc only; elsewhere the allocator's defaults stand).
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters, under glibc's own lock; threads that
    // allocate meanwhile read the thresholds as glibc's free() itself updates them.
    unsafe {
        let mapped = libc::mallopt(libc::M_MMAP_THRESHOLD, RETURN_AT);
        let trimmed = libc::mallopt(libc::M_TRIM_THRESHOLD, RETURN_AT);
        if mapped != 1 || trimmed != 1 {
            tracing::warn!("could not set malloc's thresholds; freed memory may stay resident");
        }
    }
}

/// Raises the soft open-file limit to the hard one: sockets (up to `--max-connections`) and
/// the search index's open segment files (a few per segment) share it, and the soft default
/// (often 1,024) is below the default connection limit alone.
fn raise_open_file_limit(max_connections: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // Unlimited hard limits still stop at the kernel's nr_open (2^20 by default).
    let wanted = limit.maximum.unwrap_or(1 << 20);
    let current = match limit.current {
        Some(now) if now < wanted => {
            match setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(wanted), ..limit }) {
                Ok(()) => wanted,
                Err(e) => {
                    tracing::warn!(error = %e, "could not raise the open-file limit");
                    now
                }
            }
        }
        other => other.unwrap_or(wanted),
    };
    if current < max_connections + 256 {
        tracing::warn!(
            open_files = current,
            max_connections,
            "the open-file limit leaves little room beyond --max-connections; raise `ulimit -Hn`"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let hard = getrlimit(Resource::Nofile).maximum;
        setrlimit(Resource::Nofile, Rlimit { current: Some(256), maximum: hard }).unwrap();
        super::raise_open_file_limit(16);
        let raised = getrlimit(Resource::Nofile).current;
        match hard {
            Some(hard) => assert_eq!(raised, Some(hard)),
            // Unlimited: raised to the kernel's usual nr_open.
            None => assert_eq!(raised, Some(1 << 20)),
        }
    }
}
