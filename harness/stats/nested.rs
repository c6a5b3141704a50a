//! Nested (hierarchical) measurements: calls grouped by worker process.
//!
//! **Why the process is the unit of replication.** On GPUs most of the variation comes from
//! per-process state that is fixed for the life of a process — memory layout and allocator
//! state, kernel/algorithm autotuning choices (cuDNN, cuBLAS heuristics), clock and thermal
//! state, placement on the device. Typical figures are a 10–20 % coefficient of variation
//! between processes against ~5 % between calls inside one process. Calls of one process are
//! therefore not independent replicates: treating `P × C` calls as `P·C` independent points
//! (pseudo-replication, Hurlbert 1984) shrinks standard errors by up to `sqrt(C)` and turns
//! the between-process noise into false "significant" differences.
//!
//! Hence: each process is summarised by the median of its calls (robust to the occasional
//! multi-× spike), and comparisons run on the per-process medians ([`compare_processes`]).
//! The hierarchical bootstrap ([`hierarchical_bootstrap_ratio`]) mirrors the design: it
//! resamples processes with replacement, then calls with replacement within each chosen
//! process (two-stage bootstrap, Davison & Hinkley 1997, §3.8), and takes the median of the
//! process medians. The pooled view (all calls together) is kept as a diagnostic only.

use super::bootstrap::{percentile_interval, resample_into, BootstrapConfig, RatioEstimate};
use super::hodges_lehmann::{hodges_lehmann, hodges_lehmann_ratio, HodgesLehmann};
use super::mann_whitney::{mann_whitney_u, MannWhitney};
use super::sample::{median_in_place, Interval, Sample};
use super::summary::{summarize, Summary};
use super::welch::{welch_t_test, Welch};
use super::StatsError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What one observation of a two-sample comparison stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// One value per process (the median of its calls).
    Process,
    /// Every measured call, processes pooled.
    Call,
}

/// Measurements grouped by process: at least one process, each with at least one finite call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Vec<f64>>", into = "Vec<Vec<f64>>")]
pub struct NestedSample {
    processes: Vec<Sample>,
}

impl NestedSample {
    /// Validates every process (errors name the offending process).
    pub fn new(processes: Vec<Vec<f64>>) -> Result<Self, StatsError> {
        let processes = processes
            .into_iter()
            .enumerate()
            .map(|(process, calls)| {
                Sample::new(calls).map_err(|e| StatsError::InProcess {
                    process,
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        NestedSample::from_samples(processes)
    }

    /// Groups already validated samples; fails only when there are none.
    pub fn from_samples(processes: Vec<Sample>) -> Result<Self, StatsError> {
        if processes.is_empty() {
            return Err(StatsError::NoProcesses);
        }
        Ok(NestedSample { processes })
    }

    /// All calls from one process (flat data measured in a single process).
    pub fn single_process(calls: Sample) -> Self {
        NestedSample {
            processes: vec![calls],
        }
    }

    /// Each value from its own process (e.g. one measurement per CLI invocation).
    pub fn one_call_per_process(values: &Sample) -> Self {
        NestedSample {
            processes: values
                .values()
                .iter()
                .map(|&v| Sample::from_validated(vec![v]))
                .collect(),
        }
    }

    pub fn processes(&self) -> &[Sample] {
        &self.processes
    }

    pub fn process_count(&self) -> usize {
        self.processes.len()
    }

    /// Total number of calls over all processes.
    pub fn call_count(&self) -> usize {
        self.processes.iter().map(Sample::n).sum()
    }

    /// The median of each process's calls, in process order.
    pub fn process_medians(&self) -> Sample {
        Sample::from_validated(self.processes.iter().map(Sample::median).collect())
    }

    /// Median of the per-process medians: the location estimate of nested data.
    pub fn median_of_process_medians(&self) -> f64 {
        self.process_medians().median()
    }

    /// All calls in one sample (diagnostic: ignores the process structure).
    pub fn pooled(&self) -> Sample {
        Sample::from_validated(
            self.processes
                .iter()
                .flat_map(|p| p.values().iter().copied())
                .collect(),
        )
    }

    /// Fails with [`StatsError::NonPositive`] unless every call is positive.
    pub fn check_positive(&self) -> Result<(), StatsError> {
        self.processes.iter().try_for_each(Sample::check_positive)
    }

    /// Descriptive view of both levels, with the variance components that justify the design.
    pub fn summary(&self) -> NestedSummary {
        let within: Vec<f64> = self
            .processes
            .iter()
            .filter_map(|p| summarize(p).cv)
            .collect();
        let process_medians = summarize(&self.process_medians());
        NestedSummary {
            processes: self.process_count(),
            calls: self.call_count(),
            between_process_cv: process_medians.cv,
            within_process_cv: if within.is_empty() {
                None
            } else {
                Some(median_in_place(&mut within.clone()))
            },
            process_medians,
            pooled: summarize(&self.pooled()),
        }
    }
}

impl TryFrom<Vec<Vec<f64>>> for NestedSample {
    type Error = StatsError;

    fn try_from(processes: Vec<Vec<f64>>) -> Result<Self, Self::Error> {
        NestedSample::new(processes)
    }
}

impl From<NestedSample> for Vec<Vec<f64>> {
    fn from(sample: NestedSample) -> Self {
        sample.processes.into_iter().map(Vec::from).collect()
    }
}

/// Both levels of a nested sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NestedSummary {
    pub processes: usize,
    pub calls: usize,
    /// Summary of the per-process medians (the unit of replication).
    pub process_medians: Summary,
    /// Summary of all calls pooled (diagnostic).
    pub pooled: Summary,
    /// CV of the per-process medians; `None` with fewer than two processes.
    pub between_process_cv: Option<f64>,
    /// Median over processes of the CV of their calls; `None` when no process has two calls.
    pub within_process_cv: Option<f64>,
}

/// Tests and estimates for one choice of unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwoSampleResults {
    pub unit: Unit,
    pub baseline_n: usize,
    pub candidate_n: usize,
    pub mann_whitney: MannWhitney,
    /// `None` when fewer than two values per side or no variance at all.
    pub welch: Option<Welch>,
    /// Hodges–Lehmann shift `candidate − baseline` in the data's unit.
    pub shift: HodgesLehmann,
    /// Hodges–Lehmann ratio `candidate / baseline`; `None` unless all values are positive.
    pub ratio: Option<HodgesLehmann>,
}

/// Runs the two-sample methods on `baseline` and `candidate` with the given unit label.
pub fn two_sample(
    baseline: &Sample,
    candidate: &Sample,
    unit: Unit,
    confidence: f64,
) -> Result<TwoSampleResults, StatsError> {
    let ratio = match (baseline.check_positive(), candidate.check_positive()) {
        (Ok(()), Ok(())) => Some(hodges_lehmann_ratio(baseline, candidate, confidence)?),
        _ => None,
    };
    Ok(TwoSampleResults {
        unit,
        baseline_n: baseline.n(),
        candidate_n: candidate.n(),
        mann_whitney: mann_whitney_u(baseline, candidate),
        welch: welch_t_test(candidate, baseline).ok(),
        shift: hodges_lehmann(baseline, candidate, confidence)?,
        ratio,
    })
}

/// Process-level comparison plus the pooled diagnostic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessComparison {
    /// Methods applied to the per-process medians.
    pub process_level: TwoSampleResults,
    /// The same methods on all calls pooled — anti-conservative when processes differ.
    pub pooled: TwoSampleResults,
    /// Hierarchical-bootstrap ratio of medians of process medians (when requested and all
    /// values are positive).
    pub bootstrap_ratio: Option<RatioEstimate>,
}

/// Compares two nested samples at the process level, with the pooled view alongside.
/// Welch's `t` is oriented candidate − baseline, like the shift.
pub fn compare_processes(
    baseline: &NestedSample,
    candidate: &NestedSample,
    confidence: f64,
    bootstrap: Option<&BootstrapConfig>,
) -> Result<ProcessComparison, StatsError> {
    let process_level = two_sample(
        &baseline.process_medians(),
        &candidate.process_medians(),
        Unit::Process,
        confidence,
    )?;
    let pooled = two_sample(
        &baseline.pooled(),
        &candidate.pooled(),
        Unit::Call,
        confidence,
    )?;
    let bootstrap_ratio = match bootstrap {
        Some(config) if process_level.ratio.is_some() => {
            Some(hierarchical_bootstrap_ratio(baseline, candidate, config)?)
        }
        _ => None,
    };
    Ok(ProcessComparison {
        process_level,
        pooled,
        bootstrap_ratio,
    })
}

/// Percentile interval of the median of process medians under the two-stage bootstrap.
pub fn hierarchical_bootstrap_median_ci(
    sample: &NestedSample,
    config: &BootstrapConfig,
) -> Interval {
    let mut rng = config.rng();
    let mut scratch = Scratch::default();
    let stats = (0..config.resamples())
        .map(|_| scratch.median_of_medians(sample, &mut rng))
        .collect();
    percentile_interval(stats, config.confidence())
}

/// Ratio of medians of process medians, `candidate / baseline`, with a two-stage bootstrap
/// percentile interval (baseline resampled first, then candidate, each round). Needs
/// positive values.
pub fn hierarchical_bootstrap_ratio(
    baseline: &NestedSample,
    candidate: &NestedSample,
    config: &BootstrapConfig,
) -> Result<RatioEstimate, StatsError> {
    baseline.check_positive()?;
    candidate.check_positive()?;
    let mut rng = config.rng();
    let mut scratch = Scratch::default();
    let stats = (0..config.resamples())
        .map(|_| {
            let b = scratch.median_of_medians(baseline, &mut rng);
            let c = scratch.median_of_medians(candidate, &mut rng);
            c / b
        })
        .collect();
    Ok(RatioEstimate {
        ratio: candidate.median_of_process_medians() / baseline.median_of_process_medians(),
        interval: percentile_interval(stats, config.confidence()),
    })
}

/// Reusable buffers for one two-stage resample.
#[derive(Default)]
struct Scratch {
    medians: Vec<f64>,
    calls: Vec<f64>,
}

impl Scratch {
    fn median_of_medians(&mut self, sample: &NestedSample, rng: &mut ChaCha8Rng) -> f64 {
        let k = sample.process_count();
        self.medians.clear();
        for _ in 0..k {
            let process = &sample.processes[rng.random_range(0..k)];
            self.calls.resize(process.n(), 0.0);
            resample_into(process.values(), &mut self.calls, rng);
            self.medians.push(median_in_place(&mut self.calls));
        }
        median_in_place(&mut self.medians)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(p: &[&[f64]]) -> NestedSample {
        NestedSample::new(p.iter().map(|v| v.to_vec()).collect()).unwrap()
    }

    #[test]
    fn validation_names_the_process() {
        assert_eq!(NestedSample::new(vec![]), Err(StatsError::NoProcesses));
        let err = NestedSample::new(vec![vec![1.0], vec![]]).unwrap_err();
        assert_eq!(
            err,
            StatsError::InProcess {
                process: 1,
                source: Box::new(StatsError::Empty)
            }
        );
        assert_eq!(err.to_string(), "process 1: sample is empty");
        let parsed: Result<NestedSample, _> = serde_json::from_str("[[1.0], [2.0, null]]");
        assert!(parsed.is_err());
    }

    #[test]
    fn medians_pooled_and_summary() {
        let s = nested(&[&[1.0, 2.0, 30.0], &[4.0, 5.0], &[6.0]]);
        assert_eq!(s.process_medians().values(), &[2.0, 4.5, 6.0]);
        assert_eq!(s.median_of_process_medians(), 4.5);
        assert_eq!(s.pooled().n(), 6);
        assert_eq!((s.process_count(), s.call_count()), (3, 6));
        let summary = s.summary();
        assert!(summary.between_process_cv.unwrap() > 0.0);
        assert!(summary.within_process_cv.is_some());
        let single = NestedSample::single_process(Sample::from_slice(&[1.0, 2.0]).unwrap());
        assert_eq!(single.summary().between_process_cv, None);
        let flat = NestedSample::one_call_per_process(&Sample::from_slice(&[1.0, 2.0]).unwrap());
        assert_eq!(flat.process_count(), 2);
        assert_eq!(flat.summary().within_process_cv, None);
    }

    #[test]
    fn hierarchical_bootstrap_is_seeded_and_brackets_truth() {
        let base = nested(&[
            &[10.0, 10.1, 9.9],
            &[11.0, 11.2, 10.9],
            &[9.5, 9.6, 9.4],
            &[10.4, 10.5],
        ]);
        let cand_procs: Vec<Vec<f64>> = base
            .processes()
            .iter()
            .map(|p| p.values().iter().map(|v| v * 1.1).collect())
            .collect();
        let cand = NestedSample::new(cand_procs).unwrap();
        let cfg = BootstrapConfig::with_seed(11);
        let a = hierarchical_bootstrap_ratio(&base, &cand, &cfg).unwrap();
        let b = hierarchical_bootstrap_ratio(&base, &cand, &cfg).unwrap();
        assert_eq!(a, b);
        assert!((a.ratio - 1.1).abs() < 1e-12);
        assert!(a.interval.contains(1.1));
        let ci = hierarchical_bootstrap_median_ci(&base, &cfg);
        assert!(ci.lower() >= 9.4 && ci.upper() <= 11.2);
        assert!(ci.contains(base.median_of_process_medians()));
    }

    #[test]
    fn compare_processes_orients_candidate_minus_baseline() {
        let base = nested(&[&[10.0, 10.2], &[10.15], &[9.9, 10.0], &[10.3], &[10.05]]);
        let slow = nested(&[&[12.0, 12.2], &[12.15], &[11.9, 12.0], &[12.3], &[12.05]]);
        let r = compare_processes(&base, &slow, 0.95, Some(&BootstrapConfig::default())).unwrap();
        assert_eq!(r.process_level.unit, Unit::Process);
        assert_eq!(r.process_level.baseline_n, 5);
        assert_eq!(r.pooled.candidate_n, 7);
        assert!(r.process_level.shift.estimate > 1.5);
        assert!(r.process_level.ratio.unwrap().estimate > 1.15);
        assert!(r.process_level.welch.unwrap().t > 0.0);
        assert!(r.bootstrap_ratio.unwrap().ratio > 1.15);
        // Fully separated 5 vs 5: exact p = 2 / C(10, 5).
        assert!((r.process_level.mann_whitney.p_value - 2.0 / 252.0).abs() < 1e-12);
        assert!(r.pooled.mann_whitney.p_value < r.process_level.mann_whitney.p_value);
    }
}
