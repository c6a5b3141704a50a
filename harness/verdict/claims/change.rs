//! `change` and `difference` claims: the effect of `candidate` against `baseline`.

use super::judgement::{band_basis, range_judgement, spread, tolerance};
use super::{ClaimConfig, ClaimVerdictKind, Effect, Judgement};
use crate::claim::{ClaimRange, Dimension};
use crate::stats::{comparison_unit, two_sample, NestedSample, Unit};
use crate::verdict::regression::{
    compare, CompareConfig, ComparisonWarning, MetricKind, MIN_PROCESSES_PER_SIDE,
};
use std::fmt;

/// Interval of the relative change `candidate / baseline − 1`; for times the Hodges–Lehmann
/// ratio interval, else the tolerance band. `Err` carries a reason for an inconclusive or
/// inapplicable result.
pub(super) fn relative_effect(
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
        let basis = c.unit().unwrap_or(Unit::Call).basis();
        let effect = Effect {
            dimension: Dimension::Relative,
            estimate: c.relative_change(),
            lower: interval.lower(),
            upper: interval.upper(),
            confidence: Some(interval.confidence()),
            basis: basis.to_string(),
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

pub(super) fn inconclusive(e: &dyn fmt::Display) -> Judgement {
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
        let unit = comparison_unit(baseline, candidate);
        let basis = unit.basis();
        let (b, c) = (baseline.values_in(unit), candidate.values_in(unit));
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
            basis: basis.to_string(),
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
