//! `samples.csv`: one tidy row per call. Fixed columns first, then one `stage_<name>_ms` column
//! per stage name and one `count_<name>` column per counter, in order of first appearance.
//! Missing values (CPU runs have no GPU columns) are empty cells.
// NOTE: serde is not used for this file because its columns depend on the stages present; keep
// FIXED_COLUMNS, `fixed_values` and `read_samples` in sync.

use crate::measure::Measurement;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// One measured call, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    pub suite: String,
    pub variant: String,
    pub process: u32,
    pub call: u32,
    pub warmup: bool,
    /// Sample-quality flags (`throttled`, `low_clock`, `shared_gpu`).
    pub flags: Vec<String>,
    pub measurement: Measurement,
}

const FIXED_COLUMNS: &[&str] = &[
    "suite",
    "variant",
    "process",
    "call",
    "warmup",
    "flags",
    "wall_ms",
    "gpu_ms",
    "peak_allocated_bytes",
    "peak_reserved_bytes",
    "allocated_at_start_bytes",
    "device_memory_used_max_bytes",
    "sm_clock_min_mhz",
    "sm_clock_mean_mhz",
    "temperature_max_c",
    "power_mean_w",
    "throttle_reasons",
    "compute_processes_max",
    "telemetry_readings",
    "host_peak_rss_bytes",
];

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn fixed_values(row: &SampleRow) -> Vec<String> {
    let m = &row.measurement;
    let t = m.telemetry.unwrap_or_default();
    let has_t = m.telemetry.is_some();
    vec![
        row.suite.clone(),
        row.variant.clone(),
        row.process.to_string(),
        row.call.to_string(),
        row.warmup.to_string(),
        row.flags.join("|"),
        format!("{:.6}", m.wall_ms),
        opt(m.gpu_ms.map(|x| format!("{x:.6}"))),
        opt(m.peak_allocated_bytes),
        opt(m.peak_reserved_bytes),
        opt(m.allocated_at_start_bytes),
        opt(t.memory_used_max_bytes),
        opt(t.sm_clock_min_mhz),
        opt(t.sm_clock_mean_mhz.map(|x| format!("{x:.1}"))),
        opt(t.temperature_max_c),
        opt(t.power_mean_w.map(|x| format!("{x:.2}"))),
        opt(t.throttle_reasons.map(|b| format!("{b:#x}"))),
        opt(t.compute_processes_max),
        if has_t {
            t.readings.to_string()
        } else {
            String::new()
        },
        opt(m.host_peak_rss_bytes),
    ]
}

/// Serialises rows to CSV bytes.
pub fn write_samples(rows: &[SampleRow]) -> Result<Vec<u8>> {
    let mut stages: Vec<String> = Vec::new();
    let mut counters: Vec<String> = Vec::new();
    for row in rows {
        for s in &row.measurement.stages {
            if !stages.contains(&s.name) {
                stages.push(s.name.clone());
            }
        }
        for c in row.measurement.counters.keys() {
            if !counters.contains(c) {
                counters.push(c.clone());
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = FIXED_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain(stages.iter().map(|s| format!("stage_{s}_ms")))
        .chain(counters.iter().map(|c| format!("count_{c}")));
    w.write_record(header)?;
    for row in rows {
        let mut values = fixed_values(row);
        for s in &stages {
            let v = row
                .measurement
                .stages
                .iter()
                .find(|x| &x.name == s)
                .map(|x| format!("{:.6}", x.wall_ms));
            values.push(opt(v));
        }
        for c in &counters {
            values.push(opt(row.measurement.counters.get(c)));
        }
        w.write_record(&values)?;
    }
    w.into_inner().context("flushing CSV")
}

/// Reads `samples.csv` back into rows (telemetry fields other than those stored are absent).
pub fn read_samples(path: &Path) -> Result<Vec<SampleRow>, super::StoreError> {
    let bytes = std::fs::read(path).map_err(|source| super::StoreError::OpenSamples {
        path: path.to_path_buf(),
        source,
    })?;
    // Every row claimbench writes ends with a line end: a file that does not was cut off
    // mid-row, and its last cell may be a truncated number that would still parse.
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        return Err(super::StoreError::Samples(anyhow::anyhow!(
            "{}: the last row has no line end: the file was cut off while being written",
            path.display()
        )));
    }
    parse_samples(path, csv::Reader::from_reader(bytes.as_slice()))
        .map_err(super::StoreError::Samples)
}

/// Columns every `samples.csv` written by claimbench has, and without which rows would be
/// merged or miscounted.
const REQUIRED_COLUMNS: &[&str] = &["suite", "variant", "process", "call", "warmup", "wall_ms"];

fn parse_samples<R: std::io::Read>(path: &Path, mut r: csv::Reader<R>) -> Result<Vec<SampleRow>> {
    let file = path.display();
    let headers = r
        .headers()
        .with_context(|| format!("{file}: cannot read the header row"))?
        .clone();
    if headers.iter().all(str::is_empty) {
        anyhow::bail!("{file}: empty file (no header row)");
    }
    for required in REQUIRED_COLUMNS {
        if !headers.iter().any(|h| h == *required) {
            anyhow::bail!("{file}: missing column `{required}`");
        }
    }
    if let Some(h) = headers
        .iter()
        .enumerate()
        .find_map(|(i, h)| headers.iter().skip(i + 1).any(|x| x == h).then_some(h))
    {
        anyhow::bail!("{file}: column `{h}` appears twice");
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let mut rows = Vec::new();
    for (i, record) in r.records().enumerate() {
        let row = i + 2;
        let record = record.with_context(|| format!("{file}: row {row}"))?;
        let at = |column: &str| format!("{file}: row {row}, column {column}");
        let get = |name: &str| {
            col(name)
                .and_then(|c| record.get(c))
                .filter(|s| !s.is_empty())
        };
        let num = |name: &str| -> Result<Option<f64>> {
            get(name)
                .map(|s| s.parse::<f64>())
                .transpose()
                .with_context(|| at(name))
        };
        let int = |name: &str| -> Result<Option<u64>> { Ok(num(name)?.map(|x| x as u64)) };
        let index = |name: &str| -> Result<u32> {
            let text = get(name).with_context(|| format!("{}: empty", at(name)))?;
            text.parse::<u32>()
                .with_context(|| format!("{}: `{text}` is not a whole number ≥ 0", at(name)))
        };
        let warmup = match get("warmup") {
            Some("true") => true,
            Some("false") => false,
            other => anyhow::bail!(
                "{}: `{}` is neither `true` nor `false`",
                at("warmup"),
                other.unwrap_or("")
            ),
        };
        let mut stages = Vec::new();
        let mut counters = BTreeMap::new();
        for (c, h) in headers.iter().enumerate() {
            let Some(value) = record.get(c).filter(|s| !s.is_empty()) else {
                continue;
            };
            if let Some(name) = h.strip_prefix("stage_").and_then(|n| n.strip_suffix("_ms")) {
                stages.push(crate::measure::StageTime {
                    name: name.to_string(),
                    wall_ms: value.parse().with_context(|| at(h))?,
                });
            } else if let Some(name) = h.strip_prefix("count_") {
                counters.insert(name.to_string(), value.parse().with_context(|| at(h))?);
            }
        }
        let suite = get("suite").with_context(|| format!("{}: empty", at("suite")))?;
        let variant = get("variant").with_context(|| format!("{}: empty", at("variant")))?;
        rows.push(SampleRow {
            suite: suite.to_string(),
            variant: variant.to_string(),
            process: index("process")?,
            call: index("call")?,
            warmup,
            flags: get("flags")
                .map(|f| f.split('|').map(str::to_string).collect())
                .unwrap_or_default(),
            measurement: Measurement {
                wall_ms: num("wall_ms")?.unwrap_or(f64::NAN),
                gpu_ms: num("gpu_ms")?,
                stages,
                counters,
                peak_allocated_bytes: int("peak_allocated_bytes")?,
                peak_reserved_bytes: int("peak_reserved_bytes")?,
                allocated_at_start_bytes: int("allocated_at_start_bytes")?,
                telemetry: None,
                host_peak_rss_bytes: int("host_peak_rss_bytes")?,
            },
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::StageTime;

    fn row(variant: &str, stages: &[(&str, f64)], count: Option<u64>) -> SampleRow {
        SampleRow {
            suite: "s".into(),
            variant: variant.into(),
            process: 1,
            call: 2,
            warmup: false,
            flags: vec!["low_clock".into(), "throttled".into()],
            measurement: Measurement {
                wall_ms: 12.5,
                gpu_ms: Some(11.0),
                stages: stages
                    .iter()
                    .map(|(n, ms)| StageTime {
                        name: n.to_string(),
                        wall_ms: *ms,
                    })
                    .collect(),
                counters: count
                    .map(|c| ("evals".to_string(), c))
                    .into_iter()
                    .collect(),
                peak_allocated_bytes: Some(1 << 30),
                peak_reserved_bytes: Some(2 << 30),
                allocated_at_start_bytes: Some(3 << 29),
                telemetry: None,
                host_peak_rss_bytes: Some(4096),
            },
        }
    }

    #[test]
    fn round_trips_with_union_of_stage_columns() {
        let rows = vec![
            row("a", &[("x", 1.0)], Some(3)),
            row("b", &[("y", 2.0)], None),
        ];
        let bytes = write_samples(&rows).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let header = text.lines().next().unwrap();
        assert!(
            header.ends_with("stage_x_ms,stage_y_ms,count_evals"),
            "{header}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.csv");
        std::fs::write(&path, bytes).unwrap();
        let back = read_samples(&path).unwrap();
        assert_eq!(back, rows);
    }
}
