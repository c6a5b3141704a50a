//! The "Memory held between calls" section of every report format: processes whose measured
//! calls began with clearly more device memory allocated than their first call did.
//!
//! Both workers read the allocated bytes at the start of every call, after the synchronisation
//! before it (`allocated_at_start_bytes`). A pipeline that keeps no device tensors from one
//! call to the next starts every call where its first one started; one that keeps outputs or
//! caches on the device (an adapter storing a call's result on `self`, a growing cache, a
//! leak) starts later calls higher. Its measured calls then run with less free memory than a
//! fresh process would, and their allocated and reserved peaks are those of a pipeline that
//! holds that memory, which a note's "fits in N GB" rarely means.

use super::section;
use crate::claim::format_gib;
use crate::stats::Sample;
use crate::store::SampleRow;
use crate::text::printable;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A process is listed when a measured call began with at least this much more allocated than
/// its first call (cuBLAS keeps a 32 MiB workspace per handle from its first use on: that is
/// the workload's, but not worth a line)…
pub const HELD_MIN_BYTES: u64 = 128 << 20;
/// …and that much is at least this fraction of the process's median peak allocated bytes.
pub const HELD_MIN_FRACTION: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldMemory {
    pub suite: String,
    pub variant: String,
    pub process: u32,
    /// The call whose start is the baseline: 0, or 1 when call 0 loaded models (a `load_*`
    /// stage: lazy loading keeps weights from the first call on, which is not held output).
    pub baseline_call: u32,
    /// Allocated bytes when the baseline call began.
    pub baseline_bytes: u64,
    /// The most allocated at the start of a later measured call, minus the baseline.
    pub held_bytes: u64,
    /// `held_bytes` ÷ the median peak allocated bytes of the process's measured calls.
    pub share_of_peak: f64,
}

/// Processes whose measured calls began holding memory their baseline call did not have. A
/// process whose first recorded call is not call 0, without the start figures (CPU, records
/// written before them) or without a peak is not judged.
pub fn held_between_calls(samples: &[SampleRow]) -> Vec<HeldMemory> {
    let mut by_process: BTreeMap<(&str, &str, u32), Vec<&SampleRow>> = BTreeMap::new();
    for row in samples {
        by_process
            .entry((&row.suite, &row.variant, row.process))
            .or_default()
            .push(row);
    }
    let mut out = Vec::new();
    for ((suite, variant, process), mut rows) in by_process {
        rows.sort_by_key(|r| r.call);
        if rows.first().is_none_or(|r| r.call != 0) {
            continue;
        }
        let loads_models = |r: &SampleRow| {
            r.measurement
                .stages
                .iter()
                .any(|s| s.name.starts_with("load_"))
        };
        let baseline_call = u32::from(loads_models(rows[0]));
        let Some(baseline) = rows
            .iter()
            .find(|r| r.call == baseline_call)
            .and_then(|r| r.measurement.allocated_at_start_bytes)
        else {
            continue;
        };
        let measured: Vec<&SampleRow> = rows
            .into_iter()
            .filter(|r| !r.warmup && r.call > baseline_call)
            .collect();
        let held = measured
            .iter()
            .filter_map(|r| r.measurement.allocated_at_start_bytes)
            .map(|b| b.saturating_sub(baseline))
            .max()
            .unwrap_or(0);
        let peaks: Vec<f64> = measured
            .iter()
            .filter_map(|r| r.measurement.peak_allocated_bytes)
            .map(|b| b as f64)
            .collect();
        let Some(median_peak) = Sample::new(peaks)
            .ok()
            .map(|s| s.median())
            .filter(|p| *p > 0.0)
        else {
            continue;
        };
        let share_of_peak = held as f64 / median_peak;
        if held < HELD_MIN_BYTES || share_of_peak < HELD_MIN_FRACTION {
            continue;
        }
        out.push(HeldMemory {
            suite: suite.to_string(),
            variant: variant.to_string(),
            process,
            baseline_call,
            baseline_bytes: baseline,
            held_bytes: held,
            share_of_peak,
        });
    }
    out
}

fn intro() -> String {
    format!(
        "Processes whose measured calls began with more device memory allocated than their \
         first call did (at least {} MiB and {:.0} % of the median peak allocated; the second \
         call is the baseline where the first loaded models): the pipeline keeps device \
         tensors from one call to the next (a result stored on the pipeline object, a cache, \
         a leak). Those calls ran with that memory taken, so their peaks are a pipeline's that \
         holds it; free it at the end of `call` unless the real application keeps it too",
        HELD_MIN_BYTES >> 20,
        HELD_MIN_FRACTION * 100.0
    )
}

fn fields(r: &HeldMemory) -> [String; 5] {
    [
        format!("{}/{}", r.suite, r.variant),
        r.process.to_string(),
        format!(
            "{} (call {})",
            format_gib(r.baseline_bytes as f64),
            r.baseline_call
        ),
        format_gib(r.held_bytes as f64),
        format!("{:.1} %", r.share_of_peak * 100.0),
    ]
}

const COLUMNS: [&str; 5] = [
    "variant",
    "process",
    "allocated at the baseline call's start",
    "held at a measured call's start",
    "of the median peak allocated",
];

/// Terminal lines; nothing when no process held memory between calls.
pub fn terminal(rows: &[HeldMemory]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "memory held between calls (measured calls began with more allocated than the first):"
    );
    for r in rows {
        let [variant, process, _, held, share] = fields(r);
        let _ = writeln!(
            out,
            "  {:<44} #{process:<3} +{held} ({share} of the peak): the pipeline keeps device \
             tensors between calls",
            printable(&variant),
        );
    }
    out
}

fn table(intro: &str) -> section::Table<'_> {
    section::Table {
        id: "held-memory",
        title: "Memory held between calls",
        intro,
        columns: &COLUMNS,
        align: "---|---:|---:|---:|---:",
    }
}

/// The Markdown section's head and one table row per process.
pub fn markdown(rows: &[HeldMemory]) -> (String, Vec<String>) {
    table(&intro()).markdown(rows, fields)
}

/// The HTML section; empty when no process held memory between calls.
pub fn html(rows: &[HeldMemory]) -> String {
    table(&intro()).html(rows, fields)
}
