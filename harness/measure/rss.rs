//! Host memory of the current process.

/// Peak resident set size of this process so far, from `getrusage(RUSAGE_SELF).ru_maxrss`
/// (kibibytes on Linux). It never decreases, so per-call values show growth, not per-call peaks.
pub fn peak_rss_bytes() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: usage points to writable memory of the right size.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded and filled the struct.
    let kib = unsafe { usage.assume_init() }.ru_maxrss;
    u64::try_from(kib).ok().map(|k| k * 1024)
}
