//! Tests of the regression statistics and verdict rules.

use super::*;
use crate::stats::{compare_processes, Sample};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn nested(processes: &[&[f64]]) -> NestedSample {
    NestedSample::new(processes.iter().map(|p| p.to_vec()).collect()).unwrap()
}

fn flat(values: &[f64]) -> NestedSample {
    NestedSample::single_process(Sample::from_slice(values).unwrap())
}

fn scaled(sample: &NestedSample, factor: f64) -> NestedSample {
    NestedSample::new(
        sample
            .processes()
            .iter()
            .map(|p| p.values().iter().map(|v| v * factor).collect())
            .collect(),
    )
    .unwrap()
}

fn no_bootstrap() -> CompareConfig {
    CompareConfig::new(0.95, None).unwrap()
}

#[test]
fn thresholds_validate_and_deserialize_with_defaults() {
    let t = Thresholds::default();
    assert_eq!(t.time_threshold(), 0.03);
    assert_eq!(t.memory_tolerance(100.0 * MIB), 16.0 * MIB);
    assert_eq!(t.memory_tolerance(4096.0 * MIB), 0.01 * 4096.0 * MIB);
    assert!(t.with_time_threshold(0.0).is_err());
    assert!(t.with_alpha(1.0).is_err());
    assert!(t.with_memory_tolerance(-0.1, 0.0).is_err());
    let parsed: Thresholds = serde_json::from_str(r#"{"time_threshold": 0.05}"#).unwrap();
    assert_eq!((parsed.time_threshold(), parsed.alpha()), (0.05, 0.05));
    assert!(serde_json::from_str::<Thresholds>(r#"{"alpha": 2.0}"#).is_err());
    assert!(serde_json::from_str::<Thresholds>(r#"{"alfa": 0.1}"#).is_err());
}

#[test]
fn clear_regression_improvement_and_unchanged() {
    let base = nested(&[
        &[100.0, 101.0, 99.0],
        &[102.0, 103.0],
        &[98.0, 97.5, 98.5],
        &[100.5],
        &[99.5, 100.0],
        &[101.5, 101.0],
    ]);
    let cfg = no_bootstrap();
    let t = Thresholds::default();
    let slow = compare(
        "v",
        "time",
        MetricKind::Time,
        &base,
        &scaled(&base, 1.2),
        &cfg,
    )
    .unwrap();
    assert_eq!(slow.unit(), Some(Unit::Process));
    assert!(slow.warnings().is_empty());
    let v = verdict(&slow, &t);
    assert_eq!(v.kind, VerdictKind::Regression, "{}", v.reason);
    assert!((v.relative_change - 0.2).abs() < 1e-9);
    assert!(v.reason.starts_with("slower"));
    let fast = compare(
        "v",
        "time",
        MetricKind::Time,
        &base,
        &scaled(&base, 0.8),
        &cfg,
    )
    .unwrap();
    assert_eq!(verdict(&fast, &t).kind, VerdictKind::Improvement);
    let same = compare(
        "v",
        "time",
        MetricKind::Time,
        &base,
        &scaled(&base, 1.001),
        &cfg,
    )
    .unwrap();
    let v = verdict(&same, &t);
    assert_eq!(v.kind, VerdictKind::Unchanged, "{}", v.reason);
}

#[test]
fn straddling_or_underpowered_is_inconclusive() {
    // 3 vs 3 processes: smallest attainable p = 0.1, and no 95 % interval exists.
    let base = nested(&[&[100.0], &[101.0], &[99.0]]);
    let c = compare(
        "v",
        "t",
        MetricKind::Time,
        &base,
        &scaled(&base, 1.5),
        &no_bootstrap(),
    )
    .unwrap();
    assert!((c.min_attainable_p().unwrap() - 0.1).abs() < 1e-12);
    assert!(matches!(
        c.warnings()[0],
        ComparisonWarning::IntervalBelowConfidence { .. }
    ));
    let v = verdict(&c, &Thresholds::default());
    assert_eq!(v.kind, VerdictKind::Inconclusive);
    assert!(v.reason.contains("too few"), "{}", v.reason);
    // A noisy 4 % shift: interval straddles +3 %.
    let b: Vec<f64> = (0..12)
        .map(|i| 100.0 + 6.0 * ((i * 7 % 12) as f64 - 5.5))
        .collect();
    let cand: Vec<f64> = b.iter().map(|v| v * 1.04).collect();
    let c = compare(
        "v",
        "t",
        MetricKind::Time,
        &flat(&b),
        &flat(&cand),
        &no_bootstrap(),
    )
    .unwrap();
    assert!(matches!(
        c.warnings()[0],
        ComparisonWarning::PooledCalls { .. }
    ));
    let v = verdict(&c, &Thresholds::default());
    assert_eq!(v.kind, VerdictKind::Inconclusive);
    assert!(v.reason.contains("straddles"), "{}", v.reason);
}

#[test]
fn correction_can_turn_regression_inconclusive() {
    let base: Vec<f64> = (0..6).map(|i| 100.0 + i as f64).collect();
    let cand: Vec<f64> = base.iter().map(|v| v * 1.2).collect();
    let one = compare(
        "a",
        "t",
        MetricKind::Time,
        &flat(&base),
        &flat(&cand),
        &no_bootstrap(),
    )
    .unwrap();
    let p = one.p_raw().unwrap();
    // 6 vs 6 fully separated: exact p = 2/924, significant alone but not among 30.
    assert!(p < 0.05 && p > 0.05 / 30.0, "p = {p}");
    let mut family: Vec<Comparison> = (0..30).map(|_| one.clone()).collect();
    let memory = compare(
        "a",
        "peak",
        MetricKind::Memory,
        &flat(&[1e9]),
        &flat(&[1e9]),
        &no_bootstrap(),
    )
    .unwrap();
    family.push(memory);
    let t = Thresholds::default();
    assert_eq!(verdict(&family[0], &t).kind, VerdictKind::Regression);
    apply_correction(&mut family, Correction::Holm);
    let v = verdict(&family[0], &t);
    assert_eq!(v.kind, VerdictKind::Inconclusive, "{}", v.reason);
    assert!((v.p_adjusted.unwrap() - 30.0 * p).abs() < 1e-12);
    assert_eq!(family[30].p_adjusted(), None);
    assert_eq!(family[30].correction(), Correction::None);
}

#[test]
fn memory_uses_tolerance_without_test() {
    let cfg = CompareConfig::default();
    let t = Thresholds::default();
    let gib = 1024.0 * MIB;
    let base = flat(&[gib, gib, gib]);
    let judge = |bytes: f64| {
        let c = compare(
            "v",
            "peak",
            MetricKind::Memory,
            &base,
            &flat(&[bytes; 3]),
            &cfg,
        )
        .unwrap();
        assert_eq!((c.p_raw(), c.interval()), (None, None));
        verdict(&c, &t)
    };
    assert_eq!(judge(gib + 10.0 * MIB).kind, VerdictKind::Unchanged);
    let v = judge(gib + 20.0 * MIB);
    assert_eq!(v.kind, VerdictKind::Regression, "{}", v.reason);
    assert_eq!(judge(gib - 20.0 * MIB).kind, VerdictKind::Improvement);
    // 1 % of 8 GiB (82 MiB) dominates 16 MiB.
    let big = flat(&[8.0 * gib]);
    let c = compare(
        "v",
        "peak",
        MetricKind::Memory,
        &big,
        &flat(&[8.0 * gib + 50.0 * MIB]),
        &cfg,
    )
    .unwrap();
    assert_eq!(verdict(&c, &t).kind, VerdictKind::Unchanged);
    assert!(compare("v", "peak", MetricKind::Memory, &flat(&[0.0]), &base, &cfg).is_err());
}

#[test]
fn edge_cases() {
    let cfg = CompareConfig::default();
    let t = Thresholds::default();
    // One call each: no interval at 95 %.
    let c = compare(
        "v",
        "t",
        MetricKind::Time,
        &flat(&[1.0]),
        &flat(&[1.01]),
        &cfg,
    )
    .unwrap();
    assert_eq!(verdict(&c, &t).kind, VerdictKind::Inconclusive);
    // Identical constant samples: exactly unchanged.
    let same = flat(&[5.0; 10]);
    let c = compare("v", "t", MetricKind::Time, &same, &same, &cfg).unwrap();
    let v = verdict(&c, &t);
    assert_eq!(v.kind, VerdictKind::Unchanged, "{}", v.reason);
    assert_eq!((v.relative_change, v.p_raw), (0.0, Some(1.0)));
    // Non-positive times are rejected, not panicked on.
    assert!(matches!(
        compare("v", "t", MetricKind::Time, &flat(&[0.0, 1.0]), &same, &cfg),
        Err(StatsError::NonPositive { .. })
    ));
    // The report form serialises.
    let json = serde_json::to_string(&v).unwrap();
    assert!(json.contains("\"kind\":\"unchanged\""));
    assert!(serde_json::to_string(&c)
        .unwrap()
        .contains("bootstrap_interval"));
}

#[test]
fn bootstrap_interval_is_reported_and_seeded() {
    let base = nested(&[
        &[10.0, 10.2],
        &[10.4, 10.1],
        &[9.8, 9.9],
        &[10.3],
        &[10.0, 10.1],
    ]);
    let cand = scaled(&base, 1.1);
    let cfg = CompareConfig::default();
    let a = compare("v", "t", MetricKind::Time, &base, &cand, &cfg).unwrap();
    let b = compare("v", "t", MetricKind::Time, &base, &cand, &cfg).unwrap();
    assert_eq!(a, b);
    let boot = a.bootstrap_interval().unwrap();
    assert!(boot.contains(0.1), "{boot:?}");
    assert!(a.welch_p().unwrap() < 0.01);
}

// ---------------------------------------------------------------------------------------
// Simulations of the gate. Seeded and deterministic. They run without the bootstrap
// (`CompareConfig::new(0.95, None)`), which the verdict does not use.

/// Standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Multiplicative lognormal noise with median 1 and the given coefficient of variation.
fn lognormal(rng: &mut ChaCha8Rng, cv: f64) -> f64 {
    ((1.0 + cv * cv).ln().sqrt() * normal(rng)).exp()
}

#[derive(Clone, Copy)]
struct Design {
    processes: usize,
    calls: usize,
    between_cv: f64,
    within_cv: f64,
    spike_probability: f64,
    spike_factor: f64,
}

impl Design {
    fn flat(calls: usize, cv: f64) -> Self {
        Design {
            processes: 1,
            calls,
            between_cv: 0.0,
            within_cv: cv,
            spike_probability: 0.0,
            spike_factor: 1.0,
        }
    }

    fn gpu(processes: usize, calls: usize) -> Self {
        Design {
            processes,
            calls,
            between_cv: 0.15,
            within_cv: 0.05,
            spike_probability: 0.02,
            spike_factor: 3.0,
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng, scale: f64) -> NestedSample {
        let processes = (0..self.processes)
            .map(|_| {
                let process = scale * 10.0 * lognormal(rng, self.between_cv);
                (0..self.calls)
                    .map(|_| {
                        let spike = if rng.random::<f64>() < self.spike_probability {
                            self.spike_factor
                        } else {
                            1.0
                        };
                        process * lognormal(rng, self.within_cv) * spike
                    })
                    .collect()
            })
            .collect();
        NestedSample::new(processes).unwrap()
    }
}

#[derive(Debug, Default)]
struct Rates {
    trials: usize,
    regression: usize,
    improvement: usize,
    unchanged: usize,
    inconclusive: usize,
}

impl Rates {
    fn regression_rate(&self) -> f64 {
        self.regression as f64 / self.trials as f64
    }

    fn improvement_rate(&self) -> f64 {
        self.improvement as f64 / self.trials as f64
    }
}

fn simulate(design: Design, slowdown: f64, trials: usize, seed: u64) -> Rates {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cfg = no_bootstrap();
    let t = Thresholds::default();
    let mut rates = Rates {
        trials,
        ..Rates::default()
    };
    for _ in 0..trials {
        let base = design.draw(&mut rng, 1.0);
        let cand = design.draw(&mut rng, 1.0 + slowdown);
        let c = compare("sim", "time", MetricKind::Time, &base, &cand, &cfg).unwrap();
        match verdict(&c, &t).kind {
            VerdictKind::Regression => rates.regression += 1,
            VerdictKind::Improvement => rates.improvement += 1,
            VerdictKind::Unchanged => rates.unchanged += 1,
            VerdictKind::Inconclusive => rates.inconclusive += 1,
        }
    }
    rates
}

const TRIALS: usize = 1_000;

#[test]
fn simulation_flat_a_a_false_regressions() {
    for cv in [0.02, 0.05] {
        let r = simulate(Design::flat(10, cv), 0.0, TRIALS, 1);
        eprintln!("flat A/A, 10 calls/side, CV {cv}: {r:?}");
        assert!(r.regression_rate() <= 0.01, "false regressions {r:?}");
        assert!(r.improvement_rate() <= 0.01, "false improvements {r:?}");
    }
}

#[test]
fn simulation_flat_detects_5_percent_slowdown() {
    let r = simulate(Design::flat(10, 0.01), 0.05, TRIALS, 2);
    eprintln!("flat +5 %, 10 calls/side, CV 0.01: {r:?}");
    assert!(r.regression_rate() >= 0.95, "power {r:?}");
}

/// The default budget for a 10 % slowdown at 15 % between-process CV (see module docs).
const GPU_PROCESSES: usize = 128;
const GPU_CALLS: usize = 10;

#[test]
fn simulation_nested_a_a_false_regressions() {
    let r = simulate(Design::gpu(GPU_PROCESSES, GPU_CALLS), 0.0, TRIALS, 3);
    eprintln!("nested A/A, {GPU_PROCESSES}x{GPU_CALLS}/side: {r:?}");
    assert!(r.regression_rate() <= 0.01, "false regressions {r:?}");
    assert!(r.improvement_rate() <= 0.01, "false improvements {r:?}");
    // With few processes the threshold is small against the uncertainty, and the rate
    // approaches its bound, the one-sided 2.5 % tail of the 95 % interval.
    let r = simulate(Design::gpu(10, 20), 0.0, TRIALS, 4);
    eprintln!("nested A/A, 10x20/side: {r:?}");
    assert!(r.regression_rate() <= 0.025, "false regressions {r:?}");
    assert!(r.improvement_rate() <= 0.025, "false improvements {r:?}");
}

#[test]
fn simulation_nested_detects_10_percent_slowdown() {
    let r = simulate(Design::gpu(GPU_PROCESSES, GPU_CALLS), 0.10, TRIALS, 5);
    eprintln!("nested +10 %, {GPU_PROCESSES}x{GPU_CALLS}/side: {r:?}");
    assert!(r.regression_rate() >= 0.90, "power {r:?}");
    let small = simulate(Design::gpu(10, 20), 0.10, TRIALS, 6);
    eprintln!("nested +10 %, 10x20/side (under-powered): {small:?}");
    assert!(small.regression_rate() < r.regression_rate());
}

/// Why the process is the unit: on A/A data with between-process variation, a test on
/// pooled calls is "significant" far more often than its 5 % level, the process-level
/// test is not.
#[test]
fn simulation_pooled_calls_are_anti_conservative() {
    let design = Design::gpu(10, 20);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut pooled, mut process) = (0, 0);
    for _ in 0..TRIALS {
        let (a, b) = (design.draw(&mut rng, 1.0), design.draw(&mut rng, 1.0));
        let r = compare_processes(&a, &b, 0.95, None).unwrap();
        pooled += usize::from(r.pooled.mann_whitney.p_value < 0.05);
        process += usize::from(r.process_level.mann_whitney.p_value < 0.05);
    }
    let (pooled, process) = (
        pooled as f64 / TRIALS as f64,
        process as f64 / TRIALS as f64,
    );
    eprintln!("A/A p < 0.05: pooled calls {pooled:.3}, per-process medians {process:.3}");
    assert!(pooled > 0.3, "pooled {pooled}");
    assert!(process < 0.07, "process {process}");
}
