//! `run --shard I/N` and `merge`: shards of a `sleep` run merge into the record, verdicts and
//! report an unsharded run with the same samples gives; shards that do not belong together,
//! are missing or were interrupted are refused with their exit codes.

mod common;

use common::{only_run, sleep_claims, sleep_suite, Sandbox};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Runs `manifest` as shard `i`/`n` into `results-shard-i`; returns the run folder.
fn run_shard(sandbox: &Sandbox, manifest: &str, i: u32, n: u32) -> PathBuf {
    let results = sandbox.path().join(format!("results-shard-{i}"));
    sandbox
        .cmd()
        .args(["run", "--quiet", manifest, "--shard", &format!("{i}/{n}")])
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    only_run(&results)
}

fn claim_verdicts(report: &Value) -> Vec<(String, String)> {
    report["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].to_string(), c["verdict"].to_string()))
        .collect()
}

/// The merged run folder (the newest under `results`).
fn merged_run(sandbox: &Sandbox) -> PathBuf {
    PathBuf::from(sandbox.newest_run())
}

#[test]
fn shards_merge_into_the_unsharded_run() {
    let sandbox = Sandbox::new();
    // Four processes per variant: claims use per-process medians; a range wide enough that
    // the shards' own samples (another measurement) confirm it too.
    let manifest = sandbox.manifest(
        "naps.toml",
        &sleep_claims()
            .replace("processes = 3", "processes = 4")
            .replace("40%..60%", "10%..90%"),
    );
    let full = PathBuf::from(sandbox.run_quiet(&manifest));
    let shards: Vec<PathBuf> = (0..3)
        .map(|i| run_shard(&sandbox, &manifest, i, 3))
        .collect();

    // Each shard says which part it ran; together they cover the plan once.
    let mut all = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let record = read_json(&shard.join("run.json"));
        assert_eq!(record["shard"]["index"], i as u64);
        assert_eq!(record["shard"]["count"], 3);
        let jobs = record["shard"]["jobs"].as_array().unwrap().clone();
        let processes = record["suites"][0]["processes"].as_array().unwrap();
        assert_eq!(processes.len(), jobs.len());
        for p in processes {
            assert!(p["placement"]["host"]
                .as_str()
                .is_some_and(|h| !h.is_empty()));
        }
        all.extend(jobs);
    }
    assert_eq!(all.len(), 8, "{all:?}");
    let hashes: Vec<Value> = shards
        .iter()
        .map(|s| read_json(&s.join("run.json"))["shard"]["plan_hash"].clone())
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));

    // Merging the real shards (in any order) gives the unsharded verdicts.
    sandbox
        .cmd()
        .args(["merge", "--results", "results"])
        .args([&shards[2], &shards[0], &shards[1]])
        .assert()
        .success();
    let merged = merged_run(&sandbox);
    let merged_record = read_json(&merged.join("run.json"));
    assert_eq!(merged_record["merged_from"]["count"], 3);
    assert!(merged_record.get("shard").is_none());
    let verdicts = claim_verdicts(&read_json(&merged.join("report.json")));
    assert_eq!(
        verdicts,
        claim_verdicts(&read_json(&full.join("report.json")))
    );
    assert!(
        verdicts.iter().any(|(_, v)| v == "\"confirmed\""),
        "{verdicts:?}"
    );
    for p in merged_record["suites"][0]["processes"].as_array().unwrap() {
        let log = p["log_file"].as_str().unwrap();
        assert!(merged.join(log).is_file(), "{log} copied");
    }

    // The unsharded run's own samples, split as the shards were and merged, give exactly its
    // record and report.
    // (scripts/split_run.py: the same check on a GPU box.)
    let split_results = sandbox.path().join("split");
    let status = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/split_run.py"))
        .arg(&full)
        .args(&shards)
        .arg("--out")
        .arg(&split_results)
        .status()
        .unwrap();
    assert!(status.success());
    let parts: Vec<PathBuf> = (0..3)
        .map(|i| split_results.join(format!("runs/part-{i}")))
        .collect();
    let out = sandbox.path().join("merged-split");
    sandbox
        .cmd()
        .arg("merge")
        .args(&parts)
        .arg("--results")
        .arg(&out)
        .assert()
        .success();
    let again = only_run(&out);
    assert_eq!(
        std::fs::read(again.join("samples.csv")).unwrap(),
        std::fs::read(full.join("samples.csv")).unwrap(),
        "samples in the unsharded order"
    );
    let (a, b) = (
        read_json(&again.join("run.json")),
        read_json(&full.join("run.json")),
    );
    assert_eq!(a["suites"], b["suites"]);
    assert_eq!(
        a["fingerprint"]["torch_version"],
        b["fingerprint"]["torch_version"]
    );
    // The unsharded record analysed as stored (`run`'s own report used the in-memory samples,
    // which the CSV round trip may change in the last digit).
    let reread = sandbox.path().join("reread");
    sandbox
        .cmd()
        .arg("report")
        .arg(&full)
        .arg("--out")
        .arg(&reread)
        .assert()
        .success();
    let (ra, rb) = (
        read_json(&again.join("report.json")),
        read_json(&reread.join("report.json")),
    );
    assert!(!rb["claims"].as_array().unwrap().is_empty());
    assert!(!rb["suites"].as_array().unwrap().is_empty());
    for key in ["suites", "claims", "quality", "gate"] {
        assert_eq!(ra[key], rb[key], "report.json `{key}`");
    }
    for key in [
        "started_at",
        "finished_at",
        "interrupted",
        "incomplete",
        "device",
    ] {
        assert_eq!(ra["run"][key], rb["run"][key], "report.json `run.{key}`");
    }
}

#[test]
fn merge_refuses_shards_that_do_not_add_up() {
    let sandbox = Sandbox::new();
    let manifest = sandbox.manifest(
        "naps.toml",
        &sleep_suite("naps", 2, &[("a", 5.0), ("b", 5.0)]),
    );
    let other = sandbox.manifest(
        "other.toml",
        &sleep_suite("naps", 2, &[("a", 5.0), ("b", 6.0)]),
    );
    let s0 = run_shard(&sandbox, &manifest, 0, 2);
    let s1 = run_shard(&sandbox, &manifest, 1, 2);
    let alien = {
        let results = sandbox.path().join("results-alien");
        sandbox
            .cmd()
            .args(["run", "--quiet", &other, "--shard", "1/2", "--results"])
            .arg(&results)
            .assert()
            .success();
        only_run(&results)
    };
    let merge = |runs: &[&Path]| {
        let out = sandbox.cmd().arg("merge").args(runs).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, err) = merge(&[&s0, &alien]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("plan hashes"), "{err}");

    let (code, err) = merge(&[&s0, &s0]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("shard 0/2 is given twice"), "{err}");

    let (code, err) = merge(&[&s1]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("shard(s) 0/2 missing"), "{err}");
    let lost = read_json(&s0.join("run.json"))["shard"]["jobs"][0]["variant"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("naps {lost} p")),
        "names what did not run: {err}"
    );

    let unsharded = PathBuf::from(sandbox.run_quiet(&manifest));
    let (code, err) = merge(&[&s0, &unsharded]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a shard"), "{err}");

    // Another torch version: another software stack.
    let edited = sandbox.path().join("edited/runs/x");
    copy_dir(&s1, &edited);
    let mut record = read_json(&edited.join("run.json"));
    record["fingerprint"]["torch_version"] = "0.0.1".into();
    write_json(&edited.join("run.json"), &record);
    let (code, err) = merge(&[&s0, &edited]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("different hardware or software"), "{err}");

    // An interrupted shard is reported, never merged as complete.
    let mut record = read_json(&s1.join("run.json"));
    record["interrupted"] = true.into();
    record["interrupted_by"] = "SIGTERM".into();
    write_json(&edited.join("run.json"), &record);
    let (code, err) = merge(&[&s0, &edited]);
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("shard 1/2") && err.contains("interrupted by SIGTERM"),
        "{err}"
    );
    let before = std::fs::read_dir(sandbox.path().join("results/runs"))
        .unwrap()
        .count();
    assert_eq!(before, 1, "a refused merge writes nothing");
    let out = sandbox
        .cmd()
        .args(["merge", "--allow-incomplete"])
        .args([&s0, &edited])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let merged = merged_run(&sandbox);
    let record = read_json(&merged.join("run.json"));
    assert_eq!(record["interrupted"], true);
    assert!(record["merged_from"]["shards"][1]["incomplete"]
        .as_str()
        .unwrap()
        .contains("SIGTERM"));
    // Baselines refuse it like any incomplete run.
    sandbox
        .cmd()
        .args(["baseline", "save"])
        .arg(&merged)
        .assert()
        .code(2);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn shard_arguments_are_checked() {
    let sandbox = Sandbox::new();
    let manifest = sandbox.manifest("naps.toml", &sleep_suite("naps", 1, &[("a", 1.0)]));
    let out = sandbox
        .cmd()
        .args(["run", &manifest, "--shard", "2/2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shards are numbered 0 to 1"));
    let out = sandbox
        .cmd()
        .args(["run", &manifest, "--shard-costs", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--shard-costs needs --shard");
}
