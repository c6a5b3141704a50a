//! The simulated error rates meet their targets, and the README shows exactly these figures.

use super::*;
use std::sync::OnceLock;

/// Trials per cell: at least 1000 (Monte-Carlo standard error of a 95 % rate ≈ 0.7 points).
const TRIALS: usize = 1000;

fn simulation() -> &'static Simulation {
    static SIM: OnceLock<Simulation> = OnceLock::new();
    SIM.get_or_init(|| simulate(TRIALS))
}

#[test]
fn intervals_cover_at_least_93_percent_from_the_minimum_replication() {
    use crate::stats::MIN_PROCESSES_PER_SIDE as MIN;
    assert!(!judged(MIN - 1) && judged(MIN));
    let sim = simulation();
    for (model, n, coverage) in sim.change_coverage.iter().chain(&sim.bound_coverage) {
        assert!(
            *coverage >= 0.93,
            "{} with {n} processes: coverage {coverage}",
            model.name()
        );
    }
}

#[test]
fn claim_verdicts_never_contradict_between_runs_and_decide_when_processes_agree() {
    for (model, n, centre, far) in &simulation().claims {
        assert!(
            centre.contradicting_pairs <= 0.01 && far.contradicting_pairs <= 0.01,
            "{} n={n}: {centre:?} {far:?}",
            model.name()
        );
        // A true change in the middle of the range is rarely refuted.
        assert!(centre.refuted <= 0.03, "{} n={n}: {centre:?}", model.name());
        if *model == (Model::Nested { between_cv: 0.0 }) {
            assert!(far.refuted >= 0.95, "{} n={n}: {far:?}", model.name());
        }
    }
}

#[test]
fn the_gate_raises_a_false_regression_in_at_most_1_percent_of_runs() {
    use crate::stats::MIN_PROCESSES_FOR_GATE as MIN;
    assert!(simulation().gate.iter().all(|(_, n, ..)| *n >= MIN));
    for (model, n, drift, rates) in &simulation().gate {
        if *drift == 0.0 {
            assert!(
                rates.false_regression_runs <= 0.01,
                "{} n={n}: {rates:?}",
                model.name()
            );
        }
    }
    // Power grows with processes: 6 per side detect a 10 % slowdown more often than 3.
    let power = |model: Model, n: usize| {
        simulation()
            .gate
            .iter()
            .find(|(m, k, d, _)| *m == model && *k == n && *d == 0.0)
            .map(|(.., r)| r.power)
            .unwrap()
    };
    let quiet = Model::Nested { between_cv: 0.0 };
    assert!(power(quiet, 10) >= power(quiet, 6));
    assert!(power(quiet, 10) >= 0.8, "{}", power(quiet, 10));
}

#[test]
fn the_readme_shows_the_simulated_tables() {
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (begin, end) = ("<!-- simulation:begin -->\n", "<!-- simulation:end -->");
    let start = readme
        .find(begin)
        .expect("README has the simulation markers")
        + begin.len();
    let stop = readme[start..].find(end).expect("end marker") + start;
    let table = &simulation().markdown;
    if std::env::var_os("CLAIMBENCH_BLESS").is_some() {
        let updated = format!("{}{table}{}", &readme[..start], &readme[stop..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[start..stop],
        table.as_str(),
        "README's simulation tables are stale: run the test with CLAIMBENCH_BLESS=1"
    );
}
