//! The verdict types and the helpers every claim kind shares: where an interval lies against
//! a claimed range, and the spread and tolerance of near-deterministic metrics.

use super::ClaimConfig;
use crate::claim::{ClaimRange, Dimension, Relation};
use crate::stats::{InsufficientReplication, NestedSample};
use serde::Serialize;
use std::fmt;

/// The verdict on a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimVerdictKind {
    Refuted,
    Inconclusive,
    /// A time claim with too few processes to judge: the estimate is shown, nothing decided.
    InsufficientReplication,
    Confirmed,
    NotApplicable,
}

impl ClaimVerdictKind {
    pub fn name(self) -> &'static str {
        match self {
            ClaimVerdictKind::Confirmed => "confirmed",
            ClaimVerdictKind::Refuted => "refuted",
            ClaimVerdictKind::Inconclusive => "inconclusive",
            ClaimVerdictKind::InsufficientReplication => "insufficient replication",
            ClaimVerdictKind::NotApplicable => "not applicable",
        }
    }

    pub const ALL: [ClaimVerdictKind; 5] = [
        ClaimVerdictKind::Refuted,
        ClaimVerdictKind::Inconclusive,
        ClaimVerdictKind::InsufficientReplication,
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
    /// What the interval rests on: `per-process medians` (a t interval) or a band
    /// (`range of process medians`, with a tolerance for memory).
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
    pub(super) fn not_applicable(reason: impl Into<String>) -> Self {
        Judgement {
            observed: None,
            verdict: ClaimVerdictKind::NotApplicable,
            effect: None,
            reason: reason.into(),
        }
    }

    /// Too few processes: what was seen, and why it is not judged.
    pub(super) fn insufficient(
        estimate: String,
        medians: &[(&str, Vec<f64>)],
        why: &InsufficientReplication,
    ) -> Self {
        let medians = medians
            .iter()
            .map(|(name, values)| {
                let values: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
                format!("{name} [{}]", values.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ");
        Judgement {
            observed: Some(estimate),
            verdict: ClaimVerdictKind::InsufficientReplication,
            effect: None,
            reason: format!("not judged: {why}; process medians: {medians}"),
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
    /// Whether this verdict fails CI: a refuted claim does, except a time claim refuted at
    /// 95 % but not at the run's family-wise level (see [`super::evaluate`]).
    pub fails_ci: bool,
    /// How the family-wise level was applied, for refuted time claims.
    pub family_wise: Option<String>,
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

pub(super) fn range_judgement(effect: Effect, range: &ClaimRange) -> Judgement {
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
pub(super) fn spread(sample: &NestedSample) -> (f64, f64, f64) {
    let medians = sample.process_medians();
    (medians.median(), medians.min(), medians.max())
}

pub(super) fn tolerance(dimension: Dimension, median: f64, cfg: &ClaimConfig) -> f64 {
    match dimension {
        Dimension::Bytes => cfg.thresholds.memory_tolerance(median),
        _ => 0.0,
    }
}

pub(super) fn band_basis(dimension: Dimension, tol: f64) -> String {
    if tol > 0.0 {
        format!(
            "process medians ± {} tolerance",
            dimension.format(tol).trim_start_matches('+')
        )
    } else {
        "range of process medians".into()
    }
}
