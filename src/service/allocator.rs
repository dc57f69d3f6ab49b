//! glibc malloc settings for the daemon's allocation pattern.
//!
//! Each list page (about 0.5–1.5 MB) and each of hyper's read buffers is allocated, filled and
//! freed again. With glibc's defaults such blocks come from fresh mmaps or from arena tops that
//! are handed back with madvise after every free, so every page of them is faulted in and
//! zeroed again: perf of the 100k initial sync showed page faults at 14% and madvise at 2% of
//! the daemon's CPU. Serving blocks of this size from the heap and keeping a few MiB of free
//! heap instead of returning it makes the memory be reused.

/// Blocks below this come from the heap rather than their own mmap.
const MMAP_THRESHOLD: i32 = 4 << 20;
/// Free memory at the top of a heap kept rather than returned to the kernel.
const TRIM_THRESHOLD: i32 = 4 << 20;

pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only changes allocator parameters; it is called before any thread
    // starts and has no memory-safety preconditions.
    unsafe {
        // A failure (0) leaves glibc's defaults, which work, only slower.
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
