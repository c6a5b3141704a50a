//! Adaptive stopping: measure until the estimate is precise enough or the budget is spent.
//!
//! The criterion is the *relative width* of the bootstrap confidence interval of the location,
//! `(upper − lower) / |median|` — of the median of calls for flat data, of the median of
//! process medians (two-stage bootstrap) for nested data, counting processes as the unit.
//! Stopping on precision rather than on an observed A/B difference does not bias the later
//! comparison: the rule never looks at the other variant, so it cannot "stop when the result
//! looks significant" (Kruschke 2013, "precision is the goal").
//!
//! A minimum count guards against a bootstrap interval that is spuriously narrow with a
//! handful of points (three identical values have width zero).

use super::bootstrap::{bootstrap_median_ci, BootstrapConfig};
use super::nested::{hierarchical_bootstrap_median_ci, NestedSample};
use super::sample::{Interval, Sample};
use super::StatsError;
use serde::Serialize;

/// When to stop measuring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StoppingRule {
    target_relative_width: f64,
    min_units: usize,
    max_units: usize,
    bootstrap: BootstrapConfig,
}

impl StoppingRule {
    /// Default minimum: five units before precision can end the run.
    pub const DEFAULT_MIN_UNITS: usize = 5;

    /// `target_relative_width` (e.g. `0.01` for a 95 % interval 1 % of the median wide) must be
    /// positive and finite, `max_units >= 1`.
    pub fn new(target_relative_width: f64, max_units: usize) -> Result<Self, StatsError> {
        if !(target_relative_width > 0.0 && target_relative_width.is_finite()) {
            return Err(StatsError::InvalidParameter {
                name: "target relative width",
                value: target_relative_width,
                expected: "a positive finite number",
            });
        }
        if max_units == 0 {
            return Err(StatsError::InvalidParameter {
                name: "max units",
                value: 0.0,
                expected: "at least 1",
            });
        }
        Ok(StoppingRule {
            target_relative_width,
            min_units: Self::DEFAULT_MIN_UNITS.min(max_units),
            max_units,
            bootstrap: BootstrapConfig::default(),
        })
    }

    /// Sets the minimum count (capped at the maximum).
    pub fn with_min_units(mut self, min_units: usize) -> Self {
        self.min_units = min_units.min(self.max_units);
        self
    }

    /// Sets the bootstrap used for the interval.
    pub fn with_bootstrap(mut self, bootstrap: BootstrapConfig) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    pub fn target_relative_width(&self) -> f64 {
        self.target_relative_width
    }

    pub fn min_units(&self) -> usize {
        self.min_units
    }

    pub fn max_units(&self) -> usize {
        self.max_units
    }

    fn decide(&self, units: usize, interval: Interval, location: f64) -> StopDecision {
        let relative_width = if location != 0.0 {
            interval.width() / location.abs()
        } else {
            f64::INFINITY
        };
        let reason = if units >= self.min_units && relative_width <= self.target_relative_width {
            StopReason::Precise
        } else if units >= self.max_units {
            StopReason::BudgetExhausted
        } else {
            StopReason::Continue
        };
        StopDecision {
            reason,
            relative_width,
            units,
            interval,
        }
    }
}

/// Why measuring should stop or go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The interval is at least as narrow as the target (and the minimum count is reached).
    Precise,
    /// The maximum count is reached without the target precision.
    BudgetExhausted,
    /// Neither: measure more.
    Continue,
}

/// The decision with the figures behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StopDecision {
    pub reason: StopReason,
    /// Interval width over `|median|` (infinite for a zero median).
    pub relative_width: f64,
    /// Units counted: calls for flat data, processes for nested data.
    pub units: usize,
    /// The interval of the location that was judged.
    pub interval: Interval,
}

impl StopDecision {
    pub fn should_stop(&self) -> bool {
        self.reason != StopReason::Continue
    }
}

/// Decision for flat data (every call is a unit).
pub fn check_flat(sample: &Sample, rule: &StoppingRule) -> StopDecision {
    let interval = bootstrap_median_ci(sample, &rule.bootstrap);
    rule.decide(sample.n(), interval, sample.median())
}

/// Decision for nested data (every process is a unit).
pub fn check_nested(sample: &NestedSample, rule: &StoppingRule) -> StopDecision {
    let interval = hierarchical_bootstrap_median_ci(sample, &rule.bootstrap);
    rule.decide(
        sample.process_count(),
        interval,
        sample.median_of_process_medians(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(n: usize, cv: f64) -> Sample {
        // Deterministic spread: evenly spaced values around 100.
        Sample::new(
            (0..n)
                .map(|i| 100.0 * (1.0 + cv * ((i as f64 + 0.5) / n as f64 - 0.5) * 3.4))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn precise_budget_and_continue() {
        let rule = StoppingRule::new(0.01, 50).unwrap();
        let tight = check_flat(&flat(40, 0.005), &rule);
        assert_eq!(tight.reason, StopReason::Precise);
        assert!(tight.relative_width <= 0.01 && tight.should_stop());
        let noisy = check_flat(&flat(20, 0.2), &rule);
        assert_eq!(noisy.reason, StopReason::Continue);
        assert!(!noisy.should_stop());
        let spent = check_flat(&flat(50, 0.2), &rule);
        assert_eq!(spent.reason, StopReason::BudgetExhausted);
    }

    #[test]
    fn minimum_count_and_zero_median() {
        let rule = StoppingRule::new(0.01, 100).unwrap();
        let three_equal = Sample::new(vec![5.0; 3]).unwrap();
        let d = check_flat(&three_equal, &rule);
        assert_eq!((d.relative_width, d.reason), (0.0, StopReason::Continue));
        let zeros = Sample::new(vec![0.0; 10]).unwrap();
        let d = check_flat(&zeros, &rule);
        assert!(d.relative_width.is_infinite());
        assert_eq!(d.reason, StopReason::Continue);
        assert!(StoppingRule::new(0.0, 10).is_err());
        assert!(StoppingRule::new(0.01, 0).is_err());
        assert_eq!(StoppingRule::new(0.01, 3).unwrap().min_units(), 3);
    }

    #[test]
    fn nested_counts_processes() {
        let procs: Vec<Vec<f64>> = (0..8)
            .map(|p| {
                (0..20)
                    .map(|c| 100.0 + p as f64 * 0.1 + c as f64 * 0.01)
                    .collect()
            })
            .collect();
        let s = NestedSample::new(procs).unwrap();
        let d = check_nested(&s, &StoppingRule::new(0.01, 8).unwrap());
        assert_eq!(d.units, 8);
        assert_eq!(d.reason, StopReason::Precise);
        let d = check_nested(&s, &StoppingRule::new(0.0001, 8).unwrap());
        assert_eq!(d.reason, StopReason::BudgetExhausted);
        let d = check_nested(&s, &StoppingRule::new(0.0001, 9).unwrap());
        assert_eq!(d.reason, StopReason::Continue);
    }
}
