//! `claimbench check` prints the expanded plan of every shipped manifest under every profile
//! exactly as recorded in `tests/golden/check/`. The parser, the knob registry and the plan
//! expansion can be restructured freely as long as this output stays byte-identical.
//!
//! After an intended change of the output, regenerate with
//! `CLAIMBENCH_BLESS=1 cargo test --test check_output` and review the diff.

use assert_cmd::Command;
use claimbench::manifest::Manifest;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every manifest under `scenarios/` and `tests/manifests/`, relative to the package root.
fn manifests() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in ["scenarios", "tests/manifests"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                found.push(path.strip_prefix(root()).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

fn golden_name(manifest: &Path, profile: &str) -> String {
    let dir = manifest
        .parent()
        .unwrap()
        .to_string_lossy()
        .replace('/', "-");
    let stem = manifest.file_stem().unwrap().to_string_lossy();
    format!("{dir}-{stem}.{profile}.txt")
}

#[test]
fn check_output_of_every_shipped_manifest_is_unchanged() {
    let bless = std::env::var_os("CLAIMBENCH_BLESS").is_some();
    let golden_dir = root().join("tests/golden/check");
    let mut compared = 0;
    let mut differing = Vec::new();
    for manifest in manifests() {
        let parsed = Manifest::from_path(&root().join(&manifest)).unwrap_or_else(|e| panic!("{e}"));
        for profile in parsed.profiles().iter().map(String::as_str).chain(["base"]) {
            let output = Command::cargo_bin("claimbench")
                .unwrap()
                .current_dir(root())
                .env("NO_COLOR", "1")
                .args(["check", manifest.to_str().unwrap(), "--profile", profile])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "check {} --profile {profile} failed: {}",
                manifest.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let path = golden_dir.join(golden_name(&manifest, profile));
            if bless {
                std::fs::create_dir_all(&golden_dir).unwrap();
                std::fs::write(&path, &output.stdout).unwrap();
                continue;
            }
            let expected = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (bless to create it)", path.display()));
            if expected != output.stdout {
                differing.push(path.display().to_string());
            }
            compared += 1;
        }
    }
    assert!(
        differing.is_empty(),
        "`claimbench check` output differs from {differing:?}"
    );
    if !bless {
        // Five note manifests with three profiles each, plus the others: a count far below
        // this means manifests or golden files went missing.
        assert!(compared >= 20, "only {compared} outputs compared");
    }
}

/// The README's example manifest is one a user can copy: `claimbench check` accepts it.
#[test]
fn the_readme_example_manifest_checks() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Scenario manifests").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    assert!(example.starts_with("[suite]"), "{example}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.toml");
    std::fs::write(&path, example).unwrap();
    let output = Command::cargo_bin("claimbench")
        .unwrap()
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the README example does not check: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
