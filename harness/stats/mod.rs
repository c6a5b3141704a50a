//! Pure statistics for comparing benchmark measurements: no I/O, no global state, and no panics
//! on user data (invalid input is a [`StatsError`]).
//!
//! Design choices, each explained in its module:
//!
//! * Data enter as a validated [`Sample`] (at least one value, all finite) or a [`NestedSample`]
//!   (measured calls grouped by worker process), so later code never re-checks for NaN or empty
//!   input.
//! * Timings are skewed and have occasional spikes, so location is summarised by medians and
//!   compared with rank methods ([`mann_whitney_u`], [`hodges_lehmann()`]); Welch's t-test is
//!   computed alongside as a familiar secondary view.
//! * Every resampling method is seeded ([`BootstrapConfig`]): the same inputs and seed give
//!   the same interval on every platform, so a report can be regenerated bit for bit.
//! * On GPUs the process, not the call, is the unit of replication (see [`nested`]); verdicts
//!   on time rest on Student-t intervals of log process medians ([`t_interval`]) and need
//!   [`MIN_PROCESSES_PER_SIDE`] processes ([`basis`]).
//!
//! Numbers are checked against SciPy by `tests/reference/stats_reference.py`, whose output
//! `tests/data/stats-reference.json` the unit tests read.

pub mod basis;
pub mod bootstrap;
pub mod changepoint;
pub mod correction;
pub mod hodges_lehmann;
pub mod mann_whitney;
pub mod nested;
pub mod sample;
pub mod stopping;
pub mod summary;
pub mod t_interval;
pub mod welch;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reference_tests;

pub use basis::{
    check_replication, require_processes, Basis, InsufficientReplication, MedianInterval,
    MIN_PROCESSES_FOR_GATE, MIN_PROCESSES_FOR_MEDIAN, MIN_PROCESSES_PER_SIDE,
};
pub use bootstrap::{
    bootstrap_ci, bootstrap_median_ci, bootstrap_ratio_of_medians, BootstrapConfig, RatioEstimate,
};
pub use correction::{adjust_p_values, Correction};
pub use hodges_lehmann::{hodges_lehmann, hodges_lehmann_ratio, HodgesLehmann};
pub use mann_whitney::{mann_whitney_u, mann_whitney_u_with, MannWhitney, MwuMethod};
pub use nested::{
    compare_processes, hierarchical_bootstrap_median_ci, hierarchical_bootstrap_ratio, two_sample,
    NestedSample, NestedSummary, ProcessComparison, TwoSampleResults, Unit,
};
pub use sample::{Interval, Sample};
pub use stopping::{check_flat, check_nested, StopDecision, StopReason, StoppingRule};
pub use summary::{summarize, OutlierScale, Summary};
pub use t_interval::{one_sample, welch_difference, welch_log_ratio, TInterval};
pub use welch::{welch_t_test, Welch};

use serde::{Deserialize, Serialize};

/// Why a statistic could not be computed. Every public function that takes user data reports
/// problems through this type instead of panicking.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("sample is empty")]
    Empty,
    #[error("value at index {index} is not finite ({value})")]
    NonFinite { index: usize, value: f64 },
    #[error("nested sample has no processes")]
    NoProcesses,
    #[error("process {process}: {source}")]
    InProcess {
        process: usize,
        #[source]
        source: Box<StatsError>,
    },
    #[error("ratios and log-scale methods need positive values, got {value}")]
    NonPositive { value: f64 },
    #[error("{method} needs at least {needed} values per sample, got {got}")]
    TooFewValues {
        method: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("{method} is undefined: both samples have zero variance")]
    ZeroVariance { method: &'static str },
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error("the statistic returned a non-finite value on a bootstrap resample")]
    NonFiniteStatistic,
    #[error("exact Mann-Whitney distribution for sizes {n1} and {n2} does not fit in 128 bits")]
    ExactTooLarge { n1: usize, n2: usize },
}

/// Which null distribution produced a p-value or critical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NullDistribution {
    /// Exact permutation distribution of the rank statistic (valid without ties).
    Exact,
    /// Normal approximation (with tie and continuity corrections where stated).
    Normal,
}

/// Checks that a confidence level lies strictly between 0 and 1.
pub(crate) fn check_confidence(confidence: f64) -> Result<(), StatsError> {
    if confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name: "confidence",
            value: confidence,
            expected: "a level strictly between 0 and 1",
        })
    }
}
