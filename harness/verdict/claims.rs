//! Claim verdicts: does what a run measured agree with what a note claims?
//!
//! Each claim gets one of four verdicts, with the measured effect, its interval and a one-line
//! reason:
//! * **confirmed**: the interval lies wholly within the claimed range;
//! * **refuted**: the interval lies wholly outside it;
//! * **inconclusive**: the interval straddles an end of the range, or the data are too few for
//!   an interval at the nominal confidence;
//! * **not applicable**: the claim is marked so, a variant did not run or failed, the metric
//!   was not recorded, or the knobs that set the variants apart cannot act where the workers ran
//!   (cuDNN flags on a CPU run, as the workers report in `hello.not_applicable`).
//!
//! The statistics are those of the regression gate ([`super::regression`]): for times, the
//! Hodges–Lehmann interval of the ratio (or of the shift, for differences), on per-process
//! medians when both sides have at least [`MIN_PROCESSES_PER_SIDE`] processes and on pooled
//! calls otherwise; for one variant's time, the two-stage (processes, then calls) bootstrap
//! interval of the median. Memory and counts are near-deterministic, so their "interval" is the
//! range of the per-process medians widened by the suite's memory tolerance (none for counts):
//! a tolerance band rather than a confidence interval. Everything is seeded: the same record
//! gives the same verdicts.

use super::regression::{
    compare, CompareConfig, ComparisonWarning, MetricKind, Thresholds, MIN_PROCESSES_PER_SIDE,
};
use crate::claim::{ClaimCheck, ClaimRange, ClaimSpec, Dimension, Relation};
use crate::plan::{CompareSettings, VariantPlan};
use crate::stats::{
    bootstrap_median_ci, hierarchical_bootstrap_median_ci, two_sample, BootstrapConfig,
    NestedSample, Unit,
};
use crate::store::baseline::metric_values;
use crate::store::{RunRecord, SampleRow, SuiteRecord};
use crate::worker::protocol::Status;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The verdict on a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimVerdictKind {
    Refuted,
    Inconclusive,
    Confirmed,
    NotApplicable,
}

impl ClaimVerdictKind {
    pub fn name(self) -> &'static str {
        match self {
            ClaimVerdictKind::Confirmed => "confirmed",
            ClaimVerdictKind::Refuted => "refuted",
            ClaimVerdictKind::Inconclusive => "inconclusive",
            ClaimVerdictKind::NotApplicable => "not applicable",
        }
    }

    pub const ALL: [ClaimVerdictKind; 4] = [
        ClaimVerdictKind::Refuted,
        ClaimVerdictKind::Inconclusive,
        ClaimVerdictKind::Confirmed,
        ClaimVerdictKind::NotApplicable,
    ];
}

impl fmt::Display for ClaimVerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A measured effect with its interval, in the unit of the claim's range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effect {
    pub dimension: Dimension,
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// Achieved confidence of the interval; `None` for a tolerance band.
    pub confidence: Option<f64>,
    /// What the interval rests on: `per-process medians`, `pooled calls`, `processes and
    /// calls` (two-stage bootstrap) or `tolerance band`.
    pub basis: String,
    /// Whether the value is a signed difference or change (printed with its sign).
    pub signed: bool,
}

impl Effect {
    fn value(&self, x: f64) -> String {
        if self.signed {
            self.dimension.format_signed(x)
        } else {
            self.dimension.format(x)
        }
    }

    /// `+49.8 % [+48.9 %, +50.6 %] (95 % CI, per-process medians)`.
    pub fn text(&self) -> String {
        let level = match self.confidence {
            Some(c) => format!("{:.0} % CI, {}", 100.0 * c, self.basis),
            None => self.basis.clone(),
        };
        format!(
            "{} [{}, {}] ({level})",
            self.value(self.estimate),
            self.value(self.lower),
            self.value(self.upper)
        )
    }

    /// The estimate alone, formatted.
    pub fn estimate_text(&self) -> String {
        self.value(self.estimate)
    }

    /// `[lower, upper]`, formatted.
    pub fn interval_text(&self) -> String {
        format!("[{}, {}]", self.value(self.lower), self.value(self.upper))
    }
}

/// A verdict with what it rests on, before it is attached to a claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: ClaimVerdictKind,
    pub effect: Option<Effect>,
    /// What was seen when there is no interval (out-of-memory outcomes).
    pub observed: Option<String>,
    pub reason: String,
}

impl Judgement {
    fn not_applicable(reason: impl Into<String>) -> Self {
        Judgement {
            observed: None,
            verdict: ClaimVerdictKind::NotApplicable,
            effect: None,
            reason: reason.into(),
        }
    }
}

/// One adjacent pair of an ordering claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepVerdict {
    pub lower: String,
    pub upper: String,
    pub relation: Relation,
    pub verdict: ClaimVerdictKind,
    /// `upper` relative to `lower` (times) or `upper − lower` (memory, counts).
    pub effect: Option<Effect>,
    pub reason: String,
}

/// The verdict on one claim of one suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimVerdict {
    pub suite: String,
    pub id: String,
    pub source: String,
    pub summary: String,
    /// Line of the claim in the manifest.
    pub line: usize,
    /// `change`, `difference`, `fit`, `order`, `bound` or `not-applicable`.
    pub kind: String,
    pub metric: Option<String>,
    pub variants: Vec<String>,
    /// The claim's range or statement as written (`-40%..-30%`, `fits 8.00 GiB`, `a < b`).
    pub claimed: String,
    /// The claimed range in the effect's unit, where there is one (for plots).
    pub claimed_min: Option<f64>,
    pub claimed_max: Option<f64>,
    pub verdict: ClaimVerdictKind,
    pub effect: Option<Effect>,
    /// What was seen when there is no interval (out-of-memory outcomes).
    pub observed: Option<String>,
    pub reason: String,
    /// Ordering claims: one verdict per adjacent pair.
    pub steps: Vec<StepVerdict>,
    /// Measured samples of the claim's variants that carry a quality flag.
    pub flagged_samples: usize,
    /// The verdict with flagged samples left out, when any were flagged.
    pub without_flagged: Option<ClaimVerdictKind>,
}

impl ClaimVerdict {
    /// The measured effect in one line, or what was observed when there is no interval.
    pub fn measured(&self) -> String {
        if let Some(effect) = &self.effect {
            return effect.text();
        }
        if !self.steps.is_empty() {
            return self
                .steps
                .iter()
                .map(|s| {
                    let effect = s
                        .effect
                        .as_ref()
                        .map(|e| format!(" ({})", e.estimate_text()))
                        .unwrap_or_default();
                    format!("{} {} {}{effect}", s.lower, s.relation.symbol(), s.upper)
                })
                .collect::<Vec<_>>()
                .join("; ");
        }
        self.observed.clone().unwrap_or_else(|| "–".into())
    }
}

/// Statistical settings of claim verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClaimConfig {
    pub confidence: f64,
    pub bootstrap: BootstrapConfig,
    /// Time threshold (for `=` in orderings) and memory tolerance.
    pub thresholds: Thresholds,
}

impl ClaimConfig {
    /// The suite's `[compare]` settings: its time threshold and memory tolerance apply to
    /// claims too; 95 % intervals; bootstrap seeded with 0.
    pub fn for_suite(settings: &CompareSettings) -> Self {
        let thresholds = Thresholds::default()
            .with_time_threshold(settings.time_threshold)
            .and_then(|t| {
                t.with_memory_tolerance(
                    settings.memory_rel_tolerance,
                    settings.memory_abs_tolerance_bytes as f64,
                )
            })
            .unwrap_or_default();
        ClaimConfig {
            thresholds,
            ..ClaimConfig::default()
        }
    }
}

impl Default for ClaimConfig {
    fn default() -> Self {
        ClaimConfig {
            confidence: 0.95,
            bootstrap: BootstrapConfig::default(),
            thresholds: Thresholds::default(),
        }
    }
}

// ---- pure judgements on samples ----

/// Where `[lower, upper]` lies relative to `range`.
pub fn classify(lower: f64, upper: f64, range: &ClaimRange) -> ClaimVerdictKind {
    let above_min = range.min.is_none_or(|m| lower >= m);
    let below_max = range.max.is_none_or(|m| upper <= m);
    if above_min && below_max {
        ClaimVerdictKind::Confirmed
    } else if range.min.is_some_and(|m| upper < m) || range.max.is_some_and(|m| lower > m) {
        ClaimVerdictKind::Refuted
    } else {
        ClaimVerdictKind::Inconclusive
    }
}

fn range_judgement(effect: Effect, range: &ClaimRange) -> Judgement {
    let verdict = classify(effect.lower, effect.upper, range);
    let place = match verdict {
        ClaimVerdictKind::Confirmed => "lies within",
        ClaimVerdictKind::Refuted => "lies wholly outside",
        _ => "straddles",
    };
    Judgement {
        observed: None,
        verdict,
        reason: format!("the interval {place} the claimed {}", range.text),
        effect: Some(effect),
    }
}

/// Medians of the processes, their median, and the smallest and largest of them.
fn spread(sample: &NestedSample) -> (f64, f64, f64) {
    let medians = sample.process_medians();
    (medians.median(), medians.min(), medians.max())
}

fn tolerance(dimension: Dimension, median: f64, cfg: &ClaimConfig) -> f64 {
    match dimension {
        Dimension::Bytes => cfg.thresholds.memory_tolerance(median),
        _ => 0.0,
    }
}

fn band_basis(dimension: Dimension, tol: f64) -> String {
    if tol > 0.0 {
        format!(
            "process medians ± {} tolerance",
            dimension.format(tol).trim_start_matches('+')
        )
    } else {
        "range of process medians".into()
    }
}

/// Interval of the relative change `candidate / baseline − 1`; for times the Hodges–Lehmann
/// ratio interval, else the tolerance band. `Err` carries a reason for an inconclusive or
/// inapplicable result.
fn relative_effect(
    baseline: &NestedSample,
    candidate: &NestedSample,
    dimension: Dimension,
    cfg: &ClaimConfig,
) -> Result<Effect, Box<Judgement>> {
    if dimension == Dimension::Time {
        let config =
            CompareConfig::new(cfg.confidence, None).map_err(|e| Box::new(inconclusive(&e)))?;
        let c = compare(
            "claim",
            "time",
            MetricKind::Time,
            baseline,
            candidate,
            &config,
        )
        .map_err(|e| Box::new(inconclusive(&e)))?;
        let interval = c.interval().ok_or_else(|| {
            Box::new(Judgement::not_applicable(
                "no interval for this comparison".to_string(),
            ))
        })?;
        let basis = match c.unit() {
            Some(Unit::Process) => "per-process medians",
            _ => "pooled calls",
        };
        let effect = Effect {
            dimension: Dimension::Relative,
            estimate: c.relative_change(),
            lower: interval.lower(),
            upper: interval.upper(),
            confidence: Some(interval.confidence()),
            basis: basis.into(),
            signed: true,
        };
        for warning in c.warnings() {
            if let ComparisonWarning::IntervalBelowConfidence { achieved, nominal } = warning {
                return Err(Box::new(Judgement {
                    observed: None,
                    verdict: ClaimVerdictKind::Inconclusive,
                    reason: format!(
                        "too few {basis} for a {:.0} % interval (at most {:.0} % here); run at least {} processes per variant, or fewer than {} to compare calls",
                        100.0 * nominal,
                        100.0 * achieved,
                        MIN_PROCESSES_PER_SIDE + 1,
                        MIN_PROCESSES_PER_SIDE
                    ),
                    effect: Some(effect),
                }));
            }
        }
        return Ok(effect);
    }
    let (b, b_min, b_max) = spread(baseline);
    let (c, c_min, c_max) = spread(candidate);
    if b_min <= 0.0 {
        return Err(Box::new(Judgement {
            observed: None,
            verdict: ClaimVerdictKind::Inconclusive,
            effect: None,
            reason: "the baseline measured zero: a relative change is undefined".into(),
        }));
    }
    let tol = tolerance(dimension, b, cfg) / b;
    Ok(Effect {
        dimension: Dimension::Relative,
        estimate: c / b - 1.0,
        lower: c_min / b_max - 1.0 - tol,
        upper: c_max / b_min - 1.0 + tol,
        confidence: None,
        basis: if tol > 0.0 {
            format!("process medians ± {:.1} % tolerance", 100.0 * tol)
        } else {
            "range of process medians".into()
        },
        signed: true,
    })
}

fn inconclusive(e: &dyn fmt::Display) -> Judgement {
    Judgement {
        observed: None,
        verdict: ClaimVerdictKind::Inconclusive,
        effect: None,
        reason: format!("cannot compare: {e}"),
    }
}

/// `change`: the relative change of `candidate` against `baseline` lies in `expected`.
pub fn judge_change(
    baseline: &NestedSample,
    candidate: &NestedSample,
    dimension: Dimension,
    expected: &ClaimRange,
    cfg: &ClaimConfig,
) -> Judgement {
    match relative_effect(baseline, candidate, dimension, cfg) {
        Ok(effect) => range_judgement(effect, expected),
        Err(judgement) => *judgement,
    }
}

/// `difference`: `candidate − baseline` lies in `expected` (the metric's base unit).
pub fn judge_difference(
    baseline: &NestedSample,
    candidate: &NestedSample,
    dimension: Dimension,
    expected: &ClaimRange,
    cfg: &ClaimConfig,
) -> Judgement {
    if dimension == Dimension::Time {
        let per_process = baseline.process_count() >= MIN_PROCESSES_PER_SIDE
            && candidate.process_count() >= MIN_PROCESSES_PER_SIDE;
        let (b, c, unit, basis) = if per_process {
            (
                baseline.process_medians(),
                candidate.process_medians(),
                Unit::Process,
                "per-process medians",
            )
        } else {
            (
                baseline.pooled(),
                candidate.pooled(),
                Unit::Call,
                "pooled calls",
            )
        };
        let shift = match two_sample(&b, &c, unit, cfg.confidence) {
            Ok(results) => results.shift,
            Err(e) => return inconclusive(&e),
        };
        let effect = Effect {
            dimension,
            estimate: shift.estimate,
            lower: shift.interval.lower(),
            upper: shift.interval.upper(),
            confidence: Some(shift.interval.confidence()),
            basis: basis.into(),
            signed: true,
        };
        if !shift.reaches_nominal_confidence() {
            return Judgement {
                observed: None,
                verdict: ClaimVerdictKind::Inconclusive,
                reason: format!(
                    "too few {basis} for a {:.0} % interval",
                    100.0 * cfg.confidence
                ),
                effect: Some(effect),
            };
        }
        return range_judgement(effect, expected);
    }
    let (b, b_min, b_max) = spread(baseline);
    let (c, c_min, c_max) = spread(candidate);
    let tol = tolerance(dimension, b, cfg);
    let effect = Effect {
        dimension,
        estimate: c - b,
        lower: c_min - b_max - tol,
        upper: c_max - b_min + tol,
        confidence: None,
        basis: band_basis(dimension, tol),
        signed: true,
    };
    range_judgement(effect, expected)
}

/// `bound`: the variant's median of `metric` lies in `expected`.
pub fn judge_bound(
    sample: &NestedSample,
    dimension: Dimension,
    expected: &ClaimRange,
    cfg: &ClaimConfig,
) -> Judgement {
    let (median, min, max) = spread(sample);
    let effect = if dimension == Dimension::Time {
        let (interval, estimate, basis) = if sample.process_count() >= MIN_PROCESSES_PER_SIDE {
            (
                hierarchical_bootstrap_median_ci(sample, &cfg.bootstrap),
                median,
                "processes and calls",
            )
        } else {
            let pooled = sample.pooled();
            (
                bootstrap_median_ci(&pooled, &cfg.bootstrap),
                pooled.median(),
                "pooled calls",
            )
        };
        Effect {
            dimension,
            estimate,
            lower: interval.lower(),
            upper: interval.upper(),
            confidence: Some(interval.confidence()),
            basis: basis.into(),
            signed: false,
        }
    } else {
        let tol = tolerance(dimension, median, cfg);
        Effect {
            dimension,
            estimate: median,
            lower: min - tol,
            upper: max + tol,
            confidence: None,
            basis: band_basis(dimension, tol),
            signed: false,
        }
    };
    range_judgement(effect, expected)
}

/// Outcomes of a variant's processes, for fit claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutcomeCounts {
    pub ok: usize,
    pub oom: usize,
    /// Crashed, timed out, failed, interrupted.
    pub failed: usize,
}

impl OutcomeCounts {
    pub fn of(statuses: &[Status]) -> Self {
        let mut counts = OutcomeCounts::default();
        for s in statuses {
            match s {
                Status::Ok => counts.ok += 1,
                Status::Oom => counts.oom += 1,
                _ => counts.failed += 1,
            }
        }
        counts
    }
}

/// `fit`: with `fits`, every process ran without running out of memory and the peak reserved
/// memory plus the CUDA context (`overhead_bytes`, held outside the allocator) stays within the
/// budget; without, every process ran out of memory. Mixed outcomes are inconclusive.
pub fn judge_fit(
    fits: bool,
    budget_bytes: Option<u64>,
    outcomes: OutcomeCounts,
    peak_reserved: Option<&NestedSample>,
    overhead_bytes: Option<u64>,
) -> Judgement {
    let finished = outcomes.ok + outcomes.oom;
    if finished == 0 {
        return Judgement::not_applicable(if outcomes.failed == 0 {
            "the variant did not run".to_string()
        } else {
            format!(
                "no process finished ({} failed before an outcome)",
                outcomes.failed
            )
        });
    }
    let ooms = format!("out of memory in {} of {finished} processes", outcomes.oom);
    let observed = |text: String, verdict, reason: &str| Judgement {
        verdict,
        effect: None,
        observed: Some(text),
        reason: reason.to_string(),
    };
    if outcomes.oom > 0 && outcomes.ok > 0 {
        return observed(
            ooms,
            ClaimVerdictKind::Inconclusive,
            "some processes fit and some did not: borderline",
        );
    }
    if outcomes.oom == finished {
        return if fits {
            observed(
                ooms,
                ClaimVerdictKind::Refuted,
                "every process ran out of memory",
            )
        } else {
            observed(
                ooms,
                ClaimVerdictKind::Confirmed,
                "every process ran out of memory, as claimed",
            )
        };
    }
    if !fits {
        let peak = peak_reserved
            .map(|p| {
                format!(
                    " (peak reserved {})",
                    Dimension::Bytes.format(p.median_of_process_medians())
                )
            })
            .unwrap_or_default();
        return observed(
            format!("ran without running out of memory in {finished} processes{peak}"),
            ClaimVerdictKind::Refuted,
            "every process finished without running out of memory",
        );
    }
    let Some(budget) = budget_bytes else {
        return Judgement::not_applicable("no VRAM budget is set for the variant");
    };
    let Some(peak) = peak_reserved else {
        return Judgement::not_applicable(
            "peak reserved memory is not measured here (a CPU run): the VRAM budget cannot act",
        );
    };
    let overhead = overhead_bytes.unwrap_or(0) as f64;
    let (median, min, max) = spread(peak);
    let effect = Effect {
        dimension: Dimension::Bytes,
        estimate: median + overhead,
        lower: min + overhead,
        upper: max + overhead,
        confidence: None,
        basis: if overhead > 0.0 {
            format!(
                "peak reserved + {} CUDA context",
                Dimension::Bytes.format(overhead)
            )
        } else {
            "peak reserved".into()
        },
        signed: false,
    };
    let budget = budget as f64;
    let headroom = budget - effect.upper;
    let (verdict, reason) = if headroom >= 0.0 {
        (
            ClaimVerdictKind::Confirmed,
            format!(
                "no process ran out of memory; needs at most {} of {} ({} headroom)",
                Dimension::Bytes.format(effect.upper),
                Dimension::Bytes.format(budget),
                Dimension::Bytes.format(headroom)
            ),
        )
    } else {
        (
            ClaimVerdictKind::Refuted,
            format!(
                "needs up to {}, more than the {} budget",
                Dimension::Bytes.format(effect.upper),
                Dimension::Bytes.format(budget)
            ),
        )
    };
    Judgement {
        observed: None,
        verdict,
        effect: Some(effect),
        reason,
    }
}

/// One step `lower relation upper` of an ordering.
pub fn judge_step(
    lower: &NestedSample,
    upper: &NestedSample,
    relation: Relation,
    dimension: Dimension,
    cfg: &ClaimConfig,
) -> Judgement {
    if dimension == Dimension::Time {
        let effect = match relative_effect(lower, upper, dimension, cfg) {
            Ok(effect) => effect,
            Err(judgement) => return *judgement,
        };
        let verdict = match relation {
            Relation::Less if effect.lower > 0.0 => ClaimVerdictKind::Confirmed,
            Relation::Less if effect.upper < 0.0 => ClaimVerdictKind::Refuted,
            Relation::Less => ClaimVerdictKind::Inconclusive,
            Relation::Equal => {
                let t = cfg.thresholds.time_threshold();
                classify(
                    effect.lower,
                    effect.upper,
                    &ClaimRange {
                        min: Some(-t),
                        max: Some(t),
                        text: String::new(),
                    },
                )
            }
        };
        let why = match (relation, verdict) {
            (Relation::Less, ClaimVerdictKind::Confirmed) => "wholly above 0".to_string(),
            (Relation::Less, ClaimVerdictKind::Refuted) => "wholly below 0".to_string(),
            (Relation::Less, _) => "includes 0".to_string(),
            (_, v) => {
                let t = 100.0 * cfg.thresholds.time_threshold();
                match v {
                    ClaimVerdictKind::Confirmed => format!("within ±{t:.1} %"),
                    ClaimVerdictKind::Refuted => format!("wholly beyond ±{t:.1} %"),
                    _ => format!("straddles ±{t:.1} %"),
                }
            }
        };
        return Judgement {
            observed: None,
            verdict,
            reason: format!("{} {why}", effect.text()),
            effect: Some(effect),
        };
    }
    // Memory and counts: the spread of the difference, compared with the tolerance.
    let (l, l_min, l_max) = spread(lower);
    let (u, u_min, u_max) = spread(upper);
    let tol = tolerance(dimension, l, cfg);
    let (lo, hi) = (u_min - l_max, u_max - l_min);
    let verdict = match relation {
        Relation::Less if lo > tol => ClaimVerdictKind::Confirmed,
        // Counts are exact: equal counts refute a strict order.
        Relation::Less if hi < -tol || (tol == 0.0 && hi <= 0.0) => ClaimVerdictKind::Refuted,
        Relation::Less => ClaimVerdictKind::Inconclusive,
        Relation::Equal if lo >= -tol && hi <= tol => ClaimVerdictKind::Confirmed,
        Relation::Equal if lo > tol || hi < -tol => ClaimVerdictKind::Refuted,
        Relation::Equal => ClaimVerdictKind::Inconclusive,
    };
    let effect = Effect {
        dimension,
        estimate: u - l,
        lower: lo,
        upper: hi,
        confidence: None,
        basis: "range of process medians".into(),
        signed: true,
    };
    let tol_text = if tol > 0.0 {
        format!(" (tolerance {})", dimension.format(tol))
    } else {
        String::new()
    };
    Judgement {
        observed: None,
        verdict,
        reason: format!("difference {}{tol_text}", effect.text()),
        effect: Some(effect),
    }
}

/// `order`: every step holds → confirmed; any step reversed → refuted; otherwise
/// inconclusive.
pub fn judge_order(
    samples: &[(&str, &NestedSample)],
    relations: &[Relation],
    dimension: Dimension,
    cfg: &ClaimConfig,
) -> (Judgement, Vec<StepVerdict>) {
    let steps: Vec<StepVerdict> = samples
        .windows(2)
        .zip(relations)
        .map(|(pair, &relation)| {
            let j = judge_step(pair[0].1, pair[1].1, relation, dimension, cfg);
            StepVerdict {
                lower: pair[0].0.to_string(),
                upper: pair[1].0.to_string(),
                relation,
                verdict: j.verdict,
                effect: j.effect,
                reason: j.reason,
            }
        })
        .collect();
    let describe = |s: &StepVerdict| {
        format!(
            "{} {} {}: {}",
            s.lower,
            s.relation.symbol(),
            s.upper,
            s.reason
        )
    };
    let judgement = if let Some(bad) = steps
        .iter()
        .find(|s| s.verdict == ClaimVerdictKind::Refuted)
    {
        Judgement {
            observed: None,
            verdict: ClaimVerdictKind::Refuted,
            effect: None,
            reason: format!("does not hold: {}", describe(bad)),
        }
    } else if let Some(open) = steps
        .iter()
        .find(|s| s.verdict != ClaimVerdictKind::Confirmed)
    {
        Judgement {
            observed: None,
            verdict: ClaimVerdictKind::Inconclusive,
            effect: None,
            reason: format!("undecided: {}", describe(open)),
        }
    } else {
        Judgement {
            observed: None,
            verdict: ClaimVerdictKind::Confirmed,
            effect: None,
            reason: format!("every step holds ({} of {})", steps.len(), steps.len()),
        }
    };
    (judgement, steps)
}

// ---- from a run record ----

/// What one variant of a suite measured, from processes that ended normally.
#[derive(Debug, Clone)]
pub struct VariantData<'a> {
    pub plan: &'a VariantPlan,
    pub statuses: Vec<Status>,
    /// Metric name → values grouped by process (measured calls only).
    pub metrics: BTreeMap<String, NestedSample>,
    /// Knobs the workers could not apply, as they reported them (`cudnn.enabled: …`).
    pub not_applicable: Vec<String>,
    /// Device memory held outside the allocator, the largest any worker reported.
    pub cuda_overhead_bytes: Option<u64>,
    /// Measured samples with a quality flag (counted whether or not they were included).
    pub flagged: usize,
}

/// Metric values of a sample row, counters included (`count_<name>`).
pub fn row_metrics(row: &SampleRow) -> Vec<(String, f64)> {
    let mut values = metric_values(row);
    values.extend(
        row.measurement
            .counters
            .iter()
            .map(|(name, count)| (format!("count_{name}"), *count as f64)),
    );
    values
}

/// The measured data of every variant of `suite`; with `include_flagged` false, samples with a
/// quality flag are left out.
pub fn variant_data<'a>(
    suite: &'a SuiteRecord,
    samples: &[SampleRow],
    include_flagged: bool,
) -> BTreeMap<String, VariantData<'a>> {
    let mut out = BTreeMap::new();
    for plan in &suite.plan.variants {
        let records: Vec<_> = suite
            .processes
            .iter()
            .filter(|p| p.variant == plan.name)
            .collect();
        let ok: Vec<u32> = records
            .iter()
            .filter(|p| p.status == Status::Ok)
            .map(|p| p.process)
            .collect();
        let mut by_metric: BTreeMap<String, BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
        let mut flagged = 0;
        for row in samples.iter().filter(|s| {
            s.suite == suite.plan.suite
                && s.variant == plan.name
                && !s.warmup
                && ok.contains(&s.process)
        }) {
            if !row.flags.is_empty() {
                flagged += 1;
                if !include_flagged {
                    continue;
                }
            }
            for (name, value) in row_metrics(row) {
                by_metric
                    .entry(name)
                    .or_default()
                    .entry(row.process)
                    .or_default()
                    .push(value);
            }
        }
        let metrics = by_metric
            .into_iter()
            .filter_map(|(name, processes)| {
                NestedSample::new(processes.into_values().collect())
                    .ok()
                    .map(|s| (name, s))
            })
            .collect();
        let mut not_applicable: Vec<String> = records
            .iter()
            .filter_map(|p| p.hello.as_ref())
            .flat_map(|h| h.not_applicable.iter().cloned())
            .collect();
        not_applicable.sort();
        not_applicable.dedup();
        out.insert(
            plan.name.clone(),
            VariantData {
                plan,
                statuses: records.iter().map(|p| p.status).collect(),
                metrics,
                not_applicable,
                cuda_overhead_bytes: records
                    .iter()
                    .filter_map(|p| p.hello.as_ref()?.cuda_overhead_bytes)
                    .max(),
                flagged,
            },
        );
    }
    out
}

/// Settings in which two variants differ, in manifest spelling (`cudnn.enabled`,
/// `env.CUBLAS_WORKSPACE_CONFIG`, `params.ms`).
pub fn differing_settings(a: &VariantPlan, b: &VariantPlan) -> Vec<String> {
    a.differences(b).into_iter().map(|d| d.setting).collect()
}

/// When every setting that sets `variants` apart is one that the workers reported they could
/// not apply, the reason (the workers' own words); otherwise `None`.
fn inert_difference(variants: &[&VariantData<'_>]) -> Option<String> {
    let mut differences: Vec<String> = Vec::new();
    for pair in variants.windows(2) {
        for d in differing_settings(pair[0].plan, pair[1].plan) {
            if !differences.contains(&d) {
                differences.push(d);
            }
        }
    }
    if differences.is_empty() {
        return None;
    }
    let mut reasons = Vec::new();
    for d in &differences {
        let prefix = format!("{d}:");
        let reason = variants
            .iter()
            .flat_map(|v| &v.not_applicable)
            .find(|na| na.starts_with(&prefix))?;
        reasons.push(reason.clone());
    }
    Some(format!(
        "the settings that set the variants apart cannot act here: {}",
        reasons.join("; ")
    ))
}

/// Why a variant has nothing to measure, if it has not.
fn unusable(name: &str, data: Option<&VariantData<'_>>, metric: &str) -> Option<String> {
    let Some(data) = data else {
        return Some(format!("variant `{name}` is not in this run"));
    };
    let counts = OutcomeCounts::of(&data.statuses);
    if data.statuses.is_empty() {
        return Some(format!("variant `{name}` did not run"));
    }
    if counts.ok == 0 {
        let mut parts = Vec::new();
        if counts.oom > 0 {
            parts.push(format!("{} ran out of memory", counts.oom));
        }
        if counts.failed > 0 {
            parts.push(format!("{} failed", counts.failed));
        }
        return Some(format!(
            "variant `{name}` has no successful process ({})",
            parts.join(", ")
        ));
    }
    if !data.metrics.contains_key(metric) {
        let recorded: Vec<&str> = data.metrics.keys().map(String::as_str).collect();
        let note = if metric.starts_with("peak_") {
            " (CPU runs have no allocator statistics)"
        } else {
            ""
        };
        return Some(format!(
            "variant `{name}` recorded no `{metric}`{note}; recorded: {}",
            recorded.join(", ")
        ));
    }
    None
}

/// Judges one claim against the data of its suite.
pub fn judge_claim(
    claim: &ClaimSpec,
    data: &BTreeMap<String, VariantData<'_>>,
    cfg: &ClaimConfig,
) -> (Judgement, Vec<StepVerdict>) {
    let dimension_of = |metric: &str| Dimension::of_metric(metric).unwrap_or(Dimension::Time);
    // The reason the claim is not applicable, if it is.
    let check_variants = |names: &[&str], metric: &str| -> Result<(), String> {
        for name in names {
            if let Some(reason) = unusable(name, data.get(*name), metric) {
                return Err(reason);
            }
        }
        let found: Vec<&VariantData<'_>> = names.iter().filter_map(|n| data.get(*n)).collect();
        match inert_difference(&found) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    };
    let sample = |name: &str, metric: &str| &data[name].metrics[metric];
    match &claim.check {
        ClaimCheck::NotApplicable { reason } => (Judgement::not_applicable(reason), Vec::new()),
        ClaimCheck::Change {
            metric,
            baseline,
            candidate,
            expected,
        }
        | ClaimCheck::Difference {
            metric,
            baseline,
            candidate,
            expected,
        } => {
            if let Err(reason) = check_variants(&[baseline.as_str(), candidate.as_str()], metric) {
                return (Judgement::not_applicable(reason), Vec::new());
            }
            let (b, c) = (sample(baseline, metric), sample(candidate, metric));
            let j = if matches!(claim.check, ClaimCheck::Change { .. }) {
                judge_change(b, c, dimension_of(metric), expected, cfg)
            } else {
                judge_difference(b, c, dimension_of(metric), expected, cfg)
            };
            (j, Vec::new())
        }
        ClaimCheck::Bound {
            metric,
            variant,
            expected,
        } => {
            if let Err(reason) = check_variants(&[variant.as_str()], metric) {
                return (Judgement::not_applicable(reason), Vec::new());
            }
            let j = judge_bound(sample(variant, metric), dimension_of(metric), expected, cfg);
            (j, Vec::new())
        }
        ClaimCheck::Order {
            metric,
            variants,
            relations,
        } => {
            let names: Vec<&str> = variants.iter().map(String::as_str).collect();
            if let Err(reason) = check_variants(&names, metric) {
                return (Judgement::not_applicable(reason), Vec::new());
            }
            let samples: Vec<(&str, &NestedSample)> =
                names.iter().map(|n| (*n, sample(n, metric))).collect();
            judge_order(&samples, relations, dimension_of(metric), cfg)
        }
        ClaimCheck::Fit {
            variant,
            fits,
            budget_bytes,
        } => {
            let Some(v) = data.get(variant) else {
                return (
                    Judgement::not_applicable(format!("variant `{variant}` is not in this run")),
                    Vec::new(),
                );
            };
            if let Some(na) = v
                .not_applicable
                .iter()
                .find(|na| na.starts_with("vram_budget_gib:"))
            {
                return (
                    Judgement::not_applicable(format!("the budget cannot act here: {na}")),
                    Vec::new(),
                );
            }
            let j = judge_fit(
                *fits,
                *budget_bytes,
                OutcomeCounts::of(&v.statuses),
                v.metrics.get("peak_reserved_bytes"),
                v.cuda_overhead_bytes,
            );
            (j, Vec::new())
        }
    }
}

/// The claimed range in the unit of the effect, for plots.
fn claimed_bounds(check: &ClaimCheck) -> (Option<f64>, Option<f64>) {
    match check {
        ClaimCheck::Change { expected, .. }
        | ClaimCheck::Difference { expected, .. }
        | ClaimCheck::Bound { expected, .. } => (expected.min, expected.max),
        ClaimCheck::Fit {
            fits: true,
            budget_bytes,
            ..
        } => (None, budget_bytes.map(|b| b as f64)),
        _ => (None, None),
    }
}

/// Verdicts on every claim of every suite of a run, each with the sensitivity to flagged
/// samples.
pub fn evaluate(run: &RunRecord, samples: &[SampleRow]) -> Vec<ClaimVerdict> {
    let mut out = Vec::new();
    for suite in &run.suites {
        let cfg = ClaimConfig::for_suite(&suite.plan.compare);
        let all = variant_data(suite, samples, true);
        let unflagged = variant_data(suite, samples, false);
        for claim in &suite.plan.claims {
            let (j, steps) = judge_claim(claim, &all, &cfg);
            let flagged_samples: usize = claim
                .check
                .variants()
                .iter()
                .filter_map(|v| all.get(*v))
                .map(|d| d.flagged)
                .sum();
            let without_flagged =
                (flagged_samples > 0).then(|| judge_claim(claim, &unflagged, &cfg).0.verdict);
            let (claimed_min, claimed_max) = claimed_bounds(&claim.check);
            out.push(ClaimVerdict {
                suite: suite.plan.suite.clone(),
                id: claim.id.clone(),
                source: claim.source.clone(),
                summary: claim.summary.clone(),
                line: claim.line,
                kind: claim.check.kind_name().to_string(),
                metric: claim.check.metric().map(str::to_string),
                variants: claim
                    .check
                    .variants()
                    .iter()
                    .map(|v| v.to_string())
                    .collect(),
                claimed: claim.check.claimed(),
                claimed_min,
                claimed_max,
                verdict: j.verdict,
                effect: j.effect,
                observed: j.observed,
                reason: j.reason,
                steps,
                flagged_samples,
                without_flagged,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::parse_range;

    const MIB: f64 = 1024.0 * 1024.0;
    const GIB: f64 = 1024.0 * MIB;

    fn nested(processes: &[&[f64]]) -> NestedSample {
        NestedSample::new(processes.iter().map(|p| p.to_vec()).collect()).unwrap()
    }

    /// `processes` processes of `calls` calls around `center`, with small deterministic
    /// spread between and within processes.
    fn timed(center: f64, processes: usize, calls: usize) -> NestedSample {
        NestedSample::new(
            (0..processes)
                .map(|p| {
                    (0..calls)
                        .map(|c| center * (1.0 + 0.004 * p as f64 + 0.001 * c as f64))
                        .collect()
                })
                .collect(),
        )
        .unwrap()
    }

    fn relative(text: &str) -> ClaimRange {
        parse_range(text, Dimension::Relative).unwrap()
    }

    fn cfg() -> ClaimConfig {
        ClaimConfig {
            bootstrap: BootstrapConfig::new(2000, 0.95, 3).unwrap(),
            ..ClaimConfig::default()
        }
    }

    #[test]
    fn classify_within_outside_straddling_and_open_ends() {
        let r = relative("-40%..-30%");
        assert_eq!(classify(-0.38, -0.32, &r), ClaimVerdictKind::Confirmed);
        assert_eq!(classify(-0.25, -0.2, &r), ClaimVerdictKind::Refuted);
        assert_eq!(classify(-0.5, -0.45, &r), ClaimVerdictKind::Refuted);
        assert_eq!(classify(-0.35, -0.28, &r), ClaimVerdictKind::Inconclusive);
        let at_most = relative("..-5%");
        assert_eq!(classify(-0.9, -0.1, &at_most), ClaimVerdictKind::Confirmed);
        assert_eq!(classify(0.0, 0.1, &at_most), ClaimVerdictKind::Refuted);
    }

    #[test]
    fn change_on_times_uses_the_process_as_unit() {
        let a = timed(20.0, 4, 5);
        let b = timed(30.0, 4, 5);
        let j = judge_change(&a, &b, Dimension::Time, &relative("40%..60%"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        let e = j.effect.unwrap();
        assert_eq!(e.basis, "per-process medians");
        assert!((e.estimate - 0.5).abs() < 0.01, "{e:?}");
        assert!(e.lower <= 0.5 && e.upper >= 0.5);
        let j = judge_change(&a, &b, Dimension::Time, &relative("-10%"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Refuted, "{}", j.reason);
        assert_eq!(
            j.reason,
            "the interval lies wholly outside the claimed -10%"
        );
        // The interval reaches past 50 % on one side only.
        let j = judge_change(&a, &b, Dimension::Time, &relative("40%..50%"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Inconclusive, "{}", j.reason);
    }

    #[test]
    fn change_with_few_processes_pools_calls_or_is_inconclusive() {
        let (a, b) = (timed(20.0, 2, 6), timed(30.0, 2, 6));
        let j = judge_change(&a, &b, Dimension::Time, &relative("40%..60%"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        assert_eq!(j.effect.unwrap().basis, "pooled calls");
        // 3 vs 3 processes: no 95 % interval exists at the process level.
        let (a, b) = (timed(20.0, 3, 4), timed(30.0, 3, 4));
        let j = judge_change(&a, &b, Dimension::Time, &relative("40%..60%"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Inconclusive, "{}", j.reason);
        assert!(
            j.reason.contains("too few per-process medians"),
            "{}",
            j.reason
        );
    }

    #[test]
    fn change_on_memory_uses_the_tolerance_band() {
        let base = nested(&[&[8.0 * GIB], &[8.0 * GIB]]);
        let half = nested(&[&[4.0 * GIB], &[4.0 * GIB]]);
        let j = judge_change(
            &base,
            &half,
            Dimension::Bytes,
            &relative("-55%..-45%"),
            &cfg(),
        );
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        let e = j.effect.unwrap();
        assert_eq!(e.confidence, None);
        assert!((e.estimate + 0.5).abs() < 1e-12);
        // 1 % of 8 GiB on either side.
        assert!((e.upper - e.lower - 0.02).abs() < 1e-9, "{e:?}");
        let j = judge_change(
            &base,
            &half,
            Dimension::Bytes,
            &relative("-50.5%..-45%"),
            &cfg(),
        );
        assert_eq!(j.verdict, ClaimVerdictKind::Inconclusive, "{}", j.reason);
        let j = judge_change(&base, &half, Dimension::Bytes, &relative("-40%.."), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Refuted);
    }

    #[test]
    fn difference_in_bytes_and_in_time() {
        let base = nested(&[&[7.5 * GIB], &[7.5 * GIB]]);
        let more = nested(&[&[7.8 * GIB], &[7.8 * GIB]]);
        let gib = |t: &str| parse_range(t, Dimension::Bytes).unwrap();
        let j = judge_difference(
            &base,
            &more,
            Dimension::Bytes,
            &gib("0.3GiB ± 0.1GiB"),
            &cfg(),
        );
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        assert!(j.effect.unwrap().text().starts_with("+307.2 MiB"));
        let j = judge_difference(
            &base,
            &more,
            Dimension::Bytes,
            &gib("-1GiB ± 0.2GiB"),
            &cfg(),
        );
        assert_eq!(j.verdict, ClaimVerdictKind::Refuted);

        let ms = |t: &str| parse_range(t, Dimension::Time).unwrap();
        let (a, b) = (timed(100.0, 5, 3), timed(120.0, 5, 3));
        let j = judge_difference(&a, &b, Dimension::Time, &ms("15ms..25ms"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        assert_eq!(j.effect.as_ref().unwrap().basis, "per-process medians");
        let j = judge_difference(&a, &b, Dimension::Time, &ms("..5ms"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Refuted);
    }

    #[test]
    fn bounds_on_counts_memory_and_time() {
        let count = |t: &str| parse_range(t, Dimension::Count).unwrap();
        let evals = nested(&[&[67.0, 67.0], &[67.0]]);
        let j = judge_bound(&evals, Dimension::Count, &count("67"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        assert_eq!(
            judge_bound(&evals, Dimension::Count, &count("100"), &cfg()).verdict,
            ClaimVerdictKind::Refuted
        );
        let bytes = |t: &str| parse_range(t, Dimension::Bytes).unwrap();
        let peak = nested(&[&[7.95 * GIB], &[7.95 * GIB]]);
        assert_eq!(
            judge_bound(&peak, Dimension::Bytes, &bytes("..8GiB"), &cfg()).verdict,
            ClaimVerdictKind::Inconclusive,
            "within the 1 % tolerance of the bound"
        );
        assert_eq!(
            judge_bound(&peak, Dimension::Bytes, &bytes("..9GiB"), &cfg()).verdict,
            ClaimVerdictKind::Confirmed
        );
        let ms = |t: &str| parse_range(t, Dimension::Time).unwrap();
        let t = timed(20.0, 4, 5);
        let j = judge_bound(&t, Dimension::Time, &ms("..25ms"), &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        assert_eq!(j.effect.as_ref().unwrap().basis, "processes and calls");
        assert_eq!(
            judge_bound(&t, Dimension::Time, &ms("..15ms"), &cfg()).verdict,
            ClaimVerdictKind::Refuted
        );
        // Seeded: the same verdict and interval every time.
        assert_eq!(
            judge_bound(&t, Dimension::Time, &ms("..25ms"), &cfg()),
            judge_bound(&t, Dimension::Time, &ms("..25ms"), &cfg())
        );
    }

    #[test]
    fn fit_verdicts() {
        let counts = |ok, oom| OutcomeCounts { ok, oom, failed: 0 };
        let peak = nested(&[&[6.0 * GIB], &[6.2 * GIB]]);
        let budget = Some(8u64 << 30);
        let j = judge_fit(true, budget, counts(2, 0), Some(&peak), Some(512 << 20));
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        assert!(
            j.reason.contains("needs at most 6.70 GiB of 8.00 GiB"),
            "{}",
            j.reason
        );
        let j = judge_fit(true, Some(6u64 << 30), counts(2, 0), Some(&peak), None);
        assert_eq!(j.verdict, ClaimVerdictKind::Refuted, "{}", j.reason);
        assert_eq!(
            judge_fit(true, budget, counts(0, 2), None, None).verdict,
            ClaimVerdictKind::Refuted
        );
        assert_eq!(
            judge_fit(true, budget, counts(1, 1), Some(&peak), None).verdict,
            ClaimVerdictKind::Inconclusive
        );
        assert_eq!(
            judge_fit(true, budget, counts(2, 0), None, None).verdict,
            ClaimVerdictKind::NotApplicable,
            "no peak memory on CPU"
        );
        let j = judge_fit(false, None, counts(0, 3), None, None);
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed);
        assert_eq!(
            j.observed.as_deref(),
            Some("out of memory in 3 of 3 processes")
        );
        assert_eq!(
            judge_fit(false, None, counts(3, 0), Some(&peak), None).verdict,
            ClaimVerdictKind::Refuted
        );
        let crashed = OutcomeCounts {
            ok: 0,
            oom: 0,
            failed: 2,
        };
        assert_eq!(
            judge_fit(false, None, crashed, None, None).verdict,
            ClaimVerdictKind::NotApplicable
        );
    }

    #[test]
    fn orderings_hold_break_or_stay_open() {
        let (fast, mid, slow) = (timed(10.0, 4, 5), timed(20.0, 4, 5), timed(30.0, 4, 5));
        let order = |names: &[(&str, &NestedSample)], rel: &[Relation]| {
            judge_order(names, rel, Dimension::Time, &cfg())
        };
        let (j, steps) = order(
            &[("fast", &fast), ("mid", &mid), ("slow", &slow)],
            &[Relation::Less, Relation::Less],
        );
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        assert_eq!(steps.len(), 2);
        let (j, steps) = order(
            &[("fast", &fast), ("slow", &slow), ("mid", &mid)],
            &[Relation::Less, Relation::Less],
        );
        assert_eq!(j.verdict, ClaimVerdictKind::Refuted);
        assert_eq!(steps[1].verdict, ClaimVerdictKind::Refuted);
        assert!(
            j.reason.starts_with("does not hold: slow < mid"),
            "{}",
            j.reason
        );
        let twin = timed(20.0, 4, 5);
        let (j, _) = order(&[("mid", &mid), ("twin", &twin)], &[Relation::Equal]);
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        let (j, _) = order(&[("mid", &mid), ("twin", &twin)], &[Relation::Less]);
        assert_eq!(j.verdict, ClaimVerdictKind::Inconclusive, "{}", j.reason);

        // Memory: equal within tolerance, strictly ordered beyond it.
        let m = |gib: f64| nested(&[&[gib * GIB], &[gib * GIB]]);
        let (a, b, c) = (m(6.5), m(7.5), m(7.5));
        let (j, _) = judge_order(
            &[("a", &a), ("b", &b), ("c", &c)],
            &[Relation::Less, Relation::Equal],
            Dimension::Bytes,
            &cfg(),
        );
        assert_eq!(j.verdict, ClaimVerdictKind::Confirmed, "{}", j.reason);
        // Equal counts refute a strict order.
        let n = nested(&[&[67.0], &[67.0]]);
        let (j, _) = judge_order(
            &[("x", &n), ("y", &n)],
            &[Relation::Less],
            Dimension::Count,
            &cfg(),
        );
        assert_eq!(j.verdict, ClaimVerdictKind::Refuted);
    }

    #[test]
    fn claims_on_knobs_that_cannot_act_or_on_failed_variants_are_not_applicable() {
        let text = "[suite]\nname = \"s\"\nworkload = \"sleep\"\n\
                    [[variant]]\nname = \"on\"\n\
                    [[variant]]\nname = \"off\"\nknobs = { cudnn.enabled = false }\n\
                    [[claim]]\nid = \"H0-01\"\nsource = \"H0\"\nsummary = \"cuDNN is faster\"\n\
                    change = \"-40%..-30%\"\nbaseline = \"off\"\ncandidate = \"on\"\n";
        let manifest =
            crate::manifest::Manifest::from_str(std::path::Path::new("m.toml"), text).unwrap();
        let plan =
            crate::manifest::build_plan(&manifest, crate::manifest::ProfileChoice::Named("base"))
                .unwrap();
        let data = |plan, statuses: Vec<Status>, not_applicable: &[&str]| VariantData {
            plan,
            statuses,
            metrics: [("wall_ms".to_string(), timed(20.0, 2, 5))]
                .into_iter()
                .collect(),
            not_applicable: not_applicable.iter().map(|s| s.to_string()).collect(),
            cuda_overhead_bytes: None,
            flagged: 0,
        };
        let cpu_note = "cudnn.enabled: acts on CUDA only; this worker runs on CPU";
        let mut variants = BTreeMap::new();
        variants.insert(
            "on".to_string(),
            data(&plan.variants[0], vec![Status::Ok; 2], &[]),
        );
        variants.insert(
            "off".to_string(),
            data(&plan.variants[1], vec![Status::Ok; 2], &[cpu_note]),
        );
        let (j, _) = judge_claim(&plan.claims[0], &variants, &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::NotApplicable);
        assert_eq!(
            j.reason,
            format!("the settings that set the variants apart cannot act here: {cpu_note}")
        );
        // On a GPU the knob acts: the claim is measured (and here refuted: no change).
        variants.get_mut("off").unwrap().not_applicable.clear();
        let (j, _) = judge_claim(&plan.claims[0], &variants, &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::Refuted, "{}", j.reason);
        // A variant whose workers all crashed has nothing to compare.
        variants.get_mut("on").unwrap().statuses = vec![Status::Crashed; 2];
        let (j, _) = judge_claim(&plan.claims[0], &variants, &cfg());
        assert_eq!(j.verdict, ClaimVerdictKind::NotApplicable);
        assert_eq!(
            j.reason,
            "variant `on` has no successful process (2 failed)"
        );
        assert_eq!(
            differing_settings(&plan.variants[0], &plan.variants[1]),
            ["cudnn.enabled"]
        );
    }
}
