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

    // The same variant made 50 % slower through its parameters is a configuration change:
    // not compared, and the table says what changed.
    std::fs::write(sb.path().join(&manifest), sleep_manifest(30.0)).unwrap();
    sb.cmd()
        .args(["run", "--quiet", "--compare", &manifest])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"not compared\s+naps/nap\s+\*").unwrap())
        .stdout(predicate::str::contains(
            "not compared: configuration changed",
        ))
        .stdout(predicate::str::contains("params.ms: 20.0 → 30.0"))
        .stdout(predicate::str::contains("0 regression(s)"));
    // Compared on request: flagged, and the exit code says so.
    sb.cmd()
        .args(["compare", &sb.newest_run(), "--allow-config-change"])
        .assert()
        .code(1)
        .stdout(predicate::str::is_match(r"regression\s+naps/nap\s+wall_ms").unwrap())
        .stdout(predicate::str::contains(
            "compared despite a configuration change",
        ))
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
    // The test changes the allocation through a parameter, which the gate would otherwise
    // report as a configuration change; in practice the code grows the allocation.
    std::fs::write(sb.path().join(&manifest), text(100000.0)).unwrap();
    sb.cmd()
        .args([
            "run",
            "--quiet",
            "--compare",
            "--allow-config-change",
            &manifest,
        ])
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
    let stack = stored.parent().unwrap().parent().unwrap();
    let other = stack.with_file_name("cpu_driver-older_cuda-none_cudnn-none_torch-2-10-0");
    std::fs::rename(stack, &other).unwrap();
    sb.cmd()
        .args(["compare", &run])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "cpu_driver-older_cuda-none_cudnn-none_torch-2-10-0/base",
        ))
        .stderr(predicate::str::contains("--allow-mismatch"));
}

/// A `sleep` suite with `quick` and `nightly` profiles of the same configuration.
fn profiled_manifest() -> String {
    sleep_manifest(5.0)
        + "\n[profiles.quick]\nrun = { repetitions = 3 }\n\n[profiles.nightly]\nrun = { repetitions = 5 }\n"
}

#[test]
fn baselines_are_kept_per_profile() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", &profiled_manifest());
    let quick = ["run", "--quiet", "--profile", "quick", &manifest];
    let quick_compare = [
        "run",
        "--quiet",
        "--profile",
        "quick",
        "--compare",
        &manifest,
    ];
    sb.cmd().args(quick).assert().success();
    let nightly_run = {
        sb.cmd()
            .args(["run", "--quiet", "--profile", "nightly", &manifest])
            .assert()
            .success();
        sb.newest_run()
    };
    // A nightly baseline is not a quick one: the quick run has none, and is told which exists.
    let saved = sb
        .cmd()
        .args(["baseline", "save", &nightly_run])
        .assert()
        .success()
        .stderr(predicate::str::contains("for profile nightly"));
    let path = String::from_utf8(saved.get_output().stdout.clone()).unwrap();
    assert!(path.trim().ends_with("/nightly/naps.json"), "{path}");
    sb.cmd()
        .args(quick_compare)
        .assert()
        .code(5)
        .stderr(predicate::str::contains("no baseline for profile quick"))
        .stderr(predicate::str::contains(
            "cpu_driver-none_cuda-none_cudnn-none_torch-",
        ))
        .stderr(predicate::str::contains("/nightly"))
        .stderr(predicate::str::contains("--profile quick"));
    let quick_run = sb.newest_run();

    // A quick baseline is used for quick runs.
    sb.cmd()
        .args(["baseline", "save", &quick_run])
        .assert()
        .success();
    sb.cmd().args(quick_compare).assert().success().stdout(
        predicate::str::is_match(r"(unchanged|inconclusive)\s+naps/nap\s+wall_ms").unwrap(),
    );
    let list = sb.cmd().args(["baseline", "list"]).assert().success();
    let list = String::from_utf8(list.get_output().stdout.clone()).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("nightly") && l.contains("naps")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("quick") && l.contains("naps")),
        "{list}"
    );
}

#[test]
fn baselines_stored_before_profiles_are_named_and_not_used() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", &profiled_manifest());
    sb.cmd()
        .args(["run", "--quiet", "--profile", "quick", &manifest])
        .assert()
        .success();
    let run = sb.newest_run();
    let out = sb.cmd().args(["baseline", "save", &run]).assert().success();
    // Moved to the old layout, with the key as it was then (no profile).
    let stored = sb.path().join(
        String::from_utf8(out.get_output().stdout.clone())
            .unwrap()
            .trim(),
    );
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stored).unwrap()).unwrap();
    old["key"].as_object_mut().unwrap().remove("profile");
    let legacy = stored.parent().unwrap().parent().unwrap().join("naps.json");
    std::fs::write(&legacy, serde_json::to_string(&old).unwrap()).unwrap();
    std::fs::remove_file(&stored).unwrap();

    let legacy_text = std::fs::read_to_string(&legacy).unwrap();
    sb.cmd()
        .args(["compare", &run])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "was stored before baselines were kept per profile",
        ))
        .stderr(predicate::str::contains(
            legacy.strip_prefix(sb.path()).unwrap().to_string_lossy(),
        ))
        .stderr(predicate::str::contains("claimbench baseline save RUN"));
    // Named explicitly, it loads, and its missing profile is a mismatch like any other.
    let legacy_arg = legacy.to_string_lossy().into_owned();
    sb.cmd()
        .args(["compare", &run, "--baseline", &legacy_arg])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("profile: quick ≠ unrecorded"));
    sb.cmd()
        .args([
            "compare",
            &run,
            "--baseline",
            &legacy_arg,
            "--allow-mismatch",
        ])
        .assert()
        .success();
    sb.cmd()
        .args(["baseline", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("unrecorded"))
        .stdout(predicate::str::contains("not used: re-baseline"));
    // Nothing recorded was changed.
    assert_eq!(std::fs::read_to_string(&legacy).unwrap(), legacy_text);
}
