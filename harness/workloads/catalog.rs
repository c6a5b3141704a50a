//! The workloads a manifest can name and the parameters each accepts. Kept free of tch so that
//! manifests can be validated (`claimbench check`) without touching libtorch.

use crate::plan::ParamValue;

/// The type a parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    /// A string from a fixed set.
    Choice(&'static [&'static str]),
}

/// One parameter of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub default: DefaultValue,
    pub doc: &'static str,
}

/// `ParamValue` cannot be built in a `const`; this mirror can.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
}

impl DefaultValue {
    pub fn to_value(self) -> ParamValue {
        match self {
            DefaultValue::Int(i) => ParamValue::Int(i),
            DefaultValue::Float(x) => ParamValue::Float(x),
            DefaultValue::Bool(b) => ParamValue::Bool(b),
            DefaultValue::Str(s) => ParamValue::Str(s.to_string()),
        }
    }
}

/// A workload as manifests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    pub id: &'static str,
    pub summary: &'static str,
    /// Fault-injection workloads exist to test the harness itself.
    pub test_only: bool,
    pub params: &'static [ParamSpec],
}

impl WorkloadSpec {
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

const fn int(name: &'static str, default: i64, min: i64, max: i64, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Int { min, max },
        default: DefaultValue::Int(default),
        doc,
    }
}

const fn float(
    name: &'static str,
    default: f64,
    min: f64,
    max: f64,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Float { min, max },
        default: DefaultValue::Float(default),
        doc,
    }
}

const fn boolean(name: &'static str, default: bool, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Bool,
        default: DefaultValue::Bool(default),
        doc,
    }
}

const fn choice(
    name: &'static str,
    default: &'static str,
    options: &'static [&'static str],
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Choice(options),
        default: DefaultValue::Str(default),
        doc,
    }
}

/// Every workload the worker can run.
pub const WORKLOADS: &[WorkloadSpec] = &[
    WorkloadSpec {
        id: "conv_stack",
        summary:
            "conv → GroupNorm → SiLU blocks with a self-attention block: cuDNN- and dtype-sensitive",
        test_only: false,
        params: &[
            int("batch", 8, 1, 4096, "images per call"),
            int("in_channels", 4, 1, 4096, "input channels"),
            int(
                "channels",
                128,
                8,
                8192,
                "channels of every block (a multiple of groups)",
            ),
            int(
                "resolution",
                64,
                8,
                8192,
                "input height and width in pixels",
            ),
            int(
                "blocks",
                4,
                1,
                256,
                "number of conv → GroupNorm → SiLU blocks",
            ),
            int("groups", 32, 1, 1024, "GroupNorm groups"),
            boolean(
                "attention",
                true,
                "append a single-head self-attention block over the pixels",
            ),
            int(
                "seed",
                0,
                0,
                i64::MAX,
                "seed of the random weights and input",
            ),
        ],
    },
    WorkloadSpec {
        id: "matmul",
        summary: "one (m×k)·(k×n) matrix product: a reference op with exactly known memory",
        test_only: false,
        params: &[
            int("m", 4096, 1, 1 << 20, "rows of the left operand"),
            int("k", 4096, 1, 1 << 20, "inner dimension"),
            int("n", 4096, 1, 1 << 20, "columns of the right operand"),
            int("seed", 0, 0, i64::MAX, "seed of the random operands"),
        ],
    },
    WorkloadSpec {
        id: "sleep",
        summary: "sleeps a fixed time per call: a deterministic workload for testing the gate",
        test_only: true,
        params: &[
            float("ms", 10.0, 0.0, 3_600_000.0, "milliseconds per call"),
            int(
                "stages",
                1,
                1,
                64,
                "the sleep is split evenly over this many stages",
            ),
        ],
    },
    WorkloadSpec {
        id: "fault",
        summary: "fault injection for testing the harness: abort, hang, exit, panic, or allocate",
        test_only: true,
        params: &[
            choice(
                "kind",
                "none",
                &["none", "abort", "hang", "exit", "panic", "alloc"],
                "what goes wrong",
            ),
            int(
                "after_calls",
                0,
                0,
                1 << 30,
                "measured calls that succeed before the fault",
            ),
            float(
                "alloc_gib",
                1.0,
                0.0,
                1048576.0,
                "size of the allocation for kind = \"alloc\"",
            ),
            int("exit_code", 3, 0, 255, "exit status for kind = \"exit\""),
        ],
    },
];

/// Looks a workload up by id.
pub fn workload(id: &str) -> Option<&'static WorkloadSpec> {
    WORKLOADS.iter().find(|w| w.id == id)
}
