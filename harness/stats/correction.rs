//! Multiple-comparison corrections of p-values.
//!
//! A suite compares many (variant, metric) pairs; testing each at `α` would flag some by
//! chance. With sorted p-values `p_(1) <= … <= p_(m)`:
//!
//! * **Holm** (1979, Scand. J. Statist. 6:65), step-down, controls the family-wise error rate
//!   under any dependence: `p̃_(i) = max_{j<=i} min(1, (m − j + 1) p_(j))`.
//! * **Benjamini–Hochberg** (1995, JRSS-B 57:289), step-up, controls the false discovery rate
//!   for independent or positively dependent tests: `p̃_(i) = min_{j>=i} min(1, m p_(j) / j)`.
//!   Same values as `scipy.stats.false_discovery_control(method="bh")` and statsmodels'
//!   `multipletests(method="fdr_bh")`.
//!
//! Both adjusted sequences are monotone in the raw order and satisfy
//! `Holm >= BH >= raw`. Holm is the default for release gates (a false regression blocks a
//! merge); BH suits exploratory sweeps with many variants.

use super::StatsError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A multiple-comparison correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Correction {
    #[default]
    Holm,
    BenjaminiHochberg,
    None,
}

impl Correction {
    /// Short name for reports and configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Correction::Holm => "holm",
            Correction::BenjaminiHochberg => "benjamini-hochberg",
            Correction::None => "none",
        }
    }

    /// What the correction controls, for report footnotes.
    pub fn controls(self) -> &'static str {
        match self {
            Correction::Holm => "family-wise error rate",
            Correction::BenjaminiHochberg => "false discovery rate",
            Correction::None => "nothing (per-comparison error rate only)",
        }
    }
}

impl fmt::Display for Correction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Adjusted p-values in the input order. Every p-value must lie in `[0, 1]`.
pub fn adjust_p_values(p: &[f64], correction: Correction) -> Result<Vec<f64>, StatsError> {
    if let Some(&value) = p.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(StatsError::InvalidParameter {
            name: "p-value",
            value,
            expected: "a probability in [0, 1]",
        });
    }
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    match correction {
        Correction::None => adjusted.copy_from_slice(p),
        Correction::Holm => {
            let mut running = 0.0_f64;
            for (rank, &i) in order.iter().enumerate() {
                running = running.max(((m - rank) as f64 * p[i]).min(1.0));
                adjusted[i] = running;
            }
        }
        Correction::BenjaminiHochberg => {
            let mut running = 1.0_f64;
            for (rank, &i) in order.iter().enumerate().rev() {
                running = running.min((m as f64 * p[i] / (rank + 1) as f64).min(1.0));
                adjusted[i] = running;
            }
        }
    }
    Ok(adjusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let p = [0.01, 0.04, 0.03, 0.005];
        let holm = adjust_p_values(&p, Correction::Holm).unwrap();
        // sorted 0.005, 0.01, 0.03, 0.04 -> 0.02, 0.03, 0.06, max(0.06, 0.04)
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, b) in holm.iter().zip(want) {
            assert!((a - b).abs() < 1e-15);
        }
        let bh = adjust_p_values(&p, Correction::BenjaminiHochberg).unwrap();
        // m p / rank: 0.02, 0.02, 0.04, 0.04 -> running minimum from the top
        let want = [0.02, 0.04, 0.04, 0.02];
        for (a, b) in bh.iter().zip(want) {
            assert!((a - b).abs() < 1e-15);
        }
        assert_eq!(adjust_p_values(&p, Correction::None).unwrap(), p.to_vec());
    }

    #[test]
    fn caps_at_one_and_handles_empty() {
        let holm = adjust_p_values(&[0.6, 0.9], Correction::Holm).unwrap();
        assert_eq!(holm, vec![1.0, 1.0]);
        assert!(adjust_p_values(&[], Correction::Holm).unwrap().is_empty());
        assert!(adjust_p_values(&[1.5], Correction::Holm).is_err());
        assert!(adjust_p_values(&[f64::NAN], Correction::BenjaminiHochberg).is_err());
        assert_eq!(
            Correction::BenjaminiHochberg.to_string(),
            "benjamini-hochberg"
        );
    }
}
