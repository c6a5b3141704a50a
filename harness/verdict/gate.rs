//! The regression gate: every (variant, metric) of a run against its baseline, with the
//! multiple-comparison correction applied over the whole run (every time comparison of every
//! suite is one family, so the chance of a false alarm is bounded per run, not per suite) and
//! the manifest's thresholds, plus the cases statistics cannot judge (a variant that now runs
//! out of memory, a changed configuration, a missing baseline).

use super::regression::{
    apply_correction, compare, verdict, CompareConfig, Comparison, MetricKind, Thresholds,
    VerdictKind,
};
use crate::plan::CompareSettings;
use crate::stats::{Interval, NestedSample};
use crate::store::baseline::{metric_values, Baseline, BaselineKey, ProcessValues};
use crate::store::{RunRecord, SampleRow, SuiteRecord};
use crate::worker::protocol::Status;
use serde::Serialize;
use std::collections::BTreeMap;

/// Metrics every comparison covers; others (stage times) when the manifest sets a threshold.
/// The host's peak RSS is the one memory metric a CPU run has.
pub const DEFAULT_METRICS: &[&str] = &[
    "wall_ms",
    "peak_allocated_bytes",
    "peak_reserved_bytes",
    "host_peak_rss_bytes",
];

/// The verdict of one gate entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateVerdict {
    Regression,
    Improvement,
    Unchanged,
    Inconclusive,
    /// Too few processes for a time verdict: shown, never a failure.
    InsufficientReplication,
    /// Could not be compared (no baseline, changed configuration, failed workers).
    NotCompared,
}

impl GateVerdict {
    pub fn name(self) -> &'static str {
        match self {
            GateVerdict::Regression => "regression",
            GateVerdict::Improvement => "improvement",
            GateVerdict::Unchanged => "unchanged",
            GateVerdict::Inconclusive => "inconclusive",
            GateVerdict::InsufficientReplication => "insufficient replication",
            GateVerdict::NotCompared => "not compared",
        }
    }
}

impl From<VerdictKind> for GateVerdict {
    fn from(k: VerdictKind) -> Self {
        match k {
            VerdictKind::Regression => GateVerdict::Regression,
            VerdictKind::Improvement => GateVerdict::Improvement,
            VerdictKind::Unchanged => GateVerdict::Unchanged,
            VerdictKind::Inconclusive => GateVerdict::Inconclusive,
            VerdictKind::InsufficientReplication => GateVerdict::InsufficientReplication,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GateEntry {
    pub suite: String,
    /// Configuration differences from the baseline (`knobs.cudnn_enabled: true → false`).
    pub config_changes: Vec<String>,
    pub variant: String,
    /// A metric name, or `outcome` for out-of-memory transitions.
    pub metric: String,
    pub verdict: GateVerdict,
    pub baseline_median: Option<f64>,
    pub candidate_median: Option<f64>,
    /// `candidate / baseline − 1`.
    pub relative_change: Option<f64>,
    pub interval: Option<Interval>,
    pub p_raw: Option<f64>,
    pub p_adjusted: Option<f64>,
    pub processes: (usize, usize),
    pub reason: String,
    pub comparison: Option<Comparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub candidate_run: String,
    pub baselines: Vec<String>,
    /// Fingerprint differences the user allowed with `--allow-mismatch`.
    pub mismatches: Vec<String>,
    pub entries: Vec<GateEntry>,
    /// Per suite: correction applied (over the whole run) and significance level.
    pub corrections: BTreeMap<String, String>,
}

impl GateReport {
    pub fn count(&self, verdict: GateVerdict) -> usize {
        self.entries.iter().filter(|e| e.verdict == verdict).count()
    }
}

fn not_compared(suite: &str, variant: &str, metric: &str, reason: String) -> GateEntry {
    GateEntry {
        suite: suite.into(),
        config_changes: Vec::new(),
        variant: variant.into(),
        metric: metric.into(),
        verdict: GateVerdict::NotCompared,
        baseline_median: None,
        candidate_median: None,
        relative_change: None,
        interval: None,
        p_raw: None,
        p_adjusted: None,
        processes: (0, 0),
        reason,
        comparison: None,
    }
}

/// Candidate values of one variant: metric → per-process values, from its measured rows
/// ([`SuiteRecord::measured_rows`]).
fn candidate_metrics(rows: &[&SampleRow]) -> BTreeMap<String, ProcessValues> {
    let mut by: BTreeMap<String, BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for row in rows {
        for (name, value) in metric_values(row) {
            by.entry(name)
                .or_default()
                .entry(row.process)
                .or_default()
                .push(value);
        }
    }
    by.into_iter()
        .map(|(k, v)| (k, v.into_values().collect()))
        .collect()
}

fn outcome_summary(statuses: &[Status]) -> (bool, bool) {
    let all_oom = !statuses.is_empty() && statuses.iter().all(|s| *s == Status::Oom);
    let any_ok = statuses.contains(&Status::Ok);
    (all_oom, any_ok)
}

/// A comparison waiting for the run-wide correction, and the entry it fills.
struct Pending<'a> {
    entry: usize,
    comparison: Comparison,
    settings: &'a CompareSettings,
}

/// Compares one suite of a run with its baseline: entries, with placeholders for the
/// comparisons (indexes into the returned entries) that the run-wide correction completes. A
/// variant whose configuration changed since the baseline is not compared (its difference
/// would be the configuration's, not the code's) unless `allow_config_change`, when it is
/// compared and its entries say so.
fn gate_suite<'a>(
    suite: &'a SuiteRecord,
    samples: &[SampleRow],
    baseline: &Baseline,
    allow_config_change: bool,
) -> (Vec<GateEntry>, Vec<Pending<'a>>) {
    let name = &suite.plan.suite;
    let settings = &suite.plan.compare;
    let config = CompareConfig::default();
    let mut entries = Vec::new();
    let mut comparisons: Vec<Pending<'a>> = Vec::new();
    let processes = suite.processes_by_variant();
    let rows = suite.measured_rows(samples);
    for v in &suite.plan.variants {
        let Some(base) = baseline.variant(&v.name) else {
            entries.push(not_compared(
                name,
                &v.name,
                "*",
                "not in the baseline".into(),
            ));
            continue;
        };
        // Matched by name, as criterion and Bencher do, then by configuration hash.
        let changes = base.config_changes(v);
        if !changes.is_empty() && !allow_config_change {
            entries.push(GateEntry {
                config_changes: changes,
                ..not_compared(
                    name,
                    &v.name,
                    "*",
                    "not compared: configuration changed (--allow-config-change compares anyway)"
                        .into(),
                )
            });
            continue;
        }
        let first_entry = entries.len();
        let statuses: Vec<Status> = processes
            .get(v.name.as_str())
            .into_iter()
            .flatten()
            .map(|p| p.status)
            .collect();
        let (cand_oom, cand_ok) = outcome_summary(&statuses);
        let (base_oom, base_ok) = outcome_summary(&base.outcomes);
        let oom_entry = |verdict, reason: &str| GateEntry {
            verdict,
            reason: reason.into(),
            config_changes: changes.clone(),
            ..not_compared(name, &v.name, "outcome", String::new())
        };
        match (base_ok, cand_ok) {
            (true, false) if cand_oom => {
                entries.push(oom_entry(
                    GateVerdict::Regression,
                    "runs out of memory; the baseline fit",
                ));
                continue;
            }
            (false, true) if base_oom => {
                entries.push(oom_entry(
                    GateVerdict::Improvement,
                    "fits now; the baseline ran out of memory",
                ));
                continue;
            }
            (false, false) if base_oom && cand_oom => {
                entries.push(oom_entry(
                    GateVerdict::Unchanged,
                    "runs out of memory, as in the baseline",
                ));
                continue;
            }
            (_, false) => {
                entries.push(not_compared(
                    name,
                    &v.name,
                    "*",
                    "no successful worker in this run".into(),
                ));
                continue;
            }
            (false, _) => {
                entries.push(not_compared(
                    name,
                    &v.name,
                    "*",
                    "no successful worker in the baseline".into(),
                ));
                continue;
            }
            (true, true) => {}
        }
        let candidate = candidate_metrics(rows.get(v.name.as_str()).map_or(&[][..], Vec::as_slice));
        let metrics: Vec<String> = DEFAULT_METRICS
            .iter()
            .map(|m| m.to_string())
            .chain(settings.metric_thresholds.keys().cloned())
            .collect();
        for metric in metrics {
            let (b, c) = match (base.metrics.get(&metric), candidate.get(&metric)) {
                (Some(b), Some(c)) => (b, c),
                // Allocator peaks exist only on a GPU (RSS only where getrusage answers): absent on
                // both sides, nothing to say.
                (None, None) if metric.ends_with("_bytes") => continue,
                (b, c) => {
                    let missing = match (b, c) {
                        (None, None) => "neither in the baseline nor in this run",
                        (None, Some(_)) => "in the baseline",
                        _ => "in this run",
                    };
                    entries.push(not_compared(
                        name,
                        &v.name,
                        &metric,
                        format!("no `{metric}` values {missing}"),
                    ));
                    continue;
                }
            };
            let kind = MetricKind::of_metric(&metric);
            let built =
                NestedSample::new(b.clone()).and_then(|b| Ok((b, NestedSample::new(c.clone())?)));
            match built.and_then(|(b, c)| compare(&v.name, &metric, kind, &b, &c, &config)) {
                Ok(comparison) => comparisons.push(Pending {
                    entry: entries.len(),
                    comparison,
                    settings,
                }),
                Err(e) => {
                    entries.push(not_compared(
                        name,
                        &v.name,
                        &metric,
                        format!("cannot compare: {e}"),
                    ));
                    continue;
                }
            }
            // Placeholder slot, filled once the correction has seen the whole family.
            entries.push(not_compared(name, &v.name, &metric, String::new()));
        }
        for e in &mut entries[first_entry..] {
            e.config_changes = changes.clone();
        }
    }
    (entries, comparisons)
}

/// Applies each suite's correction over every tested comparison of the run, then judges them
/// into their entries.
fn judge_run(entries: &mut [GateEntry], pending: Vec<Pending<'_>>) {
    let mut family: Vec<Comparison> = pending.iter().map(|p| p.comparison.clone()).collect();
    let mut corrected: BTreeMap<&'static str, Vec<Comparison>> = BTreeMap::new();
    for p in &pending {
        corrected
            .entry(p.settings.correction.name())
            .or_insert_with(|| {
                apply_correction(&mut family, p.settings.correction);
                family.clone()
            });
    }
    for (i, p) in pending.iter().enumerate() {
        let cmp = corrected[p.settings.correction.name()][i].clone();
        let v = verdict(&cmp, &Thresholds::for_metric(p.settings, cmp.metric()));
        let e = &mut entries[p.entry];
        e.verdict = v.kind.into();
        e.baseline_median = Some(cmp.baseline().median);
        e.candidate_median = Some(cmp.candidate().median);
        e.relative_change = Some(v.relative_change);
        e.interval = v.interval;
        e.p_raw = v.p_raw;
        e.p_adjusted = v.p_adjusted;
        e.processes = (cmp.baseline().processes, cmp.candidate().processes);
        e.reason = if e.config_changes.is_empty() {
            v.reason
        } else {
            format!(
                "{}; compared despite a configuration change (--allow-config-change)",
                v.reason
            )
        };
        e.comparison = Some(cmp);
    }
}

/// Runs the gate for every suite of `run` that has a baseline in `baselines`;
/// `allow_config_change` compares variants whose configuration changed since the baseline.
pub fn gate(
    run: &RunRecord,
    samples: &[SampleRow],
    baselines: &[Baseline],
    mismatches: Vec<String>,
    allow_config_change: bool,
) -> GateReport {
    let mut entries = Vec::new();
    let mut pending = Vec::new();
    let mut corrections = BTreeMap::new();
    for suite in &run.suites {
        corrections.insert(
            suite.plan.suite.clone(),
            format!(
                "{} over the run (α = {})",
                suite.plan.compare.correction.name(),
                suite.plan.compare.alpha
            ),
        );
        match baselines.iter().find(|b| b.suite == suite.plan.suite) {
            Some(b) => {
                let (suite_entries, suite_pending) =
                    gate_suite(suite, samples, b, allow_config_change);
                let offset = entries.len();
                entries.extend(suite_entries);
                pending.extend(suite_pending.into_iter().map(|p| Pending {
                    entry: p.entry + offset,
                    ..p
                }));
            }
            None => entries.push(not_compared(
                &suite.plan.suite,
                "*",
                "*",
                format!(
                    "no baseline for this suite under {}; create one with `claimbench baseline save {}`",
                    BaselineKey::of(&run.fingerprint, &suite.plan.profile).dir_name(),
                    run.id
                ),
            )),
        }
    }
    judge_run(&mut entries, pending);
    GateReport {
        candidate_run: run.id.clone(),
        baselines: baselines
            .iter()
            .map(|b| format!("{} (from {})", b.suite, b.source_run))
            .collect(),
        mismatches,
        entries,
        corrections,
    }
}
