//! Launching the Python worker (`python -m claimbench.worker`) for the `python` workload.
//!
//! A pure-Python module rather than Python embedded in the engine: the GPU box's interpreter
//! and its torch build are the ones the user's pipeline needs, and they need not match the
//! machine the engine was built on. The worker speaks the same protocol as `claimbench worker`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter: `CLAIMBENCH_PYTHON`, else `python3` on `PATH`.
pub fn interpreter() -> OsString {
    std::env::var_os("CLAIMBENCH_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// The folder holding the `claimbench` Python package: `CLAIMBENCH_PYTHON_PATH`, else
/// `python/` beside the executable (a dist folder), else the source tree's `python/`.
pub fn package_dir() -> Result<PathBuf, String> {
    let has_worker = |dir: &Path| dir.join("claimbench").join("worker.py").is_file();
    if let Some(dir) = std::env::var_os("CLAIMBENCH_PYTHON_PATH").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_worker(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "CLAIMBENCH_PYTHON_PATH={} has no claimbench/worker.py",
                dir.display()
            ))
        };
    }
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("python")));
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    beside_exe
        .into_iter()
        .chain([source_tree])
        .find(|d| has_worker(d))
        .ok_or_else(|| {
            "the claimbench Python package was not found beside the executable (python/) nor in \
             the source tree; set CLAIMBENCH_PYTHON_PATH to the folder that holds claimbench/"
                .to_string()
        })
}

/// The command that starts a Python worker for a plan read from `manifest_path`: relative
/// `file.py` entries are resolved against the manifest's folder.
pub fn command(manifest_path: &str) -> Result<Command, String> {
    let package = package_dir()?;
    let mut python_path = OsString::from(package.as_os_str());
    if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        python_path.push(":");
        python_path.push(existing);
    }
    let manifest_dir = Path::new(manifest_path)
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .and_then(|d| d.canonicalize().ok());
    let mut command = Command::new(interpreter());
    command
        .args(["-m", "claimbench.worker"])
        .env("PYTHONPATH", python_path)
        // A dist folder may be read-only; bytecode caches are not worth a failure there.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(manifest_dir.map(|d| ("CLAIMBENCH_MANIFEST_DIR", d)));
    Ok(command)
}
