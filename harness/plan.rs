//! The expanded, ordered list of work a run performs: one [`VariantPlan`] per variant (after
//! profile, variant and matrix expansion) and the [`Job`]s (variant × process) in execution
//! order. A plan is pure data, serialised into `run.json` and handed to each worker.

use crate::knobs::Knobs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Variants one plan may expand into (matrix cells included). A manifest is read whole into
/// memory, so these caps keep a typo (a 30-axis matrix, `processes = 4294967295`) from
/// exhausting memory before anything runs.
pub const MAX_VARIANTS: usize = 10_000;
/// Worker processes one variant may run (`processes_max`).
pub const MAX_PROCESSES: u32 = 1_000;
/// Worker processes one plan may run in all (variants × `processes_max`).
pub const MAX_JOBS: u64 = 100_000;

/// Longest suite or variant name a manifest may give: names become parts of file names (logs,
/// stored manifests, baselines), which most file systems cap at 255 bytes.
pub const MAX_NAME_LEN: usize = 100;

/// Makes a file-name-safe slug: lower-case ASCII letters, digits and dashes. Suite and variant
/// names are refused at load when two of them give the same slug (they would share files).
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// A workload parameter value as written in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => f.write_str(s),
        }
    }
}

/// Order in which the jobs of different variants are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// All processes of variant A, then all of B (AABB).
    Sequential,
    /// Round-robin over variants (ABAB), so slow drift (clocks, temperature) hits all alike.
    #[default]
    Interleaved,
    /// A seeded random permutation within each round.
    Shuffled,
}

impl Order {
    pub const ALL: [Order; 3] = [Order::Sequential, Order::Interleaved, Order::Shuffled];

    /// Manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Interleaved => "interleaved",
            Order::Shuffled => "shuffled",
        }
    }
}

crate::knobs::spelled!(Order);

/// Everything a worker needs to run one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantPlan {
    /// Unique within the plan, e.g. `cudnn-off` or `base/resolution=512,dtype=fp16`.
    pub name: String,
    /// Claim ids from the catalogue this variant serves (e.g. `H0-01`).
    pub claims: Vec<String>,
    /// Workload id (same for every variant of a suite).
    pub workload: String,
    /// Workload parameters after merging suite, profile, variant and matrix values.
    pub params: BTreeMap<String, ParamValue>,
    pub knobs: Knobs,
    /// From the manifest, for reports.
    pub description: Option<String>,
    /// Unmeasured calls before the measured ones, in each process (the minimum when `settle`
    /// is set).
    pub warmup: u32,
    /// Warm-up never exceeds this many calls, settled or not (`>= warmup`).
    pub warmup_max: u32,
    /// When warm-up may end early; `None`: exactly `warmup` calls.
    pub settle: Option<Settle>,
    /// Measured calls in each process (the minimum when `target_rel_ci` is set).
    pub repetitions: u32,
    /// Measured calls never exceed this many in one process (`>= repetitions`).
    pub repetitions_max: u32,
    /// Stop measuring (calls within a process, processes within a variant) once the 95 %
    /// interval of the median is narrower than this fraction of it.
    pub target_rel_ci: Option<f64>,
    /// Worker processes for this variant (the unit of replication); the minimum when adaptive.
    pub processes: u32,
    /// Processes never exceed this many (`>= processes`).
    pub processes_max: u32,
    /// Wall-clock limit for one worker process, start-up included.
    pub timeout_ms: u64,
}

impl VariantPlan {
    /// The settings in which `other` differs from this variant (workload, knobs, params), in
    /// manifest spelling; see [`crate::knobs::differences`].
    pub fn differences(&self, other: &VariantPlan) -> Vec<crate::knobs::Difference> {
        crate::knobs::differences(
            (&self.workload, &self.params, &self.knobs),
            (&other.workload, &other.params, &other.knobs),
        )
    }
}

/// Warm-up is settled once the last `window` calls lie within `tolerance` of their median
/// (max/min − 1 ≤ tolerance) and, where NVML reports it, the SM clock of each of them is at
/// least `min_clock_fraction` of the device's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Settle {
    pub window: u32,
    pub tolerance: f64,
    pub min_clock_fraction: f64,
}

impl Default for Settle {
    fn default() -> Self {
        Settle {
            window: 3,
            tolerance: 0.05,
            min_clock_fraction: 0.75,
        }
    }
}

/// How runs of this suite are compared with baselines (`[compare]` in a manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSettings {
    /// Significance level for the corrected p-value.
    pub alpha: f64,
    pub correction: crate::stats::Correction,
    /// Relative time change that matters (default 3 %).
    pub time_threshold: f64,
    /// Per-metric overrides of `time_threshold`, keyed by metric name (`wall_ms`,
    /// `stage_<name>_ms`, …).
    pub metric_thresholds: BTreeMap<String, f64>,
    /// Peak-memory tolerance: max(relative × baseline, absolute).
    pub memory_rel_tolerance: f64,
    pub memory_abs_tolerance_bytes: u64,
    /// The same for reserved memory, which grows in allocator segments. Records written
    /// before these existed load with the defaults, and the defaults are not written, so such
    /// records round-trip unchanged.
    #[serde(
        default = "default_reserved_rel_tolerance",
        skip_serializing_if = "is_default_reserved_rel_tolerance"
    )]
    pub reserved_rel_tolerance: f64,
    #[serde(
        default = "default_reserved_abs_tolerance_bytes",
        skip_serializing_if = "is_default_reserved_abs_tolerance_bytes"
    )]
    pub reserved_abs_tolerance_bytes: u64,
    /// The same for the host's peak resident set (`host_peak_rss_bytes`), which moves with
    /// page-cache and library loading, not only with the pipeline's own buffers.
    #[serde(
        default = "default_host_rss_rel_tolerance",
        skip_serializing_if = "is_default_host_rss_rel_tolerance"
    )]
    pub host_rss_rel_tolerance: f64,
    #[serde(
        default = "default_host_rss_abs_tolerance_bytes",
        skip_serializing_if = "is_default_host_rss_abs_tolerance_bytes"
    )]
    pub host_rss_abs_tolerance_bytes: u64,
}

fn default_host_rss_rel_tolerance() -> f64 {
    CompareSettings::DEFAULT_HOST_RSS_REL_TOLERANCE
}

fn default_host_rss_abs_tolerance_bytes() -> u64 {
    CompareSettings::DEFAULT_HOST_RSS_ABS_TOLERANCE_BYTES
}

fn is_default_host_rss_rel_tolerance(value: &f64) -> bool {
    *value == CompareSettings::DEFAULT_HOST_RSS_REL_TOLERANCE
}

fn is_default_host_rss_abs_tolerance_bytes(value: &u64) -> bool {
    *value == CompareSettings::DEFAULT_HOST_RSS_ABS_TOLERANCE_BYTES
}

fn default_reserved_rel_tolerance() -> f64 {
    CompareSettings::DEFAULT_RESERVED_REL_TOLERANCE
}

fn default_reserved_abs_tolerance_bytes() -> u64 {
    CompareSettings::DEFAULT_RESERVED_ABS_TOLERANCE_BYTES
}

fn is_default_reserved_rel_tolerance(value: &f64) -> bool {
    *value == CompareSettings::DEFAULT_RESERVED_REL_TOLERANCE
}

fn is_default_reserved_abs_tolerance_bytes(value: &u64) -> bool {
    *value == CompareSettings::DEFAULT_RESERVED_ABS_TOLERANCE_BYTES
}

impl CompareSettings {
    /// The defaults, here only; the regression verdict's `Thresholds` take them from here.
    /// Two-sided, corrected over the run: false regressions stay well under 1 % of runs, as
    /// the gate simulations in `verdict/simulation` check.
    pub const DEFAULT_ALPHA: f64 = 0.01;
    pub const DEFAULT_TIME_THRESHOLD: f64 = 0.03;
    pub const DEFAULT_MEMORY_REL_TOLERANCE: f64 = 0.01;
    pub const DEFAULT_MEMORY_ABS_TOLERANCE_BYTES: u64 = 16 << 20;
    /// The caching allocator reserves in 2 MiB and 20 MiB segments and cuDNN workspaces move
    /// reservations by tens of MiB: three segments and 2 % are noise, not a regression.
    pub const DEFAULT_RESERVED_REL_TOLERANCE: f64 = 0.02;
    pub const DEFAULT_RESERVED_ABS_TOLERANCE_BYTES: u64 = 64 << 20;
    /// Processes of one configuration on an H200 differed by up to 4 % in peak RSS (one
    /// process of six loaded 43 MiB more of the CUDA libraries); a Python worker on CPU by
    /// under 1 MiB.
    pub const DEFAULT_HOST_RSS_REL_TOLERANCE: f64 = 0.05;
    pub const DEFAULT_HOST_RSS_ABS_TOLERANCE_BYTES: u64 = 32 << 20;
}

impl Default for CompareSettings {
    fn default() -> Self {
        CompareSettings {
            alpha: Self::DEFAULT_ALPHA,
            correction: crate::stats::Correction::Holm,
            time_threshold: Self::DEFAULT_TIME_THRESHOLD,
            metric_thresholds: BTreeMap::new(),
            memory_rel_tolerance: Self::DEFAULT_MEMORY_REL_TOLERANCE,
            memory_abs_tolerance_bytes: Self::DEFAULT_MEMORY_ABS_TOLERANCE_BYTES,
            reserved_rel_tolerance: Self::DEFAULT_RESERVED_REL_TOLERANCE,
            reserved_abs_tolerance_bytes: Self::DEFAULT_RESERVED_ABS_TOLERANCE_BYTES,
            host_rss_rel_tolerance: Self::DEFAULT_HOST_RSS_REL_TOLERANCE,
            host_rss_abs_tolerance_bytes: Self::DEFAULT_HOST_RSS_ABS_TOLERANCE_BYTES,
        }
    }
}

/// One worker process to launch: `process` counts from 0 within its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub variant: usize,
    pub process: u32,
}

/// A resolved plan for one manifest and profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub suite: String,
    pub description: Option<String>,
    /// The suite that runs the built-in replicas of this suite's configurations (a suite of
    /// real pipeline code names it in `[suite] replica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Path of the manifest as given on the command line.
    pub manifest_path: String,
    /// SHA-256 of the manifest bytes, hex.
    pub manifest_sha256: String,
    pub profile: String,
    pub order: Order,
    /// Seed for shuffled order (and anything else random in scheduling).
    pub seed: u64,
    /// Worker wall-clock seconds the suite may spend on processes beyond each variant's
    /// minimum (adaptive replication); `None`: no extra processes.
    pub adaptive_budget_s: Option<f64>,
    pub compare: CompareSettings,
    pub variants: Vec<VariantPlan>,
    /// Jobs in execution order.
    pub jobs: Vec<Job>,
    /// The manifest's `[[claim]]`s, checked against this plan's variants (absent in records
    /// written before claims existed).
    #[serde(default)]
    pub claims: Vec<crate::claim::ClaimSpec>,
}

impl Plan {
    /// Keeps the variants whose name contains one of the comma-separated texts of `filter`
    /// (blank alternatives match nothing) and schedules the jobs again for what is left.
    pub fn retain_variants(&mut self, filter: &str) {
        let parts: Vec<&str> = filter
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect();
        self.variants
            .retain(|v| parts.iter().any(|part| v.name.contains(part)));
        self.jobs = Plan::schedule(&self.variants, self.order, self.seed);
    }

    /// Orders jobs for `variants` according to `order`: each variant gets `processes` jobs.
    pub fn schedule(variants: &[VariantPlan], order: Order, seed: u64) -> Vec<Job> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let rounds = variants.iter().map(|v| v.processes).max().unwrap_or(0);
        match order {
            Order::Sequential => variants
                .iter()
                .enumerate()
                .flat_map(|(variant, v)| {
                    (0..v.processes).map(move |process| Job { variant, process })
                })
                .collect(),
            Order::Interleaved | Order::Shuffled => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let mut jobs = Vec::new();
                for process in 0..rounds {
                    let mut round: Vec<Job> = variants
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| process < v.processes)
                        .map(|(variant, _)| Job { variant, process })
                        .collect();
                    if order == Order::Shuffled {
                        round.shuffle(&mut rng);
                    }
                    jobs.extend(round);
                }
                jobs
            }
        }
    }
}
