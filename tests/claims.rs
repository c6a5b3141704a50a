//! Claims end to end: a manifest with claims on the `sleep` workload (timings known in advance)
//! and the `fault` workload (an allocation that cannot succeed), judged by `claimbench run`
//! and again by `claimbench report`, with the report files checked.

mod common;

use common::{sleep_claims, Sandbox};
use predicates::prelude::*;

const REFUTED: &str = r#"
[[claim]]
id = "T0-02"
source = "test note, section 2"
summary = "B is 10 % faster than A"
change = "-10%"
baseline = "a"
candidate = "b"
"#;

const OOM: &str = r#"[suite]
name = "alloc"
workload = "fault"

[knobs]
device = "cpu"

[run]
warmup = 1
settle = false
repetitions = 2

[[variant]]
name = "huge"
params = { kind = "alloc", alloc_gib = 100000.0 }

[[claim]]
id = "T1-01"
source = "test note, section 3"
summary = "a 100000 GiB buffer does not fit"
fit = false
variant = "huge"
"#;

/// The tests of this file measure sleeps; running them one at a time keeps the two workers
/// of one test from competing with those of the other on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn claim<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no claim {id}"))
}

#[test]
fn run_judges_claims_writes_reports_and_report_exits_1_on_a_refuted_claim() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sb = Sandbox::new();
    let naps = sb.manifest("naps.toml", &format!("{}{REFUTED}", sleep_claims()));
    let alloc = sb.manifest("alloc.toml", OOM);
    sb.cmd()
        .args(["run", "--quiet", &naps, &alloc])
        .assert()
        .code(1)
        .stdout(predicate::str::is_match(r"refuted\s+T0-02 \(naps\)").unwrap())
        .stdout(predicate::str::is_match(r"confirmed\s+T0-01 \(naps\)").unwrap())
        .stdout(predicate::str::is_match(r"confirmed\s+T1-01 \(alloc\)").unwrap());
    let dir = sb.run_dir();
    for file in [
        "report.md",
        "report.html",
        "junit.xml",
        "report.json",
        "bmf.json",
        "github-benchmark.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let slower = claim(&report, "T0-01");
    assert_eq!(slower["verdict"], "confirmed");
    let effect = slower["effect"]["estimate"].as_f64().unwrap();
    assert!((0.4..0.6).contains(&effect), "measured change {effect}");
    assert_eq!(claim(&report, "T0-02")["verdict"], "refuted");
    let oom = claim(&report, "T1-01");
    assert_eq!(oom["verdict"], "confirmed");
    assert_eq!(oom["observed"], "out of memory in 1 of 1 processes");

    // `report` judges the stored run again, writes where it is told, and fails on the refuted
    // claim; Markdown on stdout for a CI step summary.
    let out = sb.path().join("out");
    sb.cmd()
        .args(["report", "--format", "markdown", "--out"])
        .arg(&out)
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with(
            "## claimbench: 3 claims: 1 refuted, 2 confirmed",
        ))
        .stdout(predicate::str::contains(
            "| **T0-02** B is 10 % faster than A",
        ));
    assert_eq!(
        std::fs::read_to_string(out.join("report.md")).unwrap(),
        std::fs::read_to_string(dir.join("report.md")).unwrap(),
        "the same run gives the same report"
    );
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\""), "{junit}");
}

#[test]
fn report_exits_0_when_no_claim_is_refuted_and_checks_claims_at_load() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sb = Sandbox::new();
    let naps = sb.manifest("naps.toml", &sleep_claims());
    sb.cmd()
        .args(["run", "--quiet", &naps])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "0 refuted, 0 inconclusive, 0 insufficient replication, 1 confirmed, 0 not applicable",
        ));
    let run = sb.run_dir();
    sb.cmd()
        .arg("report")
        .arg(&run)
        .assert()
        .success()
        .stdout(predicate::str::contains("T0-01"));

    // A claim naming a variant that does not exist is a manifest error before anything runs.
    let typo = sb.manifest(
        "typo.toml",
        &sleep_claims().replace("candidate = \"b\"", "candidate = \"bb\""),
    );
    sb.cmd()
        .args(["check", &typo])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "manifests/typo.toml:28:13: unknown variant `bb` in `claim[0].candidate`\n  hint: did you mean `b`?",
        ));
}
