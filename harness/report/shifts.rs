//! The "Persistent shifts" section of every report format: change points in the metric
//! histories of the run's suites (see [`crate::store::history`]), newest-first worsening ones
//! marked.

use super::escape::{html as esc, markdown_cell as cell};
use crate::store::history::{Shift, RECENT_RUNS};
use crate::text::printable;
use std::fmt::Write;

fn value(metric: &str, v: f64) -> String {
    if metric.ends_with("_bytes") {
        format!("{:.1} MiB", v / (1u64 << 20) as f64)
    } else {
        format!("{v:.3} ms")
    }
}

/// What a shift's row says, unescaped: where, how much, between which runs.
fn fields(s: &Shift) -> [String; 5] {
    [
        format!("{}/{}", s.series.suite, s.series.variant),
        s.series.metric.clone(),
        format!(
            "{:+.1}% ({} → {})",
            s.relative_change * 100.0,
            value(&s.series.metric, s.before),
            value(&s.series.metric, s.after)
        ),
        format!(
            "{} ({}) → {} ({})",
            s.last_before, s.commit_before, s.first_after, s.commit_after
        ),
        if s.recent_worsening {
            format!("worse, {} run(s) ago", s.runs_since)
        } else {
            format!("{} run(s) ago", s.runs_since)
        },
    ]
}

const INTRO: &str = "Change points (E-divisive means, permutation test) in the per-run medians of each metric's history for this hardware, software and profile";

/// Terminal lines; nothing when there is no shift.
pub fn terminal(shifts: &[Shift]) -> String {
    let mut out = String::new();
    if shifts.is_empty() {
        return out;
    }
    let _ = writeln!(out, "persistent shifts ({INTRO}):");
    for s in shifts {
        let [what, metric, change, runs, when] = fields(s);
        let _ = writeln!(
            out,
            "  {:<40} {:<22} {:<36} {} [{}]",
            printable(&what),
            printable(&metric),
            change,
            printable(&runs),
            when
        );
    }
    out
}

/// The Markdown section's head and one table row per shift (worsening ones first).
pub fn markdown(shifts: &[Shift]) -> (String, Vec<String>) {
    let head = format!(
        "\n### Persistent shifts\n\n{INTRO}; \"worse\" marks a slowdown or growth still in effect that began within the last {RECENT_RUNS} runs.\n\n| variant | metric | change | between runs (commits) | when |\n|---|---|---|---|---|\n"
    );
    let rows = ordered(shifts)
        .map(|s| {
            let cells = fields(s).map(|f| cell(&f));
            format!("| {} |\n", cells.join(" | "))
        })
        .collect();
    (head, rows)
}

/// The HTML section; empty when there is no shift.
pub fn html(shifts: &[Shift]) -> String {
    let mut out = String::new();
    if shifts.is_empty() {
        return out;
    }
    let _ = writeln!(out, "<h2 id=\"shifts\">Persistent shifts</h2>");
    let _ = writeln!(out, "<p>{}.</p>", esc(INTRO));
    let _ = writeln!(
        out,
        "<div class=\"scroll\"><table><tr><th>variant</th><th>metric</th><th>change</th><th>between runs (commits)</th><th>when</th></tr>"
    );
    for s in ordered(shifts) {
        let class = if s.recent_worsening {
            " class=\"refuted\""
        } else {
            ""
        };
        let cells: Vec<String> = fields(s)
            .iter()
            .map(|f| format!("<td>{}</td>", esc(f)))
            .collect();
        let _ = writeln!(out, "<tr{class}>{}</tr>", cells.join(""));
    }
    let _ = writeln!(out, "</table></div>");
    out
}

/// Worsening shifts first, then the rest, each in series order.
fn ordered(shifts: &[Shift]) -> impl Iterator<Item = &Shift> {
    let worse = shifts.iter().filter(|s| s.recent_worsening);
    worse.chain(shifts.iter().filter(|s| !s.recent_worsening))
}
