//! Property tests: invariances that any correct implementation must satisfy.

use super::*;
use proptest::prelude::*;

/// Positive values on a 1e-3 grid: distinct values stay distinct (and ties stay ties) under
/// scaling, so rank statistics must be exactly invariant.
fn values(max_len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        (1u32..2_000_000).prop_map(|v| f64::from(v) / 1000.0),
        1..max_len,
    )
}

/// Values drawn from a small set, to exercise ties.
fn tied_values(max_len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((1u32..6).prop_map(f64::from), 1..max_len)
}

fn s(v: Vec<f64>) -> Sample {
    Sample::new(v).unwrap()
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn p_values_are_probabilities(x in values(30), y in values(30), tx in tied_values(12), ty in tied_values(12)) {
        for (a, b) in [(s(x.clone()), s(y.clone())), (s(tx), s(ty))] {
            for method in [MwuMethod::Auto, MwuMethod::Asymptotic, MwuMethod::Exact] {
                let p = mann_whitney_u_with(&a, &b, method).unwrap().p_value;
                prop_assert!((0.0..=1.0).contains(&p), "{method:?} p = {p}");
            }
            if let Ok(w) = welch_t_test(&a, &b) {
                prop_assert!((0.0..=1.0).contains(&w.p_value));
            }
        }
    }

    #[test]
    fn swapping_samples(x in values(25), y in values(25), tx in tied_values(12), ty in tied_values(12)) {
        for (a, b) in [(s(x.clone()), s(y.clone())), (s(tx), s(ty))] {
            let ab = mann_whitney_u(&a, &b);
            let ba = mann_whitney_u(&b, &a);
            prop_assert_eq!(ab.p_value, ba.p_value);
            prop_assert_eq!(ab.u1, ba.u2);
            if let (Ok(w1), Ok(w2)) = (welch_t_test(&a, &b), welch_t_test(&b, &a)) {
                prop_assert_eq!(w1.p_value, w2.p_value);
                prop_assert_eq!(w1.t, -w2.t);
            }
            let h1 = hodges_lehmann(&a, &b, 0.95).unwrap();
            let h2 = hodges_lehmann(&b, &a, 0.95).unwrap();
            prop_assert_eq!(h1.estimate, -h2.estimate);
            prop_assert_eq!(h1.interval.lower(), -h2.interval.upper());
            prop_assert_eq!(h1.interval.upper(), -h2.interval.lower());
            let r1 = hodges_lehmann_ratio(&a, &b, 0.95).unwrap();
            let r2 = hodges_lehmann_ratio(&b, &a, 0.95).unwrap();
            prop_assert!(rel_close(r1.estimate, 1.0 / r2.estimate, 1e-12));
            prop_assert!(rel_close(r1.interval.lower(), 1.0 / r2.interval.upper(), 1e-12));
            let cfg = BootstrapConfig::new(200, 0.95, 5).unwrap();
            let b1 = bootstrap_ratio_of_medians(&a, &b, &cfg).unwrap();
            let b2 = bootstrap_ratio_of_medians(&b, &a, &cfg).unwrap();
            prop_assert!(rel_close(b1.ratio, 1.0 / b2.ratio, 1e-12));
        }
    }

    #[test]
    fn scaling_both_samples(x in values(25), y in values(25), c in 1e-3f64..1e3) {
        let (a, b) = (s(x), s(y));
        let (ca, cb) = (a.scaled(c).unwrap(), b.scaled(c).unwrap());
        prop_assert_eq!(mann_whitney_u(&a, &b).p_value, mann_whitney_u(&ca, &cb).p_value);
        if let (Ok(w1), Ok(w2)) = (welch_t_test(&a, &b), welch_t_test(&ca, &cb)) {
            prop_assert!(rel_close(w1.p_value, w2.p_value, 1e-9) || (w1.p_value - w2.p_value).abs() < 1e-12);
        }
        let r1 = hodges_lehmann_ratio(&a, &b, 0.95).unwrap();
        let r2 = hodges_lehmann_ratio(&ca, &cb, 0.95).unwrap();
        prop_assert!(rel_close(r1.estimate, r2.estimate, 1e-9));
        prop_assert!(rel_close(r1.interval.lower(), r2.interval.lower(), 1e-9));
        prop_assert!(rel_close(r1.interval.upper(), r2.interval.upper(), 1e-9));
        let cfg = BootstrapConfig::new(200, 0.95, 9).unwrap();
        let b1 = bootstrap_ratio_of_medians(&a, &b, &cfg).unwrap();
        let b2 = bootstrap_ratio_of_medians(&ca, &cb, &cfg).unwrap();
        prop_assert!(rel_close(b1.ratio, b2.ratio, 1e-12));
        prop_assert!(rel_close(b1.interval.lower(), b2.interval.lower(), 1e-12));
        prop_assert!(rel_close(b1.interval.upper(), b2.interval.upper(), 1e-12));
    }

    #[test]
    fn bootstrap_interval_within_data_range(x in values(40), seed in any::<u64>()) {
        let a = s(x);
        let cfg = BootstrapConfig::new(300, 0.95, seed).unwrap();
        let ci = bootstrap_median_ci(&a, &cfg);
        prop_assert!(a.min() <= ci.lower() && ci.lower() <= ci.upper() && ci.upper() <= a.max());
        let nested = NestedSample::new(a.values().chunks(3).map(<[f64]>::to_vec).collect()).unwrap();
        let ci = hierarchical_bootstrap_median_ci(&nested, &cfg);
        prop_assert!(a.min() <= ci.lower() && ci.upper() <= a.max());
    }

    #[test]
    fn holm_dominates_bh_dominates_raw(p in prop::collection::vec(0.0f64..=1.0, 0..30)) {
        let holm = adjust_p_values(&p, Correction::Holm).unwrap();
        let bh = adjust_p_values(&p, Correction::BenjaminiHochberg).unwrap();
        for i in 0..p.len() {
            prop_assert!(holm[i] >= bh[i] - 1e-15, "holm {} < bh {}", holm[i], bh[i]);
            prop_assert!(bh[i] >= p[i] - 1e-15);
            prop_assert!(holm[i] <= 1.0 && bh[i] <= 1.0);
            for j in 0..p.len() {
                if p[i] <= p[j] {
                    prop_assert!(holm[i] <= holm[j] && bh[i] <= bh[j]);
                }
            }
        }
    }

    #[test]
    fn hodges_lehmann_interval_brackets_estimate(x in tied_values(20), y in values(20)) {
        let (a, b) = (s(x), s(y));
        let hl = hodges_lehmann(&a, &b, 0.9).unwrap();
        prop_assert!(hl.interval.contains(hl.estimate));
        prop_assert!(hl.k >= 1 && hl.k <= (a.n() * b.n()).div_ceil(2));
    }
}
