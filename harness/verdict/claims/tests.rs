//! Tests of the claim judges and of `evaluate` on constructed records.

use super::*;
use crate::claim::{parse_range, ClaimRange, Relation};
use crate::stats::NestedSample;
use crate::worker::protocol::Status;

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

fn nested(processes: &[&[f64]]) -> NestedSample {
    NestedSample::new(processes.iter().map(|p| p.to_vec()).collect()).unwrap()
}

/// `processes` processes of `calls` calls around `center`, with small deterministic
/// spread between and within processes.
fn timed(center: f64, processes: usize, calls: usize) -> NestedSample {
    NestedSample::new(
        (0..processes)
            .map(|p| {
                (0..calls)
                    .map(|c| center * (1.0 + 0.004 * p as f64 + 0.001 * c as f64))
                    .collect()
            })
            .collect(),
    )
    .unwrap()
}

fn relative(text: &str) -> ClaimRange {
    parse_range(text, Dimension::Relative).unwrap()
}

fn cfg() -> ClaimConfig {
    ClaimConfig::default()
}

#[test]
fn classify_within_outside_straddling_and_open_ends() {
    let r = relative("-40%..-30%");
    assert_eq!(classify(-0.38, -0.32, &r), ClaimVerdictKind::Confirmed);
    assert_eq!(classify(-0.25, -0.2, &r), ClaimVerdictKind::Refuted);
    assert_eq!(classify(-0.5, -0.45, &r), ClaimVerdictKind::Refuted);
    assert_eq!(classify(-0.35, -0.28, &r), ClaimVerdictKind::Inconclusive);
    let at_most = relative("..-5%");
    assert_eq!(classify(-0.9, -0.1, &at_most), ClaimVerdictKind::Confirmed);
    assert_eq!(classify(0.0, 0.1, &at_most), ClaimVerdictKind::Refuted);
}

#[test]
fn change_on_times_uses_the_process_as_unit() {
    let a = timed(20.0, 4, 5);
    let b = timed(30.0, 4, 5);
    let j = judge_change(&a, &b, Dimension::Time, &relative("40%..60%"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    let e = j.effect.unwrap();
    assert_eq!(e.basis, "per-process medians");
    assert!((e.estimate - 0.5).abs() < 0.01, "{e:?}");
    assert!(e.lower <= 0.5 && e.upper >= 0.5);
    let j = judge_change(&a, &b, Dimension::Time, &relative("-10%"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted, "{}", j.reason);
    assert_eq!(
        j.reason,
        "the interval lies wholly outside the claimed -10%"
    );
    // The interval reaches past 50 % on one side only.
    let j = judge_change(&a, &b, Dimension::Time, &relative("40%..50%"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Inconclusive, "{}", j.reason);
}

#[test]
fn change_with_too_few_processes_is_insufficient_replication() {
    // Many calls in 2 processes: no interval, whatever the calls say.
    let (a, b) = (timed(20.0, 2, 30), timed(30.0, 2, 30));
    let j = judge_change(&a, &b, Dimension::Time, &relative("40%..60%"), &cfg());
    assert_eq!(
        j.verdict,
        ClaimVerdictKind::InsufficientReplication,
        "{}",
        j.reason
    );
    assert_eq!(j.effect, None);
    assert_eq!(j.observed.as_deref(), Some("+50.0 % at the medians"));
    assert!(j.reason.contains("2 vs 2 processes"), "{}", j.reason);
    assert!(
        !j.reason.contains("fewer"),
        "never suggests fewer processes"
    );
    // 3 vs 3 tight processes decide.
    let (a, b) = (timed(20.0, 3, 4), timed(30.0, 3, 4));
    let j = judge_change(&a, &b, Dimension::Time, &relative("40%..60%"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    let j = judge_change(&a, &b, Dimension::Time, &relative("-40%..-25%"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted, "{}", j.reason);
    // Bounds and differences follow the same rule.
    let ms = |t: &str| parse_range(t, Dimension::Time).unwrap();
    let one = timed(20.0, 1, 50);
    assert_eq!(
        judge_bound(&one, Dimension::Time, &ms("..25ms"), &cfg()).verdict,
        ClaimVerdictKind::InsufficientReplication
    );
    assert_eq!(
        judge_difference(&one, &b, Dimension::Time, &ms("5ms.."), &cfg()).verdict,
        ClaimVerdictKind::InsufficientReplication
    );
    // An ordering with an unjudged step is unjudged, not undecided.
    let (j, _) = judge_order(
        &[("one", &one), ("b", &b)],
        &[Relation::Less],
        Dimension::Time,
        &cfg(),
    );
    assert_eq!(
        j.verdict,
        ClaimVerdictKind::InsufficientReplication,
        "{}",
        j.reason
    );
    assert!(j.reason.contains("1 vs 3 processes"), "{}", j.reason);
}

#[test]
fn change_on_memory_uses_the_tolerance_band() {
    let base = nested(&[&[8.0 * GIB], &[8.0 * GIB]]);
    let half = nested(&[&[4.0 * GIB], &[4.0 * GIB]]);
    let j = judge_change(
        &base,
        &half,
        Dimension::Bytes,
        &relative("-55%..-45%"),
        &cfg(),
    );
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    let e = j.effect.unwrap();
    assert_eq!(e.confidence, None);
    assert!((e.estimate + 0.5).abs() < 1e-12);
    // 1 % of 8 GiB on either side.
    assert!((e.upper - e.lower - 0.02).abs() < 1e-9, "{e:?}");
    let j = judge_change(
        &base,
        &half,
        Dimension::Bytes,
        &relative("-50.5%..-45%"),
        &cfg(),
    );
    assert_eq!(j.verdict, ClaimVerdictKind::Inconclusive, "{}", j.reason);
    let j = judge_change(&base, &half, Dimension::Bytes, &relative("-40%.."), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted);
}

#[test]
fn difference_in_bytes_and_in_time() {
    let base = nested(&[&[7.5 * GIB], &[7.5 * GIB]]);
    let more = nested(&[&[7.8 * GIB], &[7.8 * GIB]]);
    let gib = |t: &str| parse_range(t, Dimension::Bytes).unwrap();
    let j = judge_difference(
        &base,
        &more,
        Dimension::Bytes,
        &gib("0.3GiB ± 0.1GiB"),
        &cfg(),
    );
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    assert!(j.effect.unwrap().text().starts_with("+307.2 MiB"));
    let j = judge_difference(
        &base,
        &more,
        Dimension::Bytes,
        &gib("-1GiB ± 0.2GiB"),
        &cfg(),
    );
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted);

    let ms = |t: &str| parse_range(t, Dimension::Time).unwrap();
    let (a, b) = (timed(100.0, 5, 3), timed(120.0, 5, 3));
    let j = judge_difference(&a, &b, Dimension::Time, &ms("15ms..25ms"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    assert_eq!(j.effect.as_ref().unwrap().basis, "per-process medians");
    let j = judge_difference(&a, &b, Dimension::Time, &ms("..5ms"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted);
}

#[test]
fn bounds_on_counts_memory_and_time() {
    let count = |t: &str| parse_range(t, Dimension::Count).unwrap();
    let evals = nested(&[&[67.0, 67.0], &[67.0]]);
    let j = judge_bound(&evals, Dimension::Count, &count("67"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    assert_eq!(
        judge_bound(&evals, Dimension::Count, &count("100"), &cfg()).verdict,
        ClaimVerdictKind::Refuted
    );
    let bytes = |t: &str| parse_range(t, Dimension::Bytes).unwrap();
    let peak = nested(&[&[7.95 * GIB], &[7.95 * GIB]]);
    assert_eq!(
        judge_bound(&peak, Dimension::Bytes, &bytes("..8GiB"), &cfg()).verdict,
        ClaimVerdictKind::Inconclusive,
        "within the 1 % tolerance of the bound"
    );
    assert_eq!(
        judge_bound(&peak, Dimension::Bytes, &bytes("..9GiB"), &cfg()).verdict,
        ClaimVerdictKind::Confirmed
    );
    let ms = |t: &str| parse_range(t, Dimension::Time).unwrap();
    let t = timed(20.0, 6, 5);
    let j = judge_bound(&t, Dimension::Time, &ms("..25ms"), &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    assert_eq!(
        j.effect.as_ref().unwrap().basis,
        "order statistics of process medians"
    );
    assert_eq!(
        judge_bound(&timed(20.0, 5, 5), Dimension::Time, &ms("..25ms"), &cfg()).verdict,
        ClaimVerdictKind::InsufficientReplication
    );
    assert_eq!(
        judge_bound(&t, Dimension::Time, &ms("..15ms"), &cfg()).verdict,
        ClaimVerdictKind::Refuted
    );
    // Deterministic: the same verdict and interval every time.
    assert_eq!(
        judge_bound(&t, Dimension::Time, &ms("..25ms"), &cfg()),
        judge_bound(&t, Dimension::Time, &ms("..25ms"), &cfg())
    );
}

#[test]
fn fit_verdicts() {
    let counts = |ok, oom| OutcomeCounts { ok, oom, failed: 0 };
    let peak = nested(&[&[6.0 * GIB], &[6.2 * GIB]]);
    let budget = Some(8u64 << 30);
    let j = judge_fit(true, budget, counts(2, 0), Some(&peak), Some(512 << 20));
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    assert!(
        j.reason.contains("needs at most 6.70 GiB of 8.00 GiB"),
        "{}",
        j.reason
    );
    let j = judge_fit(true, Some(6u64 << 30), counts(2, 0), Some(&peak), None);
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted, "{}", j.reason);
    assert_eq!(
        judge_fit(true, budget, counts(0, 2), None, None).verdict,
        ClaimVerdictKind::Refuted
    );
    assert_eq!(
        judge_fit(true, budget, counts(1, 1), Some(&peak), None).verdict,
        ClaimVerdictKind::Inconclusive
    );
    assert_eq!(
        judge_fit(true, budget, counts(2, 0), None, None).verdict,
        ClaimVerdictKind::NotApplicable,
        "no peak memory on CPU"
    );
    let j = judge_fit(false, None, counts(0, 3), None, None);
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed);
    assert_eq!(
        j.observed.as_deref(),
        Some("out of memory in 3 of 3 processes")
    );
    assert_eq!(
        judge_fit(false, None, counts(3, 0), Some(&peak), None).verdict,
        ClaimVerdictKind::Refuted
    );
    let crashed = OutcomeCounts {
        ok: 0,
        oom: 0,
        failed: 2,
    };
    assert_eq!(
        judge_fit(false, None, crashed, None, None).verdict,
        ClaimVerdictKind::NotApplicable
    );
}

#[test]
fn orderings_hold_break_or_stay_open() {
    let (fast, mid, slow) = (timed(10.0, 4, 5), timed(20.0, 4, 5), timed(30.0, 4, 5));
    let order = |names: &[(&str, &NestedSample)], rel: &[Relation]| {
        judge_order(names, rel, Dimension::Time, &cfg())
    };
    let (j, steps) = order(
        &[("fast", &fast), ("mid", &mid), ("slow", &slow)],
        &[Relation::Less, Relation::Less],
    );
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    assert_eq!(steps.len(), 2);
    let (j, steps) = order(
        &[("fast", &fast), ("slow", &slow), ("mid", &mid)],
        &[Relation::Less, Relation::Less],
    );
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted);
    assert_eq!(steps[1].verdict, ClaimVerdictKind::Refuted);
    assert!(
        j.reason.starts_with("does not hold: slow < mid"),
        "{}",
        j.reason
    );
    let twin = timed(20.0, 4, 5);
    let (j, _) = order(&[("mid", &mid), ("twin", &twin)], &[Relation::Equal]);
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    let (j, _) = order(&[("mid", &mid), ("twin", &twin)], &[Relation::Less]);
    assert_eq!(j.verdict, ClaimVerdictKind::Inconclusive, "{}", j.reason);

    // Memory: equal within tolerance, strictly ordered beyond it.
    let m = |gib: f64| nested(&[&[gib * GIB], &[gib * GIB]]);
    let (a, b, c) = (m(6.5), m(7.5), m(7.5));
    let (j, _) = judge_order(
        &[("a", &a), ("b", &b), ("c", &c)],
        &[Relation::Less, Relation::Equal],
        Dimension::Bytes,
        &cfg(),
    );
    assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
    // Equal counts refute a strict order.
    let n = nested(&[&[67.0], &[67.0]]);
    let (j, _) = judge_order(
        &[("x", &n), ("y", &n)],
        &[Relation::Less],
        Dimension::Count,
        &cfg(),
    );
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted);
}

#[test]
fn claims_on_knobs_that_cannot_act_or_on_failed_variants_are_not_applicable() {
    let text = "[suite]\nname = \"s\"\nworkload = \"sleep\"\n\
                [[variant]]\nname = \"on\"\n\
                [[variant]]\nname = \"off\"\nknobs = { cudnn.enabled = false }\n\
                [[claim]]\nid = \"H0-01\"\nsource = \"H0\"\nsummary = \"cuDNN is faster\"\n\
                change = \"-40%..-30%\"\nbaseline = \"off\"\ncandidate = \"on\"\n";
    let manifest =
        crate::manifest::Manifest::from_str(std::path::Path::new("m.toml"), text).unwrap();
    let plan =
        crate::manifest::build_plan(&manifest, crate::manifest::ProfileChoice::Named("base"))
            .unwrap();
    let data = |plan, statuses: Vec<Status>, not_applicable: &[&str]| VariantData {
        plan,
        statuses,
        metrics: [("wall_ms".to_string(), timed(20.0, 3, 5))]
            .into_iter()
            .collect(),
        not_applicable: not_applicable.iter().map(|s| s.to_string()).collect(),
        cuda_overhead_bytes: None,
        flagged: 0,
    };
    let cpu_note = "cudnn.enabled: acts on CUDA only; this worker runs on CPU";
    let mut variants = BTreeMap::new();
    variants.insert(
        "on".to_string(),
        data(&plan.variants[0], vec![Status::Ok; 2], &[]),
    );
    variants.insert(
        "off".to_string(),
        data(&plan.variants[1], vec![Status::Ok; 2], &[cpu_note]),
    );
    let (j, _) = judge_claim(&plan.claims[0], &variants, &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::NotApplicable);
    assert_eq!(
        j.reason,
        format!("the settings that set the variants apart cannot act here: {cpu_note}")
    );
    // On a GPU the knob acts: the claim is measured (and here refuted: no change).
    variants.get_mut("off").unwrap().not_applicable.clear();
    let (j, _) = judge_claim(&plan.claims[0], &variants, &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::Refuted, "{}", j.reason);
    // A variant whose workers all crashed has nothing to compare.
    variants.get_mut("on").unwrap().statuses = vec![Status::Crashed; 2];
    let (j, _) = judge_claim(&plan.claims[0], &variants, &cfg());
    assert_eq!(j.verdict, ClaimVerdictKind::NotApplicable);
    assert_eq!(
        j.reason,
        "variant `on` has no successful process (2 failed)"
    );
    assert_eq!(
        differing_settings(&plan.variants[0], &plan.variants[1]),
        ["cudnn.enabled"]
    );
}
