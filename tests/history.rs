//! Metric histories end to end: `run` appends each complete run's per-process medians, and
//! `history` and `report` find a persistent shift in them.

mod common;

use common::Sandbox;
use predicates::prelude::*;
use std::path::PathBuf;

/// The history file of the `naps/nap` wall time, wherever the stack folder is.
fn wall_history(sb: &Sandbox) -> PathBuf {
    let root = sb.path().join("results/history");
    let stacks: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    stacks[0].join("base/naps/nap/wall_ms.csv")
}

#[test]
fn runs_append_to_the_history_and_a_shift_is_reported() {
    let sb = Sandbox::new();
    let manifest = sb.manifest(
        "naps.toml",
        &common::sleep_suite("naps", 2, &[("nap", 5.0)]),
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(sb.run_quiet(&manifest));
    }
    let path = wall_history(&sb);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The header, then one row per process of each run, in run order.
    assert_eq!(lines[0], "run_id,commit,time,process,value");
    assert_eq!(lines.len(), 1 + 3 * 2, "{text}");
    for (i, run) in runs.iter().enumerate() {
        let id = run.rsplit('/').next().unwrap();
        for process in 0..2 {
            let row: Vec<&str> = lines[1 + 2 * i + process].split(',').collect();
            assert_eq!(row[0], id);
            assert_eq!(row[3], process.to_string());
            let value: f64 = row[4].parse().unwrap();
            assert!((5.0..50.0).contains(&value), "{value}");
        }
    }
    // No shift yet: the history lists the series and its runs.
    sb.cmd()
        .args(["history", "--runs", "wall_ms"])
        .assert()
        .success()
        .stdout(predicate::str::contains("naps/nap wall_ms  3 run(s)"))
        .stdout(predicate::str::contains("0 shift(s)"))
        .stdout(predicate::str::contains("2 process(es)"));

    // Six earlier runs at half the time, as if the code had slowed down since: a persistent
    // doubling, three runs ago.
    let mut earlier = String::from("run_id,commit,time,process,value\n");
    for i in 0..6 {
        for process in 0..2 {
            earlier.push_str(&format!(
                "old-{i},c{i},2026-11-0{}T02:00:00Z,{process},{}\n",
                i + 1,
                2.5 + 0.01 * i as f64
            ));
        }
    }
    let text = earlier + &lines[1..].join("\n") + "\n";
    std::fs::write(&path, text).unwrap();
    let newest = runs.last().unwrap();
    sb.cmd()
        .args(["history", "wall_ms"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 shift(s)"))
        .stdout(predicate::str::contains("between old-5 (c5) and"))
        .stdout(predicate::str::contains("[recent, worse]"));
    sb.cmd()
        .args(["report", newest])
        .assert()
        .success()
        .stdout(predicate::str::contains("persistent shifts"))
        .stdout(predicate::str::contains("naps/nap"));
    let md = std::fs::read_to_string(PathBuf::from(newest).join("report.md")).unwrap();
    assert!(md.contains("### Persistent shifts"), "{md}");
    assert!(md.contains("old-5 (c5) →"), "{md}");
    let html = std::fs::read_to_string(PathBuf::from(newest).join("report.html")).unwrap();
    assert!(html.contains("<h2 id=\"shifts\">Persistent shifts</h2>"));
    sb.cmd()
        .args(["report", newest, "--fail-on-change-point"])
        .assert()
        .code(6);
    // A larger minimum magnitude than the shift: nothing to report or fail on.
    sb.cmd()
        .args([
            "report",
            newest,
            "--fail-on-change-point",
            "--min-shift",
            "2",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("persistent shifts").not());

    // A crash mid-append leaves a half-written line: ignored with a warning, then cut off by
    // the next run, whose rows follow the earlier ones intact.
    let before = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, before.clone() + "cut-short,c9,2026-").unwrap();
    sb.cmd()
        .args(["history", "wall_ms"])
        .assert()
        .success()
        .stderr(predicate::str::contains("half-written"))
        .stderr(predicate::str::contains("wall_ms.csv: line"));
    sb.cmd()
        .args(["run", "--quiet", "--fail-on-change-point", &manifest])
        .assert()
        .code(6)
        .stderr(predicate::str::contains("dropped a half-written line"));
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.starts_with(&before), "earlier rows changed");
    assert!(!after.contains("cut-short"));
    assert_eq!(after.lines().count(), before.lines().count() + 2);
}

#[test]
fn a_broken_history_row_is_an_input_error_naming_file_and_line() {
    let sb = Sandbox::new();
    let manifest = sb.manifest(
        "naps.toml",
        &common::sleep_suite("naps", 1, &[("nap", 1.0)]),
    );
    sb.run_quiet(&manifest);
    let path = wall_history(&sb);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text + "x,c,t,0,not-a-number\n").unwrap();
    sb.cmd()
        .args(["history"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "wall_ms.csv: line 3: column value",
        ));
    // A report is about its run: the broken history is skipped with a warning.
    sb.cmd()
        .args(["report"])
        .assert()
        .success()
        .stderr(predicate::str::contains("history skipped"));
}
