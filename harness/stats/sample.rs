//! The validated [`Sample`] type, the [`Interval`] type and the order-statistic helpers
//! shared by the other modules.

use super::{check_confidence, StatsError};
use serde::{Deserialize, Serialize};

/// One sample of measurements: at least one value, every value finite.
///
/// The invariant is established once, here, so that every statistic downstream is total
/// (no NaN propagation, no empty-slice panics). Deserialisation validates as well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "Vec<f64>")]
pub struct Sample {
    values: Vec<f64>,
}

impl Sample {
    /// Validates `values`: rejects an empty vector and any NaN or infinite value.
    pub fn new(values: Vec<f64>) -> Result<Self, StatsError> {
        if values.is_empty() {
            return Err(StatsError::Empty);
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StatsError::NonFinite { index, value });
        }
        Ok(Sample { values })
    }

    /// Same as [`Sample::new`], copying from a slice.
    pub fn from_slice(values: &[f64]) -> Result<Self, StatsError> {
        Sample::new(values.to_vec())
    }

    /// For values derived from validated samples (medians, pooled calls): non-empty, finite.
    pub(crate) fn from_validated(values: Vec<f64>) -> Self {
        debug_assert!(!values.is_empty() && values.iter().all(|v| v.is_finite()));
        Sample { values }
    }

    /// The values in their original order (outlier indices refer to this order).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Number of values (always at least 1).
    pub fn n(&self) -> usize {
        self.values.len()
    }

    /// The values sorted ascending.
    pub fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_unstable_by(f64::total_cmp);
        v
    }

    /// Median (mean of the two middle values when `n` is even, as NumPy).
    pub fn median(&self) -> f64 {
        median_in_place(&mut self.values.clone())
    }

    /// Arithmetic mean.
    pub fn mean(&self) -> f64 {
        mean(&self.values)
    }

    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Sample variance with the `n - 1` denominator; `None` for a single value.
    pub fn variance(&self) -> Option<f64> {
        variance(&self.values)
    }

    /// Fails with [`StatsError::NonPositive`] unless every value is `> 0` (needed by ratios
    /// and logarithms).
    pub fn check_positive(&self) -> Result<(), StatsError> {
        match self.values.iter().find(|v| **v <= 0.0) {
            Some(&value) => Err(StatsError::NonPositive { value }),
            None => Ok(()),
        }
    }

    /// The natural logarithm of every value; requires positive values.
    pub fn ln(&self) -> Result<Sample, StatsError> {
        self.check_positive()?;
        Sample::new(self.values.iter().map(|v| v.ln()).collect())
    }

    /// Every value multiplied by `factor` (which must be finite).
    pub fn scaled(&self, factor: f64) -> Result<Sample, StatsError> {
        Sample::new(self.values.iter().map(|v| v * factor).collect())
    }
}

impl TryFrom<Vec<f64>> for Sample {
    type Error = StatsError;

    fn try_from(values: Vec<f64>) -> Result<Self, Self::Error> {
        Sample::new(values)
    }
}

impl From<Sample> for Vec<f64> {
    fn from(sample: Sample) -> Self {
        sample.values
    }
}

/// A two-sided confidence interval `[lower, upper]` with its confidence level.
///
/// For rank-based intervals the level is the *achieved* one, which is at least the requested
/// level except when the samples are too small to reach it (see [`crate::stats::HodgesLehmann`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    lower: f64,
    upper: f64,
    confidence: f64,
}

impl Interval {
    /// Validates `lower <= upper` (both finite) and `0 <= confidence <= 1`.
    pub fn new(lower: f64, upper: f64, confidence: f64) -> Result<Self, StatsError> {
        if !(lower.is_finite() && upper.is_finite()) || lower > upper {
            return Err(StatsError::InvalidParameter {
                name: "interval bounds",
                value: upper - lower,
                expected: "finite bounds with lower <= upper",
            });
        }
        if !(0.0..=1.0).contains(&confidence) {
            return Err(StatsError::InvalidParameter {
                name: "confidence",
                value: confidence,
                expected: "a level in [0, 1]",
            });
        }
        Ok(Interval {
            lower,
            upper,
            confidence,
        })
    }

    /// For internal callers that guarantee finite `lower <= upper` and a level in `[0, 1]`.
    pub(crate) fn from_ordered(lower: f64, upper: f64, confidence: f64) -> Self {
        debug_assert!(lower <= upper && (0.0..=1.0).contains(&confidence));
        Interval {
            lower,
            upper,
            confidence,
        }
    }

    pub fn lower(&self) -> f64 {
        self.lower
    }

    pub fn upper(&self) -> f64 {
        self.upper
    }

    pub fn confidence(&self) -> f64 {
        self.confidence
    }

    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }

    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }

    /// Applies a non-decreasing map to both ends (e.g. `exp`, or `x - 1`).
    pub(crate) fn map_monotone(&self, f: impl Fn(f64) -> f64) -> Result<Self, StatsError> {
        Interval::new(f(self.lower), f(self.upper), self.confidence)
    }
}

/// Median of a non-empty slice in O(n); reorders the slice. Returns NaN for an empty slice.
pub(crate) fn median_in_place(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let (lower, upper_mid, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper_mid = *upper_mid;
    if n % 2 == 1 {
        upper_mid
    } else {
        let lower_mid = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        midpoint(lower_mid, upper_mid)
    }
}

/// `(a + b) / 2` without overflow for large finite values.
pub(crate) fn midpoint(a: f64, b: f64) -> f64 {
    let m = (a + b) / 2.0;
    if m.is_finite() {
        m
    } else {
        a / 2.0 + b / 2.0
    }
}

/// Quantile of sorted data by linear interpolation between order statistics (Hyndman & Fan
/// type 7, the default of NumPy and `scipy.stats.quantile`). `p` must lie in `[0, 1]`.
pub(crate) fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let t = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    if a == b {
        a
    } else if t < 0.5 {
        a + (b - a) * t
    } else {
        b - (b - a) * (1.0 - t)
    }
}

pub(crate) fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Two-pass sample variance (`n - 1` denominator), `None` when `n < 2`.
pub(crate) fn variance(values: &[f64]) -> Option<f64> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let m = mean(values);
    Some(values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1) as f64)
}

/// Midranks (1-based, ties get the average rank) of `values`, plus the sizes of tie groups
/// larger than one.
pub(crate) fn midranks(values: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold equal values; their 1-based ranks are start+1..=end.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        if end - start > 1 {
            ties.push(end - start);
        }
        start = end;
    }
    (ranks, ties)
}

/// Validates a confidence level and returns the two-sided tail mass `(1 - confidence) / 2`.
pub(crate) fn tail_mass(confidence: f64) -> Result<f64, StatsError> {
    check_confidence(confidence)?;
    Ok((1.0 - confidence) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_non_finite() {
        assert_eq!(Sample::new(vec![]), Err(StatsError::Empty));
        assert_eq!(
            Sample::new(vec![1.0, f64::INFINITY]),
            Err(StatsError::NonFinite {
                index: 1,
                value: f64::INFINITY
            })
        );
        assert!(matches!(
            Sample::new(vec![1.0, 2.0, f64::NAN]),
            Err(StatsError::NonFinite { index: 2, .. })
        ));
        let parsed: Result<Sample, _> = serde_json::from_str("[]");
        assert!(parsed.is_err());
        let parsed: Sample = serde_json::from_str("[3.0, 1.0, 2.0]").unwrap();
        assert_eq!(parsed.median(), 2.0);
    }

    #[test]
    fn median_and_quantiles() {
        let s = Sample::new(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median(), 2.5);
        assert_eq!(Sample::new(vec![7.0]).unwrap().median(), 7.0);
        let sorted = s.sorted();
        assert_eq!(quantile_sorted(&sorted, 0.0), 1.0);
        assert_eq!(quantile_sorted(&sorted, 1.0), 4.0);
        assert!((quantile_sorted(&sorted, 0.25) - 1.75).abs() < 1e-15);
        assert_eq!(midpoint(f64::MAX, f64::MAX), f64::MAX);
    }

    #[test]
    fn midranks_average_ties() {
        let (ranks, ties) = midranks(&[10.0, 20.0, 10.0, 30.0, 20.0, 20.0]);
        assert_eq!(ranks, vec![1.5, 4.0, 1.5, 6.0, 4.0, 4.0]);
        assert_eq!(ties, vec![2, 3]);
    }

    #[test]
    fn interval_validation() {
        assert!(Interval::new(2.0, 1.0, 0.95).is_err());
        assert!(Interval::new(1.0, 2.0, 1.5).is_err());
        let i = Interval::new(1.0, 3.0, 0.9).unwrap();
        assert!(i.contains(2.0) && !i.contains(3.5));
        assert_eq!(i.width(), 2.0);
    }
}
