//! `change` and `difference` claims: the effect of `candidate` against `baseline`.

use super::judgement::{band_basis, range_judgement, spread, tolerance};
use super::{ClaimConfig, ClaimVerdictKind, Effect, Judgement};
use crate::claim::{ClaimRange, Dimension};
use crate::stats::{check_replication, welch_difference, Basis, NestedSample};
use crate::verdict::regression::{compare, CompareConfig, MetricKind};
use std::fmt;

/// Interval of the relative change `candidate / baseline − 1`; for times Welch's interval on
/// log process medians, else the tolerance band. `Err` carries the judgement when there is no
/// interval (too few processes, unusable data).
pub(super) fn relative_effect(
    baseline: &NestedSample,
    candidate: &NestedSample,
    dimension: Dimension,
    cfg: &ClaimConfig,
) -> Result<Effect, Box<Judgement>> {
    if dimension == Dimension::Time {
        let config =
            CompareConfig::for_claims(cfg.confidence).map_err(|e| Box::new(inconclusive(&e)))?;
        let c = compare(
            "claim",
            "time",
            MetricKind::Time,
            baseline,
            candidate,
            &config,
        )
        .map_err(|e| Box::new(inconclusive(&e)))?;
        if let Some(why) = c.insufficient() {
            return Err(Box::new(Judgement::insufficient(
                format!("{:+.1} % at the medians", 100.0 * c.relative_change()),
                &[
                    ("baseline", c.baseline().process_medians.clone()),
                    ("candidate", c.candidate().process_medians.clone()),
                ],
                why,
            )));
        }
        let interval = c.interval().ok_or_else(|| {
            Box::new(Judgement::not_applicable(
                "no interval for this comparison".to_string(),
            ))
        })?;
        return Ok(Effect {
            dimension: Dimension::Relative,
            estimate: c.relative_change(),
            lower: interval.lower(),
            upper: interval.upper(),
            confidence: Some(interval.confidence()),
            basis: Basis::PerProcessMedians.to_string(),
            signed: true,
        });
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
        let (b, c) = (baseline.process_medians(), candidate.process_medians());
        if let Err(why) = check_replication(&[baseline, candidate]) {
            let estimate = dimension.format_signed(c.median() - b.median());
            return Judgement::insufficient(
                format!("{estimate} at the medians"),
                &[
                    ("baseline", b.values().to_vec()),
                    ("candidate", c.values().to_vec()),
                ],
                &why,
            );
        }
        let t = match welch_difference(&b, &c, cfg.confidence) {
            Ok(t) => t,
            Err(e) => return inconclusive(&e),
        };
        let effect = Effect {
            dimension,
            estimate: t.estimate,
            lower: t.interval.lower(),
            upper: t.interval.upper(),
            confidence: Some(t.interval.confidence()),
            basis: Basis::PerProcessMedians.to_string(),
            signed: true,
        };
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
