//! `bound` claims: one variant's median lies in a range.

use super::judgement::{band_basis, range_judgement, spread, tolerance};
use super::{ClaimConfig, Effect, Judgement};
use crate::claim::{ClaimRange, Dimension};
use crate::stats::NestedSample;

/// `bound`: the variant's median of `metric` lies in `expected`.
pub fn judge_bound(
    sample: &NestedSample,
    dimension: Dimension,
    expected: &ClaimRange,
    cfg: &ClaimConfig,
) -> Judgement {
    let effect = if dimension == Dimension::Time {
        let m = sample.median_interval(&cfg.bootstrap);
        Effect {
            dimension,
            estimate: m.median,
            lower: m.interval.lower(),
            upper: m.interval.upper(),
            confidence: Some(m.interval.confidence()),
            basis: m.basis.to_string(),
            signed: false,
        }
    } else {
        let (median, min, max) = spread(sample);
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
