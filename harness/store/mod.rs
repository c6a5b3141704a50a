//! Run records on disk (the folder layout is [`Results`]'s): a run folder holds
//! - `samples.csv`: one row per call (warm-up calls included and flagged), one column per metric;
//! - `run.json`: format version, fingerprint, the resolved plans, and every worker's outcome;
//! - `manifests/<suite>.toml`: each manifest as run;
//! - `logs/`: each worker's stderr.
//!
//! Both data files are rewritten after every worker through a temporary file and a rename, so an
//! interrupted run always leaves complete, parseable files behind.

pub mod baseline;
mod csv_io;
mod error;
pub mod history;
mod record;
mod results;

pub use crate::plan::slug;
pub use csv_io::{read_samples, SampleRow};
pub use error::StoreError;
pub use record::host_name;
pub(crate) use record::status_list_format;
pub use record::{
    AdaptiveRecord, AdaptiveVariant, Fingerprint, Hello, MergedFrom, MergedShard, OomInfo,
    Placement, ProcessRecord, RecordedStatus, RunRecord, ShardInfo, ShardJob, StopInfo,
    SuiteRecord,
};
pub use results::{is_run_dir, write_compare, Results, RunDir, StoredRun};

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// `major.minor`; readers reject another major version.
pub const FORMAT_VERSION: &str = "1.0";

/// Reads a JSON file that carries `format_version`, refusing another major version with a
/// message that says which claimbench can read it.
pub fn read_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| StoreError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| StoreError::InvalidJson {
            path: path.to_path_buf(),
            source,
        })?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_str())
        .unwrap_or("missing");
    let major = |v: &str| v.split('.').next().map(str::to_string);
    if major(version) != major(FORMAT_VERSION) {
        return Err(StoreError::Version {
            what,
            path: path.to_path_buf(),
            found: version.to_string(),
            reads: FORMAT_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|source| StoreError::Layout {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("path without parent directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    // Errors name the file being written, not only the temporary one (a full disk fails here).
    let writing = || format!("cannot write {}", path.display());
    tmp.write_all(bytes).with_context(writing)?;
    // Temporary files are created private (0600); records are meant to be shared.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .with_context(writing)?;
    tmp.as_file().sync_all().with_context(writing)?;
    tmp.persist(path).with_context(writing)?;
    Ok(())
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
