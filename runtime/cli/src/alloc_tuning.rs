//! glibc malloc tuning for CKKS workloads: ciphertexts and keys are made of multi-megabyte
//! buffers, which glibc serves with fresh `mmap`s by default, so every temporary costs page faults
//! and page clearing (a third of the run time at N = 2^16). Raising the mmap threshold to its
//! maximum (32 MiB) and disabling heap trimming keeps freed buffers in the heap for reuse.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only adjusts allocator parameters; called before any worker threads exist.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
