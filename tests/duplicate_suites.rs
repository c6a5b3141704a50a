//! One run holds each suite once: two manifests with one suite name (or names that give one
//! file name), or one manifest given twice, are refused before anything runs.

mod common;

use common::{files_under, sleep_suite, Sandbox};
use predicates::prelude::*;

#[test]
fn a_suite_named_twice_in_one_run_is_refused() {
    let sb = Sandbox::new();
    let first = sb.manifest("a.toml", &sleep_suite("naps", 1, &[("a", 1.0)]));
    let second = sb.manifest("b.toml", &sleep_suite("naps", 1, &[("a", 60.0)]));
    let collide = sb.manifest("c.toml", &sleep_suite("nap.s", 1, &[("a", 1.0)]));
    let other = sb.manifest("d.toml", &sleep_suite("nap-s", 1, &[("a", 1.0)]));
    for (x, y, says) in [
        (&first, &second, "both define suite `naps`"),
        (&first, &first, "both define suite `naps`"),
        (&collide, &other, "whose file names collide"),
    ] {
        sb.cmd()
            .args(["run", "--quiet", x, y])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
    assert!(
        !sb.path().join("results/runs").exists(),
        "nothing ran or was recorded"
    );
}

/// Suites `nap.x` and `nap-x` map to one file name. Across runs, the second is refused
/// wherever the first has stored something (a baseline, a history), and the first's files are
/// left as they were.
#[test]
fn suites_whose_file_names_collide_across_runs_never_share_stored_files() {
    let sb = Sandbox::new();
    let dotted = sb.manifest("dotted.toml", &sleep_suite("nap.x", 1, &[("a", 1.0)]));
    let dashed = sb.manifest("dashed.toml", &sleep_suite("nap-x", 1, &[("a", 1.0)]));
    let first_run = sb.run_quiet(&dotted);
    sb.cmd().args(["baseline", "accept"]).assert().success();
    let baseline = std::fs::read_dir(sb.path().join("results/baselines"))
        .unwrap()
        .flat_map(|stack| std::fs::read_dir(stack.unwrap().path()).unwrap())
        .map(|profile| profile.unwrap().path().join("nap-x.json"))
        .find(|p| p.is_file())
        .expect("the baseline of nap.x is stored as nap-x.json");
    let stored = std::fs::read(&baseline).unwrap();

    // A run of the other suite is refused before it starts, naming both suites.
    sb.cmd()
        .args(["run", "--quiet", &dashed])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "holds the baseline of suite `nap.x`, and suite `nap-x` maps to the same file name",
        ));
    assert_eq!(sb.newest_run(), first_run, "nothing new was recorded");

    // Its history alone is enough to refuse it.
    let other = Sandbox::new();
    let dotted_there = other.manifest("dotted.toml", &sleep_suite("nap.x", 1, &[("a", 1.0)]));
    let dashed_there = other.manifest("dashed.toml", &sleep_suite("nap-x", 1, &[("a", 1.0)]));
    other.run_quiet(&dotted_there);
    other
        .cmd()
        .args(["run", "--quiet", &dashed_there])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "holds the history of suite `nap.x`",
        ));

    // A run of `nap-x` recorded elsewhere cannot be accepted over `nap.x`'s baseline.
    let elsewhere = Sandbox::new();
    let dashed_elsewhere =
        elsewhere.manifest("dashed.toml", &sleep_suite("nap-x", 1, &[("a", 1.0)]));
    let dashed_run = elsewhere.run_quiet(&dashed_elsewhere);
    let results = sb.path().join("results");
    for action in ["save", "accept"] {
        sb.cmd()
            .args(["baseline", action, &dashed_run, "--results"])
            .arg(&results)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "holds the baseline of suite `nap.x`",
            ));
    }
    assert_eq!(
        std::fs::read(&baseline).unwrap(),
        stored,
        "the baseline is unchanged"
    );
    let mut previous = baseline.clone().into_os_string();
    previous.push(".prev");
    assert!(
        !std::path::Path::new(&previous).exists(),
        "nothing was moved aside"
    );

    // Nor is `nap.x`'s baseline ever compared against as `nap-x`'s.
    sb.cmd()
        .args(["compare", &dashed_run, "--results"])
        .arg(&results)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "holds the baseline of suite `nap.x`",
        ));
}

/// Variants `v.1` and `v-1` of one suite, in different runs, share a history folder: the
/// second is not appended to the first's series, and the run says so.
#[test]
fn a_variant_never_joins_the_history_of_another_with_the_same_file_name() {
    let sb = Sandbox::new();
    let dotted = sb.manifest("a.toml", &sleep_suite("naps", 1, &[("v.1", 1.0)]));
    let dashed = sb.manifest("b.toml", &sleep_suite("naps", 1, &[("v-1", 1.0)]));
    sb.run_quiet(&dotted);
    let series: Vec<_> = files_under(&sb.path().join("results/history"))
        .into_iter()
        .filter(|p| p.ends_with("v-1/wall_ms.csv"))
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    let before = std::fs::read_to_string(&series[0]).unwrap();
    sb.cmd()
        .args(["run", "--quiet", &dashed])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "holds the history of variant `v.1`, and variant `v-1` maps to the same file name",
        ));
    assert_eq!(std::fs::read_to_string(&series[0]).unwrap(), before);
}
