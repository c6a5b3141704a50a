//! Student-t intervals on per-process values: the intervals every time verdict rests on.
//!
//! On GPUs whole processes run fast or slow (see [`super::nested`]), so a time verdict takes one
//! value per process (the median of its calls) and treats the processes as the replicates.
//! Between-process spread is close to lognormal, with occasional "slow regime" processes, so
//! times are compared on the log scale: [`welch_difference`] of log process medians gives the
//! ratio of geometric means with Welch's interval (Welch–Satterthwaite degrees of freedom), and
//! [`one_sample`] of log process medians gives the geometric mean of one variant.
//!
//! Why a t interval rather than the rank methods the crate also has: with 3 processes per side
//! the Mann–Whitney test cannot go below p = 0.1 and the Hodges–Lehmann interval tops out at
//! 90 %, so a rank rule never decides a nightly of 3 processes, however far apart they are. The
//! t interval uses the magnitudes: 3 tight processes per side decide a large effect, 3 scattered
//! ones give an honestly wide interval. Its coverage under the noise measured on GPUs (nested
//! lognormal with 0–20 % between-process CV, and a two-regime model where 30 % of processes run
//! 1.45× slow) is checked by the seeded simulations in `verdict/simulation`; the README table
//! comes from them.

use super::sample::{Interval, Sample};
use super::{check_confidence, StatsError};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A location estimate with its Student-t interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TInterval {
    /// Mean (one sample) or difference of means `candidate − baseline` (two samples).
    pub estimate: f64,
    pub interval: Interval,
    pub standard_error: f64,
    /// Degrees of freedom (Welch–Satterthwaite for two samples); infinite when every value on
    /// both sides is equal, where the interval collapses to the estimate.
    pub df: f64,
    /// Two-sided p-value of `estimate = 0`.
    pub p_value: f64,
}

impl TInterval {
    /// Half-width of the interval at another confidence level, from the same standard error and
    /// degrees of freedom.
    pub fn half_width(&self, confidence: f64) -> Result<f64, StatsError> {
        check_confidence(confidence)?;
        Ok(t_quantile(self.df, confidence)? * self.standard_error)
    }

    /// The same estimate with its interval at another confidence level.
    pub fn at(&self, confidence: f64) -> Result<TInterval, StatsError> {
        let h = self.half_width(confidence)?;
        Ok(TInterval {
            interval: Interval::new(self.estimate - h, self.estimate + h, confidence)?,
            ..*self
        })
    }

    /// `exp` of the estimate and interval: a ratio and its interval when the values were logs.
    pub fn exp(&self) -> Result<(f64, Interval), StatsError> {
        Ok((self.estimate.exp(), self.interval.map_monotone(f64::exp)?))
    }
}

/// The two-sided quantile `t_{df, (1 + confidence) / 2}`.
fn t_quantile(df: f64, confidence: f64) -> Result<f64, StatsError> {
    if df.is_infinite() {
        use statrs::distribution::Normal;
        return Ok(Normal::standard().inverse_cdf(0.5 + confidence / 2.0));
    }
    Ok(students_t(df)?.inverse_cdf(0.5 + confidence / 2.0))
}

fn students_t(df: f64) -> Result<StudentsT, StatsError> {
    StudentsT::new(0.0, 1.0, df).map_err(|_| StatsError::InvalidParameter {
        name: "degrees of freedom",
        value: df,
        expected: "a positive number",
    })
}

fn interval_from(
    estimate: f64,
    standard_error: f64,
    df: f64,
    confidence: f64,
) -> Result<TInterval, StatsError> {
    if standard_error == 0.0 {
        // Every value equal on both sides: the difference is known exactly.
        return Ok(TInterval {
            estimate,
            interval: Interval::new(estimate, estimate, confidence)?,
            standard_error,
            df: f64::INFINITY,
            p_value: if estimate == 0.0 { 1.0 } else { 0.0 },
        });
    }
    let dist = students_t(df)?;
    let h = dist.inverse_cdf(0.5 + confidence / 2.0) * standard_error;
    let p_value = (2.0 * dist.sf((estimate / standard_error).abs())).min(1.0);
    Ok(TInterval {
        estimate,
        interval: Interval::new(estimate - h, estimate + h, confidence)?,
        standard_error,
        df,
        p_value,
    })
}

/// Welch's interval of `mean(candidate) − mean(baseline)`; needs two values per side.
pub fn welch_difference(
    baseline: &Sample,
    candidate: &Sample,
    confidence: f64,
) -> Result<TInterval, StatsError> {
    check_confidence(confidence)?;
    let (vb, vc) = match (baseline.variance(), candidate.variance()) {
        (Some(vb), Some(vc)) => (vb, vc),
        _ => {
            return Err(StatsError::TooFewValues {
                method: "Welch's interval",
                needed: 2,
                got: baseline.n().min(candidate.n()),
            })
        }
    };
    let (nb, nc) = (baseline.n() as f64, candidate.n() as f64);
    let (ab, ac) = (vb / nb, vc / nc);
    let se2 = ab + ac;
    let df = se2 * se2 / (ab * ab / (nb - 1.0) + ac * ac / (nc - 1.0));
    interval_from(
        candidate.mean() - baseline.mean(),
        se2.sqrt(),
        df,
        confidence,
    )
}

/// The t interval of one sample's mean; needs two values.
pub fn one_sample(values: &Sample, confidence: f64) -> Result<TInterval, StatsError> {
    check_confidence(confidence)?;
    let Some(v) = values.variance() else {
        return Err(StatsError::TooFewValues {
            method: "the t interval",
            needed: 2,
            got: values.n(),
        });
    };
    let n = values.n() as f64;
    interval_from(values.mean(), (v / n).sqrt(), n - 1.0, confidence)
}

/// Welch's interval on log values: `exp` of it is the ratio of geometric means
/// `candidate / baseline` with its interval. Values must be positive.
pub fn welch_log_ratio(
    baseline: &Sample,
    candidate: &Sample,
    confidence: f64,
) -> Result<TInterval, StatsError> {
    welch_difference(&baseline.ln()?, &candidate.ln()?, confidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn s(v: &[f64]) -> Sample {
        Sample::from_slice(v).unwrap()
    }

    #[test]
    fn welch_matches_the_textbook_formula_and_the_welch_test() {
        // Baseline mean 2.5, variance 5/3; candidate mean 4, variance 4: se² = 5/12 + 4/3 = 1.75,
        // df = 1.75² / ((5/12)²/3 + (4/3)²/2) = 3.2347.
        let r = welch_difference(&s(&[1.0, 2.0, 3.0, 4.0]), &s(&[2.0, 4.0, 6.0]), 0.95).unwrap();
        assert_relative_eq!(r.estimate, 1.5);
        assert_relative_eq!(r.standard_error, 1.75_f64.sqrt(), epsilon = 1e-12);
        assert_relative_eq!(r.df, 3.0625 / (25.0 / 432.0 + 8.0 / 9.0), epsilon = 1e-12);
        let welch =
            super::super::welch_t_test(&s(&[2.0, 4.0, 6.0]), &s(&[1.0, 2.0, 3.0, 4.0])).unwrap();
        assert_relative_eq!(r.p_value, welch.p_value, epsilon = 1e-12);
        let q = students_t(r.df).unwrap().inverse_cdf(0.975);
        assert_relative_eq!(r.interval.upper() - r.estimate, q * r.standard_error);
        assert!(
            q > 2.9 && q < 3.2,
            "t quantile at df 3.23 lies between t(4) and t(3), got {q}"
        );
    }

    #[test]
    fn one_sample_interval_and_other_levels() {
        let r = one_sample(&s(&[10.0, 12.0, 11.0]), 0.95).unwrap();
        assert_relative_eq!(r.estimate, 11.0);
        assert_eq!(r.df, 2.0);
        // t_{0.975, 2} = 4.3027; se = 1 / sqrt(3).
        assert_relative_eq!(
            r.interval.upper(),
            11.0 + 4.302_652_7 / 3f64.sqrt(),
            epsilon = 1e-6
        );
        let wider = r.at(0.99).unwrap();
        assert!(wider.interval.lower() < r.interval.lower());
        assert_eq!(wider.interval.confidence(), 0.99);
        assert!(one_sample(&s(&[1.0]), 0.95).is_err());
        assert!(welch_difference(&s(&[1.0]), &s(&[1.0, 2.0]), 0.95).is_err());
    }

    #[test]
    fn equal_values_give_an_exact_difference() {
        let r = welch_difference(&s(&[2.0, 2.0]), &s(&[3.0, 3.0, 3.0]), 0.95).unwrap();
        assert_eq!((r.interval.lower(), r.interval.upper()), (1.0, 1.0));
        assert_eq!(r.p_value, 0.0);
        let same = welch_difference(&s(&[2.0, 2.0]), &s(&[2.0, 2.0]), 0.95).unwrap();
        assert_eq!(same.p_value, 1.0);
        assert_eq!(same.half_width(0.99).unwrap(), 0.0);
    }

    #[test]
    fn log_ratio_is_the_ratio_of_geometric_means() {
        let r = welch_log_ratio(
            &s(&[10.0, 10.0 * 1.02, 10.0 / 1.02]),
            &s(&[5.0, 5.1, 4.9]),
            0.95,
        )
        .unwrap();
        let (ratio, interval) = r.exp().unwrap();
        let gm = |v: &[f64]| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp();
        assert_relative_eq!(ratio, gm(&[5.0, 5.1, 4.9]) / gm(&[10.0, 10.2, 10.0 / 1.02]));
        assert!(interval.lower() < ratio && ratio < interval.upper());
        assert!(
            interval.upper() < 0.6,
            "tight processes decide a halving: {interval:?}"
        );
        assert!(welch_log_ratio(&s(&[1.0, 0.0]), &s(&[1.0, 2.0]), 0.95).is_err());
    }
}
