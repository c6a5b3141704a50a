//! The measurement protocol's adaptive parts on the `sleep` workload: warm-up until settled,
//! measured calls until the median is precise, processes added within a budget.

mod common;

use common::Sandbox;

fn manifest(ms: u32, run: &str) -> String {
    format!(
        "[suite]\nname = \"adaptive\"\nworkload = \"sleep\"\n\n[params]\nms = {ms}\n\n[knobs]\ndevice = \"cpu\"\n\n[run]\n{run}\n\n[[variant]]\nname = \"nap\"\n"
    )
}

fn run(sb: &Sandbox, run: &str) -> serde_json::Value {
    run_sleeping(sb, 3, run)
}

fn run_sleeping(sb: &Sandbox, ms: u32, run: &str) -> serde_json::Value {
    let path = sb.manifest("adaptive.toml", &manifest(ms, run));
    sb.cmd().args(["run", "--quiet", &path]).assert().success();
    sb.run_json()
}

#[test]
fn warm_up_ends_when_settled_or_at_its_maximum() {
    // 30 ms calls: a scheduling delay of a few ms on a loaded 2-core machine then stays far
    // inside the tolerance (with 3 ms calls it did not, and warm-up took 5 calls).
    let sb = Sandbox::new();
    let record = run_sleeping(
        &sb,
        30,
        "warmup = 1\nwarmup_max = 10\nsettle = { window = 3, tolerance = 0.9 }\nrepetitions = 2",
    );
    let p = &record["suites"][0]["processes"][0];
    assert_eq!(
        p["warmup_calls"], 3,
        "three agreeing calls settle a window of 3: {p}"
    );
    assert_eq!(p["warmup_settled"], true);

    let sb = Sandbox::new();
    let record = run(
        &sb,
        "warmup = 1\nwarmup_max = 4\nsettle = { window = 3, tolerance = 1e-12 }\nrepetitions = 2",
    );
    let p = &record["suites"][0]["processes"][0];
    assert_eq!(
        p["warmup_calls"], 4,
        "an unreachable tolerance stops at warmup_max: {p}"
    );
    assert_eq!(p["warmup_settled"], false);

    let sb = Sandbox::new();
    let record = run(&sb, "warmup = 2\nsettle = false\nrepetitions = 2");
    assert_eq!(record["suites"][0]["processes"][0]["warmup_calls"], 2);
}

#[test]
fn measured_calls_stop_when_precise_or_at_the_maximum() {
    let sb = Sandbox::new();
    let record = run(
        &sb,
        "warmup = 0\nsettle = false\nrepetitions = 5\nrepetitions_max = 40\ntarget_rel_ci = 0.5",
    );
    let p = &record["suites"][0]["processes"][0];
    assert_eq!(p["stop"]["reason"], "precise", "{p}");
    assert!(p["samples"].as_u64().unwrap() < 40);
    assert!(p["stop"]["relative_ci"].as_f64().unwrap() <= 0.5);

    let sb = Sandbox::new();
    let record = run(
        &sb,
        "warmup = 0\nsettle = false\nrepetitions = 3\nrepetitions_max = 6\ntarget_rel_ci = 1e-9",
    );
    let p = &record["suites"][0]["processes"][0];
    assert_eq!(p["stop"]["reason"], "max", "{p}");
    assert_eq!(p["samples"], 6);
}

#[test]
fn processes_are_added_until_the_limit_within_the_budget() {
    let sb = Sandbox::new();
    let record = run(
        &sb,
        "warmup = 0\nsettle = false\nrepetitions = 2\nprocesses = 2\nprocesses_max = 4\ntarget_rel_ci = 1e-9\nadaptive_budget = \"5m\"",
    );
    let suite = &record["suites"][0];
    assert_eq!(suite["processes"].as_array().unwrap().len(), 4);
    let adaptive = &suite["adaptive"];
    assert_eq!(
        adaptive["variants"][0]["reason"], "processes_max reached",
        "{adaptive}"
    );
    assert_eq!(adaptive["variants"][0]["processes"], 4);
    assert!(adaptive["spent_s"].as_f64().unwrap() > 0.0);

    // A budget smaller than one process allows exactly one extra process.
    let sb = Sandbox::new();
    let record = run(
        &sb,
        "warmup = 0\nsettle = false\nrepetitions = 2\nprocesses = 2\nprocesses_max = 10\ntarget_rel_ci = 1e-9\nadaptive_budget = \"1ms\"",
    );
    let suite = &record["suites"][0];
    assert_eq!(suite["processes"].as_array().unwrap().len(), 3);
    assert_eq!(suite["adaptive"]["budget_exhausted"], true);
    assert_eq!(suite["adaptive"]["variants"][0]["reason"], "budget spent");
}
