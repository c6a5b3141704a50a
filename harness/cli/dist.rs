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
    package of `python3` (or CLAIMBENCH_PYTHON).\n\n\
    Suites with `workload = \"python\"` run python/claimbench/worker.py under that Python. The\n\
    adapters need diffusers, hy3dgen and sam3d (with a few small packages); where they are\n\
    missing and there is no network, install the wheels packed here (when wheels/ exists):\n\
    python3 -m pip install --no-index --no-deps --find-links wheels --target pylib -r wheels/requirements.txt\n\
    export PYTHONPATH=$PWD/pylib\n";

/// What a dist folder holds; only these are replaced in an existing one.
const DIST_ENTRIES: [&str; 6] = [
    "claimbench",
    "claimbench-engine",
    "scenarios",
    "python",
    "wheels",
    "README.txt",
];

/// Copies the launcher, the engine and the manifests into `out` and prints its path. `out`
/// must be new, empty or a previous dist; in a previous dist only the dist's own entries are
/// replaced, anything else in the folder is left alone.
pub fn dist(out: &Path, scenarios: &Path) -> Outcome {
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().context("executable without folder")?;
    if !scenarios.is_dir() {
        return Err(ExpectedError::ScenariosNotFound(scenarios.to_path_buf()));
    }
    if out.exists() || out.is_symlink() {
        if !out.is_dir() {
            return Err(ExpectedError::DistOutNotDist(out.to_path_buf()));
        }
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .next()
            .is_none();
        if !empty && !is_previous_dist(out) {
            return Err(ExpectedError::DistOutNotDist(out.to_path_buf()));
        }
        let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
        if same(&out.join("scenarios"), scenarios) {
            return Err(ExpectedError::DistOverScenarios(out.to_path_buf()));
        }
        for name in DIST_ENTRIES {
            let entry = out.join(name);
            let removed = if entry.is_dir() && !entry.is_symlink() {
                std::fs::remove_dir_all(&entry)
            } else if entry.symlink_metadata().is_ok() {
                std::fs::remove_file(&entry)
            } else {
                Ok(())
            };
            removed.with_context(|| format!("cannot replace {}", entry.display()))?;
        }
    }
    std::fs::create_dir_all(out)?;
    for name in ["claimbench", "claimbench-engine"] {
        let from = bin_dir.join(name);
        std::fs::copy(&from, out.join(name))
            .with_context(|| format!("cannot copy {}", from.display()))?;
    }
    copy_dir(scenarios, &out.join("scenarios"))?;
    // The Python worker and adapters (not their tests), found as the engine finds them.
    let package = crate::runner::python::package_dir().map_err(|e| anyhow::anyhow!(e))?;
    copy_dir(
        &package.join("claimbench"),
        &out.join("python").join("claimbench"),
    )?;
    store::write_atomic(&out.join("README.txt"), README.as_bytes())?;
    println!("{}", out.display());
    Ok(exit_code::OK)
}

/// Whether `dir` was written by `claimbench dist`: its README.txt and the engine are there.
fn is_previous_dist(dir: &Path) -> bool {
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap_or_default();
    readme.starts_with(README.lines().next().unwrap_or_default())
        && dir.join("claimbench-engine").is_file()
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_name() == "__pycache__" {
            continue;
        }
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
