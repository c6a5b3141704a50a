//! Baselines and the regression gate end to end, on the `sleep` workload whose timings are
//! known in advance.

mod common;

use common::Sandbox;
use predicates::prelude::*;

/// Six processes: the least the gate judges time on.
fn sleep_manifest(ms: f64) -> String {
    common::sleep_suite("naps", 6, &[("nap", ms)])
}

#[test]
fn a_a_passes_and_a_slowdown_fails_the_gate() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", &sleep_manifest(20.0));
    sb.run_quiet(&manifest);
    let first = sb.newest_run();
    let saved = sb
        .cmd()
        .args(["baseline", "save", &first])
        .assert()
        .success();
    let path = String::from_utf8(saved.get_output().stdout.clone()).unwrap();
    assert!(path.trim().ends_with("naps.json"), "{path}");
    assert!(path.contains("results/baselines/cpu_driver-none"), "{path}");

    // A/A: same configuration, separate processes.
    sb.cmd()
        .args(["run", "--quiet", "--compare", &manifest])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 regression(s)"));

    // The same variant made 50 % slower is flagged, and the exit code says so.
    std::fs::write(sb.path().join(&manifest), sleep_manifest(30.0)).unwrap();
    sb.cmd()
        .args(["run", "--quiet", "--compare", &manifest])
        .assert()
        .code(1)
        .stdout(predicate::str::is_match(r"regression\s+naps/nap\s+wall_ms").unwrap())
        .stdout(predicate::str::contains("params.ms: 20.0 → 30.0"));
    let compare: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&sb.newest_run()).join("compare.json"))
            .unwrap(),
    )
    .unwrap();
    let wall = compare["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric"] == "wall_ms")
        .unwrap();
    let change = wall["relative_change"].as_f64().unwrap();
    assert!((0.4..0.6).contains(&change), "measured change {change}");
    assert_eq!(wall["processes"], serde_json::json!([6, 6]));
}

#[test]
fn baselines_are_written_only_on_request_and_never_silently_replaced() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", &sleep_manifest(2.0));
    sb.run_quiet(&manifest);
    assert!(!sb.path().join("results/baselines").exists());
    let run = sb.newest_run();
    sb.cmd().args(["baseline", "save", &run]).assert().success();
    sb.cmd()
        .args(["baseline", "save", &run])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("baseline accept"));
    sb.cmd().args(["baseline", "accept"]).assert().success();
}

#[test]
fn comparing_across_hardware_is_refused_unless_allowed() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", &sleep_manifest(2.0));
    sb.run_quiet(&manifest);
    let run = sb.newest_run();
    let out = sb.cmd().args(["baseline", "save", &run]).assert().success();
    let path = String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .trim()
        .to_string();
    let mut baseline: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join(&path)).unwrap()).unwrap();
    baseline["key"]["gpu"] = "NVIDIA A100".into();
    let other = sb.path().join("other.json");
    std::fs::write(&other, serde_json::to_string(&baseline).unwrap()).unwrap();

    sb.cmd()
        .args(["compare", &run, "--baseline", "other.json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("GPU: cpu ≠ NVIDIA A100"))
        .stderr(predicate::str::contains("--allow-mismatch"));
    sb.cmd()
        .args([
            "compare",
            &run,
            "--baseline",
            "other.json",
            "--allow-mismatch",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "warning: baseline from different hardware",
        ));
}

#[test]
fn a_variant_that_now_runs_out_of_memory_is_a_regression() {
    let sb = Sandbox::new();
    let text = |gib: f64| {
        common::fault_manifest(
            "alloc",
            "1m",
            &[&format!(
                "name = \"buffer\"\nparams = {{ kind = \"alloc\", alloc_gib = {gib} }}"
            )],
        )
    };
    let manifest = sb.manifest("alloc.toml", &text(0.001));
    sb.run_quiet(&manifest);
    sb.cmd()
        .args(["baseline", "save", &sb.newest_run()])
        .assert()
        .success();
    std::fs::write(sb.path().join(&manifest), text(100000.0)).unwrap();
    sb.cmd()
        .args(["run", "--quiet", "--compare", &manifest])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "runs out of memory; the baseline fit",
        ));
}

#[test]
fn a_missing_baseline_fails_closed_and_says_what_exists() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", &sleep_manifest(2.0));
    let run = sb.run_quiet(&manifest);
    // Nothing stored yet: exit 5, with how to record one; allowed on request.
    sb.cmd()
        .args(["compare", &run])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("no baseline for naps"))
        .stderr(predicate::str::contains("claimbench baseline save RUN"));
    sb.cmd()
        .args(["compare", &run, "--allow-missing-baseline"])
        .assert()
        .success();
    // `run --compare` still writes its report before failing closed.
    sb.cmd()
        .args(["run", "--quiet", "--compare", &manifest])
        .assert()
        .code(5);
    assert!(std::path::Path::new(&sb.newest_run())
        .join("report.md")
        .is_file());

    // A baseline stored under another software stack (here: another driver) is named.
    let out = sb.cmd().args(["baseline", "save", &run]).assert().success();
    let path = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let stored = sb.path().join(path.trim());
    let folder = stored.parent().unwrap();
    let other = folder.with_file_name("cpu_driver-older_cuda-none_cudnn-none_torch-2-10-0");
    std::fs::rename(folder, &other).unwrap();
    sb.cmd()
        .args(["compare", &run])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "cpu_driver-older_cuda-none_cudnn-none_torch-2-10-0",
        ))
        .stderr(predicate::str::contains("--allow-mismatch"));
}
