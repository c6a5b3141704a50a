//! Exports for benchmark-history services.
//!
//! * `bmf.json`, Bencher Metric Format: `{ "<suite>/<variant>": { "<measure>": { "value",
//!   "lower_value", "upper_value" } } }`. Measures: `latency` (wall time, nanoseconds, Bencher's
//!   built-in unit), `gpu-latency` (GPU time, nanoseconds), `peak-allocated-bytes`,
//!   `peak-reserved-bytes`; bounds are the 95 % interval of the median where there is one.
//! * `github-benchmark.json`, github-action-benchmark's `customSmallerIsBetter` input: a list of
//!   `{ name, unit, value, range, extra }`, one per variant and metric.
//!
//! Variants without a successful process are left out: a missing point is honest, a zero is not.

use super::model::{MetricSummary, Report};
use serde_json::{json, Map, Value};

const NS_PER_MS: f64 = 1e6;
const MIB: f64 = 1024.0 * 1024.0;

fn interval_ns(m: &MetricSummary) -> Value {
    json!({
        "value": m.median * NS_PER_MS,
        "lower_value": m.lower * NS_PER_MS,
        "upper_value": m.upper * NS_PER_MS,
    })
}

/// Bencher Metric Format.
pub fn bmf(report: &Report) -> Value {
    let mut benchmarks = Map::new();
    for suite in &report.suites {
        for v in &suite.variants {
            let mut measures = Map::new();
            if let Some(wall) = &v.wall_ms {
                measures.insert("latency".into(), interval_ns(wall));
            }
            if let Some(gpu) = &v.gpu_ms {
                measures.insert("gpu-latency".into(), interval_ns(gpu));
            }
            if let Some(b) = v.peak_allocated_bytes {
                measures.insert("peak-allocated-bytes".into(), json!({ "value": b }));
            }
            if let Some(b) = v.peak_reserved_bytes {
                measures.insert("peak-reserved-bytes".into(), json!({ "value": b }));
            }
            if !measures.is_empty() {
                benchmarks.insert(format!("{}/{}", suite.suite, v.name), measures.into());
            }
        }
    }
    Value::Object(benchmarks)
}

/// github-action-benchmark, tool `customSmallerIsBetter`.
pub fn github_benchmark(report: &Report) -> Value {
    let mut entries = Vec::new();
    for suite in &report.suites {
        for v in &suite.variants {
            let name = format!("{}/{}", suite.suite, v.name);
            let extra = format!(
                "{} calls over {} processes; run {}",
                v.calls, v.processes, report.run.id
            );
            if let Some(wall) = &v.wall_ms {
                entries.push(json!({
                    "name": format!("{name} wall"),
                    "unit": "ms",
                    "value": wall.median,
                    "range": format!("{:.3}..{:.3}", wall.lower, wall.upper),
                    "extra": extra,
                }));
            }
            if let Some(b) = v.peak_reserved_bytes {
                entries.push(json!({
                    "name": format!("{name} peak reserved"),
                    "unit": "MiB",
                    "value": b / MIB,
                    "extra": extra,
                }));
            }
        }
    }
    Value::Array(entries)
}
