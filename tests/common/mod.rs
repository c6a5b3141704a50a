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
        let runs: Vec<_> = std::fs::read_dir(self.path().join("results/runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(runs.len(), 1, "expected one run directory, found {runs:?}");
        runs.into_iter().next().unwrap()
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

/// Two `sleep` variants on CPU (20 and 30 ms) and a claim that `b` is 40–60 % slower.
pub const SLEEP_CLAIMS: &str = r#"[suite]
name = "naps"
workload = "sleep"

[knobs]
device = "cpu"

[run]
warmup = 1
settle = false
repetitions = 5
processes = 2

[[variant]]
name = "a"
params = { ms = 20 }

[[variant]]
name = "b"
params = { ms = 30 }

[[claim]]
id = "T0-01"
source = "test note, section 1"
summary = "B is 40–60 % slower than A"
change = "40%..60%"
baseline = "a"
candidate = "b"
"#;
