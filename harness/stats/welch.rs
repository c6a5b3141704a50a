//! Welch's unequal-variance t-test (Welch 1947), matching
//! `scipy.stats.ttest_ind(x, y, equal_var=False)`:
//!
//! `t = (mean(x) - mean(y)) / sqrt(vx/nx + vy/ny)`,
//! `df = (vx/nx + vy/ny)² / ((vx/nx)²/(nx-1) + (vy/ny)²/(ny-1))` (Welch–Satterthwaite),
//! `p = 2 P(T_df > |t|)` with the Student-t survival function of `statrs`.
//!
//! Why it is here: it is the test most readers know and it uses the magnitudes, not just the
//! ranks, so a large disagreement with the Mann–Whitney p-value is a hint of heavy tails or
//! outliers. The regression gate does not depend on it.

use super::sample::Sample;
use super::StatsError;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Result of Welch's t-test; positive `t` means the first sample has the larger mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Welch {
    pub t: f64,
    pub df: f64,
    pub p_value: f64,
}

/// Welch's two-sided t-test. Needs at least two values per sample and a non-zero variance in
/// at least one of them.
pub fn welch_t_test(x: &Sample, y: &Sample) -> Result<Welch, StatsError> {
    const METHOD: &str = "Welch's t-test";
    let (vx, vy) = match (x.variance(), y.variance()) {
        (Some(vx), Some(vy)) => (vx, vy),
        _ => {
            return Err(StatsError::TooFewValues {
                method: METHOD,
                needed: 2,
                got: x.n().min(y.n()),
            })
        }
    };
    let (nx, ny) = (x.n() as f64, y.n() as f64);
    let (ax, ay) = (vx / nx, vy / ny);
    let se2 = ax + ay;
    if se2 <= 0.0 {
        return Err(StatsError::ZeroVariance { method: METHOD });
    }
    let t = (x.mean() - y.mean()) / se2.sqrt();
    let df = se2 * se2 / (ax * ax / (nx - 1.0) + ay * ay / (ny - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).map_err(|_| StatsError::InvalidParameter {
        name: "degrees of freedom",
        value: df,
        expected: "a positive number",
    })?;
    let p_value = (2.0 * dist.sf(t.abs())).min(1.0);
    Ok(Welch { t, df, p_value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[f64]) -> Sample {
        Sample::from_slice(v).unwrap()
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(matches!(
            welch_t_test(&s(&[1.0]), &s(&[1.0, 2.0])),
            Err(StatsError::TooFewValues { got: 1, .. })
        ));
        assert!(matches!(
            welch_t_test(&s(&[1.0, 1.0]), &s(&[2.0, 2.0, 2.0])),
            Err(StatsError::ZeroVariance { .. })
        ));
    }

    #[test]
    fn equal_samples_give_p_one_and_sign_follows_means() {
        let a = s(&[1.0, 2.0, 3.0]);
        let r = welch_t_test(&a, &a).unwrap();
        assert_eq!((r.t, r.p_value), (0.0, 1.0));
        let hi = s(&[2.0, 3.0, 4.0, 5.0]);
        let r = welch_t_test(&hi, &a).unwrap();
        assert!(r.t > 0.0 && r.p_value < 1.0);
        // One variance zero: df = nx - 1 of the other sample.
        let r = welch_t_test(&s(&[1.0, 1.0, 1.0]), &s(&[1.0, 2.0, 3.0, 4.0])).unwrap();
        assert!((r.df - 3.0).abs() < 1e-12);
    }
}
