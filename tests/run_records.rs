//! `claimbench run` end to end on CPU: what lands in samples.csv and run.json.

mod common;

use common::Sandbox;

const SMALL_CONV: &str = r#"
[suite]
name = "small-conv"
workload = "conv_stack"

[params]
batch = 1
channels = 16
resolution = 8
blocks = 2
groups = 8

[knobs]
device = "cpu"

[run]
warmup = 1
settle = false
repetitions = 3
processes = 2
order = "interleaved"

[[variant]]
name = "default-knobs"

[[variant]]
name = "cudnn-off"
knobs = { cudnn.enabled = false, compile = "reduce-overhead", env = { CLAIMBENCH_TEST_MARKER = "1" } }
"#;

#[test]
fn run_writes_tidy_samples_and_a_complete_record() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("small.toml", SMALL_CONV);
    sb.cmd()
        .args(["run", "--quiet", &manifest])
        .assert()
        .success();

    let samples = sb.samples();
    // 2 variants × 2 processes × (1 warm-up + 3 measured) calls, every one kept.
    assert_eq!(samples.len(), 16);
    assert_eq!(
        samples.iter().filter(|s| s["warmup"] == "false").count(),
        12
    );
    for s in &samples {
        assert_eq!(s["suite"], "small-conv");
        let wall: f64 = s["wall_ms"].parse().unwrap();
        let conv: f64 = s["stage_convolutions_ms"].parse().unwrap();
        let attn: f64 = s["stage_attention_ms"].parse().unwrap();
        assert!(wall > 0.0 && conv > 0.0 && attn > 0.0);
        assert!(
            conv + attn <= wall * 1.0001,
            "stages {conv}+{attn} exceed the call's {wall} ms"
        );
        assert!(
            s["gpu_ms"].is_empty()
                && s["peak_allocated_bytes"].is_empty()
                && s["allocated_at_start_bytes"].is_empty(),
            "CPU run has GPU columns: {s:?}"
        );
        assert!(s["host_peak_rss_bytes"].parse::<u64>().unwrap() > 0);
    }
    // Interleaved: processes alternate between variants (ABAB).
    let order: Vec<(String, String)> = samples
        .iter()
        .filter(|s| s["call"] == "0")
        .map(|s| (s["variant"].clone(), s["process"].clone()))
        .collect();
    let expected = [
        ("default-knobs", "0"),
        ("cudnn-off", "0"),
        ("default-knobs", "1"),
        ("cudnn-off", "1"),
    ];
    assert_eq!(order, expected.map(|(v, p)| (v.to_string(), p.to_string())));

    let run = sb.run_json();
    assert_eq!(run["format_version"], "1.0");
    let fp = &run["fingerprint"];
    assert_eq!(fp["device"], "cpu");
    assert!(fp["torch_version"].as_str().unwrap().starts_with("2.11"));
    for key in ["harness_version", "git_commit", "host", "os", "started_at"] {
        assert!(
            fp[key].as_str().is_some_and(|s| !s.is_empty()),
            "fingerprint lacks {key}: {fp}"
        );
    }
    assert!(run["finished_at"].is_string());
    assert_eq!(run["interrupted"], false);
    let suite = &run["suites"][0];
    assert_eq!(suite["plan"]["manifest_sha256"].as_str().unwrap().len(), 64);
    let stored =
        std::fs::read_to_string(sb.run_dir().join(suite["manifest_file"].as_str().unwrap()))
            .unwrap();
    assert_eq!(stored, SMALL_CONV);
    let processes = suite["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 4);
    for p in processes {
        assert_eq!(p["status"], "ok", "{p}");
        assert_eq!(p["samples"], 3);
    }
    // Knobs reached libtorch (read back, not echoed) and were flagged as inert on CPU.
    let off = processes
        .iter()
        .find(|p| p["variant"] == "cudnn-off")
        .unwrap();
    assert_eq!(off["hello"]["backend_flags"]["cudnn_enabled"], false);
    let notes = off["hello"]["not_applicable"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("compile: torch.compile(mode=\"reduce-overhead\")")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("cudnn.enabled")),
        "{notes:?}"
    );
    let on = processes
        .iter()
        .find(|p| p["variant"] == "default-knobs")
        .unwrap();
    assert_eq!(on["hello"]["backend_flags"]["cudnn_enabled"], true);
    // Environment knobs were in the worker's own environment from its start.
    assert_eq!(off["hello"]["environment"]["CLAIMBENCH_TEST_MARKER"], "1");
    assert!(on["hello"]["environment"].as_object().unwrap().is_empty());
}

#[test]
fn check_prints_the_expanded_plan_without_running() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("small.toml", SMALL_CONV);
    let out = sb
        .cmd()
        .args(["check", &manifest])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("variant cudnn-off"), "{text}");
    assert!(text.contains("cudnn.enabled=false"), "{text}");
    assert!(
        !sb.path().join("results").exists(),
        "check must not record anything"
    );
}

#[test]
fn dist_folder_runs_from_any_working_directory() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("scenarios")).unwrap();
    std::fs::write(sb.path().join("scenarios/small.toml"), SMALL_CONV).unwrap();
    sb.cmd()
        .args(["dist", "--out", "pack", "--scenarios", "scenarios"])
        .assert()
        .success();
    for f in [
        "claimbench",
        "claimbench-engine",
        "scenarios/small.toml",
        "README.txt",
    ] {
        assert!(sb.path().join("pack").join(f).is_file(), "dist lacks {f}");
    }
    // The packed launcher runs the default suite from its own scenarios/ folder.
    let elsewhere = tempfile::tempdir().unwrap();
    assert_cmd::Command::new(sb.path().join("pack/claimbench"))
        .current_dir(elsewhere.path())
        .args(["run", "--quiet"])
        .assert()
        .success();
    let runs = std::fs::read_dir(elsewhere.path().join("results/runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 1);
}

#[test]
fn filter_keeps_variants_matching_any_comma_separated_text() {
    let sb = Sandbox::new();
    let manifest = sb.manifest(
        "naps.toml",
        "[suite]\nname = \"naps\"\nworkload = \"sleep\"\n\n[knobs]\ndevice = \"cpu\"\n\n[run]\nwarmup = 0\nsettle = false\nrepetitions = 1\n\n[[variant]]\nname = \"alpha\"\n\n[[variant]]\nname = \"beta\"\n\n[[variant]]\nname = \"gamma\"\n",
    );
    sb.cmd()
        .args(["run", "--quiet", "--filter", "alp, gam,", &manifest])
        .assert()
        .success();
    let mut ran: Vec<String> = sb
        .samples()
        .into_iter()
        .map(|s| s["variant"].clone())
        .collect();
    ran.sort();
    ran.dedup();
    assert_eq!(ran, ["alpha", "gamma"]);
    sb.cmd()
        .args(["run", "--quiet", "--filter", "delta,", &manifest])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no variant name contains"));
}
