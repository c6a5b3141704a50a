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
    /// The figures whose ratio lies outside [`TOLERANCE`]: `wall`, `peak_allocated`,
    /// `peak_reserved`. Time outside its band may be a host-bound side, not a wrong replica.
    pub outside_tolerance: Vec<&'static str>,
}

/// How far a replica may differ from the real code and still count as the same mechanism:
/// (figure, largest relative difference either way). Peak allocated is the tightest because
/// it follows from the order of allocations alone; reserved adds the allocator's placement,
/// and time the host.
pub const TOLERANCE: [(&str, f64); 3] = [
    ("wall", 0.15),
    ("peak_allocated", 0.05),
    ("peak_reserved", 0.10),
];

/// Judged on the ratio as printed (two decimals), so that a mark never contradicts the figure
/// beside it (1.0504 prints as 1.05×, inside ±5 %).
fn outside(name: &str, ratio: Option<f64>) -> bool {
    let band = TOLERANCE
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0.0, |(_, b)| *b);
    ratio.is_some_and(|r| ((r * 100.0).round() / 100.0 - 1.0).abs() > band + 1e-9)
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
    let time_ratio = ratio(real.wall_ms, replica.wall_ms);
    let peak_allocated_ratio = ratio(real.peak_allocated_bytes, replica.peak_allocated_bytes);
    let peak_reserved_ratio = ratio(real.peak_reserved_bytes, replica.peak_reserved_bytes);
    let outside_tolerance = [
        ("wall", time_ratio),
        ("peak_allocated", peak_allocated_ratio),
        ("peak_reserved", peak_reserved_ratio),
    ]
    .into_iter()
    .filter(|(name, r)| outside(name, *r))
    .map(|(name, _)| name)
    .collect();
    FidelityRow {
        real_suite: suites.0.to_string(),
        replica_suite: suites.1.to_string(),
        variant: variant.to_string(),
        time_ratio,
        peak_allocated_ratio,
        peak_reserved_ratio,
        outside_tolerance,
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

const INTRO: &str = "Configurations run both by a built-in replica and by the real library code: real ÷ replica of the median wall time, peak allocated and peak reserved memory, and of each stage both report (1.00 = the replica matches). * marks a figure outside the tolerance: wall ±15 %, peak allocated ±5 %, peak reserved ±10 %";

const FOOTNOTE: &str =
    "  * outside the tolerance: wall ±15 % (a host-bound side shows here), allocated ±5 %, reserved ±10 %";

fn times(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

/// The ratio, marked `*` when outside its tolerance.
fn figure(row: &FidelityRow, name: &str, x: Option<f64>) -> String {
    let mark = if row.outside_tolerance.contains(&name) {
        "*"
    } else {
        ""
    };
    format!("{}{mark}", times(x))
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
        figure(row, "wall", row.time_ratio),
        figure(row, "peak_allocated", row.peak_allocated_ratio),
        figure(row, "peak_reserved", row.peak_reserved_ratio),
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
            "  {:<50} wall {:>8}  alloc {:>8}  reserved {:>8}  {}",
            printable(&format!("{}/{variant}", r.real_suite)),
            wall,
            alloc,
            reserved,
            printable(&stages)
        );
    }
    if rows.iter().any(|r| !r.outside_tolerance.is_empty()) {
        let _ = writeln!(out, "{FOOTNOTE}");
    }
    out
}

const TABLE: section::Table = section::Table {
    id: "fidelity",
    title: "Replica vs real code",
    intro: INTRO,
    columns: &COLUMNS,
    align: "---|---|---:|---:|---:|---",
};

/// The Markdown section's head and one table row per pair.
pub fn markdown(rows: &[FidelityRow]) -> (String, Vec<String>) {
    TABLE.markdown(rows, fields)
}

/// The HTML section; empty when there is no pair.
pub fn html(rows: &[FidelityRow]) -> String {
    TABLE.html(rows, fields)
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
            "| x-real vs x | a | 1.50×* | 1.50×* | – | delight 1.50× |\n"
        );
        assert!(terminal(std::slice::from_ref(&r)).contains("wall   1.50×*"));
        assert!(html(&[r]).contains("<td>delight 1.50×</td>"));
        assert!(html(&[]).is_empty() && terminal(&[]).is_empty());
    }

    #[test]
    fn figures_outside_the_tolerance_are_marked_and_listed() {
        let side = |wall, alloc, reserved| Side {
            wall_ms: Some(wall),
            peak_allocated_bytes: Some(alloc),
            peak_reserved_bytes: Some(reserved),
            stages: &[],
        };
        // Inside every band as printed (time 1.15, allocated 1.0504 → 1.05, reserved 1.09),
        // then each just out.
        let within = pair(
            ("r", "x"),
            "a",
            &side(115.0, 105.04, 109.0),
            &side(100.0, 100.0, 100.0),
        );
        assert!(within.outside_tolerance.is_empty(), "{within:?}");
        assert!(!terminal(std::slice::from_ref(&within)).contains('*'));
        let out = pair(
            ("r", "x"),
            "b",
            &side(84.0, 106.0, 89.0),
            &side(100.0, 100.0, 100.0),
        );
        assert_eq!(
            out.outside_tolerance,
            ["wall", "peak_allocated", "peak_reserved"]
        );
        let text = terminal(std::slice::from_ref(&out));
        assert!(text.contains("0.84×*") && text.contains("1.06×*") && text.contains("0.89×*"));
        assert!(text.contains("outside the tolerance"), "{text}");
        let (_, rows) = markdown(std::slice::from_ref(&out));
        assert_eq!(rows[0], "| r vs x | b | 0.84×* | 1.06×* | 0.89×* | – |\n");
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["outside_tolerance"][1], "peak_allocated");
    }
}
