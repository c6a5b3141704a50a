//! The run record, `run.json`, format [`FORMAT_VERSION`](super::FORMAT_VERSION) 1.x.
//!
//! The record has types of its own for what the worker reports (its hello, out-of-memory
//! state, why it stopped measuring, how it ended) rather than the worker protocol's wire types:
//! the protocol may change between parent and worker of one binary, the record must stay
//! readable by later versions. The `From` conversions below list every field, so a protocol
//! change does not compile until the record is changed (and its format version reconsidered).

use crate::ffi::{BackendFlags, Versions};
use crate::measure::nvml::GpuInfo;
use crate::plan::Plan;
use crate::worker::protocol::{self, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Hardware and software a run was measured on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `cuda:0` or `cpu`, from the first worker that started.
    pub device: Option<String>,
    pub gpu: Option<GpuInfo>,
    pub torch_version: Option<String>,
    pub cudnn_version: Option<i64>,
    pub cuda_runtime_version: Option<i64>,
    pub harness_version: String,
    pub git_commit: String,
    pub host: String,
    pub os: String,
    pub started_at: String,
}

impl Fingerprint {
    /// What the parent knows when a run starts: the GPU as NVML sees it (`None` without one),
    /// this harness, the host and the time. The first worker fills in device and versions
    /// ([`Fingerprint::complete_from`]).
    pub fn at_start(gpu: Option<GpuInfo>) -> Fingerprint {
        Fingerprint {
            gpu,
            harness_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("CLAIMBENCH_GIT_COMMIT").into(),
            host: host_name(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            started_at: chrono::Utc::now().to_rfc3339(),
            ..Default::default()
        }
    }

    /// Takes device and library versions from the first worker that reported them.
    pub fn complete_from(&mut self, hello: &Hello) {
        if self.device.is_some() {
            return;
        }
        self.device = Some(hello.device.clone());
        self.torch_version = Some(hello.versions.torch.clone());
        self.cudnn_version = hello.versions.cudnn;
        self.cuda_runtime_version = hello.versions.cuda_runtime;
        if self.gpu.is_none() {
            self.gpu = hello.gpu.clone();
        }
    }
}

/// This machine's host name, as run records give it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// One worker process and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub variant: String,
    pub process: u32,
    /// Written as [`RecordedStatus`].
    #[serde(with = "status_format")]
    pub status: Status,
    pub message: Option<String>,
    pub oom: Option<OomInfo>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: f64,
    pub samples: u32,
    pub hello: Option<Hello>,
    /// Warm-up calls made, and whether the settle rule was met before `warmup_max`.
    pub warmup_calls: Option<u32>,
    pub warmup_settled: Option<bool>,
    /// Why measured calls stopped.
    pub stop: Option<StopInfo>,
    pub warnings: Vec<String>,
    /// Relative to the run directory.
    pub log_file: String,
    /// Where the process ran (absent in records written before placement was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// The host and GPU one worker process ran on, and when it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub host: String,
    /// `CUDA_VISIBLE_DEVICES` as the worker got it: its `--gpus` entry, else the parent's
    /// (`None` when unset). The worker's `hello.gpu` names the device itself (UUID).
    pub gpu: Option<String>,
    /// RFC 3339 with milliseconds: with several GPUs, which processes ran side by side.
    pub started_at: String,
}

/// One job of a shard: a process of a variant of a suite.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardJob {
    pub suite: String,
    pub variant: String,
    pub process: u32,
}

/// What a shard of a run (`run --shard I/N`) was asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// From 0.
    pub index: u32,
    pub count: u32,
    /// SHA-256 of the plans every shard of the run shares (`runner::shard::plan_hash`).
    pub plan_hash: String,
    /// Where the per-variant costs that balanced the shards came from.
    pub costs: String,
    /// The jobs assigned to this shard, in execution order.
    pub jobs: Vec<ShardJob>,
}

/// The shards a merged record was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedFrom {
    pub plan_hash: String,
    pub count: u32,
    pub shards: Vec<MergedShard>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedShard {
    pub index: u32,
    /// The shard's run id and host.
    pub run: String,
    pub host: String,
    /// Why the shard is incomplete, when it is (merged with `--allow-incomplete`).
    pub incomplete: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteRecord {
    pub plan: Plan,
    /// Relative to the run directory.
    pub manifest_file: String,
    pub processes: Vec<ProcessRecord>,
    /// What adaptive replication did, when the plan asked for it.
    #[serde(default)]
    pub adaptive: Option<AdaptiveRecord>,
}

// Records may hold thousands of variants and processes and millions of rows: per-variant work
// takes its processes and rows from these maps, built in one pass, rather than scanning the
// whole record for every variant.
impl SuiteRecord {
    /// Each variant's processes, in record order.
    pub fn processes_by_variant(&self) -> HashMap<&str, Vec<&ProcessRecord>> {
        let mut out: HashMap<&str, Vec<&ProcessRecord>> = HashMap::new();
        for p in &self.processes {
            out.entry(p.variant.as_str()).or_default().push(p);
        }
        out
    }

    /// Each variant's measured rows (warm-up calls left out) from processes that ended ok, in
    /// file order.
    pub fn measured_rows<'s>(
        &self,
        samples: &'s [super::SampleRow],
    ) -> HashMap<&'s str, Vec<&'s super::SampleRow>> {
        let ok: HashSet<(&str, u32)> = self
            .processes
            .iter()
            .filter(|p| p.status == Status::Ok)
            .map(|p| (p.variant.as_str(), p.process))
            .collect();
        let mut out: HashMap<&str, Vec<&super::SampleRow>> = HashMap::new();
        for row in samples {
            if row.suite == self.plan.suite
                && !row.warmup
                && ok.contains(&(row.variant.as_str(), row.process))
            {
                out.entry(row.variant.as_str()).or_default().push(row);
            }
        }
        out
    }
}

/// The outcome of adding processes until each variant's interval was narrow enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveRecord {
    /// Worker wall-clock seconds allowed for extra processes.
    pub budget_s: f64,
    pub spent_s: f64,
    pub budget_exhausted: bool,
    pub variants: Vec<AdaptiveVariant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveVariant {
    pub variant: String,
    /// Processes run in total.
    pub processes: u32,
    /// Relative width of the process-level 95 % interval of the median at the end.
    pub relative_ci: Option<f64>,
    /// `precise`, `processes_max reached`, `budget spent`, or `no precision target`.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format_version: String,
    pub id: String,
    pub fingerprint: Fingerprint,
    pub command: Vec<String>,
    /// Set when the run reached its end (stopped by a signal or not). A record without it was
    /// cut short: its recording process was killed, or failed (an I/O error).
    pub finished_at: Option<String>,
    pub interrupted: bool,
    /// The signal that stopped the run (`SIGINT`, `SIGTERM`, `SIGHUP`), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<String>,
    pub suites: Vec<SuiteRecord>,
    /// Set on a shard's record: which part of the plans it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Set on a record made by `claimbench merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<MergedFrom>,
}

impl RunRecord {
    /// Why the run is incomplete, or `None` when it ran to its end: a run stopped by a signal,
    /// or one whose recording process died before writing `finished_at`.
    pub fn incomplete(&self) -> Option<String> {
        if self.interrupted {
            Some(match &self.interrupted_by {
                Some(signal) => format!("it was interrupted by {signal}"),
                None => "it was interrupted".into(),
            })
        } else if self.finished_at.is_none() {
            Some(
                "it never finished (no `finished_at`: the recording process was killed or failed)"
                    .into(),
            )
        } else {
            None
        }
    }
}

/// The worker's environment once its knobs were applied (`hello` in `run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Worker protocol version the worker spoke.
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
    /// Device memory held outside the allocator when the budget was applied.
    pub cuda_overhead_bytes: Option<u64>,
    /// Knobs that could not act here, and why.
    pub not_applicable: Vec<String>,
    /// The environment knobs' variables as the worker saw them.
    pub environment: BTreeMap<String, String>,
}

impl From<protocol::Hello> for Hello {
    fn from(h: protocol::Hello) -> Self {
        let protocol::Hello {
            protocol,
            pid,
            device,
            versions,
            gpu,
            backend_flags,
            memory_fraction,
            budget_bytes,
            cuda_overhead_bytes,
            not_applicable,
            environment,
        } = h;
        Hello {
            protocol,
            pid,
            device,
            versions,
            gpu,
            backend_flags,
            memory_fraction,
            budget_bytes,
            cuda_overhead_bytes,
            not_applicable,
            environment,
        }
    }
}

/// Memory state when an allocation failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OomInfo {
    /// Size of the failed request.
    pub requested_bytes: Option<u64>,
    /// Allocator state right after the failure.
    pub allocated_bytes: Option<u64>,
    pub reserved_bytes: Option<u64>,
    pub budget_bytes: Option<u64>,
    /// Measured calls completed before the failure (0 = failed during set-up or warm-up).
    pub completed_calls: u32,
}

impl From<protocol::OomInfo> for OomInfo {
    fn from(o: protocol::OomInfo) -> Self {
        let protocol::OomInfo {
            requested_bytes,
            allocated_bytes,
            reserved_bytes,
            budget_bytes,
            completed_calls,
        } = o;
        OomInfo {
            requested_bytes,
            allocated_bytes,
            reserved_bytes,
            budget_bytes,
            completed_calls,
        }
    }
}

/// Why a worker stopped taking measured calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopInfo {
    /// `fixed`, `precise` or `max`.
    pub reason: String,
    /// Relative width of the 95 % interval of the median when the rule was checked.
    pub relative_ci: Option<f64>,
    /// CPU time, context switches and CPUs of the process over its measured calls (absent in
    /// records written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<crate::measure::host::HostUsage>,
}

impl From<protocol::StopInfo> for StopInfo {
    fn from(s: protocol::StopInfo) -> Self {
        let protocol::StopInfo {
            reason,
            relative_ci,
            host,
        } = s;
        StopInfo {
            reason,
            relative_ci,
            host,
        }
    }
}

/// How a worker process ended, as run records and baselines write it.
///
/// In memory the record keeps the protocol's [`Status`] (the verdicts match on it); on disk it
/// goes through this enum, so the protocol cannot rename or add an outcome in `run.json`
/// unnoticed: both conversions are exhaustive matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedStatus {
    Ok,
    Oom,
    Error,
    Crashed,
    Timeout,
    Interrupted,
    SpawnFailed,
}

impl From<Status> for RecordedStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Ok => RecordedStatus::Ok,
            Status::Oom => RecordedStatus::Oom,
            Status::Error => RecordedStatus::Error,
            Status::Crashed => RecordedStatus::Crashed,
            Status::Timeout => RecordedStatus::Timeout,
            Status::Interrupted => RecordedStatus::Interrupted,
            Status::SpawnFailed => RecordedStatus::SpawnFailed,
        }
    }
}

impl From<RecordedStatus> for Status {
    fn from(s: RecordedStatus) -> Self {
        match s {
            RecordedStatus::Ok => Status::Ok,
            RecordedStatus::Oom => Status::Oom,
            RecordedStatus::Error => Status::Error,
            RecordedStatus::Crashed => Status::Crashed,
            RecordedStatus::Timeout => Status::Timeout,
            RecordedStatus::Interrupted => Status::Interrupted,
            RecordedStatus::SpawnFailed => Status::SpawnFailed,
        }
    }
}

/// `#[serde(with)]` for a [`Status`] field written as [`RecordedStatus`].
pub(crate) mod status_format {
    use super::{RecordedStatus, Status};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(status: &Status, s: S) -> Result<S::Ok, S::Error> {
        RecordedStatus::from(*status).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        RecordedStatus::deserialize(d).map(Status::from)
    }
}

/// `#[serde(with)]` for a list of [`Status`] written as [`RecordedStatus`]es.
pub(crate) mod status_list_format {
    use super::{RecordedStatus, Status};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(statuses: &[Status], s: S) -> Result<S::Ok, S::Error> {
        let recorded: Vec<RecordedStatus> = statuses.iter().map(|&x| x.into()).collect();
        recorded.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Status>, D::Error> {
        Ok(Vec::<RecordedStatus>::deserialize(d)?
            .into_iter()
            .map(Status::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_written_as_before() {
        for status in [
            Status::Ok,
            Status::Oom,
            Status::Error,
            Status::Crashed,
            Status::Timeout,
            Status::Interrupted,
            Status::SpawnFailed,
        ] {
            let recorded = serde_json::to_string(&RecordedStatus::from(status)).unwrap();
            assert_eq!(recorded, format!("\"{}\"", status.as_str()));
            let back: RecordedStatus = serde_json::from_str(&recorded).unwrap();
            assert_eq!(Status::from(back), status);
        }
    }
}
