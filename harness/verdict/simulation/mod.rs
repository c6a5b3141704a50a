//! Seeded simulations of the decision rules under measured GPU noise ([`noise`]): coverage of
//! the intervals, flips of claim verdicts between two runs, false alarms of the gate per run,
//! and its power. They run the crate's own `compare`, `apply_correction`, `verdict` and
//! claim judges, so a change to a rule changes these figures. The tests assert the targets,
//! and the README's table is this module's output (regenerate with `CLAIMBENCH_BLESS=1`).

pub mod noise;

use super::claims::{judge_change, ClaimConfig, ClaimVerdictKind};
use super::regression::{
    apply_correction, compare, verdict, CompareConfig, MetricKind, Thresholds, VerdictKind,
};
use crate::claim::{parse_range, Dimension};
use crate::stats::{check_replication, Correction, NestedSample};
use noise::{lognormal, variant, Model};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write;

/// Calls per process in every simulated design (the nightly profiles' order of magnitude;
/// width and coverage are set by processes, not calls).
pub const CALLS: usize = 4;
/// Time comparisons in one simulated run: about a nightly of the note manifests.
pub const RUN_COMPARISONS: usize = 40;

/// The models every table covers.
pub fn models() -> Vec<Model> {
    let mut m: Vec<Model> = [0.0, 0.05, 0.10, 0.15, 0.20]
        .into_iter()
        .map(|between_cv| Model::Nested { between_cv })
        .collect();
    m.push(Model::TwoRegime);
    m
}

fn rng(tag: &str, model: Model, processes: usize, extra: u64) -> ChaCha8Rng {
    // A stable seed per cell: FNV-1a over the cell's description.
    let text = format!("{tag}|{model:?}|{processes}|{extra}");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(hash)
}

fn rate(count: usize, trials: usize) -> f64 {
    count as f64 / trials as f64
}

/// Share of runs whose 95 % interval of `candidate / baseline − 1` covers the true change.
pub fn change_coverage(model: Model, processes: usize, trials: usize) -> f64 {
    let mut rng = rng("coverage", model, processes, 0);
    let truth = 0.7 - 1.0;
    let covered = (0..trials)
        .filter(|_| {
            let b = variant(&mut rng, model, processes, CALLS, 10.0, 1.0);
            let c = variant(&mut rng, model, processes, CALLS, 7.0, 1.0);
            // The gate's interval is the same; only its minimum replication differs.
            let config = CompareConfig::for_claims(0.95).expect("valid level");
            let cmp = compare("v", "wall_ms", MetricKind::Time, &b, &c, &config)
                .expect("positive samples");
            cmp.interval().expect("enough processes").contains(truth)
        })
        .count();
    rate(covered, trials)
}

/// Share of runs whose 95 % interval of one variant's typical time (the median of process
/// medians) covers the true one, estimated from 50 000 simulated processes.
pub fn bound_coverage(model: Model, processes: usize, trials: usize) -> f64 {
    let mut truth_rng = rng("truth", model, 0, 0);
    let population = variant(&mut truth_rng, model, 50_000, CALLS, 10.0, 1.0);
    let truth = population.process_medians().median();
    let mut rng = rng("bound", model, processes, 0);
    let covered = (0..trials)
        .filter(|_| {
            let s = variant(&mut rng, model, processes, CALLS, 10.0, 1.0);
            let m = s.median_interval(0.95).expect("positive");
            m.lower <= truth && truth <= m.upper
        })
        .count();
    rate(covered, trials)
}

/// Verdict rates of the claim "−40 %..−25 %" at a true change, over pairs of independent runs.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRates {
    pub confirmed: f64,
    pub refuted: f64,
    /// One run confirmed and the other refuted.
    pub contradicting_pairs: f64,
}

pub fn claim_rates(model: Model, processes: usize, true_change: f64, trials: usize) -> ClaimRates {
    let mut rng = rng("claim", model, processes, true_change.to_bits());
    let range = parse_range("-40%..-25%", Dimension::Relative).expect("valid range");
    let cfg = ClaimConfig::default();
    let judge = |rng: &mut ChaCha8Rng| {
        let b = variant(rng, model, processes, CALLS, 10.0, 1.0);
        let c = variant(
            rng,
            model,
            processes,
            CALLS,
            10.0 * (1.0 + true_change),
            1.0,
        );
        judge_change(&b, &c, Dimension::Time, &range, &cfg).verdict
    };
    let (mut confirmed, mut refuted, mut contradicting) = (0, 0, 0);
    for _ in 0..trials {
        let (first, second) = (judge(&mut rng), judge(&mut rng));
        confirmed += usize::from(first == ClaimVerdictKind::Confirmed);
        refuted += usize::from(first == ClaimVerdictKind::Refuted);
        let decisive = [ClaimVerdictKind::Confirmed, ClaimVerdictKind::Refuted];
        if first != second && decisive.contains(&first) && decisive.contains(&second) {
            contradicting += 1;
        }
    }
    ClaimRates {
        confirmed: rate(confirmed, trials),
        refuted: rate(refuted, trials),
        contradicting_pairs: rate(contradicting, trials),
    }
}

/// Gate rates over whole runs of [`RUN_COMPARISONS`] time comparisons, Holm over the run.
#[derive(Debug, Clone, Copy)]
pub struct GateRates {
    /// Runs with at least one false regression when nothing changed.
    pub false_regression_runs: f64,
    /// Runs in which the one variant slowed by `slowdown` is flagged.
    pub power: f64,
}

pub fn gate_rates(
    model: Model,
    processes: usize,
    slowdown: f64,
    run_cv: f64,
    trials: usize,
) -> GateRates {
    let mut rng = rng("gate", model, processes, run_cv.to_bits());
    let thresholds = Thresholds::default();
    let run = |rng: &mut ChaCha8Rng, slowed: Option<f64>| -> Vec<VerdictKind> {
        let (base_run, cand_run) = (lognormal(rng, run_cv), lognormal(rng, run_cv));
        let mut family: Vec<_> = (0..RUN_COMPARISONS)
            .map(|i| {
                let factor = match slowed {
                    Some(s) if i == 0 => 1.0 + s,
                    _ => 1.0,
                };
                let b = variant(rng, model, processes, CALLS, 10.0, base_run);
                let c = variant(rng, model, processes, CALLS, 10.0 * factor, cand_run);
                compare(
                    "v",
                    "wall_ms",
                    MetricKind::Time,
                    &b,
                    &c,
                    &CompareConfig::default(),
                )
                .expect("positive samples")
            })
            .collect();
        apply_correction(&mut family, Correction::Holm);
        family
            .iter()
            .map(|c| verdict(c, &thresholds).kind)
            .collect()
    };
    let (mut false_runs, mut detected) = (0, 0);
    for _ in 0..trials {
        if run(&mut rng, None).contains(&VerdictKind::Regression) {
            false_runs += 1;
        }
        if run(&mut rng, Some(slowdown))[0] == VerdictKind::Regression {
            detected += 1;
        }
    }
    GateRates {
        false_regression_runs: rate(false_runs, trials),
        power: rate(detected, trials),
    }
}

/// Whether `processes` per side are enough for a time verdict at all.
pub fn judged(processes: usize) -> bool {
    let one = NestedSample::new(vec![vec![1.0]; processes]).expect("valid");
    check_replication(&[&one, &one]).is_ok()
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// Every simulated figure, labelled, and the README's tables made from them.
#[derive(Debug, Default)]
pub struct Simulation {
    /// (model, processes per side, coverage) of change and bound intervals.
    pub change_coverage: Vec<(Model, usize, f64)>,
    pub bound_coverage: Vec<(Model, usize, f64)>,
    /// (model, processes, rates at −32.5 %, rates at −5 %).
    pub claims: Vec<(Model, usize, ClaimRates, ClaimRates)>,
    /// (model, processes, run-to-run CV, rates).
    pub gate: Vec<(Model, usize, f64, GateRates)>,
    pub markdown: String,
}

/// Runs every cell with `trials` seeded trials and renders the tables.
pub fn simulate(trials: usize) -> Simulation {
    let designs = [3usize, 4, 6, 10];
    let mut sim = Simulation::default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Seeded simulations, {trials} trials per cell, {CALLS} calls per process (`harness/verdict/simulation`).\n"
    );
    let _ = writeln!(
        out,
        "**Coverage of the 95 % intervals** (change: Welch on log process medians, by processes per side; bound: order statistics of one variant's process medians). \
         With fewer processes (1–2 for a change, 1–5 for a bound) there is no interval: the verdict is *insufficient replication*.\n"
    );
    let _ = writeln!(
        out,
        "| noise model | change, 3 | change, 4 | change, 6 | change, 10 | bound, 6 | bound, 10 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for model in models() {
        let mut cells = Vec::new();
        for &n in &designs {
            let c = change_coverage(model, n, trials);
            sim.change_coverage.push((model, n, c));
            cells.push(pct(c));
        }
        for n in [6usize, 10] {
            let c = bound_coverage(model, n, trials);
            sim.bound_coverage.push((model, n, c));
            cells.push(pct(c));
        }
        let _ = writeln!(out, "| {} | {} |", model.name(), cells.join(" | "));
    }
    let _ = writeln!(
        out,
        "\n**Claim `change = \"-40%..-25%\"`**, processes per variant: share confirmed at a true −32.5 %, \
         refuted at a true −5 %, and pairs of independent runs where one confirms and the other refutes.\n"
    );
    let _ = writeln!(
        out,
        "| noise model | processes | confirmed at −32.5 % | refuted at −5 % | contradicting pairs |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for model in models() {
        for n in [3usize, 6] {
            let centre = claim_rates(model, n, -0.325, trials);
            let far = claim_rates(model, n, -0.05, trials);
            sim.claims.push((model, n, centre, far));
            let _ = writeln!(
                out,
                "| {} | {n} | {} | {} | {} |",
                model.name(),
                pct(centre.confirmed),
                pct(far.refuted),
                pct(centre.contradicting_pairs.max(far.contradicting_pairs))
            );
        }
    }
    let _ = writeln!(
        out,
        "\n**Gate**, {RUN_COMPARISONS} time comparisons per run, Holm over the run, α = 0.01, threshold 3 % \
         (with fewer than 6 processes per side the gate's time entries are *insufficient replication*): \
         runs with any false regression when nothing changed (A/A), and power for one variant \
         slowed by 10 %. The last rows add a 2 % run-to-run drift (a sensitivity check).\n"
    );
    let _ = writeln!(
        out,
        "| noise model | processes per side | A/A runs with a false regression | power at +10 % |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for model in models() {
        for n in [6usize, 10] {
            let g = gate_rates(model, n, 0.10, 0.0, trials);
            sim.gate.push((model, n, 0.0, g));
            let _ = writeln!(
                out,
                "| {} | {n} | {} | {} |",
                model.name(),
                pct(g.false_regression_runs),
                pct(g.power)
            );
        }
    }
    for model in [Model::Nested { between_cv: 0.02 }, Model::TwoRegime] {
        let g = gate_rates(model, 6, 0.10, 0.02, trials);
        sim.gate.push((model, 6, 0.02, g));
        let _ = writeln!(
            out,
            "| {} + 2 % drift | 6 | {} | {} |",
            model.name(),
            pct(g.false_regression_runs),
            pct(g.power)
        );
    }
    sim.markdown = out;
    sim
}

#[cfg(test)]
mod tests;
