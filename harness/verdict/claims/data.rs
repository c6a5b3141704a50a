//! What a run record measured, per variant, in the form the judges take.

use super::fit::OutcomeCounts;
use crate::plan::VariantPlan;
use crate::stats::NestedSample;
use crate::store::baseline::metric_values;
use crate::store::{SampleRow, SuiteRecord};
use crate::worker::protocol::Status;
use std::collections::BTreeMap;

/// What one variant of a suite measured, from processes that ended normally.
#[derive(Debug, Clone)]
pub struct VariantData<'a> {
    pub plan: &'a VariantPlan,
    pub statuses: Vec<Status>,
    /// Metric name → values grouped by process (measured calls only).
    pub metrics: BTreeMap<String, NestedSample>,
    /// Knobs the workers could not apply, as they reported them (`cudnn.enabled: …`).
    pub not_applicable: Vec<String>,
    /// Device memory held outside the allocator, the largest any worker reported.
    pub cuda_overhead_bytes: Option<u64>,
    /// Measured samples with a quality flag (counted whether or not they were included).
    pub flagged: usize,
}

/// Metric values of a sample row, counters included (`count_<name>`).
pub fn row_metrics(row: &SampleRow) -> Vec<(String, f64)> {
    let mut values = metric_values(row);
    values.extend(
        row.measurement
            .counters
            .iter()
            .map(|(name, count)| (format!("count_{name}"), *count as f64)),
    );
    values
}

/// The measured data of every variant of `suite`; with `include_flagged` false, samples with a
/// quality flag are left out.
pub fn variant_data<'a>(
    suite: &'a SuiteRecord,
    samples: &[SampleRow],
    include_flagged: bool,
) -> BTreeMap<String, VariantData<'a>> {
    let mut out = BTreeMap::new();
    let processes = suite.processes_by_variant();
    let rows = suite.measured_rows(samples);
    for plan in &suite.plan.variants {
        let records = processes
            .get(plan.name.as_str())
            .map_or(&[][..], Vec::as_slice);
        let mut by_metric: BTreeMap<String, BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
        let mut flagged = 0;
        for row in rows.get(plan.name.as_str()).into_iter().flatten() {
            if !row.flags.is_empty() {
                flagged += 1;
                if !include_flagged {
                    continue;
                }
            }
            for (name, value) in row_metrics(row) {
                by_metric
                    .entry(name)
                    .or_default()
                    .entry(row.process)
                    .or_default()
                    .push(value);
            }
        }
        let metrics = by_metric
            .into_iter()
            .filter_map(|(name, processes)| {
                NestedSample::new(processes.into_values().collect())
                    .ok()
                    .map(|s| (name, s))
            })
            .collect();
        let mut not_applicable: Vec<String> = records
            .iter()
            .filter_map(|p| p.hello.as_ref())
            .flat_map(|h| h.not_applicable.iter().cloned())
            .collect();
        not_applicable.sort();
        not_applicable.dedup();
        out.insert(
            plan.name.clone(),
            VariantData {
                plan,
                statuses: records.iter().map(|p| p.status).collect(),
                metrics,
                not_applicable,
                cuda_overhead_bytes: records
                    .iter()
                    .filter_map(|p| p.hello.as_ref()?.cuda_overhead_bytes)
                    .max(),
                flagged,
            },
        );
    }
    out
}

/// Settings in which two variants differ, in manifest spelling (`cudnn.enabled`,
/// `env.CUBLAS_WORKSPACE_CONFIG`, `params.ms`).
pub fn differing_settings(a: &VariantPlan, b: &VariantPlan) -> Vec<String> {
    a.differences(b).into_iter().map(|d| d.setting).collect()
}

/// When every setting that sets `variants` apart is one that the workers reported they could
/// not apply, the reason (the workers' own words); otherwise `None`.
pub(super) fn inert_difference(variants: &[&VariantData<'_>]) -> Option<String> {
    let mut differences: Vec<String> = Vec::new();
    for pair in variants.windows(2) {
        for d in differing_settings(pair[0].plan, pair[1].plan) {
            if !differences.contains(&d) {
                differences.push(d);
            }
        }
    }
    if differences.is_empty() {
        return None;
    }
    let mut reasons = Vec::new();
    for d in &differences {
        let prefix = format!("{d}:");
        let reason = variants
            .iter()
            .flat_map(|v| &v.not_applicable)
            .find(|na| na.starts_with(&prefix))?;
        reasons.push(reason.clone());
    }
    Some(format!(
        "the settings that set the variants apart cannot act here: {}",
        reasons.join("; ")
    ))
}

/// Why a variant has nothing to measure, if it has not.
pub(super) fn unusable(name: &str, data: Option<&VariantData<'_>>, metric: &str) -> Option<String> {
    let Some(data) = data else {
        return Some(format!("variant `{name}` is not in this run"));
    };
    let counts = OutcomeCounts::of(&data.statuses);
    if data.statuses.is_empty() {
        return Some(format!("variant `{name}` did not run"));
    }
    if counts.ok == 0 {
        let mut parts = Vec::new();
        if counts.oom > 0 {
            parts.push(format!("{} ran out of memory", counts.oom));
        }
        if counts.failed > 0 {
            parts.push(format!("{} failed", counts.failed));
        }
        return Some(format!(
            "variant `{name}` has no successful process ({})",
            parts.join(", ")
        ));
    }
    if !data.metrics.contains_key(metric) {
        let recorded: Vec<&str> = data.metrics.keys().map(String::as_str).collect();
        let note = if metric.starts_with("peak_") {
            " (CPU runs have no allocator statistics)"
        } else {
            ""
        };
        return Some(format!(
            "variant `{name}` recorded no `{metric}`{note}; recorded: {}",
            recorded.join(", ")
        ));
    }
    None
}
