//! Exit codes of commands that fail before any work: input errors are 2, failures of the
//! machine (I/O) are 3.

mod common;

use common::Sandbox;
use predicates::prelude::*;

#[test]
fn an_unreadable_run_record_is_an_environment_error() {
    let sb = Sandbox::new();
    // A run folder whose run.json cannot be read as a file.
    let run = sb.path().join("results/runs/20260101T000000Z-cpu-host");
    std::fs::create_dir_all(run.join("run.json")).unwrap();
    for command in ["compare", "report"] {
        sb.cmd()
            .args([command, "results/runs/20260101T000000Z-cpu-host"])
            .assert()
            .code(3)
            .stderr(predicate::str::contains(
                "error: cannot read run record results/runs/20260101T000000Z-cpu-host/run.json: ",
            ));
    }
}

#[test]
fn a_run_that_is_not_there_is_an_input_error() {
    let sb = Sandbox::new();
    sb.cmd()
        .args(["baseline", "save", "results/runs/nothing-here"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: cannot read run record results/runs/nothing-here/run.json: No such file or directory",
        ));
    sb.cmd()
        .args(["compare"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: no run found under results/runs",
        ));
}

#[test]
fn a_run_record_that_does_not_parse_is_an_input_error() {
    let sb = Sandbox::new();
    let run = sb.path().join("results/runs/20260101T000000Z-cpu-host");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("run.json"),
        r#"{"format_version": "1.0", "id": 3}"#,
    )
    .unwrap();
    sb.cmd()
        .args(["report"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unexpected run record layout"));
    std::fs::write(run.join("run.json"), r#"{"format_version": "2.0"}"#).unwrap();
    sb.cmd()
        .args(["report"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "format version 2.0 is not readable",
        ));
}
