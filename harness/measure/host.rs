//! What the host did for a worker process over its measured calls: CPU time and scheduler
//! activity (`getrusage(RUSAGE_SELF)` deltas, all threads) and the CPUs it could and did run on.
//! Recorded per process so that a process that ran slower than others of the same
//! configuration can be checked against host-side causes (preemption, placement).

use serde::{Deserialize, Serialize};

/// Host usage of one process over its measured calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostUsage {
    /// User and system CPU time of all the process's threads.
    pub user_ms: f64,
    pub system_ms: f64,
    /// Context switches: waits (I/O, synchronisation) and preemptions by the scheduler.
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// The CPUs the process may run on (its affinity mask), e.g. `0-15`.
    pub allowed_cpus: String,
    /// The CPU the main thread was on when measuring ended.
    pub last_cpu: Option<u32>,
}

/// A `getrusage` reading.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot(libc::rusage);

pub fn snapshot() -> Option<Snapshot> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: usage points to writable memory of the right size.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    // SAFETY: getrusage succeeded and filled the struct.
    (rc == 0).then(|| Snapshot(unsafe { usage.assume_init() }))
}

fn ms(t: libc::timeval) -> f64 {
    t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3
}

/// Usage since `before`.
pub fn usage_since(before: Snapshot) -> Option<HostUsage> {
    let now = snapshot()?.0;
    let b = before.0;
    let delta = |a: libc::c_long, b: libc::c_long| u64::try_from(a - b).unwrap_or(0);
    Some(HostUsage {
        user_ms: ms(now.ru_utime) - ms(b.ru_utime),
        system_ms: ms(now.ru_stime) - ms(b.ru_stime),
        voluntary_switches: delta(now.ru_nvcsw, b.ru_nvcsw),
        involuntary_switches: delta(now.ru_nivcsw, b.ru_nivcsw),
        allowed_cpus: cpu_ranges(&allowed_cpus()),
        // SAFETY: no arguments; returns -1 on failure.
        last_cpu: u32::try_from(unsafe { libc::sched_getcpu() }).ok(),
    })
}

fn allowed_cpus() -> Vec<usize> {
    let mut set = std::mem::MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: set is a writable cpu_set_t of the size passed.
    let rc = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set.as_mut_ptr())
    };
    if rc != 0 {
        return Vec::new();
    }
    // SAFETY: sched_getaffinity succeeded and filled the set.
    let set = unsafe { set.assume_init() };
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i is below CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// `[0, 1, 2, 5, 7, 8]` → `0-2,5,7-8`.
pub fn cpu_ranges(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        parts.push(if cpus[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", cpus[i])
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_collapse_into_ranges() {
        assert_eq!(cpu_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(cpu_ranges(&[3]), "3");
        assert_eq!(cpu_ranges(&[]), "");
    }

    #[test]
    fn sleeping_is_voluntary_switching_and_spinning_is_cpu_time() {
        let before = snapshot().unwrap();
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let u = usage_since(before).unwrap();
        assert!(u.voluntary_switches >= 5, "{u:?}");
        assert!(u.user_ms + u.system_ms > 10.0, "{u:?}");
        assert!(!u.allowed_cpus.is_empty(), "{u:?}");
        assert!(u.last_cpu.is_some(), "{u:?}");
    }
}
