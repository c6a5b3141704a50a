//! The knob registry: one row per knob. A row names the knob as manifests write it, says how
//! its value is written ([`KnobKind`]), whether it can act without CUDA, and reads and writes
//! it on [`Knobs`] as a [`KnobValue`], whose text is the manifest spelling. Everything that
//! lists knobs iterates [`KNOBS`]: the manifest parser (keys, did-you-mean lists, matrix axes),
//! `claimbench check`, the worker's "not applicable" report, and [`differences`], which both
//! the regression gate and the claims use to say what sets two configurations apart.

use super::{Autocast, CompileMode, DeterministicAlgorithms, DeviceChoice, Dtype, Knobs, Spelled};
use crate::plan::ParamValue;
use std::collections::BTreeMap;
use std::fmt;

/// How a knob is written in a manifest.
#[derive(Debug, Clone, Copy)]
pub enum KnobKind {
    /// `true` or `false`.
    Flag,
    /// One of `names()`. `misspellings` are (lowercase guess, hint) pairs for guesses whose
    /// nearest spelling would mislead (`gpu` is closest to `cpu`).
    Choice {
        names: fn() -> Vec<&'static str>,
        misspellings: &'static [(&'static str, &'static str)],
    },
    /// `false` (off), `true` (the `on` choice) or one of `names()`; `expected` and `hint` word
    /// the error for any other type.
    FlagOrChoice {
        names: fn() -> Vec<&'static str>,
        on: &'static str,
        expected: &'static str,
        hint: &'static str,
    },
    /// A finite number greater than 0.
    Positive,
    /// A table of environment variables (`NAME = "value"`).
    EnvVars,
}

/// A knob's value, as the manifest spells it.
#[derive(Debug, Clone, PartialEq)]
pub enum KnobValue {
    Flag(bool),
    Choice(&'static str),
    Number(f64),
    /// Not set (a knob whose default is "none", like `vram_budget_gib`).
    Unset,
    /// `env`: variable → value.
    Vars(BTreeMap<String, String>),
}

impl KnobValue {
    /// The value's entries as (suffix of the knob name, text): one entry for a single value,
    /// none when unset, one per variable (`.NAME`) for `env`.
    pub fn entries(&self) -> Vec<(String, String)> {
        let one = |text: String| vec![(String::new(), text)];
        match self {
            KnobValue::Flag(b) => one(b.to_string()),
            KnobValue::Choice(s) => one(s.to_string()),
            KnobValue::Number(x) => one(x.to_string()),
            KnobValue::Unset => Vec::new(),
            KnobValue::Vars(vars) => vars
                .iter()
                .map(|(name, value)| (format!(".{name}"), value.clone()))
                .collect(),
        }
    }

    /// The text of a single value (a matrix cell's label); a variable's value for `env`.
    pub fn label(&self) -> String {
        self.entries()
            .into_iter()
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn choice<T: Spelled>(&self) -> Option<T> {
        match self {
            KnobValue::Choice(name) => T::from_name(name),
            _ => None,
        }
    }

    fn flag(&self) -> Option<bool> {
        match self {
            KnobValue::Flag(b) => Some(*b),
            _ => None,
        }
    }
}

/// One knob.
#[derive(Debug, Clone, Copy)]
pub struct KnobDef {
    /// As written below `knobs` in a manifest: `cudnn.enabled`, `dtype`, `env`.
    pub name: &'static str,
    pub kind: KnobKind,
    /// Acts only on CUDA: a worker on CPU records it as not applicable when it is set.
    pub cuda_only: bool,
    pub get: fn(&Knobs) -> KnobValue,
    /// Applies a value read by the manifest parser (for `env`: adds the variables).
    pub set: fn(&mut Knobs, &KnobValue),
}

impl KnobDef {
    /// Whether `knobs` sets this knob to something other than its default.
    pub fn is_changed(&self, knobs: &Knobs) -> bool {
        (self.get)(knobs) != (self.get)(&Knobs::default())
    }
}

/// Every knob, in the order manifests list them (hints and matrix axes use this order).
pub static KNOBS: &[KnobDef] = &[
    KnobDef {
        name: "cudnn.enabled",
        kind: KnobKind::Flag,
        cuda_only: true,
        get: |k| KnobValue::Flag(k.cudnn_enabled),
        set: |k, v| k.cudnn_enabled = v.flag().unwrap_or(k.cudnn_enabled),
    },
    KnobDef {
        name: "cudnn.benchmark",
        kind: KnobKind::Flag,
        cuda_only: true,
        get: |k| KnobValue::Flag(k.cudnn_benchmark),
        set: |k, v| k.cudnn_benchmark = v.flag().unwrap_or(k.cudnn_benchmark),
    },
    KnobDef {
        name: "cudnn.deterministic",
        kind: KnobKind::Flag,
        cuda_only: true,
        get: |k| KnobValue::Flag(k.cudnn_deterministic),
        set: |k, v| k.cudnn_deterministic = v.flag().unwrap_or(k.cudnn_deterministic),
    },
    KnobDef {
        name: "deterministic_algorithms",
        kind: KnobKind::Choice {
            names: DeterministicAlgorithms::names,
            misspellings: &[],
        },
        cuda_only: false,
        get: |k| KnobValue::Choice(k.deterministic_algorithms.as_str()),
        set: |k, v| {
            k.deterministic_algorithms = v.choice().unwrap_or(k.deterministic_algorithms);
        },
    },
    KnobDef {
        name: "tf32.matmul",
        kind: KnobKind::Flag,
        cuda_only: true,
        get: |k| KnobValue::Flag(k.tf32_matmul),
        set: |k, v| k.tf32_matmul = v.flag().unwrap_or(k.tf32_matmul),
    },
    KnobDef {
        name: "tf32.cudnn",
        kind: KnobKind::Flag,
        cuda_only: true,
        get: |k| KnobValue::Flag(k.tf32_cudnn),
        set: |k, v| k.tf32_cudnn = v.flag().unwrap_or(k.tf32_cudnn),
    },
    KnobDef {
        name: "dtype",
        kind: KnobKind::Choice {
            names: Dtype::names,
            misspellings: &[],
        },
        cuda_only: false,
        get: |k| KnobValue::Choice(k.dtype.as_str()),
        set: |k, v| k.dtype = v.choice().unwrap_or(k.dtype),
    },
    KnobDef {
        name: "empty_cache",
        kind: KnobKind::Flag,
        cuda_only: true,
        get: |k| KnobValue::Flag(k.empty_cache_between_stages),
        set: |k, v| {
            k.empty_cache_between_stages = v.flag().unwrap_or(k.empty_cache_between_stages);
        },
    },
    KnobDef {
        name: "vram_budget_gib",
        kind: KnobKind::Positive,
        cuda_only: true,
        get: |k| {
            k.vram_budget_gib
                .map_or(KnobValue::Unset, KnobValue::Number)
        },
        set: |k, v| {
            if let KnobValue::Number(gib) = v {
                k.vram_budget_gib = Some(*gib);
            }
        },
    },
    KnobDef {
        name: "device",
        kind: KnobKind::Choice {
            names: DeviceChoice::names,
            misspellings: &[("gpu", "the GPU is `cuda`")],
        },
        cuda_only: false,
        get: |k| KnobValue::Choice(k.device.as_str()),
        set: |k, v| k.device = v.choice().unwrap_or(k.device),
    },
    KnobDef {
        name: "compile",
        kind: KnobKind::FlagOrChoice {
            names: CompileMode::names,
            on: "default",
            expected: "a boolean or a mode string",
            hint: "write `compile = true` or `compile = \"reduce-overhead\"`",
        },
        cuda_only: false,
        get: |k| {
            k.torch_compile
                .map_or(KnobValue::Flag(false), |m| KnobValue::Choice(m.as_str()))
        },
        set: |k, v| k.torch_compile = v.choice(),
    },
    KnobDef {
        name: "autocast",
        kind: KnobKind::Choice {
            names: Autocast::names,
            misspellings: &[],
        },
        cuda_only: false,
        get: |k| KnobValue::Choice(k.autocast.as_str()),
        set: |k, v| k.autocast = v.choice().unwrap_or(k.autocast),
    },
    KnobDef {
        name: "env",
        kind: KnobKind::EnvVars,
        cuda_only: false,
        get: |k| KnobValue::Vars(k.env.clone()),
        set: |k, v| {
            if let KnobValue::Vars(vars) = v {
                k.env
                    .extend(vars.iter().map(|(n, x)| (n.clone(), x.clone())));
            }
        },
    },
];

/// The knob named `name` (manifest spelling, below `knobs`).
pub fn knob(name: &str) -> Option<&'static KnobDef> {
    KNOBS.iter().find(|k| k.name == name)
}

/// Knobs that differ from the defaults, as `name=value` in manifest spelling: on/off flags
/// first, then the knobs with values, each group in [`KNOBS`] order.
pub fn changes_from_default(knobs: &Knobs) -> Vec<String> {
    let default = Knobs::default();
    let flags_first = KNOBS
        .iter()
        .filter(|k| matches!(k.kind, KnobKind::Flag))
        .chain(KNOBS.iter().filter(|k| !matches!(k.kind, KnobKind::Flag)));
    let mut out = Vec::new();
    for def in flags_first {
        let unchanged = (def.get)(&default).entries();
        for (suffix, text) in (def.get)(knobs).entries() {
            if !unchanged.contains(&(suffix.clone(), text.clone())) {
                out.push(format!("{}{suffix}={text}", def.name));
            }
        }
    }
    out
}

/// Knobs that `knobs` sets but that act on CUDA only, for a worker that runs on CPU.
pub fn cuda_only_changes(knobs: &Knobs) -> Vec<&'static str> {
    KNOBS
        .iter()
        .filter(|k| k.cuda_only && k.is_changed(knobs))
        .map(|k| k.name)
        .collect()
}

/// One setting in which two configurations differ; `None` is unset.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Manifest spelling: `workload`, `cudnn.enabled`, `env.CUBLAS_WORKSPACE_CONFIG`,
    /// `params.ms`.
    pub setting: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl fmt::Display for Difference {
    /// `cudnn.enabled: true → false`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "unset".into());
        write!(
            f,
            "{}: {} → {}",
            self.setting,
            show(&self.old),
            show(&self.new)
        )
    }
}

/// What sets configuration `b` apart from `a`: the workload, then the knobs in [`KNOBS`]
/// order, then the parameters by name. Parameter values are shown as JSON (`20.0`, `"tiny"`).
pub fn differences(
    a: (&str, &BTreeMap<String, ParamValue>, &Knobs),
    b: (&str, &BTreeMap<String, ParamValue>, &Knobs),
) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut compare = |setting: String, old: Option<String>, new: Option<String>| {
        if old != new {
            out.push(Difference { setting, old, new });
        }
    };
    if a.0 != b.0 {
        compare("workload".into(), Some(a.0.into()), Some(b.0.into()));
    }
    for def in KNOBS {
        let (old, new) = ((def.get)(a.2).entries(), (def.get)(b.2).entries());
        let mut suffixes: Vec<&String> = old.iter().chain(&new).map(|(s, _)| s).collect();
        suffixes.sort();
        suffixes.dedup();
        let text = |entries: &[(String, String)], suffix: &String| {
            entries
                .iter()
                .find(|(s, _)| s == suffix)
                .map(|(_, t)| t.clone())
        };
        for suffix in suffixes {
            compare(
                format!("{}{suffix}", def.name),
                text(&old, suffix),
                text(&new, suffix),
            );
        }
    }
    let json = |v: Option<&ParamValue>| v.map(|v| serde_json::json!(v).to_string());
    let names: std::collections::BTreeSet<&String> = a.1.keys().chain(b.1.keys()).collect();
    for name in names {
        compare(
            format!("params.{name}"),
            json(a.1.get(name)),
            json(b.1.get(name)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_knob_reads_back_what_it_sets() {
        for def in KNOBS {
            let mut knobs = Knobs::default();
            let value = (def.get)(&knobs);
            (def.set)(&mut knobs, &value);
            assert_eq!((def.get)(&knobs), value, "{}", def.name);
            assert!(!def.is_changed(&knobs), "{}", def.name);
        }
        assert_eq!(KNOBS.iter().filter(|k| k.name == "env").count(), 1);
    }

    #[test]
    fn differences_name_knobs_as_manifests_do() {
        let a = Knobs::default();
        let mut b = Knobs {
            empty_cache_between_stages: true,
            torch_compile: Some(CompileMode::ReduceOverhead),
            vram_budget_gib: Some(8.0),
            ..Knobs::default()
        };
        b.env.insert("X".into(), "1".into());
        let params = BTreeMap::from([("ms".to_string(), ParamValue::Float(20.0))]);
        let more = BTreeMap::from([("ms".to_string(), ParamValue::Float(30.0))]);
        let shown: Vec<String> = differences(("w", &params, &a), ("w", &more, &b))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "empty_cache: false → true",
                "vram_budget_gib: unset → 8",
                "compile: false → reduce-overhead",
                "env.X: unset → 1",
                "params.ms: 20.0 → 30.0",
            ]
        );
        assert_eq!(cuda_only_changes(&b), ["empty_cache", "vram_budget_gib"]);
    }
}
