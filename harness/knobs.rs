//! Backend knobs a scenario can set: the resolved values a worker applies before it runs a
//! workload. Parsing and defaults-merging live in [`crate::manifest`]; applying them lives in
//! [`crate::worker`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Element type of weights and activations (diffusers' `torch_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    Fp32,
    Fp16,
    Bf16,
}

impl Dtype {
    pub const ALL: [Dtype; 3] = [Dtype::Fp32, Dtype::Fp16, Dtype::Bf16];

    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Fp16 => "fp16",
            Dtype::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `torch.use_deterministic_algorithms(mode, warn_only=…)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeterministicAlgorithms {
    #[default]
    Off,
    On,
    WarnOnly,
}

impl DeterministicAlgorithms {
    pub fn as_str(self) -> &'static str {
        match self {
            DeterministicAlgorithms::Off => "off",
            DeterministicAlgorithms::On => "on",
            DeterministicAlgorithms::WarnOnly => "warn-only",
        }
    }
}

/// Which device the worker runs on. `auto` picks CUDA when libtorch sees a GPU, else CPU; the
/// device actually used is always recorded, never silently substituted for an explicit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cuda,
    Cpu,
}

/// The fully resolved knob set of one variant. Defaults equal PyTorch's own defaults, so a
/// manifest only states what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knobs {
    /// `torch.backends.cudnn.enabled`
    pub cudnn_enabled: bool,
    /// `torch.backends.cudnn.benchmark`
    pub cudnn_benchmark: bool,
    /// `torch.backends.cudnn.deterministic`
    pub cudnn_deterministic: bool,
    /// `torch.use_deterministic_algorithms`
    pub deterministic_algorithms: DeterministicAlgorithms,
    /// `torch.backends.cuda.matmul.allow_tf32` (PyTorch default: off)
    pub tf32_matmul: bool,
    /// `torch.backends.cudnn.allow_tf32` (PyTorch default: on)
    pub tf32_cudnn: bool,
    /// Weights and activations dtype.
    pub dtype: Dtype,
    /// Environment variables set in the worker before CUDA initialises.
    pub env: BTreeMap<String, String>,
    /// `torch.cuda.empty_cache()` after every stage of the workload.
    pub empty_cache_between_stages: bool,
    /// Emulated card size: the caching allocator's per-process memory fraction is set to
    /// `budget / total device memory`, so allocations beyond it fail with an OOM.
    pub vram_budget_gib: Option<f64>,
    /// Device selection.
    pub device: DeviceChoice,
    /// `torch.compile(mode=…)`, as the notes use it. libtorch has no TorchDynamo, so the worker
    /// records it as not applicable instead of silently ignoring it.
    #[serde(default)]
    pub torch_compile: Option<CompileMode>,
}

/// `torch.compile` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompileMode {
    Default,
    ReduceOverhead,
    MaxAutotune,
}

impl CompileMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CompileMode::Default => "default",
            CompileMode::ReduceOverhead => "reduce-overhead",
            CompileMode::MaxAutotune => "max-autotune",
        }
    }
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            cudnn_enabled: true,
            cudnn_benchmark: false,
            cudnn_deterministic: false,
            deterministic_algorithms: DeterministicAlgorithms::Off,
            tf32_matmul: false,
            tf32_cudnn: true,
            dtype: Dtype::Fp32,
            env: BTreeMap::new(),
            empty_cache_between_stages: false,
            vram_budget_gib: None,
            device: DeviceChoice::Auto,
            torch_compile: None,
        }
    }
}
