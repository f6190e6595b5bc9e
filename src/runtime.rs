//! Process-level settings the binaries apply at start-up.
//!
//! # The allocator
//!
//! A training step allocates and frees many buffers of several MiB (candle allocates a fresh
//! output for every tensor operation, and so do gradients). With glibc's default settings every
//! allocation above the dynamic mmap threshold (128 KiB at first, at most 32 MiB) is a fresh
//! `mmap` whose pages are faulted in and zeroed by the kernel on first touch, and every free
//! returns them with `munmap`; the top of the heap is also trimmed back to the system whenever
//! more than 128 KiB are free there. [`tune_allocator`] turns both off for the life of the
//! process (`mallopt(M_MMAP_MAX, 0)`: no allocation is served by its own mapping;
//! `mallopt(M_TRIM_THRESHOLD, i32::MAX)` and `mallopt(M_TOP_PAD, 64 MiB)`: the heap keeps
//! freed memory), so that the buffers of one step are reused by the next without page faults.
//! The price is a process that does not give memory back to the system until it ends, which is
//! what a training process wants. `GLIBC_TUNABLES` set in the environment still applies first;
//! these calls override it.
//!
//! Candle's stock operations gain from it; the fast kernels recycle their own buffers
//! (`empirical bench` with `GRANULARITY_MALLOC=default` compares the two settings; the README's
//! speed table has the numbers). On other platforms and C libraries this is a no-op.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    // Parameters of glibc's `mallopt` (malloc.h).
    pub const M_TRIM_THRESHOLD: i32 = -1;
    pub const M_TOP_PAD: i32 = -2;
    pub const M_MMAP_MAX: i32 = -4;

    extern "C" {
        pub fn mallopt(param: i32, value: i32) -> i32;
    }
}

/// Keeps freed memory in the process instead of returning it to the system after every large
/// free (see the module doc); call once at the start of `main`, before threads start. Returns
/// whether the setting was applied (false on platforms other than Linux with glibc, or when
/// `GRANULARITY_MALLOC=default` is set in the environment, which keeps glibc's defaults for
/// comparisons).
pub fn tune_allocator() -> bool {
    if std::env::var_os("GRANULARITY_MALLOC").is_some_and(|v| v == "default") {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's parameters; it is called before other threads
        // allocate (and glibc takes its own lock anyway).
        unsafe {
            let a = glibc::mallopt(glibc::M_MMAP_MAX, 0);
            let b = glibc::mallopt(glibc::M_TRIM_THRESHOLD, i32::MAX);
            let c = glibc::mallopt(glibc::M_TOP_PAD, 64 << 20);
            a == 1 && b == 1 && c == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
