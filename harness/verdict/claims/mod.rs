//! Claim verdicts: does what a run measured agree with what a note claims?
//!
//! Each claim gets one of five verdicts, with the measured effect, its interval and a one-line
//! reason:
//! * **confirmed**: the interval lies wholly within the claimed range;
//! * **refuted**: the interval lies wholly outside it;
//! * **inconclusive**: the interval straddles an end of the range;
//! * **insufficient replication**: a time claim whose variants ran fewer than
//!   [`MIN_PROCESSES_PER_SIDE`] processes: the estimate and process medians are shown, nothing
//!   is decided, CI never fails on it;
//! * **not applicable**: the claim is marked so, a variant did not run or failed, the metric
//!   was not recorded, or the knobs that set the variants apart cannot act where the workers ran
//!   (cuDNN flags on a CPU run, as the workers report in `hello.not_applicable`).
//!
//! The statistics are those of the regression gate ([`super::regression`]): for times,
//! Welch's interval on per-process medians (of the log ratio for changes and orderings, of the
//! difference for differences) and the t interval of one variant's log process medians for
//! bounds. Memory and counts are near-deterministic, so their "interval" is the range of the
//! per-process medians widened by the suite's memory tolerance (none for counts): a tolerance
//! band rather than a confidence interval.
//!
//! **Multiplicity.** Intervals are shown at 95 %. A run judges many time claims, so a refuted
//! time claim fails CI only when it is also refuted at the run's family-wise level: intervals
//! at `1 − 0.05 / k` for the `k` time claims judged in the run (Bonferroni). Band verdicts
//! (memory, fit, counts) are not probabilistic and fail CI when refuted. Everything is
//! deterministic: the same record gives the same verdicts.

mod bound;
mod change;
mod data;
mod fit;
mod judgement;
mod order;
#[cfg(test)]
mod tests;

pub use bound::judge_bound;
pub use change::{judge_change, judge_difference};
pub use data::{differing_settings, row_metrics, variant_data, VariantData};
pub use fit::{judge_fit, OutcomeCounts};
pub use judgement::{classify, ClaimVerdict, ClaimVerdictKind, Effect, Judgement, StepVerdict};
pub use order::{judge_order, judge_step};

use super::regression::Thresholds;
use crate::claim::{ClaimCheck, ClaimSpec, Dimension};
use crate::plan::CompareSettings;
use crate::stats::NestedSample;
#[cfg(doc)]
use crate::stats::MIN_PROCESSES_PER_SIDE;
use crate::store::{RunRecord, SampleRow};
use data::{inert_difference, unusable};
use std::collections::BTreeMap;

/// Statistical settings of claim verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClaimConfig {
    pub confidence: f64,
    /// Time threshold (for `=` in orderings) and memory tolerance.
    pub thresholds: Thresholds,
}

impl ClaimConfig {
    /// The suite's `[compare]` settings: its time threshold and memory tolerance apply to
    /// claims too; 95 % intervals.
    pub fn for_suite(settings: &CompareSettings) -> Self {
        ClaimConfig {
            thresholds: Thresholds::for_metric(settings, "wall_ms"),
            ..ClaimConfig::default()
        }
    }
}

impl Default for ClaimConfig {
    fn default() -> Self {
        ClaimConfig {
            confidence: 0.95,
            thresholds: Thresholds::default(),
        }
    }
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

/// Family-wise significance level of time claims over a run.
pub const FAMILY_ALPHA: f64 = 0.05;

/// Whether a claim's verdict rests on a confidence interval of time (and so counts in the
/// run's family of time claims).
fn is_time_claim(claim: &ClaimSpec) -> bool {
    matches!(
        claim.check,
        ClaimCheck::Change { .. }
            | ClaimCheck::Difference { .. }
            | ClaimCheck::Bound { .. }
            | ClaimCheck::Order { .. }
    ) && claim
        .check
        .metric()
        .and_then(Dimension::of_metric)
        .is_some_and(|d| d == Dimension::Time)
}

/// Verdicts on every claim of every suite of a run, each with the sensitivity to flagged
/// samples and whether it fails CI (see the module documentation on multiplicity).
pub fn evaluate(run: &RunRecord, samples: &[SampleRow]) -> Vec<ClaimVerdict> {
    let mut out = Vec::new();
    // Refuted time claims (index in `out`, claim, config, suite index), re-judged at the
    // family-wise level once the family is known.
    let mut refuted_time: Vec<(usize, &ClaimSpec, ClaimConfig, usize)> = Vec::new();
    let mut judged_time_claims = 0;
    let datasets: Vec<_> = run
        .suites
        .iter()
        .map(|suite| variant_data(suite, samples, true))
        .collect();
    for (suite_index, (suite, all)) in run.suites.iter().zip(&datasets).enumerate() {
        let cfg = ClaimConfig::for_suite(&suite.plan.compare);
        let unflagged = variant_data(suite, samples, false);
        for claim in &suite.plan.claims {
            let (j, steps) = judge_claim(claim, all, &cfg);
            let time = is_time_claim(claim);
            let decided = matches!(
                j.verdict,
                ClaimVerdictKind::Confirmed
                    | ClaimVerdictKind::Refuted
                    | ClaimVerdictKind::Inconclusive
            );
            if time && decided {
                judged_time_claims += 1;
            }
            if time && j.verdict == ClaimVerdictKind::Refuted {
                refuted_time.push((out.len(), claim, cfg, suite_index));
            }
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
                fails_ci: j.verdict == ClaimVerdictKind::Refuted,
                verdict: j.verdict,
                effect: j.effect,
                observed: j.observed,
                reason: j.reason,
                steps,
                flagged_samples,
                without_flagged,
                family_wise: None,
            });
        }
    }
    let level = 1.0 - FAMILY_ALPHA / judged_time_claims.max(1) as f64;
    for (index, claim, cfg, suite) in refuted_time {
        let strict = ClaimConfig {
            confidence: level,
            ..cfg
        };
        let (j, _) = judge_claim(claim, &datasets[suite], &strict);
        let v = &mut out[index];
        v.fails_ci = j.verdict == ClaimVerdictKind::Refuted;
        v.family_wise = Some(format!(
            "{} at the run's family-wise level ({:.2} % intervals, Bonferroni over {} time claims){}",
            if v.fails_ci { "also refuted" } else { "not refuted" },
            100.0 * level,
            judged_time_claims,
            if v.fails_ci { "" } else { ": does not fail CI" }
        ));
    }
    out
}
