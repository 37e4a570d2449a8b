//! How the process gives memory back.
//!
//! glibc's malloc, by default, raises its mmap threshold each time a large block is freed
//! (up to 32 MB), after which large blocks come from its arenas and freed ones stay there.
//! tantivy's indexing allocates and frees megabyte blocks in a thread that ends at each
//! index commit, and each of the up to 16 arenas kept what it had once held: half of
//! chatd's anonymous memory at 1M messages was freed blocks (heaptrack: 52 MB of live heap
//! at the peak against 134 MB resident). Fixed thresholds make large blocks separate
//! mappings, returned to the system when freed, and trim the arenas' tops.

/// Blocks of at least this size are mapped on their own and unmapped when freed; arenas
/// return free space above this at their top.
const RETURN_AT: i32 = 128 * 1024;

/// Fixes malloc's thresholds (glibc only; elsewhere the allocator's defaults stand).
pub fn return_freed_memory() {
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
