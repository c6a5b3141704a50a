//! What the host did for a worker process over its measured calls: CPU time and scheduler
//! activity (`getrusage(RUSAGE_SELF)` deltas, all threads) and the CPUs it could and did run on.
//! Recorded per process so that a process that ran slower than others of the same
//! configuration can be checked against host-side causes (preemption, placement, a host CPU
//! that ran slower: see [`CpuProbe`]).

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
    /// Median time of the fixed host CPU probe ([`CpuProbe`]) run just before the first and just
    /// after the last measured call: how fast this process's host CPU ran, comparable between
    /// processes of one worker kind. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_probe_ms: Option<f64>,
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
        cpu_probe_ms: None,
    })
}

/// A fixed piece of host work whose duration says how fast the host CPU ran for this process.
///
/// Launch-bound GPU calls (a UNet forward issues ~1,200 kernels) spend most of their wall time in
/// host code, so a process whose CPU runs slower (a busy sibling hyper-thread, a virtual CPU
/// the hypervisor shares) is slower as a whole while its GPU work is unchanged. The probe is a
/// dependent pointer chase through a 1 MiB cyclic permutation (memory latency, as in a launch
/// path's object graph) with integer mixing (ALU), [`PROBE_STEPS`] steps, timed on the host
/// clock. It runs outside every timed region: [`PROBE_REPEATS`] times before the first measured
/// call and as many after the last; the record keeps the median.
pub struct CpuProbe {
    next: Vec<u32>,
    times_ms: Vec<f64>,
}

/// Entries of the permutation (4 bytes each: 1 MiB).
const PROBE_ENTRIES: usize = 1 << 18;
/// Pointer-chase steps per probe (about half a millisecond on a current server core).
pub const PROBE_STEPS: usize = 100_000;
/// Probes before the measured calls and again after them.
pub const PROBE_REPEATS: usize = 5;

impl Default for CpuProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuProbe {
    /// Builds the permutation: Sattolo's shuffle (one cycle through every entry) driven by a
    /// fixed xorshift, so every process chases the same path.
    pub fn new() -> Self {
        let mut next: Vec<u32> = (0..PROBE_ENTRIES as u32).collect();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for i in (1..PROBE_ENTRIES).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = (state % i as u64) as usize;
            next.swap(i, j);
        }
        CpuProbe {
            next,
            times_ms: Vec::new(),
        }
    }

    /// Runs the probe [`PROBE_REPEATS`] times and keeps the times.
    pub fn run(&mut self) {
        for _ in 0..PROBE_REPEATS {
            let start = std::time::Instant::now();
            let mut at = 0u32;
            let mut mix = 0u64;
            for _ in 0..PROBE_STEPS {
                at = self.next[at as usize];
                mix = (mix ^ u64::from(at)).wrapping_mul(0x100_0000_01B3);
            }
            std::hint::black_box(mix);
            self.times_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }

    /// Median of every probe run so far.
    pub fn median_ms(&self) -> Option<f64> {
        let mut t = self.times_ms.clone();
        if t.is_empty() {
            return None;
        }
        t.sort_by(f64::total_cmp);
        let n = t.len();
        Some(if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2.0
        })
    }
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

    #[test]
    fn the_cpu_probe_chases_one_cycle_through_every_entry() {
        let mut probe = CpuProbe::new();
        // One cycle through all entries: a shorter cycle would make the probe cache-resident.
        let (mut at, mut len) = (probe.next[0], 1usize);
        while at != 0 {
            at = probe.next[at as usize];
            len += 1;
        }
        assert_eq!(len, PROBE_ENTRIES);
        assert_eq!(probe.median_ms(), None);
        probe.run();
        let alone = probe.median_ms().unwrap();
        assert!(alone > 0.0 && alone < 1000.0, "{alone}");
        assert_eq!(probe.times_ms.len(), PROBE_REPEATS);
    }
}
