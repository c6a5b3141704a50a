//! The "Replica vs real code" section of every report format: for a suite that runs the real
//! pipeline code (`[suite] replica = "…"` names the suite of built-in replicas), each variant
//! that both suites define, side by side: real ÷ replica for the median wall time, peak
//! allocated and peak reserved memory, and every stage both report. Drift in either shows.

use super::section;
use crate::text::printable;
use serde::Serialize;
use std::fmt::Write;

/// One configuration run by both the replica and the real code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityRow {
    pub real_suite: String,
    pub replica_suite: String,
    pub variant: String,
    /// Real ÷ replica of the median wall time; `None` when either side has no measurement.
    pub time_ratio: Option<f64>,
    pub peak_allocated_ratio: Option<f64>,
    pub peak_reserved_ratio: Option<f64>,
    /// Stages both sides report, in the real code's order: (name, real ÷ replica).
    pub stage_ratios: Vec<(String, f64)>,
}

fn ratio(real: Option<f64>, replica: Option<f64>) -> Option<f64> {
    match (real, replica) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// What one side of a pair measured: medians of process medians.
#[derive(Debug, Clone, Default)]
pub struct Side<'a> {
    pub wall_ms: Option<f64>,
    pub peak_allocated_bytes: Option<f64>,
    pub peak_reserved_bytes: Option<f64>,
    /// Median time of each stage, in the order the workload reports them.
    pub stages: &'a [(String, f64)],
}

/// The row for one variant that both suites define.
pub fn pair(
    suites: (&str, &str),
    variant: &str,
    real: &Side<'_>,
    replica: &Side<'_>,
) -> FidelityRow {
    FidelityRow {
        real_suite: suites.0.to_string(),
        replica_suite: suites.1.to_string(),
        variant: variant.to_string(),
        time_ratio: ratio(real.wall_ms, replica.wall_ms),
        peak_allocated_ratio: ratio(real.peak_allocated_bytes, replica.peak_allocated_bytes),
        peak_reserved_ratio: ratio(real.peak_reserved_bytes, replica.peak_reserved_bytes),
        stage_ratios: real
            .stages
            .iter()
            .filter_map(|(name, ms)| {
                let (_, other) = replica.stages.iter().find(|(n, _)| n == name)?;
                Some((name.clone(), ratio(Some(*ms), Some(*other))?))
            })
            .collect(),
    }
}

const INTRO: &str = "Configurations run both by a built-in replica and by the real library code: real ÷ replica of the median wall time, peak allocated and peak reserved memory, and of each stage both report (1.00 = the replica matches)";

fn times(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

fn stages_text(row: &FidelityRow) -> String {
    if row.stage_ratios.is_empty() {
        return "–".into();
    }
    row.stage_ratios
        .iter()
        .map(|(name, r)| format!("{name} {r:.2}×"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fields(row: &FidelityRow) -> [String; 6] {
    [
        format!("{} vs {}", row.real_suite, row.replica_suite),
        row.variant.clone(),
        times(row.time_ratio),
        times(row.peak_allocated_ratio),
        times(row.peak_reserved_ratio),
        stages_text(row),
    ]
}

const COLUMNS: [&str; 6] = [
    "suites (real vs replica)",
    "variant",
    "wall",
    "peak allocated",
    "peak reserved",
    "stages",
];

/// Terminal lines; nothing when there is no pair.
pub fn terminal(rows: &[FidelityRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(out, "replica vs real code (real ÷ replica):");
    for r in rows {
        let [_, variant, wall, alloc, reserved, stages] = fields(r);
        let _ = writeln!(
            out,
            "  {:<50} wall {:>7}  alloc {:>7}  reserved {:>7}  {}",
            printable(&format!("{}/{variant}", r.real_suite)),
            wall,
            alloc,
            reserved,
            printable(&stages)
        );
    }
    out
}

/// The Markdown section's head and one table row per pair.
pub fn markdown(rows: &[FidelityRow]) -> (String, Vec<String>) {
    let head = section::markdown_head(
        "Replica vs real code",
        INTRO,
        &COLUMNS,
        "---|---|---:|---:|---:|---",
    );
    let rows = rows
        .iter()
        .map(|r| section::markdown_row(&fields(r)))
        .collect();
    (head, rows)
}

/// The HTML section; empty when there is no pair.
pub fn html(rows: &[FidelityRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = rows.iter().map(|r| fields(r).to_vec()).collect();
    section::html("fidelity", "Replica vs real code", INTRO, &COLUMNS, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_real_over_replica_for_shared_stages_only() {
        let real_stages = [("delight".to_string(), 60.0), ("load".to_string(), 5.0)];
        let replica_stages = [("delight".to_string(), 40.0), ("shape".to_string(), 9.0)];
        let side = |wall, alloc, stages| Side {
            wall_ms: Some(wall),
            peak_allocated_bytes: Some(alloc),
            peak_reserved_bytes: None,
            stages,
        };
        let r = pair(
            ("x-real", "x"),
            "a",
            &side(150.0, 300.0, &real_stages),
            &side(100.0, 200.0, &replica_stages),
        );
        assert_eq!(r.time_ratio, Some(1.5));
        assert_eq!(r.peak_allocated_ratio, Some(1.5));
        assert_eq!(
            r.peak_reserved_ratio, None,
            "no reserved figure on either side"
        );
        assert_eq!(r.stage_ratios, vec![("delight".to_string(), 1.5)]);
        let (head, rows) = markdown(std::slice::from_ref(&r));
        assert!(head.contains("Replica vs real code"));
        assert_eq!(
            rows[0],
            "| x-real vs x | a | 1.50× | 1.50× | – | delight 1.50× |\n"
        );
        assert!(terminal(std::slice::from_ref(&r)).contains("wall   1.50×"));
        assert!(html(&[r]).contains("<td>delight 1.50×</td>"));
        assert!(html(&[]).is_empty() && terminal(&[]).is_empty());
    }
}
