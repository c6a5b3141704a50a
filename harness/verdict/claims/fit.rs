//! `fit` claims: a variant runs within its VRAM budget, or runs out of memory.

use super::judgement::spread;
use super::{ClaimVerdictKind, Effect, Judgement};
use crate::claim::Dimension;
use crate::stats::NestedSample;
use crate::worker::protocol::Status;

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
