//! Stored baselines, one file per suite and fingerprint key (placed by [`super::Results`]),
//! written only on request (`claimbench baseline save|accept`). A baseline keeps every measured value of every variant,
//! grouped by process, so a comparison can use the same statistics as a run-to-run one.
//!
//! The key names what makes timings comparable: GPU model, driver, CUDA, cuDNN and torch
//! versions, and the manifest profile the run used (a `quick` run is never compared with a
//! `nightly` baseline). Comparing across keys is refused unless the user insists. Each variant
//! also carries a hash of its configuration ([`config_hash`]); the gate does not compare a
//! variant whose configuration changed unless asked to.

use super::{slug, Fingerprint, RunRecord, SampleRow, StoreError, FORMAT_VERSION};
use crate::knobs::Knobs;
use crate::plan::{ParamValue, Settle, VariantPlan};
use crate::worker::protocol::Status;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The hardware, software and profile a baseline is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineKey {
    pub gpu: String,
    pub driver: String,
    pub cuda: String,
    pub cudnn: String,
    pub torch: String,
    /// The manifest profile of the run (`nightly`, `quick`, `cpu`, `base`); empty in baselines
    /// written before the profile was part of the key, which match no run.
    #[serde(default)]
    pub profile: String,
}

impl BaselineKey {
    /// The key of a run's suite planned with `profile`.
    pub fn of(f: &Fingerprint, profile: &str) -> BaselineKey {
        let unknown = || "unknown".to_string();
        let (gpu, driver) = match &f.gpu {
            Some(g) => (g.name.clone(), g.driver_version.clone()),
            None if f.device.as_deref() == Some("cpu") => ("cpu".into(), "none".into()),
            None => (unknown(), unknown()),
        };
        BaselineKey {
            gpu,
            driver,
            cuda: f
                .cuda_runtime_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into()),
            cudnn: f
                .cudnn_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into()),
            torch: f.torch_version.clone().unwrap_or_else(unknown),
            profile: profile.to_string(),
        }
    }

    /// The profile as shown to users: baselines from before profiles were recorded say so.
    pub fn profile_shown(&self) -> &str {
        if self.profile.is_empty() {
            "unrecorded"
        } else {
            &self.profile
        }
    }

    /// Folder of the baselines of this key, relative to `baselines/`: the software stack, then
    /// the profile, e.g. `nvidia-h100-80gb-hbm3_driver-580-159-04_cuda-13000_cudnn-91900_torch-2-11-0/nightly`.
    pub fn dir_name(&self) -> String {
        format!("{}/{}", self.stack_name(), slug(self.profile_shown()))
    }

    /// The software-stack part of the folder name (everything but the profile), which is also
    /// the whole folder name of baselines stored before profiles were part of the key.
    pub fn stack_name(&self) -> String {
        format!(
            "{}_driver-{}_cuda-{}_cudnn-{}_torch-{}",
            slug(&self.gpu),
            slug(&self.driver),
            slug(&self.cuda),
            slug(&self.cudnn),
            slug(&self.torch)
        )
    }

    /// The fields in which `other` differs, as `field: ours ≠ theirs`.
    pub fn differences(&self, other: &BaselineKey) -> Vec<String> {
        let pairs = [
            ("GPU", &self.gpu, &other.gpu),
            ("driver", &self.driver, &other.driver),
            ("CUDA", &self.cuda, &other.cuda),
            ("cuDNN", &self.cudnn, &other.cudnn),
            ("torch", &self.torch, &other.torch),
            (
                "profile",
                &self.profile_shown().to_string(),
                &other.profile_shown().to_string(),
            ),
        ];
        pairs
            .iter()
            .filter(|(_, a, b)| a != b)
            .map(|(name, a, b)| format!("{name}: {a} ≠ {b}"))
            .collect()
    }
}

/// Measured values of one metric, one inner vector per process.
pub type ProcessValues = Vec<Vec<f64>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineVariant {
    pub name: String,
    /// What the variant ran, so a comparison can say what changed since.
    pub workload: String,
    pub params: BTreeMap<String, ParamValue>,
    pub knobs: Knobs,
    /// The warm-up settings the variant ran with (absent in baselines written before they
    /// were part of the configuration).
    #[serde(default)]
    pub warmup: Option<WarmupSettings>,
    /// [`config_hash`] of the variant.
    pub config_sha256: String,
    /// Worker outcomes (`ok`, `oom`, …), one per process.
    #[serde(with = "super::status_list_format")]
    pub outcomes: Vec<Status>,
    /// Metric name (`wall_ms`, `peak_allocated_bytes`, `stage_<name>_ms`, …) → values.
    pub metrics: BTreeMap<String, ProcessValues>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub format_version: String,
    pub key: BaselineKey,
    pub suite: String,
    /// Run this baseline was made from.
    pub source_run: String,
    pub source_commit: String,
    pub created_at: String,
    pub variants: Vec<BaselineVariant>,
}

/// The warm-up settings of a variant: they decide in which state the measured calls find
/// the process (caches, autotuning, clocks), so they are part of its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupSettings {
    pub warmup: u32,
    pub warmup_max: u32,
    pub settle: Option<Settle>,
}

impl WarmupSettings {
    pub fn of(v: &VariantPlan) -> WarmupSettings {
        WarmupSettings {
            warmup: v.warmup,
            warmup_max: v.warmup_max,
            settle: v.settle,
        }
    }

    /// `run.warmup: 1 → 3` entries, in manifest spelling.
    fn differences(&self, new: &WarmupSettings) -> Vec<String> {
        let settle = |s: &Option<Settle>| match s {
            None => "false".to_string(),
            Some(s) => format!(
                "{{ window = {}, tolerance = {}, min_clock_fraction = {} }}",
                s.window, s.tolerance, s.min_clock_fraction
            ),
        };
        [
            (
                "run.warmup",
                self.warmup.to_string(),
                new.warmup.to_string(),
            ),
            (
                "run.warmup_max",
                self.warmup_max.to_string(),
                new.warmup_max.to_string(),
            ),
            ("run.settle", settle(&self.settle), settle(&new.settle)),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("{name}: {a} → {b}"))
        .collect()
    }
}

/// Hash (SHA-256 of canonical JSON) of everything that defines what one measured call of a
/// variant measures: workload, parameters, knobs and warm-up settings. Not included: the
/// variant's name and how many samples are taken (measured calls, processes, precision
/// targets, timeouts), which change how precisely a value is known, not the value.
pub fn config_hash(v: &VariantPlan) -> String {
    let canonical = serde_json::json!({
        "workload": v.workload,
        "params": v.params,
        "knobs": v.knobs,
        "warmup": WarmupSettings::of(v),
    });
    let mut h = Sha256::new();
    h.update(canonical.to_string().as_bytes());
    format!("{:x}", h.finalize())
}

/// Metric values of a sample row by name.
pub fn metric_values(row: &SampleRow) -> Vec<(String, f64)> {
    let m = &row.measurement;
    let mut out = vec![("wall_ms".to_string(), m.wall_ms)];
    if let Some(v) = m.gpu_ms {
        out.push(("gpu_ms".into(), v));
    }
    if let Some(v) = m.peak_allocated_bytes {
        out.push(("peak_allocated_bytes".into(), v as f64));
    }
    if let Some(v) = m.peak_reserved_bytes {
        out.push(("peak_reserved_bytes".into(), v as f64));
    }
    if let Some(v) = m.host_peak_rss_bytes {
        out.push(("host_peak_rss_bytes".into(), v as f64));
    }
    for s in &m.stages {
        out.push((format!("stage_{}_ms", s.name), s.wall_ms));
    }
    out
}

impl BaselineVariant {
    /// What differs between this baseline variant's configuration and `v`'s, as
    /// `name: old → new` entries; empty when the hashes agree. A hash that differs although no
    /// recorded setting does (a baseline from before warm-up settings were recorded) says so.
    pub fn config_changes(&self, v: &VariantPlan) -> Vec<String> {
        if self.config_sha256 == config_hash(v) {
            return Vec::new();
        }
        let mut changes: Vec<String> = crate::knobs::differences(
            (&self.workload, &self.params, &self.knobs),
            (&v.workload, &v.params, &v.knobs),
        )
        .iter()
        .map(ToString::to_string)
        .collect();
        if let Some(w) = &self.warmup {
            changes.extend(w.differences(&WarmupSettings::of(v)));
        }
        if changes.is_empty() {
            changes.push(
                "configuration hash differs (the baseline does not record which setting; re-baseline)"
                    .into(),
            );
        }
        changes
    }
}

impl Baseline {
    /// Builds one baseline per suite of a run from its measured (non-warm-up) samples of
    /// processes that finished normally.
    pub fn from_run(run: &RunRecord, samples: &[SampleRow]) -> Vec<Baseline> {
        run.suites
            .iter()
            .map(|suite| {
                let processes = suite.processes_by_variant();
                let rows = suite.measured_rows(samples);
                let variants = suite
                    .plan
                    .variants
                    .iter()
                    .map(|v| {
                        let records = processes
                            .get(v.name.as_str())
                            .map_or(&[][..], Vec::as_slice);
                        let mut metrics: BTreeMap<String, BTreeMap<u32, Vec<f64>>> =
                            BTreeMap::new();
                        for row in rows.get(v.name.as_str()).into_iter().flatten() {
                            for (name, value) in metric_values(row) {
                                metrics
                                    .entry(name)
                                    .or_default()
                                    .entry(row.process)
                                    .or_default()
                                    .push(value);
                            }
                        }
                        BaselineVariant {
                            name: v.name.clone(),
                            workload: v.workload.clone(),
                            params: v.params.clone(),
                            knobs: v.knobs.clone(),
                            warmup: Some(WarmupSettings::of(v)),
                            config_sha256: config_hash(v),
                            outcomes: records.iter().map(|p| p.status).collect(),
                            metrics: metrics
                                .into_iter()
                                .map(|(k, by_process)| (k, by_process.into_values().collect()))
                                .collect(),
                        }
                    })
                    .collect();
                Baseline {
                    format_version: FORMAT_VERSION.into(),
                    key: BaselineKey::of(&run.fingerprint, &suite.plan.profile),
                    suite: suite.plan.suite.clone(),
                    source_run: run.id.clone(),
                    source_commit: run.fingerprint.git_commit.clone(),
                    created_at: chrono::Utc::now().to_rfc3339(),
                    variants,
                }
            })
            .collect()
    }

    /// What makes this baseline unfit to store, if anything: a variant that was not run, a
    /// variant with successful processes but no measured values for some of them, or a
    /// missing or non-finite metric value (JSON would write it as `null`, unreadable later).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for v in &self.variants {
            let at = format!("suite `{}`, variant `{}`", self.suite, v.name);
            if v.outcomes.is_empty() {
                problems.push(format!("{at}: not run"));
                continue;
            }
            let ok = v.outcomes.iter().filter(|&&s| s == Status::Ok).count();
            let measured = v.metrics.get("wall_ms").map_or(0, Vec::len);
            if measured < ok {
                problems.push(format!(
                    "{at}: {ok} process(es) ended ok but only {measured} have measured `wall_ms` values in samples.csv"
                ));
            }
            for (metric, by_process) in &v.metrics {
                let bad = by_process
                    .iter()
                    .flatten()
                    .filter(|x| !x.is_finite())
                    .count();
                if bad > 0 {
                    problems.push(format!(
                        "{at}, metric `{metric}`: {bad} missing or non-finite value(s)"
                    ));
                }
            }
        }
        problems
    }

    pub fn variant(&self, name: &str) -> Option<&BaselineVariant> {
        self.variants.iter().find(|v| v.name == name)
    }

    pub fn load(path: &Path) -> Result<Baseline, StoreError> {
        super::read_versioned(path, "baseline")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::nvml::GpuInfo;

    fn fingerprint(driver: &str) -> Fingerprint {
        Fingerprint {
            device: Some("cuda:0".into()),
            gpu: Some(GpuInfo {
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-1".into(),
                driver_version: driver.into(),
                cuda_driver_version: "13.0".into(),
                memory_total_bytes: 1,
                sm_clock_max_mhz: 1980,
            }),
            torch_version: Some("2.11.0".into()),
            cudnn_version: Some(91900),
            cuda_runtime_version: Some(13000),
            ..Default::default()
        }
    }

    #[test]
    fn key_names_the_software_stack_and_the_profile_and_reports_differences() {
        let a = BaselineKey::of(&fingerprint("580.159.04"), "nightly");
        assert_eq!(
            a.dir_name(),
            "nvidia-h100-80gb-hbm3_driver-580-159-04_cuda-13000_cudnn-91900_torch-2-11-0/nightly"
        );
        let b = BaselineKey::of(&fingerprint("575.1"), "nightly");
        assert_eq!(
            a.differences(&b),
            vec!["driver: 580.159.04 ≠ 575.1".to_string()]
        );
        assert!(a.differences(&a).is_empty());
        let quick = BaselineKey::of(&fingerprint("580.159.04"), "quick");
        assert_ne!(a, quick);
        assert_ne!(a.dir_name(), quick.dir_name());
        assert_eq!(a.stack_name(), quick.stack_name());
        assert_eq!(a.differences(&quick), ["profile: nightly ≠ quick"]);
    }

    #[test]
    fn keys_stored_before_profiles_load_and_match_no_profile() {
        let mut old = serde_json::to_value(BaselineKey::of(&fingerprint("1"), "x")).unwrap();
        old.as_object_mut().unwrap().remove("profile");
        let old: BaselineKey = serde_json::from_value(old).unwrap();
        assert_eq!(old.profile_shown(), "unrecorded");
        let quick = BaselineKey::of(&fingerprint("1"), "quick");
        assert_eq!(quick.differences(&old), ["profile: quick ≠ unrecorded"]);
    }

    fn plan() -> VariantPlan {
        crate::workloads::default_plan("sleep", &[("ms", ParamValue::Float(20.0))]).unwrap()
    }

    #[test]
    fn the_config_hash_is_stable_and_ignores_how_many_samples_are_taken() {
        let a = plan();
        assert_eq!(config_hash(&a), config_hash(&plan()));
        assert_eq!(config_hash(&a).len(), 64);
        let b = VariantPlan {
            name: "renamed".into(),
            claims: vec!["X0-01".into()],
            processes: 7,
            processes_max: 9,
            repetitions: 11,
            repetitions_max: 40,
            target_rel_ci: Some(0.02),
            timeout_ms: 1,
            description: Some("other".into()),
            ..plan()
        };
        assert_eq!(config_hash(&a), config_hash(&b));
    }

    #[test]
    fn the_config_hash_changes_with_each_setting_that_defines_the_workload() {
        let base = config_hash(&plan());
        let mut changed: Vec<(&str, VariantPlan)> = Vec::new();
        let mut p = plan();
        p.workload = "matmul".into();
        changed.push(("workload", p));
        let mut p = plan();
        p.params.insert("ms".into(), ParamValue::Float(21.0));
        changed.push(("param value", p));
        let mut p = plan();
        p.params.insert("extra".into(), ParamValue::Int(1));
        changed.push(("param added", p));
        let mut p = plan();
        p.knobs.cudnn_enabled = !p.knobs.cudnn_enabled;
        changed.push(("knob", p));
        let mut p = plan();
        p.knobs.env.insert("X".into(), "1".into());
        changed.push(("env knob", p));
        changed.push((
            "warmup",
            VariantPlan {
                warmup: 3,
                ..plan()
            },
        ));
        changed.push((
            "warmup_max",
            VariantPlan {
                warmup_max: 9,
                ..plan()
            },
        ));
        changed.push((
            "settle",
            VariantPlan {
                settle: Some(Settle::default()),
                ..plan()
            },
        ));
        for (what, p) in changed {
            assert_ne!(config_hash(&p), base, "{what} does not change the hash");
        }
    }

    #[test]
    fn config_changes_name_what_changed_including_warm_up() {
        let run = plan();
        let mut stored = baseline(vec![Status::Ok], vec![vec![1.0]])
            .variants
            .remove(0);
        stored.params = run.params.clone();
        stored.warmup = Some(WarmupSettings::of(&run));
        stored.config_sha256 = config_hash(&run);
        assert!(stored.config_changes(&run).is_empty());
        let mut now = VariantPlan {
            warmup: 2,
            warmup_max: 2,
            ..plan()
        };
        now.params.insert("ms".into(), ParamValue::Float(30.0));
        assert_eq!(
            stored.config_changes(&now),
            [
                "params.ms: 20.0 → 30.0",
                "run.warmup: 0 → 2",
                "run.warmup_max: 0 → 2"
            ]
        );
        // A baseline without warm-up settings and an unexplained hash says so.
        stored.warmup = None;
        stored.config_sha256 = "old".into();
        assert!(stored.config_changes(&run)[0].contains("configuration hash differs"));
    }

    fn baseline(outcomes: Vec<Status>, wall: ProcessValues) -> Baseline {
        let mut metrics = BTreeMap::new();
        if !wall.is_empty() {
            metrics.insert("wall_ms".to_string(), wall);
        }
        Baseline {
            format_version: FORMAT_VERSION.into(),
            key: BaselineKey::of(&fingerprint("1"), "quick"),
            suite: "s".into(),
            source_run: "r".into(),
            source_commit: "c".into(),
            created_at: "t".into(),
            variants: vec![BaselineVariant {
                name: "v".into(),
                workload: "sleep".into(),
                params: BTreeMap::new(),
                knobs: Knobs::default(),
                warmup: None,
                config_sha256: String::new(),
                outcomes,
                metrics,
            }],
        }
    }

    #[test]
    fn baselines_with_missing_or_non_finite_values_have_problems() {
        let ok = || vec![Status::Ok, Status::Ok];
        assert!(baseline(ok(), vec![vec![1.0], vec![2.0]])
            .problems()
            .is_empty());
        assert!(baseline(vec![Status::Crashed], vec![])
            .problems()
            .is_empty());
        let nan = baseline(ok(), vec![vec![1.0], vec![f64::NAN]]).problems();
        assert_eq!(
            nan,
            ["suite `s`, variant `v`, metric `wall_ms`: 1 missing or non-finite value(s)"]
        );
        let missing = baseline(ok(), vec![vec![1.0]]).problems();
        assert!(
            missing[0].contains("2 process(es) ended ok but only 1"),
            "{missing:?}"
        );
        assert_eq!(
            baseline(vec![], vec![]).problems(),
            ["suite `s`, variant `v`: not run"]
        );
    }
}
