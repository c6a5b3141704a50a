//! `bound` claims: one variant's typical value lies in a range (for time, the median of its
//! process medians with a distribution-free interval, which needs 6 processes).

use super::judgement::{band_basis, range_judgement, spread, tolerance};
use super::{ClaimConfig, Effect, Judgement};
use crate::claim::{ClaimRange, Dimension};
use crate::stats::{InsufficientReplication, NestedSample, MIN_PROCESSES_FOR_MEDIAN};

/// `bound`: the variant's median of `metric` lies in `expected`.
pub fn judge_bound(
    sample: &NestedSample,
    dimension: Dimension,
    expected: &ClaimRange,
    cfg: &ClaimConfig,
) -> Judgement {
    let effect = if dimension == Dimension::Time {
        let m = match sample.median_interval(cfg.confidence) {
            Ok(m) => m,
            Err(e) => return super::change::inconclusive(&e),
        };
        if m.confidence.is_none() {
            let medians = sample.process_medians();
            return Judgement::insufficient(
                format!("{} at the median", dimension.format(m.estimate)),
                &[("process medians", medians.values().to_vec())],
                &InsufficientReplication {
                    processes: vec![m.processes],
                    required: MIN_PROCESSES_FOR_MEDIAN,
                },
            );
        }
        Effect {
            dimension,
            estimate: m.estimate,
            lower: m.lower,
            upper: m.upper,
            confidence: m.confidence,
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
