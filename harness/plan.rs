//! The expanded, ordered list of work a run performs: one [`VariantPlan`] per variant (after
//! profile, variant and matrix expansion) and the [`Job`]s (variant × process) in execution
//! order. A plan is pure data, serialised into `run.json` and handed to each worker.

use crate::knobs::Knobs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

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
    /// Unmeasured calls before the measured ones, in each process.
    pub warmup: u32,
    /// Measured calls in each process.
    pub repetitions: u32,
    /// Worker processes for this variant (the unit of replication).
    pub processes: u32,
    /// Wall-clock limit for one worker process, start-up included.
    pub timeout_ms: u64,
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
    /// Path of the manifest as given on the command line.
    pub manifest_path: String,
    /// SHA-256 of the manifest bytes, hex.
    pub manifest_sha256: String,
    pub profile: String,
    pub order: Order,
    /// Seed for shuffled order (and anything else random in scheduling).
    pub seed: u64,
    pub variants: Vec<VariantPlan>,
    /// Jobs in execution order.
    pub jobs: Vec<Job>,
}

impl Plan {
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
