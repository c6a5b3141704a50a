//! Hodges–Lehmann shift estimate and its distribution-free confidence interval (Hodges &
//! Lehmann 1963; Lehmann 1975, *Nonparametrics*, §2.6; Bauer 1972, JASA 67:687).
//!
//! **Sign convention:** the shift is `Δ = median{ y_j − x_i }` over all `n_x · n_y` pairs, with
//! `x` the *baseline* (first argument) and `y` the *candidate* (second argument). `Δ > 0` means
//! the candidate is larger (slower, for times); swapping the arguments negates `Δ` and mirrors
//! the interval.
//!
//! **Interval:** with the pairwise differences sorted, `D_(1) <= … <= D_(mn)`, the interval is
//! `[D_(k), D_(mn+1−k)]`, where `k` is the Mann–Whitney critical value. This is the set of
//! shifts that a two-sided Mann–Whitney test would not reject, so estimate, interval and test
//! tell one consistent story.
//! * Exact (used when `min(n_x, n_y) <= 8`, the same size rule as the test): `k` is the
//!   smallest `u` with `P(U <= u) >= α/2` (R's `wilcox.test` convention), achieved confidence
//!   `1 − 2 P(U <= k−1)`. When even `k = 1` falls short of the requested level (e.g. 3 vs 3
//!   values cannot give 95 %), `k = 1` is used and the lower *achieved* confidence is reported
//!   in the interval — callers must check it.
//! * Normal approximation otherwise: `k = ⌊mn/2 − z_{1−α/2} sqrt(mn(m+n+1)/12) + 1/2⌋` (with
//!   continuity correction), at least 1.
//!
//! The critical values assume continuous data; ties only make the interval conservative, so
//! no tie correction is applied.
//!
//! **Ratio form:** [`hodges_lehmann_ratio`] applies the method to `ln` values and maps back
//! with `exp`: the estimate is the median of all candidate/baseline ratios, and the interval is
//! that of a multiplicative change — the natural scale for timings.
//!
//! The order statistics are found without materialising the `mn` differences (an O((m+n) log)
//! selection in the sorted-matrix structure of `y_j − x_i`, after Monahan 1984, ACM TOMS
//! 10:265), so pooled samples of many thousands of calls stay cheap in memory.

use super::mann_whitney::{ExactU, AUTO_EXACT_MAX_SIZE, EXACT_MAX_CELLS};
use super::sample::{midpoint, tail_mass, Interval, Sample};
use super::{NullDistribution, StatsError};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// Hodges–Lehmann estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HodgesLehmann {
    /// The shift `median(y_j − x_i)`, or for [`hodges_lehmann_ratio`] the ratio
    /// `median(y_j / x_i)`.
    pub estimate: f64,
    /// `[D_(k), D_(mn+1−k)]`; its `confidence()` is the achieved level.
    pub interval: Interval,
    /// The level that was asked for.
    pub nominal_confidence: f64,
    /// The critical rank `k` (1-based).
    pub k: usize,
    pub method: NullDistribution,
}

impl HodgesLehmann {
    /// Whether the samples were large enough to reach the requested confidence.
    pub fn reaches_nominal_confidence(&self) -> bool {
        self.interval.confidence() >= self.nominal_confidence - 1e-12
    }
}

/// Shift of `candidate` relative to `baseline` (see the module documentation for the sign).
pub fn hodges_lehmann(
    baseline: &Sample,
    candidate: &Sample,
    confidence: f64,
) -> Result<HodgesLehmann, StatsError> {
    let diffs = PairwiseDiffs::new(baseline.sorted(), candidate.sorted());
    let (k, achieved, method) = critical_rank(baseline.n(), candidate.n(), confidence)?;
    let total = diffs.len();
    let estimate = if total % 2 == 1 {
        diffs.kth(total / 2)
    } else {
        midpoint(diffs.kth(total / 2 - 1), diffs.kth(total / 2))
    };
    if !estimate.is_finite() {
        return Err(StatsError::NonFiniteStatistic);
    }
    let interval = Interval::new(diffs.kth(k - 1), diffs.kth(total - k), achieved)?;
    Ok(HodgesLehmann {
        estimate,
        interval,
        nominal_confidence: confidence,
        k,
        method,
    })
}

/// Ratio `candidate / baseline` as `exp` of the Hodges–Lehmann shift of the logarithms.
/// Needs positive values.
pub fn hodges_lehmann_ratio(
    baseline: &Sample,
    candidate: &Sample,
    confidence: f64,
) -> Result<HodgesLehmann, StatsError> {
    let shift = hodges_lehmann(&baseline.ln()?, &candidate.ln()?, confidence)?;
    let estimate = shift.estimate.exp();
    if !estimate.is_finite() {
        return Err(StatsError::NonFiniteStatistic);
    }
    Ok(HodgesLehmann {
        estimate,
        interval: shift.interval.map_monotone(f64::exp)?,
        ..shift
    })
}

/// Critical rank `k >= 1`, achieved confidence, and method for sizes `n1`, `n2`.
fn critical_rank(
    n1: usize,
    n2: usize,
    confidence: f64,
) -> Result<(usize, f64, NullDistribution), StatsError> {
    let half_alpha = tail_mass(confidence)?;
    let cells = n1 * n2;
    if n1.min(n2) <= AUTO_EXACT_MAX_SIZE && cells <= EXACT_MAX_CELLS {
        if let Ok(dist) = ExactU::new(n1, n2) {
            // Smallest u with P(U <= u) >= α/2; u <= mn/2 because the law is symmetric.
            let qu = (0..=dist.max_u())
                .find(|&u| dist.cdf(u) >= half_alpha)
                .unwrap_or(0);
            let k = qu.max(1);
            let achieved = 1.0 - 2.0 * dist.cdf(k - 1);
            return Ok((k, achieved.max(0.0), NullDistribution::Exact));
        }
    }
    let (m, n) = (n1 as f64, n2 as f64);
    let mean = m * n / 2.0;
    let sd = (m * n * (m + n + 1.0) / 12.0).sqrt();
    let z = Normal::standard().inverse_cdf(1.0 - half_alpha);
    let k_raw = (mean - z * sd + 0.5).floor();
    let k = if k_raw >= 1.0 {
        (k_raw as usize).min(cells.div_ceil(2))
    } else {
        1
    };
    let achieved = 1.0 - 2.0 * Normal::standard().cdf((k as f64 - 0.5 - mean) / sd);
    Ok((k, achieved.clamp(0.0, 1.0), NullDistribution::Normal))
}

/// The `m·n` differences `y_j − x_i` of sorted `x` (rows) and sorted `y` (columns), never
/// materialised: row `i` is non-decreasing in `j`, column `j` non-increasing in `i`.
struct PairwiseDiffs {
    x: Vec<f64>,
    y: Vec<f64>,
}

impl PairwiseDiffs {
    fn new(x: Vec<f64>, y: Vec<f64>) -> Self {
        PairwiseDiffs { x, y }
    }

    fn len(&self) -> usize {
        self.x.len() * self.y.len()
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.y[j] - self.x[i]
    }

    /// Per-row counts of differences `< t` (`strict`) or `<= t`; non-decreasing in `i`.
    fn counts_below(&self, t: f64, strict: bool) -> Vec<usize> {
        let n = self.y.len();
        let mut j = 0;
        self.x
            .iter()
            .map(|&xi| {
                while j < n && {
                    let d = self.y[j] - xi;
                    if strict {
                        d < t
                    } else {
                        d <= t
                    }
                } {
                    j += 1;
                }
                j
            })
            .collect()
    }

    /// The `k`-th smallest difference (0-based, `k < len`), by repeated weighted-median pivots
    /// that discard at least a quarter of the remaining candidates each round.
    fn kth(&self, k: usize) -> f64 {
        let (m, n) = (self.x.len(), self.y.len());
        let mut lo = vec![0usize; m]; // columns < lo[i] are known to rank below k
        let mut hi = vec![n; m]; // columns >= hi[i] are known to rank above k
        loop {
            let active: usize = lo.iter().zip(&hi).map(|(l, h)| h - l).sum();
            if active <= (m + n).max(64) {
                let below: usize = lo.iter().sum();
                let mut rest: Vec<f64> = (0..m)
                    .flat_map(|i| (lo[i]..hi[i]).map(move |j| (i, j)))
                    .map(|(i, j)| self.at(i, j))
                    .collect();
                rest.sort_unstable_by(f64::total_cmp);
                return rest[k - below];
            }
            let mut mids: Vec<(f64, usize)> = (0..m)
                .filter(|&i| hi[i] > lo[i])
                .map(|i| (self.at(i, (lo[i] + hi[i]) / 2), hi[i] - lo[i]))
                .collect();
            mids.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            let mut weight = 0;
            let pivot = mids
                .iter()
                .find(|(_, w)| {
                    weight += w;
                    2 * weight >= active
                })
                .map_or(mids[mids.len() - 1].0, |(v, _)| *v);
            let less = self.counts_below(pivot, true);
            let less_total: usize = less.iter().sum();
            if k < less_total {
                for (h, l) in hi.iter_mut().zip(&less) {
                    *h = (*h).min(*l);
                }
                continue;
            }
            let leq = self.counts_below(pivot, false);
            if k < leq.iter().sum::<usize>() {
                return pivot;
            }
            for (l, q) in lo.iter_mut().zip(&leq) {
                *l = (*l).max(*q);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn s(v: &[f64]) -> Sample {
        Sample::from_slice(v).unwrap()
    }

    #[test]
    fn selection_matches_sorting() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (m, n) in [(1, 1), (1, 40), (30, 1), (7, 9), (25, 40), (60, 80)] {
            // Coarse values so that many differences tie.
            let x: Vec<f64> = (0..m)
                .map(|_| f64::from(rng.random_range(0..20u8)))
                .collect();
            let y: Vec<f64> = (0..n)
                .map(|_| f64::from(rng.random_range(0..20u8)) * 0.5)
                .collect();
            let mut all: Vec<f64> = x
                .iter()
                .flat_map(|a| y.iter().map(move |b| b - a))
                .collect();
            all.sort_unstable_by(f64::total_cmp);
            let mut xs = x.clone();
            xs.sort_unstable_by(f64::total_cmp);
            let mut ys = y.clone();
            ys.sort_unstable_by(f64::total_cmp);
            let d = PairwiseDiffs::new(xs, ys);
            for (k, want) in all.iter().enumerate() {
                assert_eq!(d.kth(k), *want, "m={m} n={n} k={k}");
            }
        }
    }

    #[test]
    fn exact_critical_values_match_tables() {
        // R: qwilcox(0.025, 5, 5) = 3 -> k = 3, achieved 1 - 2 pwilcox(2, 5, 5) = 1 - 8/252.
        let (k, achieved, method) = critical_rank(5, 5, 0.95).unwrap();
        assert_eq!((k, method), (3, NullDistribution::Exact));
        assert!((achieved - (1.0 - 8.0 / 252.0)).abs() < 1e-12);
        // 3 vs 3 cannot reach 95 %: k = 1 with achieved 1 - 2/20 = 0.9.
        let (k, achieved, _) = critical_rank(3, 3, 0.95).unwrap();
        assert_eq!(k, 1);
        assert!((achieved - 0.9).abs() < 1e-12);
        let (k, achieved, _) = critical_rank(1, 1, 0.95).unwrap();
        assert_eq!((k, achieved), (1, 0.0));
    }

    #[test]
    fn shift_and_ratio() {
        let x = s(&[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]);
        let y = s(&[12.0, 13.0, 14.0, 15.0, 16.0, 17.0]);
        let hl = hodges_lehmann(&x, &y, 0.95).unwrap();
        assert_eq!(hl.estimate, 2.0);
        assert!(hl.interval.contains(2.0));
        assert!(hl.reaches_nominal_confidence());
        let back = hodges_lehmann(&y, &x, 0.95).unwrap();
        assert_eq!(back.estimate, -2.0);
        assert_eq!(back.interval.lower(), -hl.interval.upper());
        let doubled = x.scaled(2.0).unwrap();
        let r = hodges_lehmann_ratio(&x, &doubled, 0.95).unwrap();
        assert!((r.estimate - 2.0).abs() < 1e-12);
        assert!(r.interval.lower() < 2.0 && r.interval.upper() > 2.0);
        // Bounds are attained ratios 2 x_j / x_i, within [20/15, 30/10].
        assert!(r.interval.lower() >= 20.0 / 15.0 && r.interval.upper() <= 3.0);
        assert!(hodges_lehmann_ratio(&s(&[0.0, 1.0]), &x, 0.95).is_err());
        assert!(hodges_lehmann(&x, &y, 1.0).is_err());
    }

    #[test]
    fn tiny_samples_report_low_achieved_confidence() {
        let hl = hodges_lehmann(&s(&[1.0]), &s(&[1.5]), 0.95).unwrap();
        assert_eq!(hl.estimate, 0.5);
        assert_eq!(hl.interval.confidence(), 0.0);
        assert!(!hl.reaches_nominal_confidence());
    }
}
