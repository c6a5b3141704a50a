//! `claimbench`: a small launcher that makes libtorch loadable, then runs `claimbench-engine`
//! (the real program, beside it) with the same arguments.
//!
//! The engine links libtorch dynamically, and the loader resolves those libraries before any of
//! our code runs, so the search cannot happen inside the engine. The launcher links nothing of
//! libtorch; it finds the `torch/lib` folder, in this order:
//! 1. `CLAIMBENCH_LIBTORCH` (a folder holding `libtorch_cpu.so`);
//! 2. the torch package of `CLAIMBENCH_PYTHON`, `python3` or `python`, located without importing
//!    it (importing torch takes seconds);
//! 3. the folder the engine was built against, if it still exists (a development checkout);
//!
//! and checks that its version is the 2.11 series that tch 0.24 requires. It then prepends the
//! folder to `LD_LIBRARY_PATH` and replaces itself with the engine.

#[allow(dead_code)] // only ENVIRONMENT is the launcher's own
#[path = "exit_code.rs"]
mod exit_code;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const REQUIRED_SERIES: &str = "2.11.";

fn has_libtorch(dir: &Path) -> bool {
    dir.join("libtorch_cpu.so").is_file()
}

/// The torch version recorded in `<torch>/version.py` next to `<torch>/lib`.
fn torch_version(lib: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lib.parent()?.join("version.py")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("__version__")?;
        let value = rest.split('=').nth(1)?.trim();
        Some(value.trim_matches(|c| c == '\'' || c == '"').to_string())
    })
}

fn from_python(python: &str) -> Option<PathBuf> {
    let probe = "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')";
    let out = Command::new(python).args(["-c", probe]).output().ok()?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!dir.is_empty()).then(|| Path::new(&dir).join("lib"))
}

fn candidates() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    if let Some(dir) = std::env::var_os("CLAIMBENCH_LIBTORCH") {
        found.push(("CLAIMBENCH_LIBTORCH".into(), PathBuf::from(dir)));
    }
    let pythons: Vec<String> = std::env::var("CLAIMBENCH_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_string(), "python".to_string()])
        .collect();
    for python in pythons {
        if let Some(dir) = from_python(&python) {
            found.push((format!("the torch package of `{python}`"), dir));
        }
    }
    found.push((
        "the build machine's libtorch".into(),
        PathBuf::from(env!("CLAIMBENCH_BUILD_LIBTORCH")),
    ));
    found
}

fn main() {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("claimbench"));
    let engine = exe.with_file_name("claimbench-engine");
    let mut tried = Vec::new();
    let mut chosen = None;
    for (origin, dir) in candidates() {
        if !has_libtorch(&dir) {
            tried.push(format!(
                "  {origin}: {} has no libtorch_cpu.so",
                dir.display()
            ));
            continue;
        }
        match torch_version(&dir) {
            Some(v) if v.starts_with(REQUIRED_SERIES) => {
                chosen = Some(dir);
                break;
            }
            v => tried.push(format!(
                "  {origin}: {} is torch {}, not {REQUIRED_SERIES}x",
                dir.display(),
                v.unwrap_or_else(|| "of unknown version".into())
            )),
        }
    }
    let Some(lib) = chosen else {
        eprintln!(
            "error: no libtorch of the {REQUIRED_SERIES}x series found (claimbench needs PyTorch 2.11).\nTried:\n{}\nInstall it with `pip install torch==2.11.0`, or set CLAIMBENCH_LIBTORCH to a torch/lib folder or CLAIMBENCH_PYTHON to a Python that has it.",
            tried.join("\n")
        );
        std::process::exit(exit_code::ENVIRONMENT);
    };
    let mut path = OsString::from(&lib);
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
        path.push(":");
        path.push(old);
    }
    let err = Command::new(&engine)
        .args(std::env::args_os().skip(1))
        .env("LD_LIBRARY_PATH", path)
        .exec();
    eprintln!("error: cannot run {}: {err}", engine.display());
    std::process::exit(exit_code::ENVIRONMENT);
}
