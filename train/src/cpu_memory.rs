//! Keeps freed memory inside the process when training on the CPU.
//!
//! libtorch allocates every activation and gradient with the C allocator. glibc serves blocks over
//! 32 MiB (a ViT-S MLP activation at batch 32 is 38 MiB) with a fresh `mmap` and returns them with
//! `munmap` when freed, so each training step faults in and zeroes gigabytes of new pages: about
//! 300 k page faults and 10–15 % of the CPU time of a `small` step at mask 0 (measured with
//! `flipstream bench train-step`, see docs/benchmarks.md). [`retain_freed_memory`] tells glibc to
//! serve large blocks from its heap and not to give freed memory back, so the next step reuses the
//! same pages, like PyTorch's caching allocator does on CUDA. The process's resident memory then
//! stays at its peak, which is what a training process reaches every step anyway.

use std::sync::OnceLock;

/// Switches glibc malloc to keep freed memory (`M_MMAP_MAX = 0`, `M_TRIM_THRESHOLD = 2 GiB`).
/// Idempotent; returns whether the setting is in effect (false on other C libraries).
pub fn retain_freed_memory() -> bool {
    static APPLIED: OnceLock<bool> = OnceLock::new();
    *APPLIED.get_or_init(apply)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn apply() -> bool {
    // SAFETY: mallopt only changes allocator parameters. It takes glibc's arena lock, is safe to
    // call from any thread at any time, and has no pointer arguments or memory preconditions.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}
