//! The worker protocol: the parent writes one [`WorkerJob`] as JSON to the worker's stdin; the
//! worker answers with one JSON object per line on stdout, tagged by `kind`. Anything else a
//! worker prints goes to stderr. The parent never trusts a worker to finish: a missing
//! `outcome` message means the worker crashed.

use crate::ffi::{BackendFlags, Versions};
use crate::measure::nvml::GpuInfo;
use crate::measure::Measurement;
use crate::plan::VariantPlan;
use serde::{Deserialize, Serialize};

/// Bumped when a message changes incompatibly; parent and worker are one binary, so a mismatch
/// means a stale binary on the path.
pub const PROTOCOL_VERSION: u32 = 1;

/// What the parent asks one worker process to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerJob {
    pub protocol: u32,
    pub suite: String,
    pub process: u32,
    pub variant: VariantPlan,
}

/// Messages from a worker, one per stdout line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Hello(Box<Hello>),
    Sample(Box<SampleMsg>),
    Log {
        level: LogLevel,
        message: String,
    },
    /// Warm-up is over: how many calls it took and whether the settle rule was met (false:
    /// `warmup_max` was reached first, or no settle rule applies and none was checked).
    WarmedUp {
        calls: u32,
        settled: bool,
    },
    /// Measuring is over, and why.
    Measured(StopInfo),
    Outcome(Outcome),
}

/// Why a worker stopped taking measured calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopInfo {
    /// `fixed` (the set repetitions), `precise` (interval narrow enough) or `max`
    /// (`repetitions_max` reached).
    pub reason: String,
    /// Relative width of the 95 % interval of the median when the rule was checked.
    pub relative_ci: Option<f64>,
    /// CPU time, context switches and CPUs of the process over its measured calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<crate::measure::host::HostUsage>,
}

/// Why a sample's timing may not be representative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFlag {
    /// NVML reported thermal throttling, hardware slowdown or power brake during the call.
    Throttled,
    /// The SM clock fell below the settle rule's fraction of its maximum.
    LowClock,
    /// Another process used the GPU during the call.
    SharedGpu,
    /// The call ran with the allocator's trace recorded (`CLAIMBENCH_CUDA_MEMORY_TRACE`),
    /// which slows it.
    AllocatorTrace,
}

impl SampleFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            SampleFlag::Throttled => "throttled",
            SampleFlag::LowClock => "low_clock",
            SampleFlag::SharedGpu => "shared_gpu",
            SampleFlag::AllocatorTrace => "allocator_trace",
        }
    }
}

/// The worker's environment, sent once after knobs are applied and before the first call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub pid: u32,
    /// `cuda:0` or `cpu`.
    pub device: String,
    pub versions: Versions,
    pub gpu: Option<GpuInfo>,
    /// Flags as read back from libtorch after applying the knobs.
    pub backend_flags: BackendFlags,
    /// Per-process memory fraction in force (CUDA only).
    pub memory_fraction: Option<f64>,
    /// The VRAM budget knob in bytes (the emulated card's size).
    pub budget_bytes: Option<u64>,
    /// Device memory held outside the allocator (CUDA context, handles) when the budget was
    /// applied; the allocator's share of the budget is `budget_bytes` minus this.
    pub cuda_overhead_bytes: Option<u64>,
    /// Knobs that could not act here, and why.
    pub not_applicable: Vec<String>,
    /// The environment knobs' variables as this process sees them (proof they were applied
    /// before start-up, not just requested).
    pub environment: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleMsg {
    /// 0-based index over all calls of this process, warm-up included.
    pub call: u32,
    pub warmup: bool,
    /// [`SampleFlag`] names.
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(flatten)]
    pub measurement: Measurement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Info,
    Warn,
}

/// How a worker process ended. The worker itself reports `ok`, `oom` and `error`; the parent
/// assigns the others when the worker could not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Out of device (or host) memory; see [`OomInfo`].
    Oom,
    /// The workload failed (bad parameters, a libtorch error other than OOM, a panic).
    Error,
    /// The process died without an outcome (signal, abort, non-zero exit).
    Crashed,
    /// Killed after exceeding the variant's timeout.
    Timeout,
    /// Stopped by Ctrl-C.
    Interrupted,
    /// The worker could not be started.
    SpawnFailed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Oom => "oom",
            Status::Error => "error",
            Status::Crashed => "crashed",
            Status::Timeout => "timeout",
            Status::Interrupted => "interrupted",
            Status::SpawnFailed => "spawn_failed",
        }
    }
}

/// Memory state when an allocation failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OomInfo {
    /// Size of the failed request, parsed from libtorch's message ("Tried to allocate …").
    pub requested_bytes: Option<u64>,
    /// Allocator state right after the failure.
    pub allocated_bytes: Option<u64>,
    pub reserved_bytes: Option<u64>,
    pub budget_bytes: Option<u64>,
    /// Measured calls completed before the failure (0 = failed during set-up or warm-up).
    pub completed_calls: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub message: Option<String>,
    pub oom: Option<OomInfo>,
}

/// Whether a libtorch error message is an out-of-memory failure.
pub fn is_oom_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("out of memory")
        || m.contains("outofmemoryerror")
        || m.contains("can't allocate memory")
}

/// Parses the request size from a libtorch OOM message: CUDA says "Tried to allocate 10.00 GiB",
/// the CPU allocator "you tried to allocate 1234 bytes".
pub fn requested_bytes(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("tried to allocate ")? + "tried to allocate ".len();
    let mut words = lower[at..].split_whitespace();
    let number: f64 = words.next()?.parse().ok()?;
    let unit = words
        .next()
        .unwrap_or("bytes")
        .trim_end_matches(['.', ',', ';', ')']);
    let scale = match unit {
        "b" | "bytes" | "byte" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((number * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cuda_and_cpu_oom_messages() {
        let cuda = "CUDA out of memory. Tried to allocate 10.00 GiB. GPU 0 has a total capacity of 79.19 GiB";
        assert!(is_oom_message(cuda));
        assert_eq!(requested_bytes(cuda), Some(10 << 30));
        let mib = "torch.OutOfMemoryError: Tried to allocate 20.00 MiB.";
        assert_eq!(requested_bytes(mib), Some(20 << 20));
        let cpu = "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes.";
        assert!(is_oom_message(cpu));
        assert_eq!(requested_bytes(cpu), Some(1 << 40));
        assert!(!is_oom_message("shape mismatch"));
        assert_eq!(requested_bytes("shape mismatch"), None);
    }

    #[test]
    fn messages_are_tagged_json_lines() {
        let m = Message::Log {
            level: LogLevel::Warn,
            message: "x".into(),
        };
        let line = serde_json::to_string(&m).unwrap();
        assert_eq!(line, r#"{"kind":"log","level":"warn","message":"x"}"#);
        let back: Message = serde_json::from_str(&line).unwrap();
        assert!(matches!(
            back,
            Message::Log {
                level: LogLevel::Warn,
                ..
            }
        ));
    }
}
