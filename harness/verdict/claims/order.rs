//! `order` claims: variants in ascending order of a metric, judged step by step.

use super::change::relative_effect;
use super::judgement::{classify, spread, tolerance};
use super::{ClaimConfig, ClaimVerdictKind, Effect, Judgement, StepVerdict};
use crate::claim::{ClaimRange, Dimension, Relation};
use crate::stats::NestedSample;

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

/// `order`: every step holds → confirmed; any step reversed → refuted; a step judged and
/// undecided → inconclusive; otherwise a step could not be judged (insufficient replication).
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
        .find(|s| s.verdict == ClaimVerdictKind::Inconclusive)
    {
        Judgement {
            observed: None,
            verdict: ClaimVerdictKind::Inconclusive,
            effect: None,
            reason: format!("undecided: {}", describe(open)),
        }
    } else if let Some(unjudged) = steps
        .iter()
        .find(|s| s.verdict != ClaimVerdictKind::Confirmed)
    {
        // Too few processes for a step: the ordering was not judged, which is not the same as
        // judged and undecided (and, unlike that, never fails CI).
        Judgement {
            observed: None,
            verdict: unjudged.verdict,
            effect: None,
            reason: describe(unjudged),
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
