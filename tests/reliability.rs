//! Nothing lost, nothing silently wrong: incomplete runs, bad records and bad baselines are
//! refused with a clear error, a replaced baseline is kept, `dist` never deletes what it did
//! not write.

mod common;

use common::{sleep_suite, Sandbox};
use predicates::str::contains;
use std::path::{Path, PathBuf};

/// One run of a small `sleep` suite (one process per variant); returns its folder.
fn small_run(sb: &Sandbox) -> String {
    let manifest = sb.manifest(
        "naps.toml",
        &sleep_suite("naps", 1, &[("a", 2.0), ("b", 3.0)]),
    );
    sb.run_quiet(&manifest)
}

/// Rewrites `samples.csv` of `run` through `edit` (lines without their newline).
fn edit_samples(run: &str, edit: impl FnOnce(&mut Vec<String>)) {
    let path = Path::new(run).join("samples.csv");
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    edit(&mut lines);
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Sets `column` of data row `row` (0 = the first row after the header).
fn set_cell(lines: &mut [String], row: usize, column: &str, value: &str) {
    let at = lines[0].split(',').position(|h| h == column).unwrap();
    let mut cells: Vec<String> = lines[row + 1].split(',').map(String::from).collect();
    cells[at] = value.into();
    lines[row + 1] = cells.join(",");
}

/// Removes `column` from every line.
fn drop_column(lines: &mut [String], column: &str) {
    let at = lines[0].split(',').position(|h| h == column).unwrap();
    for line in lines.iter_mut() {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells.remove(at);
        *line = cells.join(",");
    }
}

/// The one stored baseline file.
fn baseline_file(sb: &Sandbox) -> PathBuf {
    let dir = std::fs::read_dir(sb.path().join("results/baselines"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // `<stack>/<profile>/`: the suite has no profiles, so `base`.
    dir.join("base/naps.json")
}

/// A sandbox with one run stored as the baseline: the sandbox, the run, the baseline's bytes.
fn saved_baseline() -> (Sandbox, String, Vec<u8>) {
    let sb = Sandbox::new();
    let run = small_run(&sb);
    sb.cmd().args(["baseline", "save", &run]).assert().success();
    let bytes = std::fs::read(baseline_file(&sb)).unwrap();
    (sb, run, bytes)
}

#[test]
fn a_run_that_never_finished_is_reported_as_cut_short_and_is_no_baseline() {
    let sb = Sandbox::new();
    let run = small_run(&sb);
    let path = Path::new(&run).join("run.json");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    record["finished_at"] = serde_json::Value::Null;
    std::fs::write(&path, serde_json::to_string_pretty(&record).unwrap()).unwrap();

    sb.cmd()
        .args(["report", &run])
        .assert()
        .success()
        .stdout(contains(
            "incomplete run: cut short because it never finished",
        ));
    let markdown = std::fs::read_to_string(Path::new(&run).join("report.md")).unwrap();
    assert!(markdown.contains("**Incomplete**"), "{markdown}");
    let html = std::fs::read_to_string(Path::new(&run).join("report.html")).unwrap();
    assert!(html.contains("Incomplete: the run was cut short"));
    for action in ["save", "accept"] {
        sb.cmd()
            .args(["baseline", action, &run])
            .assert()
            .code(2)
            .stderr(contains("the run is incomplete, it never finished"));
    }
    assert!(!sb.path().join("results/baselines").exists());
}

#[test]
fn accept_refuses_non_finite_metrics_and_keeps_the_good_baseline() {
    let (sb, first, good) = saved_baseline();
    let second = small_run(&sb);
    for value in ["NaN", "inf", "-inf"] {
        edit_samples(&second, |lines| set_cell(lines, 1, "wall_ms", value));
        sb.cmd()
            .args(["baseline", "accept", &second])
            .assert()
            .code(2)
            .stderr(contains(
                "variant `a`, metric `wall_ms`: 1 missing or non-finite value",
            ));
        assert_eq!(std::fs::read(baseline_file(&sb)).unwrap(), good, "{value}");
    }
    // The stored baseline still works.
    sb.cmd().args(["compare", &first]).assert().success();
}

#[test]
fn accept_keeps_the_replaced_baseline_as_prev() {
    let (sb, _, old) = saved_baseline();
    let second = small_run(&sb);
    sb.cmd()
        .args(["baseline", "accept", &second])
        .assert()
        .success();
    let prev = baseline_file(&sb).with_file_name("naps.json.prev");
    assert_eq!(std::fs::read(prev).unwrap(), old);
    let new: serde_json::Value =
        serde_json::from_slice(&std::fs::read(baseline_file(&sb)).unwrap()).unwrap();
    assert_eq!(
        new["source_run"].as_str(),
        Path::new(&second).file_name().unwrap().to_str()
    );
}

#[test]
fn corrupt_samples_are_refused_naming_file_row_and_column() {
    type Edit = Box<dyn Fn(&mut Vec<String>)>;
    let mut cases: Vec<(String, Edit, String)> = vec![
        (
            "empty file".into(),
            Box::new(|l| l.clear()),
            "samples.csv: empty file".into(),
        ),
        (
            "header only".into(),
            Box::new(|l| l.truncate(1)),
            "disagrees with run.json: suite `naps`, variant `a`, process 0: run.json records 5 measured call(s), samples.csv has 0".into(),
        ),
        (
            "negative process".into(),
            Box::new(|l| set_cell(l, 2, "process", "-1")),
            "samples.csv: row 4, column process: `-1` is not a whole number".into(),
        ),
        (
            "warmup TRUE".into(),
            Box::new(|l| set_cell(l, 0, "warmup", "TRUE")),
            "samples.csv: row 2, column warmup: `TRUE` is neither".into(),
        ),
        (
            "unknown variant".into(),
            Box::new(|l| set_cell(l, 3, "variant", "zz")),
            "samples.csv: row 5, column variant: unknown variant `zz` of suite `naps`".into(),
        ),
    ];
    for column in ["variant", "process", "warmup", "wall_ms"] {
        cases.push((
            format!("no {column} column"),
            Box::new(move |l| drop_column(l, column)),
            format!("samples.csv: missing column `{column}`"),
        ));
    }
    let (sb, first, good) = saved_baseline();
    let pristine = std::fs::read(Path::new(&first).join("samples.csv")).unwrap();
    for (case, edit, message) in cases {
        std::fs::write(Path::new(&first).join("samples.csv"), &pristine).unwrap();
        edit_samples(&first, |lines| edit(lines));
        for args in [
            vec!["report", &first],
            vec!["compare", &first],
            vec!["baseline", "accept", &first],
        ] {
            let out = sb.cmd().args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{case}, {args:?}: {stderr}");
            assert!(stderr.contains(&message), "{case}, {args:?}: {stderr}");
        }
        assert_eq!(std::fs::read(baseline_file(&sb)).unwrap(), good, "{case}");
    }
}

#[test]
fn samples_that_disagree_with_run_json_are_refused() {
    // What a write error between the two files left behind before they were written in order:
    // run.json lists a process whose rows samples.csv lacks.
    let sb = Sandbox::new();
    let run = small_run(&sb);
    edit_samples(&run, |lines| {
        lines.retain(|l| !l.starts_with("naps,b,"));
    });
    for args in [
        vec!["report", &run],
        vec!["compare", &run],
        vec!["baseline", "save", &run],
    ] {
        sb.cmd().args(&args).assert().code(2).stderr(contains(
            "samples.csv disagrees with run.json: suite `naps`, variant `b`, process 0",
        ));
    }
}

/// A sandbox with a `scenarios/` folder of one manifest.
fn sandbox_with_scenarios() -> Sandbox {
    let sb = Sandbox::new();
    let scenarios = sb.path().join("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    let text = sleep_suite("naps", 1, &[("a", 2.0)]);
    std::fs::write(scenarios.join("naps.toml"), text).unwrap();
    sb
}

#[test]
fn dist_refuses_a_folder_that_is_not_a_previous_dist() {
    let sb = sandbox_with_scenarios();
    let precious = sb.path().join("myresults");
    std::fs::create_dir_all(precious.join("baselines")).unwrap();
    std::fs::write(precious.join("notes.txt"), "precious").unwrap();
    sb.cmd()
        .args(["dist", "--out", "myresults"])
        .assert()
        .code(2)
        .stderr(contains("refusing to write the dist into myresults"));
    assert_eq!(
        std::fs::read_to_string(precious.join("notes.txt")).unwrap(),
        "precious"
    );
    assert!(precious.join("baselines").is_dir());

    // `--out .` in a working directory: refused, nothing removed.
    sb.cmd()
        .args(["dist", "--out", "."])
        .assert()
        .code(2)
        .stderr(contains("not a previous `claimbench dist` folder"));
    for kept in ["scenarios/naps.toml", "manifests", "myresults/notes.txt"] {
        assert!(sb.path().join(kept).exists(), "{kept} was removed");
    }
}

#[test]
fn dist_replaces_a_previous_dist_and_leaves_other_files() {
    let sb = sandbox_with_scenarios();
    sb.cmd().args(["dist", "--out", "pack"]).assert().success();
    let pack = sb.path().join("pack");
    std::fs::write(pack.join("scenarios/old.toml"), "stale").unwrap();
    std::fs::write(pack.join("notes.txt"), "mine").unwrap();
    sb.cmd().args(["dist", "--out", "pack"]).assert().success();
    assert!(pack.join("claimbench-engine").is_file());
    assert!(pack.join("scenarios/naps.toml").is_file());
    assert!(
        !pack.join("scenarios/old.toml").exists(),
        "scenarios not replaced"
    );
    assert_eq!(
        std::fs::read_to_string(pack.join("notes.txt")).unwrap(),
        "mine"
    );
    // An empty folder is fine too.
    std::fs::create_dir(sb.path().join("empty")).unwrap();
    sb.cmd().args(["dist", "--out", "empty"]).assert().success();
}

#[test]
fn the_gate_reports_a_metric_missing_on_one_side_as_not_compared() {
    let (sb, run, _) = saved_baseline();
    let path = baseline_file(&sb);
    let mut baseline: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // Variants are stored in plan order: `b` is the second.
    assert_eq!(baseline["variants"][1]["name"], "b");
    let metrics = baseline["variants"][1]["metrics"].as_object_mut().unwrap();
    assert!(metrics.remove("wall_ms").is_some());
    std::fs::write(&path, serde_json::to_vec_pretty(&baseline).unwrap()).unwrap();

    sb.cmd()
        .args(["compare", &run])
        .assert()
        .success()
        .stdout(contains("not compared"));
    let compare: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&run).join("compare.json")).unwrap())
            .unwrap();
    let entries = compare["entries"].as_array().cloned().unwrap_or_default();
    let entry = entries
        .into_iter()
        .find(|e| e["variant"] == "b" && e["metric"] == "wall_ms")
        .unwrap_or_else(|| panic!("variant b's wall_ms left out of the gate: {compare}"));
    assert_eq!(entry["verdict"], "not-compared");
    assert_eq!(entry["reason"], "no `wall_ms` values in the baseline");
}
