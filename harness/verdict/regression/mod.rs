//! The regression verdict: is a candidate slower (or heavier) than its baseline by more than a
//! practically relevant margin, with statistical evidence?
//!
//! Modelled on criterion's two-stage rule: a change is reported only when it is *significant*
//! **and** its confidence interval lies *wholly beyond* the practical threshold. Significance
//! alone flags trivial but detectable changes; the interval alone ignores multiplicity.
//!
//! Three steps, so that the multiple-comparison correction sees the whole family (the gate
//! makes the family the whole run):
//! 1. [`compare`] one (variant, metric) pair → [`Comparison`] with the raw p-value and the
//!    interval of the relative change;
//! 2. [`apply_correction`] over all comparisons of a run (Holm by default);
//! 3. [`verdict`] for each comparison under [`Thresholds`].
//!
//! ## Time
//! Relative change = `candidate / baseline − 1` (lower is better, so positive = slower).
//! * **Unit.** The process: one value per process, the median of its calls. Whole processes
//!   run fast or slow on a GPU, so calls are not independent replicates; with fewer than
//!   [`MIN_PROCESSES_FOR_GATE`] processes on a side ([`MIN_PROCESSES_PER_SIDE`] for claims,
//!   which compare wide ranges once, see [`CompareConfig::for_claims`]) the verdict is
//!   [`VerdictKind::InsufficientReplication`], which shows the estimate and the process medians
//!   and never fails a gate.
//! * **Interval and test.** Welch's t on the log process medians ([`welch_log_ratio`]): `exp`
//!   of it is the ratio of geometric means with its interval, and its p-value is the dual test,
//!   so "significant" and "interval excludes 0" agree. Rank methods cannot decide with 3
//!   processes per side (smallest Mann–Whitney p = 0.1), so their p is kept only as a
//!   secondary view ([`Comparison::rank_p`]).
//! * **Rules** (`t` = threshold, default 3 %; `α` default 0.05, applied to the *adjusted* p):
//!   Regression ⇔ `p_adj < α` and `lower > +t`; Improvement ⇔ `p_adj < α` and `upper < −t`;
//!   Unchanged ⇔ `−t <= lower` and `upper <= +t` (a detectable change smaller than `t` is
//!   practically nil); Inconclusive otherwise, with the smallest change this comparison could
//!   have flagged given its spread, processes and family size (an asv-style "cannot detect"
//!   guard: [`Comparison::detectable_change`]).
//!
//! Error rates and power of these rules under the measured GPU noise are simulated in
//! `verdict/simulation`, and the README's table is generated from there.
//!
//! ## Memory
//! Peak memory is near-deterministic between processes, so no test: the *ranges* of the
//! process medians are compared with a tolerance. Regression ⇔
//! `min(candidate) − max(baseline) > tol`; Improvement ⇔ `max(candidate) − min(baseline) < −tol`;
//! Unchanged ⇔ the whole range
//! of differences lies within `±tol`; Inconclusive otherwise (processes disagree by more than
//! the tolerance). `tol = max(1 % of baseline, 16 MiB)` for allocated memory and
//! `max(2 %, 64 MiB)` for reserved memory, whose caching allocator grows in 2 and 20 MiB
//! segments and cuDNN workspaces, so one extra segment is not a regression.

use crate::stats::mann_whitney::mann_whitney_u;
use crate::stats::{
    adjust_p_values, check_confidence, require_processes, welch_log_ratio, Correction,
    InsufficientReplication, Interval, NestedSample, StatsError, TInterval, MIN_PROCESSES_FOR_GATE,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Processes per side needed for a time claim (the gate needs [`MIN_PROCESSES_FOR_GATE`]).
pub use crate::stats::MIN_PROCESSES_PER_SIDE;
/// One mebibyte in bytes.
pub const MIB: f64 = 1024.0 * 1024.0;

/// What was measured; decides how a comparison is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricKind {
    /// Durations (any positive unit): tested, with an interval.
    Time,
    /// Peak memory in bytes: process ranges against a tolerance, no test.
    Memory,
}

impl MetricKind {
    /// Byte metrics are memory; everything else is a duration.
    pub fn of_metric(metric: &str) -> Self {
        if metric.ends_with("_bytes") {
            MetricKind::Memory
        } else {
            MetricKind::Time
        }
    }
}

/// A memory tolerance `max(relative × baseline, absolute bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    pub relative: f64,
    pub absolute_bytes: f64,
}

impl Tolerance {
    fn checked(relative: f64, absolute_bytes: f64) -> Result<Self, StatsError> {
        Ok(Tolerance {
            relative: non_negative("memory relative tolerance", relative)?,
            absolute_bytes: non_negative("memory absolute tolerance", absolute_bytes)?,
        })
    }

    /// The tolerance in bytes for a given baseline.
    pub fn bytes(&self, baseline_bytes: f64) -> f64 {
        (self.relative * baseline_bytes.abs()).max(self.absolute_bytes)
    }
}

/// Practical and statistical thresholds of the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ThresholdsSpec")]
pub struct Thresholds {
    time_threshold: f64,
    alpha: f64,
    memory: Tolerance,
    reserved: Tolerance,
    host_rss: Tolerance,
}

impl Thresholds {
    pub const DEFAULT_TIME_THRESHOLD: f64 = crate::plan::CompareSettings::DEFAULT_TIME_THRESHOLD;
    pub const DEFAULT_ALPHA: f64 = crate::plan::CompareSettings::DEFAULT_ALPHA;

    /// The thresholds a suite's `[compare]` settings give for `metric`.
    pub fn for_metric(settings: &crate::plan::CompareSettings, metric: &str) -> Self {
        let time = settings
            .metric_thresholds
            .get(metric)
            .copied()
            .unwrap_or(settings.time_threshold);
        // The manifest validated these ranges; fall back to defaults rather than fail a gate.
        Thresholds::default()
            .with_time_threshold(time)
            .and_then(|t| t.with_alpha(settings.alpha))
            .and_then(|t| {
                t.with_memory_tolerance(
                    settings.memory_rel_tolerance,
                    settings.memory_abs_tolerance_bytes as f64,
                )
            })
            .and_then(|t| {
                t.with_reserved_tolerance(
                    settings.reserved_rel_tolerance,
                    settings.reserved_abs_tolerance_bytes as f64,
                )
            })
            .and_then(|t| {
                t.with_host_rss_tolerance(
                    settings.host_rss_rel_tolerance,
                    settings.host_rss_abs_tolerance_bytes as f64,
                )
            })
            .unwrap_or_default()
    }

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

    /// Tolerance of allocated (and other non-reserved) memory; both non-negative.
    pub fn with_memory_tolerance(
        mut self,
        relative: f64,
        absolute_bytes: f64,
    ) -> Result<Self, StatsError> {
        self.memory = Tolerance::checked(relative, absolute_bytes)?;
        Ok(self)
    }

    /// Tolerance of reserved memory (`*reserved*` metrics); both non-negative.
    pub fn with_reserved_tolerance(
        mut self,
        relative: f64,
        absolute_bytes: f64,
    ) -> Result<Self, StatsError> {
        self.reserved = Tolerance::checked(relative, absolute_bytes)?;
        Ok(self)
    }

    /// Tolerance of the host's peak resident set (`*rss*` metrics); both non-negative.
    pub fn with_host_rss_tolerance(
        mut self,
        relative: f64,
        absolute_bytes: f64,
    ) -> Result<Self, StatsError> {
        self.host_rss = Tolerance::checked(relative, absolute_bytes)?;
        Ok(self)
    }

    pub fn time_threshold(&self) -> f64 {
        self.time_threshold
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The tolerance that applies to a memory metric.
    pub fn tolerance_of(&self, metric: &str) -> Tolerance {
        if metric.contains("reserved") {
            self.reserved
        } else if metric.contains("rss") {
            self.host_rss
        } else {
            self.memory
        }
    }

    /// The allocated-memory tolerance in bytes for a given baseline.
    pub fn memory_tolerance(&self, baseline_bytes: f64) -> f64 {
        self.memory.bytes(baseline_bytes)
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        use crate::plan::CompareSettings as D;
        Thresholds {
            time_threshold: Self::DEFAULT_TIME_THRESHOLD,
            alpha: Self::DEFAULT_ALPHA,
            memory: Tolerance {
                relative: D::DEFAULT_MEMORY_REL_TOLERANCE,
                absolute_bytes: D::DEFAULT_MEMORY_ABS_TOLERANCE_BYTES as f64,
            },
            reserved: Tolerance {
                relative: D::DEFAULT_RESERVED_REL_TOLERANCE,
                absolute_bytes: D::DEFAULT_RESERVED_ABS_TOLERANCE_BYTES as f64,
            },
            host_rss: Tolerance {
                relative: D::DEFAULT_HOST_RSS_REL_TOLERANCE,
                absolute_bytes: D::DEFAULT_HOST_RSS_ABS_TOLERANCE_BYTES as f64,
            },
        }
    }
}

/// Serialised form of [`Thresholds`]; missing fields take the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsSpec {
    time_threshold: Option<f64>,
    alpha: Option<f64>,
    memory: Option<Tolerance>,
    reserved: Option<Tolerance>,
    host_rss: Option<Tolerance>,
}

impl TryFrom<ThresholdsSpec> for Thresholds {
    type Error = StatsError;

    fn try_from(spec: ThresholdsSpec) -> Result<Self, Self::Error> {
        let d = Thresholds::default();
        let memory = spec.memory.unwrap_or(d.memory);
        let reserved = spec.reserved.unwrap_or(d.reserved);
        let host_rss = spec.host_rss.unwrap_or(d.host_rss);
        d.with_time_threshold(spec.time_threshold.unwrap_or(d.time_threshold))?
            .with_alpha(spec.alpha.unwrap_or(d.alpha))?
            .with_memory_tolerance(memory.relative, memory.absolute_bytes)?
            .with_reserved_tolerance(reserved.relative, reserved.absolute_bytes)?
            .with_host_rss_tolerance(host_rss.relative, host_rss.absolute_bytes)
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
    min_processes: usize,
}

impl CompareConfig {
    /// `confidence` of the interval (default 0.95), with the gate's minimum replication.
    pub fn new(confidence: f64) -> Result<Self, StatsError> {
        check_confidence(confidence)?;
        Ok(CompareConfig {
            confidence,
            min_processes: MIN_PROCESSES_FOR_GATE,
        })
    }

    /// The same, with the replication a claim needs ([`MIN_PROCESSES_PER_SIDE`]).
    pub fn for_claims(confidence: f64) -> Result<Self, StatsError> {
        Ok(CompareConfig {
            min_processes: MIN_PROCESSES_PER_SIDE,
            ..Self::new(confidence)?
        })
    }

    pub fn confidence(&self) -> f64 {
        self.confidence
    }

    /// Processes per side below which a time comparison is insufficient replication.
    pub fn min_processes(&self) -> usize {
        self.min_processes
    }
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            confidence: 0.95,
            min_processes: MIN_PROCESSES_FOR_GATE,
        }
    }
}

/// Size, location and spread of one side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub processes: usize,
    pub calls: usize,
    /// Median of the per-process medians.
    pub median: f64,
    /// The per-process medians, in process order.
    pub process_medians: Vec<f64>,
}

impl Side {
    fn of(sample: &NestedSample) -> Self {
        Side {
            processes: sample.process_count(),
            calls: sample.call_count(),
            median: sample.median_of_process_medians(),
            process_medians: sample.process_medians().values().to_vec(),
        }
    }

    pub fn min(&self) -> f64 {
        self.process_medians
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.process_medians
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
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
    /// Welch's interval of the log ratio (time, with enough processes).
    log_ratio: Option<TInterval>,
    p_raw: Option<f64>,
    p_adjusted: Option<f64>,
    correction: Correction,
    /// Tested comparisons in the correction's family (1 until corrected).
    family_size: usize,
    rank_p: Option<f64>,
    insufficient: Option<InsufficientReplication>,
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

    /// Point estimate of `candidate / baseline − 1`: the ratio of geometric means of process
    /// medians for time (of their medians with too few processes), of medians for memory.
    pub fn relative_change(&self) -> f64 {
        self.relative_change
    }

    /// Interval of the relative change (time, with enough processes).
    pub fn interval(&self) -> Option<Interval> {
        self.interval
    }

    /// Welch's interval of the log ratio, for other confidence levels.
    pub fn log_ratio(&self) -> Option<&TInterval> {
        self.log_ratio.as_ref()
    }

    /// Two-sided Welch p-value on log process medians before correction (time only).
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

    /// Tested comparisons in the family the p-value was corrected over.
    pub fn family_size(&self) -> usize {
        self.family_size
    }

    /// Mann–Whitney p on the same process medians (secondary; a large disagreement with the
    /// Welch p hints at a slow-regime process).
    pub fn rank_p(&self) -> Option<f64> {
        self.rank_p
    }

    /// Why there is no time interval, when there are too few processes.
    pub fn insufficient(&self) -> Option<&InsufficientReplication> {
        self.insufficient.as_ref()
    }

    /// The smallest relative slowdown (or, negated, speed-up) this comparison could flag at
    /// `alpha` spread over its family (the strictest Holm step, `alpha / m`): the threshold plus
    /// the half-width of the interval at that level. `None` without an interval.
    pub fn detectable_change(&self, thresholds: &Thresholds) -> Option<f64> {
        let t = self.log_ratio.as_ref()?;
        let level = 1.0 - thresholds.alpha / self.family_size.max(1) as f64;
        let half = t.half_width(level).ok()?;
        Some(((1.0 + thresholds.time_threshold).ln() + half).exp() - 1.0)
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
    if kind == MetricKind::Memory && b.median <= 0.0 {
        return Err(StatsError::NonPositive { value: b.median });
    }
    let mut comparison = Comparison {
        variant: variant.to_owned(),
        metric: metric.to_owned(),
        kind,
        relative_change: c.median / b.median - 1.0,
        baseline: b,
        candidate: c,
        interval: None,
        log_ratio: None,
        p_raw: None,
        p_adjusted: None,
        correction: Correction::None,
        family_size: 1,
        rank_p: None,
        insufficient: None,
    };
    if kind == MetricKind::Memory {
        return Ok(comparison);
    }
    baseline.check_positive()?;
    candidate.check_positive()?;
    if let Err(insufficient) = require_processes(&[baseline, candidate], config.min_processes) {
        comparison.insufficient = Some(insufficient);
        return Ok(comparison);
    }
    let (bm, cm) = (baseline.process_medians(), candidate.process_medians());
    let t = welch_log_ratio(&bm, &cm, config.confidence)?;
    let (ratio, interval) = t.exp()?;
    comparison.relative_change = ratio - 1.0;
    comparison.interval = Some(interval.map_monotone(|r| r - 1.0)?);
    comparison.p_raw = Some(t.p_value);
    comparison.p_adjusted = Some(t.p_value);
    comparison.log_ratio = Some(t);
    comparison.rank_p = Some(mann_whitney_u(&bm, &cm).p_value);
    Ok(comparison)
}

/// Adjusts the p-values of all tested comparisons together (memory comparisons and those with
/// too few processes carry none and are left alone). Re-applying replaces an earlier
/// correction.
pub fn apply_correction(comparisons: &mut [Comparison], correction: Correction) {
    let raw: Vec<f64> = comparisons.iter().filter_map(|c| c.p_raw).collect();
    let family_size = raw.len();
    // Raw p-values come from our tests and lie in [0, 1]; fall back to no change otherwise.
    let adjusted = adjust_p_values(&raw, correction).unwrap_or(raw);
    let mut adjusted = adjusted.into_iter();
    for c in comparisons.iter_mut().filter(|c| c.p_raw.is_some()) {
        c.p_adjusted = adjusted.next();
        c.correction = correction;
        c.family_size = family_size;
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
    /// Too few processes for a time verdict: shown, never a failure.
    InsufficientReplication,
}

impl VerdictKind {
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::Regression => "regression",
            VerdictKind::Improvement => "improvement",
            VerdictKind::Unchanged => "unchanged",
            VerdictKind::Inconclusive => "inconclusive",
            VerdictKind::InsufficientReplication => "insufficient replication",
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

fn mib(bytes: f64) -> String {
    format!("{:+.1} MiB", bytes / MIB)
}

fn memory_verdict(c: &Comparison, t: &Thresholds) -> (VerdictKind, String) {
    let tolerance = t.tolerance_of(&c.metric).bytes(c.baseline.median);
    // Every difference between a candidate process and a baseline process lies in [lo, hi].
    let lo = c.candidate.min() - c.baseline.max();
    let hi = c.candidate.max() - c.baseline.min();
    let change = if lo == hi {
        format!("{} ({:+.2} %)", mib(lo), 100.0 * c.relative_change)
    } else {
        format!(
            "{}..{} across processes ({:+.2} % at the medians)",
            mib(lo),
            mib(hi),
            100.0 * c.relative_change
        )
    };
    let tol = format!("{:.1} MiB", tolerance / MIB);
    if lo > tolerance {
        (
            VerdictKind::Regression,
            format!("memory {change} exceeds the tolerance of {tol}"),
        )
    } else if hi < -tolerance {
        (
            VerdictKind::Improvement,
            format!("memory {change} beyond the tolerance of {tol}"),
        )
    } else if lo >= -tolerance && hi <= tolerance {
        (
            VerdictKind::Unchanged,
            format!("memory {change} within the tolerance of {tol}"),
        )
    } else {
        (
            VerdictKind::Inconclusive,
            format!(
                "memory {change}: processes disagree by more than the tolerance of {tol} \
                 (baseline {}..{} MiB, candidate {}..{} MiB)",
                round_mib(c.baseline.min()),
                round_mib(c.baseline.max()),
                round_mib(c.candidate.min()),
                round_mib(c.candidate.max())
            ),
        )
    }
}

fn round_mib(bytes: f64) -> String {
    format!("{:.1}", bytes / MIB)
}

/// `1.2, 1.3, 1.25`, values in the metric's unit with 4 significant digits.
fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn time_verdict(c: &Comparison, t: &Thresholds) -> (VerdictKind, String) {
    if let Some(insufficient) = &c.insufficient {
        return (
            VerdictKind::InsufficientReplication,
            format!(
                "{:+.2} % at the medians (baseline process medians {}; candidate {}); not judged: {insufficient}",
                100.0 * c.relative_change,
                list(&c.baseline.process_medians),
                list(&c.candidate.process_medians),
            ),
        );
    }
    let (Some(interval), Some(p_adj)) = (c.interval, c.p_adjusted) else {
        return (
            VerdictKind::Inconclusive,
            "no test result for this time comparison".to_owned(),
        );
    };
    let thr = t.time_threshold;
    let (lo, hi) = (interval.lower(), interval.upper());
    let summary = format!(
        "{:+.2} % [{:+.2} %, {:+.2} %] ({:.0} % CI, {} vs {} per-process medians)",
        100.0 * c.relative_change,
        100.0 * lo,
        100.0 * hi,
        100.0 * interval.confidence(),
        c.baseline.processes,
        c.candidate.processes,
    );
    let p_value = if p_adj < 0.001 {
        format!("{p_adj:.1e}")
    } else {
        format!("{p_adj:.3}")
    };
    let p_text = if c.correction == Correction::None {
        format!("p = {p_value}")
    } else {
        format!(
            "p_adj = {p_value} ({} over {} comparisons)",
            c.correction, c.family_size
        )
    };
    let significant = p_adj < t.alpha;
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
    if lo >= -thr && hi <= thr {
        return (
            VerdictKind::Unchanged,
            format!("{summary} within ±{thr_text}; {p_text}"),
        );
    }
    let why = if lo > thr || hi < -thr {
        format!("beyond ±{thr_text} but {p_text} >= {}", t.alpha)
    } else {
        format!("interval straddles ±{thr_text}; {p_text}")
    };
    let detectable = match c.detectable_change(t) {
        Some(d) => format!(
            "; with this spread and family only changes beyond ±{:.1} % can be flagged",
            100.0 * d
        ),
        None => String::new(),
    };
    (
        VerdictKind::Inconclusive,
        format!("{summary}: {why}{detectable}"),
    )
}

#[cfg(test)]
mod tests;
