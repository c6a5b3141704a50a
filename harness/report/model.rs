//! Everything a report shows, computed once from a run record (plus the regression gate and
//! earlier runs when available) so that every format says the same thing. Serialised as
//! `report.json`.

use crate::plan::VariantPlan;
use crate::stats::{MedianInterval, NestedSample};
use crate::store::baseline::config_hash;
use crate::store::{ProcessRecord, RunRecord, SampleRow};
use crate::verdict::claims::{self, ClaimVerdict, ClaimVerdictKind};
use crate::verdict::gate::{GateReport, GateVerdict};
use crate::worker::protocol::Status;
use serde::Serialize;
use std::collections::BTreeMap;

/// `major.minor` of `report.json`.
pub const REPORT_FORMAT_VERSION: &str = "1.0";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format_version: String,
    pub run: RunSummary,
    pub suites: Vec<SuiteSummary>,
    pub claims: Vec<ClaimVerdict>,
    /// The regression gate, when the run was compared with a baseline.
    pub gate: Option<GateReport>,
    pub quality: Quality,
    /// Median wall time per variant over earlier runs of the same suites, oldest first.
    pub trends: Vec<TrendSeries>,
    /// Change points in the metric histories of the run's suites, as they stood at this run.
    pub shifts: Vec<crate::store::history::Shift>,
    /// Configurations run both by a replica and by the real code, side by side.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fidelity: Vec<super::fidelity::FidelityRow>,
    /// Processes that ran clearly slower than others of their variant, and what their host did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slow_processes: Vec<super::slow::SlowProcess>,
    /// Processes whose measured calls began holding device memory their first call did not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held_between_calls: Vec<super::held::HeldMemory>,
}

/// Where and when the run was measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub interrupted: bool,
    /// Why the run was cut short (interrupted, or never finished), when it was.
    pub incomplete: Option<String>,
    /// `cuda:0` or `cpu`.
    pub device: String,
    pub gpu: Option<String>,
    pub torch: Option<String>,
    pub cudnn: Option<i64>,
    pub cuda: Option<i64>,
    pub harness_version: String,
    pub git_commit: String,
    pub host: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuiteSummary {
    pub suite: String,
    pub description: Option<String>,
    pub profile: String,
    pub manifest_path: String,
    pub variants: Vec<VariantSummary>,
    /// Every worker process and how it ended, in the order they ran.
    pub workers: Vec<WorkerOutcome>,
}

/// How one worker process ended.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerOutcome {
    pub variant: String,
    pub process: u32,
    /// `ok`, `oom`, `error`, `crashed`, `timeout`, `interrupted`, `spawn_failed`.
    pub status: String,
    /// The worker's error, or the tail of its log for a crash.
    pub message: Option<String>,
    /// Crashed, timed out, failed or could not start: the run's exit code says so. Running out
    /// of memory is a measurement and an interrupted worker was stopped on request.
    pub failed: bool,
}

impl WorkerOutcome {
    fn of(p: &crate::store::ProcessRecord) -> Self {
        WorkerOutcome {
            variant: p.variant.clone(),
            process: p.process,
            status: p.status.as_str().to_string(),
            message: p.message.clone(),
            failed: !matches!(p.status, Status::Ok | Status::Oom | Status::Interrupted),
        }
    }
}

/// The typical value of a metric with its interval.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    /// Geometric mean of the process medians with enough processes for an interval, else
    /// the median of the process medians.
    pub median: f64,
    pub lower: f64,
    pub upper: f64,
    /// The t interval's level; `None` when `lower..upper` is only the range of too few
    /// process medians.
    pub confidence: Option<f64>,
    /// `per-process medians` or `range of process medians`.
    pub basis: String,
    pub processes: usize,
}

impl MetricSummary {
    /// `[1.20 ms, 1.31 ms]` for an interval, `range 1.20 ms..1.31 ms (2 proc.)` otherwise: a
    /// range of too few processes is never labelled a confidence interval.
    pub fn interval_text(&self) -> String {
        let (lo, hi) = (
            crate::claim::Dimension::Time.format(self.lower),
            crate::claim::Dimension::Time.format(self.upper),
        );
        match self.confidence {
            Some(_) => format!("[{lo}, {hi}]"),
            None => format!("range {lo}..{hi} ({} proc.)", self.processes),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantSummary {
    pub name: String,
    pub description: Option<String>,
    /// Process outcome → count (`ok`, `oom`, `crashed`, …).
    pub outcomes: BTreeMap<String, usize>,
    pub processes: usize,
    /// Measured calls of processes that ended normally.
    pub calls: usize,
    pub flagged: usize,
    /// Flag name → measured calls carrying it.
    pub flags: BTreeMap<String, usize>,
    pub wall_ms: Option<MetricSummary>,
    pub gpu_ms: Option<MetricSummary>,
    /// Medians of the per-process medians.
    pub peak_allocated_bytes: Option<f64>,
    pub peak_reserved_bytes: Option<f64>,
    /// The emulated card size (`knobs.vram_budget_gib`) in bytes.
    pub budget_bytes: Option<f64>,
    /// Median time of each stage, in the order the workload reports them.
    pub stages: Vec<(String, f64)>,
    /// Measured wall times grouped by process, for distribution plots.
    pub wall_ms_by_process: Vec<Vec<f64>>,
    /// What the first out-of-memory worker reported (request size, budget), if anything.
    pub oom: Option<String>,
}

/// How many samples carried quality flags, and which verdicts depend on them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    pub measured: usize,
    pub flagged: usize,
    pub by_flag: BTreeMap<String, usize>,
    /// Claims whose verdict differs with flagged samples left out.
    pub claims_changed: Vec<VerdictChange>,
    /// Gate entries whose verdict differs with flagged samples left out.
    pub gate_changed: Vec<VerdictChange>,
}

impl Quality {
    /// One sentence: how many measured samples were flagged, and by which flags (plain text;
    /// renderers escape it).
    pub fn summary(&self) -> String {
        if self.flagged == 0 {
            format!(
                "None of the {} measured samples was flagged.",
                self.measured
            )
        } else {
            format!(
                "{} of {} measured samples flagged ({}).",
                self.flagged,
                self.measured,
                self.by_flag_text()
            )
        }
    }

    /// `low_clock 2, throttled 1`.
    pub fn by_flag_text(&self) -> String {
        let by: Vec<String> = self
            .by_flag
            .iter()
            .map(|(flag, n)| format!("{flag} {n}"))
            .collect();
        by.join(", ")
    }

    /// Every verdict that changes when flagged samples are left out, one line each (plain
    /// text): `suite T0-01: confirmed → inconclusive without them`.
    pub fn changes(&self) -> Vec<String> {
        self.claims_changed
            .iter()
            .chain(&self.gate_changed)
            .map(|c| {
                format!(
                    "{}: {} → {} without them",
                    c.what, c.with_flagged, c.without_flagged
                )
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerdictChange {
    /// `suite claim-id` or `suite/variant metric`.
    pub what: String,
    pub with_flagged: String,
    pub without_flagged: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendSeries {
    pub suite: String,
    pub variant: String,
    pub points: Vec<TrendPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendPoint {
    pub run: String,
    pub started_at: String,
    /// Median wall time (ms) of the variant in that run.
    pub wall_ms: f64,
}

impl Report {
    /// Builds the report. `gate_without_flagged` is the gate recomputed without flagged
    /// samples (same entry order), when there is a gate.
    pub fn build(
        run: &RunRecord,
        samples: &[SampleRow],
        gate: Option<GateReport>,
        gate_without_flagged: Option<&GateReport>,
        trends: Vec<TrendSeries>,
    ) -> Report {
        let claims = claims::evaluate(run, samples);
        let suites: Vec<SuiteSummary> = run
            .suites
            .iter()
            .map(|suite| {
                let data = claims::variant_data(suite, samples, true);
                let processes = suite.processes_by_variant();
                let rows = suite.measured_rows(samples);
                let of = |v: &VariantPlan| {
                    let name = v.name.as_str();
                    (
                        processes.get(name).map_or(&[][..], Vec::as_slice),
                        rows.get(name).map_or(&[][..], Vec::as_slice),
                    )
                };
                SuiteSummary {
                    suite: suite.plan.suite.clone(),
                    description: suite.plan.description.clone(),
                    profile: suite.plan.profile.clone(),
                    manifest_path: suite.plan.manifest_path.clone(),
                    variants: suite
                        .plan
                        .variants
                        .iter()
                        .map(|v| {
                            let (records, rows) = of(v);
                            variant_summary(v, data.get(&v.name), records, rows)
                        })
                        .collect(),
                    workers: suite.processes.iter().map(WorkerOutcome::of).collect(),
                }
            })
            .collect();
        let mut quality = Quality::default();
        for row in samples.iter().filter(|s| !s.warmup) {
            quality.measured += 1;
            if !row.flags.is_empty() {
                quality.flagged += 1;
            }
            for flag in &row.flags {
                *quality.by_flag.entry(flag.clone()).or_default() += 1;
            }
        }
        quality.claims_changed = claims
            .iter()
            .filter_map(|c| {
                let without = c.without_flagged?;
                (without != c.verdict).then(|| VerdictChange {
                    what: format!("{} {}", c.suite, c.id),
                    with_flagged: c.verdict.name().into(),
                    without_flagged: without.name().into(),
                })
            })
            .collect();
        if let (Some(with), Some(without)) = (&gate, gate_without_flagged) {
            quality.gate_changed = with
                .entries
                .iter()
                .zip(&without.entries)
                .filter(|(a, b)| a.verdict != b.verdict)
                .map(|(a, b)| VerdictChange {
                    what: format!("{}/{} {}", a.suite, a.variant, a.metric),
                    with_flagged: a.verdict.name().into(),
                    without_flagged: b.verdict.name().into(),
                })
                .collect();
        }
        let f = &run.fingerprint;
        let fidelity = fidelity_rows(run, &suites);
        Report {
            format_version: REPORT_FORMAT_VERSION.into(),
            run: RunSummary {
                id: run.id.clone(),
                started_at: f.started_at.clone(),
                finished_at: run.finished_at.clone(),
                interrupted: run.interrupted,
                incomplete: run.incomplete(),
                device: f.device.clone().unwrap_or_else(|| "unknown".into()),
                gpu: f.gpu.as_ref().map(|g| g.name.clone()),
                torch: f.torch_version.clone(),
                cudnn: f.cudnn_version,
                cuda: f.cuda_runtime_version,
                harness_version: f.harness_version.clone(),
                git_commit: f.git_commit.clone(),
                host: f.host.clone(),
            },
            suites,
            claims,
            gate,
            quality,
            trends,
            shifts: Vec::new(),
            fidelity,
            slow_processes: super::slow::slow_processes(run, samples),
            held_between_calls: super::held::held_between_calls(samples),
        }
    }

    pub fn regressions(&self) -> usize {
        self.gate
            .as_ref()
            .map_or(0, |g| g.count(GateVerdict::Regression))
    }

    pub fn claim_count(&self, verdict: ClaimVerdictKind) -> usize {
        self.claims.iter().filter(|c| c.verdict == verdict).count()
    }

    /// Workers that crashed, timed out, failed or could not start.
    pub fn failed_workers(&self) -> usize {
        self.suites
            .iter()
            .flat_map(|s| &s.workers)
            .filter(|w| w.failed)
            .count()
    }

    /// Claims whose verdict fails CI (refuted; time claims only at the family-wise level).
    pub fn failing_claims(&self) -> usize {
        self.claims.iter().filter(|c| c.fails_ci).count()
    }

    /// The run's exit code as `claimbench run` gave it (interruption aside): 1 on a regression
    /// or a claim that fails CI, else 4 when workers failed, else 0 (see `exit_code`).
    pub fn exit_code(&self) -> i32 {
        if self.regressions() > 0 || self.failing_claims() > 0 {
            crate::exit_code::REGRESSION
        } else if self.failed_workers() > 0 {
            crate::exit_code::WORKER_FAILURES
        } else {
            crate::exit_code::OK
        }
    }

    /// One line: `1 regression, 2 of 5 claims refuted`, or `no regression, …`.
    pub fn headline(&self) -> String {
        let mut parts = Vec::new();
        if self.gate.is_some() {
            parts.push(match self.regressions() {
                0 => "no regression".to_string(),
                1 => "1 regression".to_string(),
                n => format!("{n} regressions"),
            });
        }
        if !self.claims.is_empty() {
            let counts: Vec<String> = ClaimVerdictKind::ALL
                .iter()
                .filter_map(|&k| {
                    let n = self.claim_count(k);
                    (n > 0).then(|| format!("{n} {}", k.name()))
                })
                .collect();
            let total = self.claims.len();
            let noun = if total == 1 { "claim" } else { "claims" };
            parts.push(format!("{total} {noun}: {}", counts.join(", ")));
        }
        if parts.is_empty() {
            "no claims and no baseline comparison".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Not-applicable claims grouped by their reason, in the order the reasons first occur: they
/// say nothing about the measurement, so reports show one line per reason.
pub fn not_applicable_by_reason<'a>(
    claims: impl IntoIterator<Item = &'a ClaimVerdict>,
) -> Vec<(&'a str, Vec<&'a ClaimVerdict>)> {
    let mut by_reason: Vec<(&str, Vec<&ClaimVerdict>)> = Vec::new();
    for c in claims
        .into_iter()
        .filter(|c| c.verdict == ClaimVerdictKind::NotApplicable)
    {
        match by_reason.iter_mut().find(|(r, _)| *r == c.reason) {
            Some((_, group)) => group.push(c),
            None => by_reason.push((c.reason.as_str(), vec![c])),
        }
    }
    by_reason
}

/// The typical value with its 95 % t interval over processes, or the range of the process
/// medians when there are too few of them (see `stats::basis`).
pub fn metric_summary(sample: &NestedSample) -> Option<MetricSummary> {
    let MedianInterval {
        estimate,
        lower,
        upper,
        confidence,
        basis,
        processes,
    } = sample.median_interval(0.95).ok()?;
    Some(MetricSummary {
        median: estimate,
        lower,
        upper,
        confidence,
        basis: basis.to_string(),
        processes,
    })
}

/// `records`: the variant's processes; `rows`: its measured rows
/// ([`crate::store::SuiteRecord::measured_rows`]).
fn variant_summary(
    plan: &VariantPlan,
    data: Option<&claims::VariantData<'_>>,
    records: &[&ProcessRecord],
    rows: &[&SampleRow],
) -> VariantSummary {
    let mut outcomes = BTreeMap::new();
    for p in records {
        *outcomes.entry(p.status.as_str().to_string()).or_default() += 1;
    }
    let metric = |name: &str| data.and_then(|d| d.metrics.get(name));
    let mut flags = BTreeMap::new();
    let mut calls = 0;
    let mut stage_order: Vec<String> = Vec::new();
    for row in rows {
        calls += 1;
        for flag in &row.flags {
            *flags.entry(flag.clone()).or_default() += 1;
        }
        for stage in &row.measurement.stages {
            if !stage_order.contains(&stage.name) {
                stage_order.push(stage.name.clone());
            }
        }
    }
    let stages = stage_order
        .into_iter()
        .filter_map(|name| {
            let median = metric(&format!("stage_{name}_ms"))?.median_of_process_medians();
            Some((name, median))
        })
        .collect();
    let oom = records.iter().find_map(|p| {
        let info = p.oom.as_ref()?;
        let requested = info
            .requested_bytes
            .map(|b| format!("requested {}", crate::claim::format_gib(b as f64)));
        let budget = info
            .budget_bytes
            .map(|b| format!("budget {}", crate::claim::format_gib(b as f64)));
        let parts: Vec<String> = requested.into_iter().chain(budget).collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    });
    VariantSummary {
        name: plan.name.clone(),
        description: plan.description.clone(),
        outcomes,
        processes: records.len(),
        calls,
        flagged: data.map_or(0, |d| d.flagged),
        flags,
        wall_ms: metric("wall_ms").and_then(metric_summary),
        gpu_ms: metric("gpu_ms").and_then(metric_summary),
        peak_allocated_bytes: metric("peak_allocated_bytes")
            .map(NestedSample::median_of_process_medians),
        peak_reserved_bytes: metric("peak_reserved_bytes")
            .map(NestedSample::median_of_process_medians),
        budget_bytes: plan
            .knobs
            .vram_budget_gib
            .map(|gib| gib * 1024.0 * 1024.0 * 1024.0),
        stages,
        wall_ms_by_process: metric("wall_ms")
            .map(|s| s.processes().iter().map(|p| p.values().to_vec()).collect())
            .unwrap_or_default(),
        oom,
    }
}

/// One stored run's medians, for trend lines.
#[derive(Debug, Clone)]
pub struct RunMedians {
    pub run: String,
    pub started_at: String,
    pub medians: Vec<VariantMedian>,
}

/// The median wall time of one variant in one run, with the hash of what it measured.
#[derive(Debug, Clone)]
pub struct VariantMedian {
    pub suite: String,
    pub variant: String,
    /// [`config_hash`]: a point measured with other parameters, knobs or profile sizes is
    /// another quantity and does not join the line.
    pub config_sha256: String,
    pub wall_ms: f64,
}

/// Median wall time of each variant of each suite in `run`, for trend lines.
pub fn run_medians(run: &RunRecord, samples: &[SampleRow]) -> Vec<VariantMedian> {
    let mut out = Vec::new();
    for suite in &run.suites {
        let data = claims::variant_data(suite, samples, true);
        for v in &suite.plan.variants {
            if let Some(wall) = data.get(&v.name).and_then(|d| d.metrics.get("wall_ms")) {
                out.push(VariantMedian {
                    suite: suite.plan.suite.clone(),
                    variant: v.name.clone(),
                    config_sha256: config_hash(v),
                    wall_ms: wall.median_of_process_medians(),
                });
            }
        }
    }
    out
}

/// Trend series from `runs` (see [`run_medians`]), oldest first; only suites and variants of
/// `current` are kept, each with the runs that measured the same configuration, and only series
/// with two points or more.
pub fn trends(current: &RunRecord, runs: &[RunMedians]) -> Vec<TrendSeries> {
    // One index per run: a lookup per variant, not a scan (runs of thousands of variants).
    let indexed: Vec<std::collections::HashMap<(&str, &str, &str), f64>> = runs
        .iter()
        .map(|r| {
            r.medians
                .iter()
                .map(|m| {
                    let key = (
                        m.suite.as_str(),
                        m.variant.as_str(),
                        m.config_sha256.as_str(),
                    );
                    (key, m.wall_ms)
                })
                .collect()
        })
        .collect();
    let mut series: Vec<TrendSeries> = Vec::new();
    for suite in &current.suites {
        for v in &suite.plan.variants {
            let config = config_hash(v);
            let key = (suite.plan.suite.as_str(), v.name.as_str(), config.as_str());
            let points: Vec<TrendPoint> = runs
                .iter()
                .zip(&indexed)
                .filter_map(|(r, index)| {
                    index.get(&key).map(|&wall_ms| TrendPoint {
                        run: r.run.clone(),
                        started_at: r.started_at.clone(),
                        wall_ms,
                    })
                })
                .collect();
            if points.len() >= 2 {
                series.push(TrendSeries {
                    suite: suite.plan.suite.clone(),
                    variant: v.name.clone(),
                    points,
                });
            }
        }
    }
    series
}

/// Same-named variants of each suite that names a replica suite (`[suite] replica`) and of that
/// suite, when both are in the run.
fn fidelity_rows(run: &RunRecord, suites: &[SuiteSummary]) -> Vec<super::fidelity::FidelityRow> {
    use super::fidelity::{pair, Side};
    fn side(v: &VariantSummary) -> Side<'_> {
        Side {
            wall_ms: v.wall_ms.as_ref().map(|m| m.median),
            peak_allocated_bytes: v.peak_allocated_bytes,
            peak_reserved_bytes: v.peak_reserved_bytes,
            stages: &v.stages,
        }
    }
    let find = |name: &str| suites.iter().find(|s| s.suite == name);
    let mut rows = Vec::new();
    for plan in run.suites.iter().map(|s| &s.plan) {
        let Some(replica_name) = plan.replica.as_deref() else {
            continue;
        };
        let (Some(real), Some(replica)) = (find(&plan.suite), find(replica_name)) else {
            continue;
        };
        if real.suite == replica.suite {
            continue;
        }
        for v in &real.variants {
            if let Some(r) = replica.variants.iter().find(|r| r.name == v.name) {
                rows.push(pair(
                    (&real.suite, &replica.suite),
                    &v.name,
                    &side(v),
                    &side(r),
                ));
            }
        }
    }
    rows
}
