//! `claimbench dist`: packs the launcher, the engine and the manifests into a folder that runs
//! on a machine with PyTorch 2.11 and no Rust toolchain.

use super::{ExpectedError, Outcome};
use crate::exit_code;
use crate::store;
use anyhow::{Context, Result};
use std::path::Path;

const README: &str = "claimbench, packed for a machine with PyTorch 2.11 (no Rust needed).\n\n\
    ./claimbench run              # the default suite (scenarios/*.toml)\n\
    ./claimbench run FILE.toml    # one manifest\n\n\
    libtorch is found through CLAIMBENCH_LIBTORCH (a torch/lib folder), else the torch\n\
    package of `python3` (or CLAIMBENCH_PYTHON).\n";

/// Copies the launcher, the engine and the manifests into `out` (replacing it) and prints
/// its path.
pub fn dist(out: &Path, scenarios: &Path) -> Outcome {
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().context("executable without folder")?;
    if !scenarios.is_dir() {
        return Err(ExpectedError::ScenariosNotFound(scenarios.to_path_buf()));
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(out)?;
    for name in ["claimbench", "claimbench-engine"] {
        let from = bin_dir.join(name);
        std::fs::copy(&from, out.join(name))
            .with_context(|| format!("cannot copy {}", from.display()))?;
    }
    copy_dir(scenarios, &out.join("scenarios"))?;
    store::write_atomic(&out.join("README.txt"), README.as_bytes())?;
    println!("{}", out.display());
    Ok(exit_code::OK)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}
