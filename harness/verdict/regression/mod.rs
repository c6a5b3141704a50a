//! The regression verdict: is a candidate slower (or heavier) than its baseline by more than a
//! practically relevant margin, with statistical evidence?
//!
//! Modelled on criterion's two-stage rule: a change is reported only when it is *significant*
//! **and** its confidence interval lies *wholly beyond* the practical threshold. Significance
//! alone flags trivial but detectable changes; the interval alone ignores multiplicity.
//!
//! Three steps, so that the multiple-comparison correction sees the whole family:
//! 1. [`compare`] one (variant, metric) pair → [`Comparison`] with the raw p-value and the
//!    interval of the relative change;
//! 2. [`apply_correction`] over all comparisons of a run (Holm by default);
//! 3. [`verdict`] for each comparison under [`Thresholds`].
//!
//! ## Time
//! Relative change = `candidate / baseline − 1` (lower is better, so positive = slower).
//! * **Unit.** With at least [`MIN_PROCESSES_PER_SIDE`] processes on each side, the unit is
//!   the process (one value per process: the median of its calls; see
//!   [`crate::stats::nested`] for why). With fewer, all calls are pooled and the comparison
//!   carries [`ComparisonWarning::PooledCalls`]: the test then ignores between-process
//!   variation and is anti-conservative if it exists. (Flat data measured in a single
//!   process take this path by construction.) Note that 3 vs 3 processes can never reach
//!   p < 0.05 with a rank test (smallest p = 0.1); 4 vs 4 can (0.029). The smallest attainable
//!   p is recorded so the reason string can say so.
//! * **Test.** Two-sided Mann–Whitney U on the unit values (exact for small samples).
//! * **Interval — decision.** The verdict uses the Hodges–Lehmann interval of the ratio
//!   (`exp` of the shift of log unit values), not the bootstrap interval the design first
//!   proposed, because
//!   - it is the inversion of the same Mann–Whitney test, so "significant" and "interval
//!     excludes 0" agree instead of contradicting each other;
//!   - its coverage is exact (small samples) or asymptotically exact under a shift of the
//!     log distribution, with no Monte-Carlo error;
//!   - it is efficient (ARE 0.955 vs. the t interval, against 0.64 for a median), which
//!     matters when between-process noise dominates and every process costs a launch. In a
//!     simulation (15 % between-, 5 % within-process CV, +10 %) both intervals covered
//!     ≈ 95 %, but at 40 processes × 10 calls the HL interval was 17 % narrower and flagged
//!     the slowdown in 44 % of trials against 31 % for the bootstrap interval;
//!   - it needs no resampling, so a gate over many variants stays fast.
//!
//!   The two-stage bootstrap interval of the ratio of medians of process medians is still
//!   computed (if configured) and reported as `bootstrap_interval`, as is Welch's p.
//! * **Rules** (`t` = threshold, default 3 %; `α` default 0.05, applied to the *adjusted* p):
//!   Regression ⇔ `p_adj < α` and `lower > +t`; Improvement ⇔ `p_adj < α` and `upper < −t`;
//!   Unchanged ⇔ `−t <= lower` and `upper <= +t` (significant or not: a detectable change
//!   smaller than `t` is practically nil) and the interval reaches its nominal confidence;
//!   Inconclusive otherwise (interval straddles a threshold, too few units, or beyond the
//!   threshold but not significant after correction).
//!
//! ## Sample size
//! The process count, not the call count, sets the power. Simulated with 15 % between-process
//! and 5 % within-process CV plus 2 % of 3× spikes (2000 trials each, 10 calls per process),
//! a true +10 % slowdown is flagged in 12 % of trials with 10 processes per side (20 calls),
//! 26 % with 20, 48 % with 40, 67 % with 64, 84 % with 96, 91 % with 120 and 93 % with 128;
//! 5 or 20 calls per process change this by about one point. So ≥ 90 % needs about 120
//! processes per side; 128 × 10 is the budget the tests assert. The false-regression rate
//! stayed ≤ 1 % throughout; its bound is the one-sided 2.5 % tail of the 95 % interval,
//! approached when the threshold is small against the uncertainty.
//!
//! ## Memory
//! Peak memory is nearly deterministic, so no test or interval: the medians of process
//! medians are compared, and a change counts when `|candidate − baseline|` exceeds
//! `max(1 % of baseline, 16 MiB)` (memory values are bytes). Never inconclusive.

use crate::stats::comparison_unit;
use crate::stats::mann_whitney::min_attainable_p;
use crate::stats::nested::{hierarchical_bootstrap_ratio, two_sample, Unit};
use crate::stats::{
    adjust_p_values, check_confidence, BootstrapConfig, Correction, Interval, NestedSample,
    StatsError,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Processes per side needed for the process-level test; below it, calls are pooled.
pub use crate::stats::MIN_PROCESSES_PER_SIDE;
/// One mebibyte in bytes.
pub const MIB: f64 = 1024.0 * 1024.0;

/// What was measured; decides how a comparison is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricKind {
    /// Durations (any positive unit): tested, with an interval.
    Time,
    /// Peak memory in bytes: tolerance on the medians, no test.
    Memory,
}

/// Practical and statistical thresholds of the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ThresholdsSpec")]
pub struct Thresholds {
    time_threshold: f64,
    alpha: f64,
    memory_relative_tolerance: f64,
    memory_absolute_tolerance: f64,
}

impl Thresholds {
    pub const DEFAULT_TIME_THRESHOLD: f64 = crate::plan::CompareSettings::DEFAULT_TIME_THRESHOLD;
    pub const DEFAULT_ALPHA: f64 = crate::plan::CompareSettings::DEFAULT_ALPHA;
    pub const DEFAULT_MEMORY_RELATIVE_TOLERANCE: f64 =
        crate::plan::CompareSettings::DEFAULT_MEMORY_REL_TOLERANCE;
    pub const DEFAULT_MEMORY_ABSOLUTE_TOLERANCE: f64 =
        crate::plan::CompareSettings::DEFAULT_MEMORY_ABS_TOLERANCE_BYTES as f64;

    /// Relative time change that matters (e.g. `0.03`); must be positive and finite.
    pub fn with_time_threshold(mut self, threshold: f64) -> Result<Self, StatsError> {
        self.time_threshold = positive("time threshold", threshold)?;
        Ok(self)
    }

    /// Significance level for the adjusted p-value, in `(0, 1)`.
    pub fn with_alpha(mut self, alpha: f64) -> Result<Self, StatsError> {
        check_confidence(1.0 - alpha).map_err(|_| StatsError::InvalidParameter {
            name: "alpha",
            value: alpha,
            expected: "a level strictly between 0 and 1",
        })?;
        self.alpha = alpha;
        Ok(self)
    }

    /// Memory tolerance `max(relative · baseline, absolute_bytes)`; both non-negative.
    pub fn with_memory_tolerance(
        mut self,
        relative: f64,
        absolute_bytes: f64,
    ) -> Result<Self, StatsError> {
        self.memory_relative_tolerance = non_negative("memory relative tolerance", relative)?;
        self.memory_absolute_tolerance = non_negative("memory absolute tolerance", absolute_bytes)?;
        Ok(self)
    }

    pub fn time_threshold(&self) -> f64 {
        self.time_threshold
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn memory_relative_tolerance(&self) -> f64 {
        self.memory_relative_tolerance
    }

    pub fn memory_absolute_tolerance(&self) -> f64 {
        self.memory_absolute_tolerance
    }

    /// The memory tolerance in bytes for a given baseline.
    pub fn memory_tolerance(&self, baseline_bytes: f64) -> f64 {
        (self.memory_relative_tolerance * baseline_bytes.abs()).max(self.memory_absolute_tolerance)
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            time_threshold: Self::DEFAULT_TIME_THRESHOLD,
            alpha: Self::DEFAULT_ALPHA,
            memory_relative_tolerance: Self::DEFAULT_MEMORY_RELATIVE_TOLERANCE,
            memory_absolute_tolerance: Self::DEFAULT_MEMORY_ABSOLUTE_TOLERANCE,
        }
    }
}

/// Serialised form of [`Thresholds`]; missing fields take the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsSpec {
    time_threshold: Option<f64>,
    alpha: Option<f64>,
    memory_relative_tolerance: Option<f64>,
    memory_absolute_tolerance: Option<f64>,
}

impl TryFrom<ThresholdsSpec> for Thresholds {
    type Error = StatsError;

    fn try_from(spec: ThresholdsSpec) -> Result<Self, Self::Error> {
        let d = Thresholds::default();
        d.with_time_threshold(spec.time_threshold.unwrap_or(d.time_threshold))?
            .with_alpha(spec.alpha.unwrap_or(d.alpha))?
            .with_memory_tolerance(
                spec.memory_relative_tolerance
                    .unwrap_or(d.memory_relative_tolerance),
                spec.memory_absolute_tolerance
                    .unwrap_or(d.memory_absolute_tolerance),
            )
    }
}

fn positive(name: &'static str, value: f64) -> Result<f64, StatsError> {
    if value > 0.0 && value.is_finite() {
        Ok(value)
    } else {
        Err(StatsError::InvalidParameter {
            name,
            value,
            expected: "a positive finite number",
        })
    }
}

fn non_negative(name: &'static str, value: f64) -> Result<f64, StatsError> {
    if value >= 0.0 && value.is_finite() {
        Ok(value)
    } else {
        Err(StatsError::InvalidParameter {
            name,
            value,
            expected: "a non-negative finite number",
        })
    }
}

/// How comparisons are computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompareConfig {
    confidence: f64,
    bootstrap: Option<BootstrapConfig>,
}

impl CompareConfig {
    /// `confidence` of the interval (default 0.95); `bootstrap` for the secondary
    /// hierarchical-bootstrap interval, or `None` to skip it (it does not affect verdicts).
    pub fn new(confidence: f64, bootstrap: Option<BootstrapConfig>) -> Result<Self, StatsError> {
        check_confidence(confidence)?;
        Ok(CompareConfig {
            confidence,
            bootstrap,
        })
    }

    pub fn confidence(&self) -> f64 {
        self.confidence
    }

    pub fn bootstrap(&self) -> Option<&BootstrapConfig> {
        self.bootstrap.as_ref()
    }
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            confidence: 0.95,
            bootstrap: Some(BootstrapConfig::default()),
        }
    }
}

/// Something the reader of a comparison should know.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ComparisonWarning {
    /// Too few processes for the process-level test: calls were pooled.
    PooledCalls {
        baseline_processes: usize,
        candidate_processes: usize,
        required: usize,
    },
    /// The samples are too small for an interval at the requested confidence.
    IntervalBelowConfidence { achieved: f64, nominal: f64 },
}

/// Size and location of one side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Side {
    pub processes: usize,
    pub calls: usize,
    /// Median of the per-process medians.
    pub median: f64,
}

impl Side {
    fn of(sample: &NestedSample) -> Self {
        Side {
            processes: sample.process_count(),
            calls: sample.call_count(),
            median: sample.median_of_process_medians(),
        }
    }
}

/// Statistics of one (variant, metric) pair, before the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    variant: String,
    metric: String,
    kind: MetricKind,
    baseline: Side,
    candidate: Side,
    relative_change: f64,
    interval: Option<Interval>,
    nominal_confidence: Option<f64>,
    unit: Option<Unit>,
    p_raw: Option<f64>,
    p_adjusted: Option<f64>,
    correction: Correction,
    min_attainable_p: Option<f64>,
    welch_p: Option<f64>,
    bootstrap_interval: Option<Interval>,
    warnings: Vec<ComparisonWarning>,
}

impl Comparison {
    pub fn variant(&self) -> &str {
        &self.variant
    }

    pub fn metric(&self) -> &str {
        &self.metric
    }

    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    pub fn baseline(&self) -> &Side {
        &self.baseline
    }

    pub fn candidate(&self) -> &Side {
        &self.candidate
    }

    /// Point estimate of `candidate / baseline − 1` (Hodges–Lehmann for time, ratio of
    /// medians for memory).
    pub fn relative_change(&self) -> f64 {
        self.relative_change
    }

    /// Interval of the relative change (time only).
    pub fn interval(&self) -> Option<Interval> {
        self.interval
    }

    /// The confidence level requested for the interval (time only).
    pub fn nominal_confidence(&self) -> Option<f64> {
        self.nominal_confidence
    }

    /// What the test and interval were computed on (time only).
    pub fn unit(&self) -> Option<Unit> {
        self.unit
    }

    /// Two-sided Mann–Whitney p-value before correction (time only).
    pub fn p_raw(&self) -> Option<f64> {
        self.p_raw
    }

    /// p-value after [`apply_correction`] (equal to `p_raw` until then).
    pub fn p_adjusted(&self) -> Option<f64> {
        self.p_adjusted
    }

    pub fn correction(&self) -> Correction {
        self.correction
    }

    /// Smallest p-value the rank test could give with these unit counts (no ties).
    pub fn min_attainable_p(&self) -> Option<f64> {
        self.min_attainable_p
    }

    /// Welch's t-test p-value on the same units (secondary).
    pub fn welch_p(&self) -> Option<f64> {
        self.welch_p
    }

    /// Two-stage bootstrap interval of the relative change of medians of process medians
    /// (secondary; when configured).
    pub fn bootstrap_interval(&self) -> Option<Interval> {
        self.bootstrap_interval
    }

    pub fn warnings(&self) -> &[ComparisonWarning] {
        &self.warnings
    }
}

/// Computes the statistics of one (variant, metric) pair. Time needs positive values; memory a
/// positive baseline median.
pub fn compare(
    variant: &str,
    metric: &str,
    kind: MetricKind,
    baseline: &NestedSample,
    candidate: &NestedSample,
    config: &CompareConfig,
) -> Result<Comparison, StatsError> {
    let (b, c) = (Side::of(baseline), Side::of(candidate));
    let mut comparison = Comparison {
        variant: variant.to_owned(),
        metric: metric.to_owned(),
        kind,
        baseline: b,
        candidate: c,
        relative_change: 0.0,
        interval: None,
        nominal_confidence: None,
        unit: None,
        p_raw: None,
        p_adjusted: None,
        correction: Correction::None,
        min_attainable_p: None,
        welch_p: None,
        bootstrap_interval: None,
        warnings: Vec::new(),
    };
    match kind {
        MetricKind::Memory => {
            if b.median <= 0.0 {
                return Err(StatsError::NonPositive { value: b.median });
            }
            comparison.relative_change = c.median / b.median - 1.0;
        }
        MetricKind::Time => {
            baseline.check_positive()?;
            candidate.check_positive()?;
            let unit = comparison_unit(baseline, candidate);
            if unit == Unit::Call {
                comparison.warnings.push(ComparisonWarning::PooledCalls {
                    baseline_processes: b.processes,
                    candidate_processes: c.processes,
                    required: MIN_PROCESSES_PER_SIDE,
                });
            }
            let results = two_sample(
                &baseline.values_in(unit),
                &candidate.values_in(unit),
                unit,
                config.confidence,
            )?;
            let ratio = results
                .ratio
                .ok_or(StatsError::NonPositive { value: 0.0 })?;
            if !ratio.reaches_nominal_confidence() {
                comparison
                    .warnings
                    .push(ComparisonWarning::IntervalBelowConfidence {
                        achieved: ratio.interval.confidence(),
                        nominal: config.confidence,
                    });
            }
            comparison.relative_change = ratio.estimate - 1.0;
            comparison.interval = Some(ratio.interval.map_monotone(|r| r - 1.0)?);
            comparison.nominal_confidence = Some(config.confidence);
            comparison.unit = Some(results.unit);
            comparison.p_raw = Some(results.mann_whitney.p_value);
            comparison.p_adjusted = Some(results.mann_whitney.p_value);
            comparison.min_attainable_p =
                Some(min_attainable_p(results.baseline_n, results.candidate_n));
            comparison.welch_p = results.welch.map(|w| w.p_value);
            comparison.bootstrap_interval = match config.bootstrap() {
                Some(bootstrap) => Some(
                    hierarchical_bootstrap_ratio(baseline, candidate, bootstrap)?
                        .interval
                        .map_monotone(|x| x - 1.0)?,
                ),
                None => None,
            };
        }
    }
    Ok(comparison)
}

/// Adjusts the p-values of all tested comparisons together (memory comparisons carry none and
/// are left alone). Re-applying replaces an earlier correction.
pub fn apply_correction(comparisons: &mut [Comparison], correction: Correction) {
    let raw: Vec<f64> = comparisons.iter().filter_map(|c| c.p_raw).collect();
    // Raw p-values come from our tests and lie in [0, 1]; fall back to no change otherwise.
    let adjusted = adjust_p_values(&raw, correction).unwrap_or(raw);
    let mut adjusted = adjusted.into_iter();
    for c in comparisons.iter_mut().filter(|c| c.p_raw.is_some()) {
        c.p_adjusted = adjusted.next();
        c.correction = correction;
    }
}

/// The outcome of a verdict. Lower is better for every metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Regression,
    Improvement,
    Unchanged,
    Inconclusive,
}

impl VerdictKind {
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::Regression => "regression",
            VerdictKind::Improvement => "improvement",
            VerdictKind::Unchanged => "unchanged",
            VerdictKind::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The verdict on one comparison, with the figures it rests on and a one-line reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    pub variant: String,
    pub metric: String,
    pub relative_change: f64,
    pub interval: Option<Interval>,
    pub p_raw: Option<f64>,
    pub p_adjusted: Option<f64>,
    pub reason: String,
}

/// Judges a comparison (see the module documentation for the rules).
pub fn verdict(comparison: &Comparison, thresholds: &Thresholds) -> Verdict {
    let (kind, reason) = match comparison.kind {
        MetricKind::Memory => memory_verdict(comparison, thresholds),
        MetricKind::Time => time_verdict(comparison, thresholds),
    };
    Verdict {
        kind,
        variant: comparison.variant.clone(),
        metric: comparison.metric.clone(),
        relative_change: comparison.relative_change,
        interval: comparison.interval,
        p_raw: comparison.p_raw,
        p_adjusted: comparison.p_adjusted,
        reason,
    }
}

fn memory_verdict(c: &Comparison, t: &Thresholds) -> (VerdictKind, String) {
    let diff = c.candidate.median - c.baseline.median;
    let tolerance = t.memory_tolerance(c.baseline.median);
    let change = format!(
        "{:+.1} MiB ({:+.2} %)",
        diff / MIB,
        100.0 * c.relative_change
    );
    let tol = format!("{:.1} MiB", tolerance / MIB);
    if diff > tolerance {
        (
            VerdictKind::Regression,
            format!("memory {change} exceeds the tolerance of {tol}"),
        )
    } else if diff < -tolerance {
        (
            VerdictKind::Improvement,
            format!("memory {change} beyond the tolerance of {tol}"),
        )
    } else {
        (
            VerdictKind::Unchanged,
            format!("memory {change} within the tolerance of {tol}"),
        )
    }
}

fn time_verdict(c: &Comparison, t: &Thresholds) -> (VerdictKind, String) {
    let (Some(interval), Some(p_adj)) = (c.interval, c.p_adjusted) else {
        return (
            VerdictKind::Inconclusive,
            "no test result for this time comparison".to_owned(),
        );
    };
    let thr = t.time_threshold;
    let (lo, hi) = (interval.lower(), interval.upper());
    let nominal = c.nominal_confidence.unwrap_or(interval.confidence());
    let unit = match c.unit {
        Some(Unit::Process) => "per-process medians",
        _ => "pooled calls",
    };
    let summary = format!(
        "{:+.2} % [{:+.2} %, {:+.2} %] ({:.0} % CI, {unit})",
        100.0 * c.relative_change,
        100.0 * lo,
        100.0 * hi,
        100.0 * interval.confidence()
    );
    let p_text = if c.correction == Correction::None {
        format!("p = {p_adj:.3}")
    } else {
        format!("p_adj = {p_adj:.3} ({})", c.correction)
    };
    let significant = p_adj < t.alpha;
    let reaches_confidence = interval.confidence() >= nominal - 1e-12;
    let thr_text = format!("{:.1} %", 100.0 * thr);
    if significant && lo > thr {
        return (
            VerdictKind::Regression,
            format!(
                "slower: {summary} wholly above +{thr_text}; {p_text} < {}",
                t.alpha
            ),
        );
    }
    if significant && hi < -thr {
        return (
            VerdictKind::Improvement,
            format!(
                "faster: {summary} wholly below -{thr_text}; {p_text} < {}",
                t.alpha
            ),
        );
    }
    if reaches_confidence && lo >= -thr && hi <= thr {
        return (
            VerdictKind::Unchanged,
            format!("{summary} within ±{thr_text}; {p_text}"),
        );
    }
    let why = if !reaches_confidence {
        format!("too few {unit} for a {:.0} % interval", 100.0 * nominal)
    } else if lo > thr || hi < -thr {
        let unreachable = match c.min_attainable_p {
            Some(min_p) if min_p >= t.alpha => {
                format!(" (the smallest attainable p here is {min_p:.3})")
            }
            _ => String::new(),
        };
        format!(
            "beyond ±{thr_text} but {p_text} >= {}{unreachable}",
            t.alpha
        )
    } else {
        format!("interval straddles ±{thr_text}; {p_text}")
    };
    (VerdictKind::Inconclusive, format!("{summary}: {why}"))
}

#[cfg(test)]
mod tests;
