//! Tests of the regression statistics and verdict rules. Their error rates under GPU noise are
//! simulated in `verdict/simulation`.

use super::*;
use crate::stats::Sample;

fn nested(processes: &[&[f64]]) -> NestedSample {
    NestedSample::new(processes.iter().map(|p| p.to_vec()).collect()).unwrap()
}

/// One call per process.
fn per_process(values: &[f64]) -> NestedSample {
    NestedSample::one_call_per_process(&Sample::from_slice(values).unwrap())
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

fn time(base: &NestedSample, cand: &NestedSample) -> Comparison {
    compare(
        "v",
        "wall_ms",
        MetricKind::Time,
        base,
        cand,
        &CompareConfig::default(),
    )
    .unwrap()
}

fn memory(metric: &str, base: &NestedSample, cand: &NestedSample) -> Verdict {
    let c = compare(
        "v",
        metric,
        MetricKind::Memory,
        base,
        cand,
        &CompareConfig::default(),
    )
    .unwrap();
    assert_eq!((c.p_raw(), c.interval()), (None, None));
    verdict(&c, &Thresholds::default())
}

#[test]
fn thresholds_validate_and_deserialize_with_defaults() {
    let t = Thresholds::default();
    assert_eq!(t.time_threshold(), 0.03);
    assert_eq!(t.memory_tolerance(100.0 * MIB), 16.0 * MIB);
    assert_eq!(t.memory_tolerance(4096.0 * MIB), 0.01 * 4096.0 * MIB);
    assert_eq!(
        t.tolerance_of("peak_reserved_bytes").bytes(100.0 * MIB),
        64.0 * MIB
    );
    assert_eq!(
        t.tolerance_of("peak_reserved_bytes").bytes(8192.0 * MIB),
        0.02 * 8192.0 * MIB
    );
    assert_eq!(
        t.tolerance_of("host_peak_rss_bytes").bytes(100.0 * MIB),
        32.0 * MIB
    );
    assert_eq!(
        t.tolerance_of("host_peak_rss_bytes").bytes(8192.0 * MIB),
        0.05 * 8192.0 * MIB
    );
    assert!(t.with_host_rss_tolerance(f64::INFINITY, 0.0).is_err());
    assert!(t.with_time_threshold(0.0).is_err());
    assert!(t.with_alpha(1.0).is_err());
    assert!(t.with_memory_tolerance(-0.1, 0.0).is_err());
    assert!(t.with_reserved_tolerance(0.0, f64::NAN).is_err());
    let parsed: Thresholds = serde_json::from_str(r#"{"time_threshold": 0.05}"#).unwrap();
    assert_eq!((parsed.time_threshold(), parsed.alpha()), (0.05, 0.01));
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
    let t = Thresholds::default();
    let slow = time(&base, &scaled(&base, 1.2));
    let v = verdict(&slow, &t);
    assert_eq!(v.kind, VerdictKind::Regression, "{}", v.reason);
    assert!((v.relative_change - 0.2).abs() < 1e-9);
    assert!(v.reason.starts_with("slower"), "{}", v.reason);
    assert!(
        v.reason.contains("6 vs 6 per-process medians"),
        "{}",
        v.reason
    );
    assert!(slow.rank_p().unwrap() < 0.01);
    assert_eq!(
        verdict(&time(&base, &scaled(&base, 0.8)), &t).kind,
        VerdictKind::Improvement
    );
    let v = verdict(&time(&base, &scaled(&base, 1.001)), &t);
    assert_eq!(v.kind, VerdictKind::Unchanged, "{}", v.reason);
}

#[test]
fn three_tight_processes_per_side_decide_a_large_effect_for_a_claim() {
    // The rank test cannot go below p = 0.1 with 3 vs 3; the t interval decides when the
    // processes agree.
    let claims = CompareConfig::for_claims(0.95).unwrap();
    let claim = |b: &NestedSample, c: &NestedSample| {
        compare("v", "wall_ms", MetricKind::Time, b, c, &claims).unwrap()
    };
    let base = per_process(&[100.0, 101.0, 99.0]);
    let v = verdict(&claim(&base, &scaled(&base, 1.3)), &Thresholds::default());
    assert_eq!(v.kind, VerdictKind::Regression, "{}", v.reason);
    // Three scattered processes (a slow-regime one among them) stay undecided, and say what
    // the comparison could have detected.
    let noisy = per_process(&[100.0, 145.0, 98.0]);
    let v = verdict(&claim(&noisy, &scaled(&noisy, 1.1)), &Thresholds::default());
    assert_eq!(v.kind, VerdictKind::Inconclusive, "{}", v.reason);
    assert!(v.reason.contains("only changes beyond"), "{}", v.reason);
    // The gate asks for 6 per side.
    let v = verdict(&time(&base, &scaled(&base, 1.3)), &Thresholds::default());
    assert_eq!(v.kind, VerdictKind::InsufficientReplication, "{}", v.reason);
    assert!(v.reason.contains("at least 6 processes"), "{}", v.reason);
}

#[test]
fn too_few_processes_are_insufficient_replication_never_a_verdict() {
    // Many calls in 1 or 2 processes: calls share their process's regime, so no interval.
    let base = nested(&[&[100.0; 20], &[101.0; 20]]);
    for cand in [scaled(&base, 1.5), flat(&[200.0; 40])] {
        let c = time(&base, &cand);
        assert_eq!((c.interval(), c.p_raw()), (None, None));
        assert_eq!(
            c.insufficient().unwrap().processes,
            vec![2, cand.process_count()]
        );
        let v = verdict(&c, &Thresholds::default());
        assert_eq!(v.kind, VerdictKind::InsufficientReplication, "{}", v.reason);
        assert!(v.reason.contains("not judged"), "{}", v.reason);
        assert!(
            v.reason.contains("100.0000, 101.0000"),
            "process medians: {}",
            v.reason
        );
    }
}

#[test]
fn correction_over_the_family_can_turn_regression_inconclusive() {
    let base = per_process(&[100.0, 104.0, 97.0, 101.0, 99.0, 103.0]);
    let one = time(
        &base,
        &per_process(&[112.0, 118.0, 109.0, 116.0, 121.0, 108.0]),
    );
    let p = one.p_raw().unwrap();
    let t = Thresholds::default();
    assert_eq!(verdict(&one, &t).kind, VerdictKind::Regression);
    assert!(p < 0.01 && p > 0.01 / 30.0, "p = {p}");
    let mut family: Vec<Comparison> = (0..30).map(|_| one.clone()).collect();
    family.push(
        compare(
            "a",
            "peak_allocated_bytes",
            MetricKind::Memory,
            &flat(&[1e9]),
            &flat(&[1e9]),
            &CompareConfig::default(),
        )
        .unwrap(),
    );
    apply_correction(&mut family, Correction::Holm);
    let v = verdict(&family[0], &t);
    assert_eq!(v.kind, VerdictKind::Inconclusive, "{}", v.reason);
    assert!((v.p_adjusted.unwrap() - 30.0 * p).abs() < 1e-12);
    assert!(
        v.reason.contains("holm over 30 comparisons"),
        "{}",
        v.reason
    );
    assert_eq!(family[0].family_size(), 30);
    // The strictest Holm step needs a wider margin: the detectable change grows with m.
    assert!(family[0].detectable_change(&t).unwrap() > one.detectable_change(&t).unwrap());
    assert_eq!(family[30].p_adjusted(), None);
    assert_eq!(family[30].correction(), Correction::None);
}

#[test]
fn memory_compares_process_ranges_with_a_tolerance() {
    let gib = 1024.0 * MIB;
    let base = per_process(&[gib, gib, gib]);
    let at = |bytes: &[f64]| per_process(bytes);
    assert_eq!(
        memory("peak_allocated_bytes", &base, &at(&[gib + 10.0 * MIB; 3])).kind,
        VerdictKind::Unchanged
    );
    let v = memory("peak_allocated_bytes", &base, &at(&[gib + 20.0 * MIB; 3]));
    assert_eq!(v.kind, VerdictKind::Regression, "{}", v.reason);
    assert_eq!(
        memory("peak_allocated_bytes", &base, &at(&[gib - 20.0 * MIB; 3])).kind,
        VerdictKind::Improvement
    );
    // One process 40 MiB up, the others unchanged: the processes disagree, nothing decided.
    let v = memory(
        "peak_allocated_bytes",
        &base,
        &at(&[gib, gib + 40.0 * MIB, gib]),
    );
    assert_eq!(v.kind, VerdictKind::Inconclusive, "{}", v.reason);
    assert!(v.reason.contains("processes disagree"), "{}", v.reason);
    // Reserved memory: one 20 MiB allocator segment more is within max(2 %, 64 MiB).
    assert_eq!(
        memory("peak_reserved_bytes", &base, &at(&[gib + 40.0 * MIB; 3])).kind,
        VerdictKind::Unchanged
    );
    assert_eq!(
        memory("peak_reserved_bytes", &base, &at(&[gib + 80.0 * MIB; 3])).kind,
        VerdictKind::Regression
    );
    // A single process per side is enough for memory.
    let v = memory(
        "peak_allocated_bytes",
        &flat(&[gib]),
        &flat(&[gib + 64.0 * MIB]),
    );
    assert_eq!(v.kind, VerdictKind::Regression, "{}", v.reason);
    assert!(compare(
        "v",
        "peak_allocated_bytes",
        MetricKind::Memory,
        &flat(&[0.0]),
        &base,
        &CompareConfig::default()
    )
    .is_err());
}

#[test]
fn edge_cases() {
    let t = Thresholds::default();
    // Identical constant processes: exactly unchanged.
    let same = per_process(&[5.0; 6]);
    let c = time(&same, &same);
    let v = verdict(&c, &t);
    assert_eq!(v.kind, VerdictKind::Unchanged, "{}", v.reason);
    assert_eq!((v.relative_change, v.p_raw), (0.0, Some(1.0)));
    // Non-positive times are rejected, not panicked on.
    assert!(matches!(
        compare(
            "v",
            "t",
            MetricKind::Time,
            &per_process(&[0.0, 1.0, 2.0]),
            &same,
            &CompareConfig::default()
        ),
        Err(StatsError::NonPositive { .. })
    ));
    // The report form serialises, deterministically.
    let json = serde_json::to_string(&v).unwrap();
    assert!(json.contains("\"kind\":\"unchanged\""));
    assert_eq!(c, time(&same, &same));
    assert_eq!(
        MetricKind::of_metric("peak_reserved_bytes"),
        MetricKind::Memory
    );
    assert_eq!(MetricKind::of_metric("stage_vae_ms"), MetricKind::Time);
}
