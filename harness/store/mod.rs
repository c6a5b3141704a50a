//! Run records on disk: `results/runs/<UTC time>-<gpu>-<host>/` holding
//! - `samples.csv`: one row per call (warm-up calls included and flagged), one column per metric;
//! - `run.json`: format version, fingerprint, the resolved plans, and every worker's outcome;
//! - `manifests/<suite>.toml`: each manifest as run;
//! - `logs/`: each worker's stderr.
//!
//! Both data files are rewritten after every worker through a temporary file and a rename, so an
//! interrupted run always leaves complete, parseable files behind.

pub mod baseline;
mod csv_io;

pub use csv_io::{read_samples, SampleRow};

use crate::measure::nvml::GpuInfo;
use crate::plan::Plan;
use crate::worker::protocol::{Hello, OomInfo, Status, StopInfo};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `major.minor`; readers reject another major version.
pub const FORMAT_VERSION: &str = "1.0";

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

/// One worker process and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub variant: String,
    pub process: u32,
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
    pub finished_at: Option<String>,
    pub interrupted: bool,
    pub suites: Vec<SuiteRecord>,
}

impl RunRecord {
    /// Reads `run.json` from a run directory, refusing other major format versions.
    pub fn load(dir: &Path) -> Result<RunRecord> {
        read_versioned(&dir.join("run.json"), "run record")
    }
}

/// Reads a JSON file that carries `format_version`, refusing another major version with a
/// message that says which claimbench can read it.
pub fn read_versioned<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_str())
        .unwrap_or("missing");
    let major = |v: &str| v.split('.').next().map(str::to_string);
    if major(version) != major(FORMAT_VERSION) {
        bail!(
            "{}: {what} format version {version} is not readable by this claimbench (reads {FORMAT_VERSION}); use the claimbench version that wrote it",
            path.display()
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{}: unexpected {what} layout", path.display()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("path without parent directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    // Temporary files are created private (0600); records are meant to be shared.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Makes a file-name-safe slug: lower-case ASCII letters, digits and dashes.
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

/// A run directory being written.
pub struct RunDir {
    pub path: PathBuf,
    pub record: RunRecord,
    pub samples: Vec<SampleRow>,
}

impl RunDir {
    /// Creates `<results>/runs/<UTC time>-<gpu>-<host>/` (with a numeric suffix if taken).
    pub fn create(
        results: &Path,
        fingerprint: Fingerprint,
        command: Vec<String>,
    ) -> Result<RunDir> {
        let runs = results.join("runs");
        std::fs::create_dir_all(&runs)
            .with_context(|| format!("cannot create {}", runs.display()))?;
        let time = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let gpu = fingerprint
            .gpu
            .as_ref()
            .map(|g| slug(&g.name))
            .unwrap_or_else(|| "cpu".into());
        let base = format!("{time}-{gpu}-{}", slug(&fingerprint.host));
        let mut id = base.clone();
        let mut n = 1;
        let path = loop {
            let candidate = runs.join(&id);
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    n += 1;
                    id = format!("{base}-{n}");
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", candidate.display()))
                }
            }
        };
        for sub in ["manifests", "logs"] {
            std::fs::create_dir_all(path.join(sub))?;
        }
        let record = RunRecord {
            format_version: FORMAT_VERSION.into(),
            id,
            fingerprint,
            command,
            finished_at: None,
            interrupted: false,
            suites: Vec::new(),
        };
        let dir = RunDir {
            path,
            record,
            samples: Vec::new(),
        };
        dir.save()?;
        Ok(dir)
    }

    /// Adds a suite and stores its manifest as run.
    pub fn add_suite(&mut self, plan: Plan, manifest_text: &str) -> Result<usize> {
        let file = format!("manifests/{}.toml", slug(&plan.suite));
        write_atomic(&self.path.join(&file), manifest_text.as_bytes())?;
        self.record.suites.push(SuiteRecord {
            plan,
            manifest_file: file,
            processes: Vec::new(),
            adaptive: None,
        });
        self.save()?;
        Ok(self.record.suites.len() - 1)
    }

    /// Rewrites `run.json` and `samples.csv` atomically.
    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.record)?;
        write_atomic(&self.path.join("run.json"), &json)?;
        write_atomic(
            &self.path.join("samples.csv"),
            &csv_io::write_samples(&self.samples)?,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(slug("NVIDIA H100 80GB HBM3"), "nvidia-h100-80gb-hbm3");
        assert_eq!(
            slug("base/resolution=512,dtype=fp16"),
            "base-resolution-512-dtype-fp16"
        );
        assert_eq!(slug("--x--"), "x");
    }

    #[test]
    fn load_rejects_other_major_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.json"), r#"{"format_version": "2.0"}"#).unwrap();
        let err = RunRecord::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format version 2.0"), "{err}");
    }
}
