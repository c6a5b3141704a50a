//! Descriptive summary of one sample.
//!
//! * Location: median (robust, the primary figure) and mean (for comparison with other tools).
//! * Spread: standard deviation with the `n - 1` denominator, the coefficient of variation
//!   `sd / |mean|`, and the median absolute deviation `MAD = median(|x_i - median(x)|)`.
//!   The MAD is reported raw and scaled by `1 / Φ⁻¹(3/4) ≈ 1.4826`, the factor that makes it a
//!   consistent estimator of the standard deviation for normal data (SciPy's
//!   `median_abs_deviation(scale="normal")`), so that it can be read on the same scale as `sd`
//!   while staying insensitive to the spikes that GPU timings show.
//! * Outliers: the modified z-score of Iglewicz & Hoaglin (1993, *How to Detect and Handle
//!   Outliers*, ASQC), `M_i = 0.6745 (x_i - median) / MAD`, flags `|M_i| > 3.5`. Outliers are
//!   reported as indices and never dropped: a spike is a measurement, and the median-based
//!   methods downstream are already robust to it.
//!   When `MAD = 0` (more than half of the values are identical) the score is undefined; we then
//!   use the mean absolute deviation around the median, `M_i = (x_i - median) / (1.2533 MeanAD)`
//!   (`1.2533 = sqrt(π/2)` makes MeanAD consistent for the normal sd; the fallback used by IBM
//!   SPSS), and if that is also zero all values are equal and nothing is an outlier.

use super::sample::{mean, median_in_place, Sample};
use super::StatsError;
use serde::Serialize;

/// `1 / Φ⁻¹(3/4)`: scales the MAD to estimate the standard deviation of normal data.
pub const MAD_NORMAL_SCALE: f64 = 1.482_602_218_505_602;
/// `sqrt(π/2)`: scales the mean absolute deviation to estimate a normal standard deviation.
const MEAN_AD_NORMAL_SCALE: f64 = 1.253_314_137_315_500_3;
/// Iglewicz & Hoaglin's cut-off for the absolute modified z-score.
pub const OUTLIER_CUTOFF: f64 = 3.5;

/// Which robust scale the outlier scores were computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutlierScale {
    /// The scaled MAD (the normal case).
    Mad,
    /// The scaled mean absolute deviation, because the MAD was zero.
    MeanAbsoluteDeviation,
    /// All values are equal: no scale, no outliers.
    Degenerate,
}

/// Descriptive statistics of one sample (see the module documentation for definitions).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub max: f64,
    pub median: f64,
    pub mean: f64,
    /// Standard deviation (`n - 1`); `None` for a single value.
    pub std_dev: Option<f64>,
    /// `std_dev / |mean|`; `None` for a single value or a zero mean.
    pub cv: Option<f64>,
    /// Raw median absolute deviation.
    pub mad: f64,
    /// `mad * 1.4826`, comparable to `std_dev` for normal data.
    pub mad_scaled: f64,
    /// Indices (into the original order) of values with `|modified z| > 3.5`.
    pub outliers: Vec<usize>,
    pub outlier_scale: OutlierScale,
}

/// Summarises a validated sample.
pub fn summarize(sample: &Sample) -> Summary {
    let values = sample.values();
    let median = sample.median();
    let mean_value = sample.mean();
    let std_dev = sample.variance().map(f64::sqrt);
    let cv = std_dev
        .filter(|_| mean_value != 0.0)
        .map(|sd| sd / mean_value.abs());
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    let mad = median_in_place(&mut deviations.clone());
    let (scale, outlier_scale) = if mad > 0.0 {
        (mad * MAD_NORMAL_SCALE, OutlierScale::Mad)
    } else {
        let mean_ad = mean(&deviations);
        if mean_ad > 0.0 {
            (
                mean_ad * MEAN_AD_NORMAL_SCALE,
                OutlierScale::MeanAbsoluteDeviation,
            )
        } else {
            (0.0, OutlierScale::Degenerate)
        }
    };
    let outliers = if scale > 0.0 {
        deviations
            .iter()
            .enumerate()
            .filter(|(_, d)| **d / scale > OUTLIER_CUTOFF)
            .map(|(i, _)| i)
            .collect()
    } else {
        Vec::new()
    };
    Summary {
        n: sample.n(),
        min: sample.min(),
        max: sample.max(),
        median,
        mean: mean_value,
        std_dev,
        cv,
        mad,
        mad_scaled: mad * MAD_NORMAL_SCALE,
        outliers,
        outlier_scale,
    }
}

impl Summary {
    /// Validates raw values and summarises them.
    pub fn of(values: &[f64]) -> Result<Summary, StatsError> {
        Ok(summarize(&Sample::from_slice(values)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_value() {
        let s = Summary::of(&[5.0]).unwrap();
        assert_eq!(
            (s.n, s.median, s.mean, s.min, s.max),
            (1, 5.0, 5.0, 5.0, 5.0)
        );
        assert_eq!(s.std_dev, None);
        assert_eq!(s.cv, None);
        assert_eq!(s.mad, 0.0);
        assert!(s.outliers.is_empty());
        assert_eq!(s.outlier_scale, OutlierScale::Degenerate);
    }

    #[test]
    fn all_equal() {
        let s = Summary::of(&[2.0; 6]).unwrap();
        assert_eq!(s.std_dev, Some(0.0));
        assert_eq!(s.cv, Some(0.0));
        assert_eq!(s.mad, 0.0);
        assert!(s.outliers.is_empty());
        assert_eq!(s.outlier_scale, OutlierScale::Degenerate);
    }

    #[test]
    fn mad_zero_falls_back_to_mean_absolute_deviation() {
        // 7 of 9 values equal: MAD = 0, but 100.0 is clearly an outlier and 10.1 is not.
        let values = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.1, 100.0];
        let s = Summary::of(&values).unwrap();
        assert_eq!(s.mad, 0.0);
        assert_eq!(s.outlier_scale, OutlierScale::MeanAbsoluteDeviation);
        assert_eq!(s.outliers, vec![8]);
    }

    #[test]
    fn flags_spike_by_modified_z_score() {
        // median 10.05, MAD 0.15 -> scaled 0.222; the spike scores about 90, 10.4 scores 1.6.
        let values = [10.0, 9.9, 10.1, 10.0, 30.0, 9.8, 10.2, 10.4];
        let s = Summary::of(&values).unwrap();
        assert_eq!(s.outliers, vec![4]);
        assert_eq!(s.outlier_scale, OutlierScale::Mad);
        assert!((s.mad_scaled - s.mad * 1.4826).abs() < 1e-4 * s.mad);
    }

    #[test]
    fn rejects_nan() {
        assert!(matches!(
            Summary::of(&[1.0, f64::NAN]),
            Err(StatsError::NonFinite { index: 1, .. })
        ));
        assert_eq!(Summary::of(&[]), Err(StatsError::Empty));
    }
}
