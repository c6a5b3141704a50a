//! Helpers shared by the CLI integration tests: run `claimbench` in a temporary folder and read
//! back what it recorded.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// A scratch folder with a `manifests/` subfolder; `claimbench` runs with it as working dir.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("manifests")).unwrap();
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `manifests/<name>` and returns its path relative to the sandbox.
    pub fn manifest(&self, name: &str, text: &str) -> String {
        let rel = format!("manifests/{name}");
        std::fs::write(self.path().join(&rel), text).unwrap();
        rel
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("claimbench").unwrap();
        cmd.current_dir(self.path())
            .env_remove("CUDA_VISIBLE_DEVICES");
        cmd
    }

    /// The single run directory under results/runs.
    pub fn run_dir(&self) -> PathBuf {
        only_run(&self.path().join("results"))
    }

    /// `claimbench run --quiet MANIFEST`, which must succeed; returns the new run's folder.
    pub fn run_quiet(&self, manifest: &str) -> String {
        self.cmd()
            .args(["run", "--quiet", manifest])
            .assert()
            .success();
        self.newest_run()
    }

    /// The run directory that sorts last (run ids start with their UTC start time).
    pub fn newest_run(&self) -> String {
        let mut runs: Vec<_> = std::fs::read_dir(self.path().join("results/runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        runs.sort();
        runs.last().unwrap().to_string_lossy().into_owned()
    }

    pub fn run_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.run_dir().join("run.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// samples.csv as a list of column → value maps.
    pub fn samples(&self) -> Vec<std::collections::HashMap<String, String>> {
        let mut reader = csv::Reader::from_path(self.run_dir().join("samples.csv")).unwrap();
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                headers
                    .iter()
                    .map(String::from)
                    .zip(r.iter().map(String::from))
                    .collect()
            })
            .collect()
    }
}

/// A fault-workload manifest with the given variants (TOML snippets) on CPU.
pub fn fault_manifest(name: &str, timeout: &str, variants: &[&str]) -> String {
    let mut text = format!(
        "[suite]\nname = \"{name}\"\nworkload = \"fault\"\n\n[knobs]\ndevice = \"cpu\"\n\n[run]\nwarmup = 1\nsettle = false\nrepetitions = 2\ntimeout = \"{timeout}\"\norder = \"sequential\"\n"
    );
    for v in variants {
        text.push_str("\n[[variant]]\n");
        text.push_str(v);
        text.push('\n');
    }
    text
}

/// A `sleep` suite on CPU (deterministic timings): one warm-up call, five measured calls per
/// process, no settling; `variants` are (name, milliseconds per call).
pub fn sleep_suite(name: &str, processes: u32, variants: &[(&str, f64)]) -> String {
    let mut text = format!(
        "[suite]\nname = \"{name}\"\nworkload = \"sleep\"\n\n[knobs]\ndevice = \"cpu\"\n\n[run]\nwarmup = 1\nsettle = false\nrepetitions = 5\nprocesses = {processes}\n"
    );
    for (variant, ms) in variants {
        text.push_str(&format!(
            "\n[[variant]]\nname = \"{variant}\"\nparams = {{ ms = {ms} }}\n"
        ));
    }
    text
}

/// Two `sleep` variants on CPU (20 and 30 ms) in 3 processes each (the least a time claim is
/// judged on) and a claim that `b` is 40–60 % slower.
pub fn sleep_claims() -> String {
    sleep_suite("naps", 3, &[("a", 20.0), ("b", 30.0)])
        + r#"
[[claim]]
id = "T0-01"
source = "test note, section 1"
summary = "B is 40–60 % slower than A"
change = "40%..60%"
baseline = "a"
candidate = "b"
"#
}

/// The single run folder under `results/runs`.
pub fn only_run(results: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(results.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "expected one run directory, found {runs:?}");
    runs.into_iter().next().unwrap()
}

/// Every file under `dir`, recursively, sorted; none if `dir` cannot be read.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}
