//! `run --gpus`: one worker per GPU at a time, each pinned with `CUDA_VISIBLE_DEVICES`,
//! checked on CPU with the `sleep` workload and made-up GPU ids (workers on CPU ignore them).

mod common;

use common::{sleep_claims, Sandbox};
use serde_json::Value;

/// Each process's (variant, gpu, start, end) in seconds since the epoch.
fn spans(run: &Value) -> Vec<(String, String, f64, f64)> {
    run["suites"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let start = chrono::DateTime::parse_from_rfc3339(
                p["placement"]["started_at"].as_str().unwrap(),
            )
            .unwrap()
            .timestamp_millis() as f64
                / 1e3;
            (
                p["variant"].as_str().unwrap().to_string(),
                p["placement"]["gpu"].as_str().unwrap().to_string(),
                start,
                start + p["duration_ms"].as_f64().unwrap() / 1e3,
            )
        })
        .collect()
}

/// Start times are recorded to the millisecond (truncated), so spans that merely touch can
/// seem to overlap by under 1 ms; only an overlap longer than that counts.
fn overlap(a: &(String, String, f64, f64), b: &(String, String, f64, f64)) -> bool {
    const RESOLUTION_S: f64 = 1e-3;
    a.2 + RESOLUTION_S < b.3 && b.2 + RESOLUTION_S < a.3
}

fn run_with(extra: &[&str]) -> Value {
    let sandbox = Sandbox::new();
    // Long calls, so that side by side means side by side even on a loaded machine.
    let manifest = sandbox.manifest(
        "naps.toml",
        &sleep_claims()
            .replace("ms = 20", "ms = 150")
            .replace("ms = 30", "ms = 225"),
    );
    sandbox
        .cmd()
        .args(["run", "--quiet", &manifest])
        .args(extra)
        .assert()
        .success();
    let run = sandbox.run_json();
    // The record keeps the plan's order, whatever order workers finished in.
    let order: Vec<(String, u64)> = run["suites"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["variant"].as_str().unwrap().to_string(),
                p["process"].as_u64().unwrap(),
            )
        })
        .collect();
    let interleaved = [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)];
    assert_eq!(
        order,
        interleaved.map(|(v, p)| (v.to_string(), p)).to_vec(),
        "plan order"
    );
    run
}

#[test]
fn workers_run_side_by_side_one_per_gpu() {
    let run = run_with(&["--gpus", "7,9"]);
    let spans = spans(&run);
    assert_eq!(spans.len(), 6);
    for s in &spans {
        assert!(s.1 == "7" || s.1 == "9", "{s:?}");
    }
    for gpu in ["7", "9"] {
        let on: Vec<_> = spans.iter().filter(|s| s.1 == gpu).collect();
        assert!(!on.is_empty(), "GPU {gpu} unused: {spans:?}");
        // One worker per GPU at a time.
        for (i, a) in on.iter().enumerate() {
            for b in &on[i + 1..] {
                assert!(!overlap(a, b), "two workers on GPU {gpu}: {a:?} {b:?}");
            }
        }
    }
    assert!(
        spans
            .iter()
            .enumerate()
            .any(|(i, a)| spans[i + 1..].iter().any(|b| overlap(a, b))),
        "no two workers ran at once: {spans:?}"
    );
}

#[test]
fn exclusive_variants_run_alone_and_claim_groups_share_a_gpu() {
    let run = run_with(&["--gpus", "7,9", "--exclusive", "b"]);
    let alone = spans(&run);
    for b in alone.iter().filter(|s| s.0 == "b") {
        for other in alone.iter().filter(|s| *s != b) {
            assert!(!overlap(b, other), "{b:?} had a neighbour: {other:?}");
        }
    }

    // `a` and `b` are compared by one claim: with claim groups they share one GPU.
    let run = run_with(&["--gpus", "7,9", "--spread", "claim-groups"]);
    let grouped = spans(&run);
    let gpus: std::collections::BTreeSet<&str> = grouped.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(gpus.len(), 1, "{grouped:?}");
}

#[test]
fn gpu_lists_are_checked() {
    let sandbox = Sandbox::new();
    let manifest = sandbox.manifest("naps.toml", &sleep_claims());
    let out = sandbox
        .cmd()
        .args(["run", &manifest, "--gpus", "0,0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GPU `0` is listed twice"));
    let out = sandbox
        .cmd()
        .args(["run", &manifest, "--spread", "claim-groups"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--spread needs --gpus");
}
