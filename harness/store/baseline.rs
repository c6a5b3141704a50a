//! Stored baselines, one file per suite and fingerprint key (placed by [`super::Results`]),
//! written only on request (`claimbench baseline save|accept`). A baseline keeps every measured value of every variant,
//! grouped by process, so a comparison can use the same statistics as a run-to-run one.
//!
//! The key names what makes timings comparable: GPU model, driver, CUDA, cuDNN and torch
//! versions. Comparing across keys is refused unless the user insists.

use super::{slug, Fingerprint, RunRecord, SampleRow, StoreError, FORMAT_VERSION};
use crate::knobs::Knobs;
use crate::plan::{ParamValue, VariantPlan};
use crate::worker::protocol::Status;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The hardware and software a baseline is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineKey {
    pub gpu: String,
    pub driver: String,
    pub cuda: String,
    pub cudnn: String,
    pub torch: String,
}

impl BaselineKey {
    pub fn of(f: &Fingerprint) -> BaselineKey {
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
        }
    }

    /// Folder name, e.g. `nvidia-h100-80gb-hbm3_driver-580-159-04_cuda-13000_cudnn-91900_torch-2-11-0`.
    pub fn dir_name(&self) -> String {
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
    /// Hash of workload, params and knobs.
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

/// Hash of a variant's workload, parameters and knobs.
pub fn config_hash(v: &VariantPlan) -> String {
    let canonical = serde_json::json!({
        "workload": v.workload,
        "params": v.params,
        "knobs": v.knobs,
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
    for s in &m.stages {
        out.push((format!("stage_{}_ms", s.name), s.wall_ms));
    }
    out
}

impl BaselineVariant {
    /// What differs between this baseline variant's configuration and `v`'s, as
    /// `name: old → new` entries (empty if nothing).
    pub fn config_changes(&self, v: &VariantPlan) -> Vec<String> {
        crate::knobs::differences(
            (&self.workload, &self.params, &self.knobs),
            (&v.workload, &v.params, &v.knobs),
        )
        .iter()
        .map(ToString::to_string)
        .collect()
    }
}

impl Baseline {
    /// Builds one baseline per suite of a run from its measured (non-warm-up) samples of
    /// processes that finished normally.
    pub fn from_run(run: &RunRecord, samples: &[SampleRow]) -> Vec<Baseline> {
        run.suites
            .iter()
            .map(|suite| {
                let variants = suite
                    .plan
                    .variants
                    .iter()
                    .map(|v| {
                        let records: Vec<_> = suite
                            .processes
                            .iter()
                            .filter(|p| p.variant == v.name)
                            .collect();
                        let mut metrics: BTreeMap<String, BTreeMap<u32, Vec<f64>>> =
                            BTreeMap::new();
                        for p in records.iter().filter(|p| p.status == Status::Ok) {
                            for row in samples.iter().filter(|s| {
                                s.suite == suite.plan.suite
                                    && s.variant == v.name
                                    && s.process == p.process
                                    && !s.warmup
                            }) {
                                for (name, value) in metric_values(row) {
                                    metrics
                                        .entry(name)
                                        .or_default()
                                        .entry(p.process)
                                        .or_default()
                                        .push(value);
                                }
                            }
                        }
                        BaselineVariant {
                            name: v.name.clone(),
                            workload: v.workload.clone(),
                            params: v.params.clone(),
                            knobs: v.knobs.clone(),
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
                    key: BaselineKey::of(&run.fingerprint),
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
    fn key_names_the_software_stack_and_reports_differences() {
        let a = BaselineKey::of(&fingerprint("580.159.04"));
        assert_eq!(
            a.dir_name(),
            "nvidia-h100-80gb-hbm3_driver-580-159-04_cuda-13000_cudnn-91900_torch-2-11-0"
        );
        let b = BaselineKey::of(&fingerprint("575.1"));
        assert_eq!(
            a.differences(&b),
            vec!["driver: 580.159.04 ≠ 575.1".to_string()]
        );
        assert!(a.differences(&a).is_empty());
    }

    fn baseline(outcomes: Vec<Status>, wall: ProcessValues) -> Baseline {
        let mut metrics = BTreeMap::new();
        if !wall.is_empty() {
            metrics.insert("wall_ms".to_string(), wall);
        }
        Baseline {
            format_version: FORMAT_VERSION.into(),
            key: BaselineKey::of(&fingerprint("1")),
            suite: "s".into(),
            source_run: "r".into(),
            source_commit: "c".into(),
            created_at: "t".into(),
            variants: vec![BaselineVariant {
                name: "v".into(),
                workload: "sleep".into(),
                params: BTreeMap::new(),
                knobs: Knobs::default(),
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
