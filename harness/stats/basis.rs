//! What a time interval rests on, and when there is enough data for one: the one place that
//! decides replication. The regression gate, claim verdicts and report summaries all ask here,
//! so they never disagree about the unit of replication.
//!
//! The rule: the process is the unit (one median per process). With at least
//! [`MIN_PROCESSES_PER_SIDE`] processes on each side, the t interval on log process medians
//! ([`super::t_interval`]) is the interval; with fewer there is **no** interval: calls of one
//! process share its regime, so pooling them gives an interval that covers the true effect in
//! well under half of the runs when processes differ (as they do on GPUs), and a verdict from
//! it is not evidence. Such data get "insufficient replication": the estimate and the process
//! medians are shown, nothing is decided.

use super::nested::NestedSample;
use super::{check_confidence, StatsError};
use serde::Serialize;
use statrs::distribution::{Binomial, DiscreteCDF};
use std::fmt;

/// Processes per side from which time claims are judged. The seeded simulations in
/// `verdict/simulation` show the t interval on log medians keeps its level from 3 processes on
/// under the GPU noise models (2 processes per side fall below 93 % under the two-regime model).
pub const MIN_PROCESSES_PER_SIDE: usize = 3;

/// Processes per side from which the regression gate judges time. A gate makes dozens of
/// comparisons per run against a tight threshold; when whole processes switch regime, 3 fast
/// baseline processes against 3 slow candidate ones look like a clean regression often enough
/// that 14 % of simulated A/A runs raised one. With 6 per side that pattern is rare (≤ 1 % of
/// runs in every simulated model).
pub const MIN_PROCESSES_FOR_GATE: usize = 6;

/// What an interval or band was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "&'static str")]
pub enum Basis {
    /// One value per process (the median of its calls), Student-t on their logs.
    PerProcessMedians,
    /// The smallest and largest process median: a range, not a confidence interval.
    RangeOfProcessMedians,
    /// Order statistics of the process medians: a distribution-free interval of their median.
    OrderStatistics,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::PerProcessMedians => "per-process medians",
            Basis::RangeOfProcessMedians => "range of process medians",
            Basis::OrderStatistics => "order statistics of process medians",
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

/// Too few processes for a time verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InsufficientReplication {
    /// Processes on each side (one entry for a single sample).
    pub processes: Vec<usize>,
    pub required: usize,
}

impl fmt::Display for InsufficientReplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let have = self
            .processes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" vs ");
        let noun = if self.processes == [1] {
            "process"
        } else {
            "processes"
        };
        write!(
            f,
            "{have} {noun}; a time verdict needs at least {} processes per variant, because \
             processes of one configuration differ and calls within one process are not \
             independent replicates",
            self.required
        )
    }
}

/// `Ok` when every sample has enough processes for a time claim.
pub fn check_replication(samples: &[&NestedSample]) -> Result<(), InsufficientReplication> {
    require_processes(samples, MIN_PROCESSES_PER_SIDE)
}

/// `Ok` when every sample has at least `required` processes.
pub fn require_processes(
    samples: &[&NestedSample],
    required: usize,
) -> Result<(), InsufficientReplication> {
    if samples.iter().all(|s| s.process_count() >= required) {
        Ok(())
    } else {
        Err(InsufficientReplication {
            processes: samples.iter().map(|s| s.process_count()).collect(),
            required,
        })
    }
}

/// One variant's typical time: the median of its process medians with a distribution-free
/// interval (enough processes), or their median and range (too few; no confidence is
/// claimed).
///
/// Why not a t interval: a single variant has no second sample to share its regime mixture
/// with, and with 30 % of processes in a slow regime a t interval of 3 processes covers the
/// typical value in only about 70 % of runs (all three are often fast). The order-statistic
/// interval of the median holds its level for any distribution of process medians, from
/// [`MIN_PROCESSES_FOR_MEDIAN`] processes on.
#[derive(Debug, Clone, PartialEq)]
pub struct MedianInterval {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// `None` for a range.
    pub confidence: Option<f64>,
    pub basis: Basis,
    pub processes: usize,
}

/// Processes from which one variant's median gets a 95 % interval: with 6, the smallest and
/// largest process median cover the median with probability 1 − 2/64 = 96.9 %; with 5 no
/// pair of order statistics reaches 95 %.
pub const MIN_PROCESSES_FOR_MEDIAN: usize = 6;

impl NestedSample {
    /// The typical value and its interval at `confidence` (see [`MedianInterval`]).
    pub fn median_interval(&self, confidence: f64) -> Result<MedianInterval, StatsError> {
        check_confidence(confidence)?;
        let medians = self.process_medians();
        let sorted = medians.sorted();
        let n = sorted.len();
        let range = MedianInterval {
            estimate: medians.median(),
            lower: sorted[0],
            upper: sorted[n - 1],
            confidence: None,
            basis: Basis::RangeOfProcessMedians,
            processes: n,
        };
        if n < MIN_PROCESSES_FOR_MEDIAN {
            return Ok(range);
        }
        // The widest-k pair (x_(k), x_(n+1−k)) covers the median with probability
        // 1 − 2 P(Bin(n, 1/2) < k); take the narrowest pair that still reaches `confidence`.
        let binomial = Binomial::new(0.5, n as u64).map_err(|_| StatsError::Empty)?;
        let coverage = |k: usize| 1.0 - 2.0 * binomial.cdf(k as u64 - 1);
        let mut k = 1;
        while k < n / 2 && coverage(k + 1) >= confidence {
            k += 1;
        }
        if coverage(k) < confidence {
            return Ok(range);
        }
        Ok(MedianInterval {
            lower: sorted[k - 1],
            upper: sorted[n - k],
            confidence: Some(coverage(k)),
            basis: Basis::OrderStatistics,
            ..range
        })
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
    fn replication_needs_enough_processes_on_every_side() {
        let (few, many) = (
            nested(MIN_PROCESSES_PER_SIDE - 1, 5),
            nested(MIN_PROCESSES_PER_SIDE, 5),
        );
        assert!(check_replication(&[&many, &many]).is_ok());
        let err = check_replication(&[&many, &few]).unwrap_err();
        assert_eq!(
            err.processes,
            vec![MIN_PROCESSES_PER_SIDE, MIN_PROCESSES_PER_SIDE - 1]
        );
        assert!(err
            .to_string()
            .starts_with("3 vs 2 processes; a time verdict needs at least 3"));
        let one = check_replication(&[&nested(1, 20)]).unwrap_err();
        assert!(one.to_string().starts_with("1 process;"), "{one}");
    }

    #[test]
    fn median_interval_is_distribution_free_or_a_range_and_says_which() {
        // 6 processes: min..max, 1 − 2/64.
        let m = nested(6, 7).median_interval(0.95).unwrap();
        assert_eq!((m.basis, m.processes), (Basis::OrderStatistics, 6));
        assert!((m.confidence.unwrap() - (1.0 - 2.0 / 64.0)).abs() < 1e-12);
        assert!(m.lower < m.estimate && m.estimate < m.upper);
        // 12 processes: (x_3, x_10) covers with 1 − 2·P(Bin(12, ½) ≤ 2) = 96.1 %.
        let m = nested(12, 3).median_interval(0.95).unwrap();
        let medians = nested(12, 3).process_medians().sorted();
        assert_eq!((m.lower, m.upper), (medians[2], medians[9]));
        assert!((m.confidence.unwrap() - (1.0 - 2.0 * 79.0 / 4096.0)).abs() < 1e-12);
        // Too few processes (or many calls in one process) never make an interval.
        for sample in [nested(5, 7), nested(2, 50)] {
            let r = sample.median_interval(0.95).unwrap();
            assert_eq!(
                (r.basis, r.confidence),
                (Basis::RangeOfProcessMedians, None)
            );
            let medians = sample.process_medians();
            assert_eq!((r.lower, r.upper), (medians.min(), medians.max()));
        }
        assert_eq!(
            serde_json::to_string(&Basis::PerProcessMedians).unwrap(),
            "\"per-process medians\""
        );
    }
}
