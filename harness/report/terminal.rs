//! The compact per-variant table printed at the end of `claimbench run`.

use crate::store::{RunRecord, SampleRow};
use std::collections::BTreeMap;
use std::fmt::Write;

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One line per variant: outcomes of its processes, measured calls, median wall time and
/// median peak allocated memory over measured (non-warm-up) calls.
pub fn summary(run: &RunRecord, samples: &[SampleRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<40} {:<18} {:>6} {:>12} {:>14}",
        "suite", "variant", "outcomes", "calls", "median ms", "peak alloc MiB"
    );
    for suite in &run.suites {
        for variant in &suite.plan.variants {
            let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
            for p in suite.processes.iter().filter(|p| p.variant == variant.name) {
                *outcomes.entry(p.status.as_str()).or_default() += 1;
            }
            if outcomes.is_empty() {
                outcomes.insert("not run", 0);
            }
            let measured: Vec<&SampleRow> = samples
                .iter()
                .filter(|s| s.suite == suite.plan.suite && s.variant == variant.name && !s.warmup)
                .collect();
            let wall = median(measured.iter().map(|s| s.measurement.wall_ms).collect());
            let peak = median(
                measured
                    .iter()
                    .filter_map(|s| {
                        s.measurement
                            .peak_allocated_bytes
                            .map(|b| b as f64 / (1u64 << 20) as f64)
                    })
                    .collect(),
            );
            let outcome_text = outcomes
                .iter()
                .map(|(k, n)| {
                    if *n > 0 {
                        format!("{n}×{k}")
                    } else {
                        k.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            let fmt = |v: Option<f64>, p: usize| {
                v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                out,
                "{:<24} {:<40} {:<18} {:>6} {:>12} {:>14}",
                suite.plan.suite,
                variant.name,
                outcome_text,
                measured.len(),
                fmt(wall, 3),
                fmt(peak, 1)
            );
        }
    }
    out
}
