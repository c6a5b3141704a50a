//! What an interval rests on: the one place that decides whether nested data are analysed per
//! process or as pooled calls. The regression gate, claim verdicts and report summaries all
//! ask here, so they never disagree about the unit of replication.
//!
//! The rule: with at least [`MIN_PROCESSES_PER_SIDE`] processes (on each side of a
//! comparison), the process is the unit (one median per process; for a single sample the
//! two-stage bootstrap over processes and calls). With fewer, a process-level interval cannot
//! reach a useful confidence, and calls are pooled — which ignores between-process variance,
//! so such intervals are flagged by their basis.

use super::bootstrap::{bootstrap_median_ci, BootstrapConfig};
use super::nested::{hierarchical_bootstrap_median_ci, NestedSample, Unit};
use super::sample::{Interval, Sample};
use serde::Serialize;
use std::fmt;

/// Processes per side from which the process is the unit of a comparison.
pub const MIN_PROCESSES_PER_SIDE: usize = 3;

/// The data an interval was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "&'static str")]
pub enum Basis {
    /// One value per process (the median of its calls).
    PerProcessMedians,
    /// Every measured call, processes pooled.
    PooledCalls,
    /// Two-stage bootstrap: processes, then calls within each chosen process.
    ProcessesAndCalls,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::PerProcessMedians => "per-process medians",
            Basis::PooledCalls => "pooled calls",
            Basis::ProcessesAndCalls => "processes and calls",
        }
    }
}

impl From<Basis> for &'static str {
    fn from(basis: Basis) -> Self {
        basis.as_str()
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Unit {
    /// The basis of a two-sample interval computed in this unit.
    pub fn basis(self) -> Basis {
        match self {
            Unit::Process => Basis::PerProcessMedians,
            Unit::Call => Basis::PooledCalls,
        }
    }
}

/// The unit in which `a` and `b` are compared: processes when both have enough of them.
pub fn comparison_unit(a: &NestedSample, b: &NestedSample) -> Unit {
    if a.process_count() >= MIN_PROCESSES_PER_SIDE && b.process_count() >= MIN_PROCESSES_PER_SIDE {
        Unit::Process
    } else {
        Unit::Call
    }
}

/// A median with its seeded interval and what the interval rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedianInterval {
    pub median: f64,
    pub interval: Interval,
    pub basis: Basis,
}

impl NestedSample {
    /// The observations of this sample in `unit`: process medians or pooled calls.
    pub fn values_in(&self, unit: Unit) -> Sample {
        match unit {
            Unit::Process => self.process_medians(),
            Unit::Call => self.pooled(),
        }
    }

    /// The median and its interval: with enough processes, the median of the process medians
    /// and the two-stage bootstrap interval; otherwise the pooled calls' median and bootstrap
    /// interval.
    pub fn median_interval(&self, config: &BootstrapConfig) -> MedianInterval {
        if self.process_count() >= MIN_PROCESSES_PER_SIDE {
            MedianInterval {
                median: self.median_of_process_medians(),
                interval: hierarchical_bootstrap_median_ci(self, config),
                basis: Basis::ProcessesAndCalls,
            }
        } else {
            let pooled = self.pooled();
            MedianInterval {
                median: pooled.median(),
                interval: bootstrap_median_ci(&pooled, config),
                basis: Basis::PooledCalls,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(processes: usize, calls: usize) -> NestedSample {
        NestedSample::new(
            (0..processes)
                .map(|p| {
                    (0..calls)
                        .map(|c| 10.0 + p as f64 + 0.1 * c as f64)
                        .collect()
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn the_process_is_the_unit_only_with_enough_processes_on_both_sides() {
        let (few, many) = (
            nested(MIN_PROCESSES_PER_SIDE - 1, 5),
            nested(MIN_PROCESSES_PER_SIDE, 5),
        );
        assert_eq!(comparison_unit(&many, &many), Unit::Process);
        assert_eq!(comparison_unit(&few, &many), Unit::Call);
        assert_eq!(comparison_unit(&many, &few), Unit::Call);
        assert_eq!(many.values_in(Unit::Process).n(), MIN_PROCESSES_PER_SIDE);
        assert_eq!(many.values_in(Unit::Call).n(), 5 * MIN_PROCESSES_PER_SIDE);
    }

    #[test]
    fn median_interval_names_its_basis_and_contains_the_median() {
        let config = BootstrapConfig::default();
        for (sample, basis) in [
            (nested(2, 7), Basis::PooledCalls),
            (nested(4, 7), Basis::ProcessesAndCalls),
        ] {
            let m = sample.median_interval(&config);
            assert_eq!(m.basis, basis);
            assert!(m.interval.lower() <= m.median && m.median <= m.interval.upper());
        }
        assert_eq!(
            serde_json::to_string(&Basis::PerProcessMedians).unwrap(),
            "\"per-process medians\""
        );
    }
}
