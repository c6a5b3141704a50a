//! Backend knobs a scenario can set: the resolved values a worker applies before it runs a
//! workload. Each knob is declared once, as a row of [`registry::KNOBS`] (its manifest name,
//! how it is written, whether it acts on CPU, and how to read and write it on [`Knobs`]); the
//! manifest parser, `claimbench check`, the worker's applicability report and the comparison of
//! two configurations ([`registry::differences`]) all iterate that table. Applying a knob lives
//! in [`crate::worker`].
//!
//! Adding a knob: a field on [`Knobs`] (with its default), a row in [`registry::KNOBS`], its
//! application in the worker, and a line in the README's knob list.

pub mod registry;

pub use registry::{differences, Difference, KnobDef, KnobKind, KnobValue, KNOBS};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An enum spelt one way in manifests, records and messages: `as_str` is the spelling and
/// `ALL` the values in the order they are listed in hints; parsing is derived from both.
pub trait Spelled: Copy + PartialEq + Sized + 'static {
    const ALL: &'static [Self];

    fn as_str(self) -> &'static str;

    /// The value spelt `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == name)
    }

    /// Every spelling, in `ALL` order.
    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.as_str()).collect()
    }
}

/// Implements [`Spelled`] through the enum's inherent `as_str` (inherent methods take
/// precedence, so this does not recurse) and its `ALL` list.
macro_rules! spelled {
    ($ty:ty) => {
        impl $crate::knobs::Spelled for $ty {
            const ALL: &'static [Self] = &<$ty>::ALL;
            fn as_str(self) -> &'static str {
                <$ty>::as_str(self)
            }
        }
    };
}
pub(crate) use spelled;

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
    pub const ALL: [DeterministicAlgorithms; 3] = [
        DeterministicAlgorithms::Off,
        DeterministicAlgorithms::On,
        DeterministicAlgorithms::WarnOnly,
    ];

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

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Auto, DeviceChoice::Cuda, DeviceChoice::Cpu];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Cpu => "cpu",
        }
    }
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
    /// `torch.autocast(device_type, dtype)` on the worker's device.
    #[serde(default, skip_serializing_if = "Autocast::is_off")]
    pub autocast: Autocast,
}

/// `torch.autocast(device_type, dtype)` around each call of the workload: eligible ops
/// (matmul, linear, convolution, …) run in the lower precision while weights keep `dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Autocast {
    #[default]
    Off,
    Fp16,
    Bf16,
}

impl Autocast {
    pub const ALL: [Autocast; 3] = [Autocast::Off, Autocast::Fp16, Autocast::Bf16];

    pub fn as_str(self) -> &'static str {
        match self {
            Autocast::Off => "off",
            Autocast::Fp16 => "fp16",
            Autocast::Bf16 => "bf16",
        }
    }

    /// Off (the default, left out of records so their configuration hashes stay the same).
    pub fn is_off(&self) -> bool {
        *self == Autocast::Off
    }
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
    pub const ALL: [CompileMode; 3] = [
        CompileMode::Default,
        CompileMode::ReduceOverhead,
        CompileMode::MaxAutotune,
    ];

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
            autocast: Autocast::Off,
        }
    }
}

spelled!(Dtype);
spelled!(DeterministicAlgorithms);
spelled!(DeviceChoice);
spelled!(CompileMode);
spelled!(Autocast);
