//! `report.md`: for a pull-request comment or a CI step summary. What needs attention comes
//! first: regressions, then claims, then the per-variant summary and sample quality, with the
//! full comparison table folded away.

use super::escape::markdown_cell as cell;
use super::model::{not_applicable_by_reason, MetricSummary, Report, VariantSummary};
use crate::claim::{format_gib, Dimension};
use crate::verdict::claims::ClaimVerdictKind;
use crate::verdict::gate::{GateEntry, GateVerdict};
use std::fmt::Write;

fn verdict_badge(v: ClaimVerdictKind) -> &'static str {
    match v {
        ClaimVerdictKind::Confirmed => "✅ confirmed",
        ClaimVerdictKind::Refuted => "❌ refuted",
        ClaimVerdictKind::Inconclusive => "❔ inconclusive",
        ClaimVerdictKind::InsufficientReplication => "⏳ insufficient replication",
        ClaimVerdictKind::NotApplicable => "➖ not applicable",
    }
}

fn gate_badge(v: GateVerdict) -> &'static str {
    match v {
        GateVerdict::Regression => "❌ regression",
        GateVerdict::Improvement => "🚀 improvement",
        GateVerdict::Unchanged => "✅ unchanged",
        GateVerdict::Inconclusive => "❔ inconclusive",
        GateVerdict::InsufficientReplication => "⏳ insufficient replication",
        GateVerdict::NotCompared => "➖ not compared",
    }
}

fn metric_value(metric: &str, value: Option<f64>) -> String {
    match (value, Dimension::of_metric(metric)) {
        (Some(v), Some(d)) => d.format(v),
        (Some(v), None) => format!("{v}"),
        (None, _) => "–".into(),
    }
}

fn percent(value: Option<f64>) -> String {
    value
        .map(|v| format!("{:+.1} %", 100.0 * v))
        .unwrap_or_else(|| "–".into())
}

fn gate_row(out: &mut String, e: &GateEntry) {
    let ci = e
        .interval
        .map(|i| format!("[{:+.1} %, {:+.1} %]", 100.0 * i.lower(), 100.0 * i.upper()))
        .unwrap_or_else(|| "–".into());
    let p = e
        .p_adjusted
        .map(|p| format!("{p:.3}"))
        .unwrap_or_else(|| "–".into());
    let mut reason = cell(&e.reason);
    if !e.config_changes.is_empty() {
        let _ = write!(
            reason,
            " (configuration changed: {})",
            cell(&e.config_changes.join(", "))
        );
    }
    let _ = writeln!(
        out,
        "| {} | `{}/{}` | `{}` | {} | {} | {} | {} | {} | {} |",
        gate_badge(e.verdict),
        cell(&e.suite),
        cell(&e.variant),
        cell(&e.metric),
        metric_value(&e.metric, e.baseline_median),
        metric_value(&e.metric, e.candidate_median),
        percent(e.relative_change),
        ci,
        p,
        reason
    );
}

const GATE_HEADER: &str = "| verdict | variant | metric | baseline | candidate | change | 95 % CI | p (adj.) | reason |\n|---|---|---|---:|---:|---:|---|---:|---|\n";

fn median_text(m: &Option<MetricSummary>) -> (String, String) {
    match m {
        Some(m) => (Dimension::Time.format(m.median), m.interval_text()),
        None => ("–".into(), "–".into()),
    }
}

fn outcomes_text(v: &VariantSummary) -> String {
    if v.outcomes.is_empty() {
        return "not run".into();
    }
    v.outcomes
        .iter()
        .map(|(status, n)| format!("{n}× {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the whole report as GitHub-flavoured Markdown.
/// GitHub refuses comments longer than 65,536 characters; the margin leaves room for what a
/// workflow wraps around the report.
pub const COMMENT_LIMIT: usize = 60_000;

/// A table or list whose rows may be cut to fit the comment: what comes before the rows, the
/// rows in order of importance, and what closes it.
struct Block {
    head: String,
    rows: Vec<String>,
    tail: String,
}

impl Block {
    fn text(head: String) -> Block {
        Block {
            head,
            rows: Vec::new(),
            tail: String::new(),
        }
    }
}

/// The report in at most [`COMMENT_LIMIT`] bytes (see [`render_within`]).
pub fn render(report: &Report) -> String {
    render_within(report, COMMENT_LIMIT)
}

/// The report in at most `limit` bytes: blocks in order of importance (headline, regressions,
/// claims, variants, sample quality, every comparison); where the rows of a block no longer
/// fit, the rest are left out with a line that says how many and where the full tables are.
pub fn render_within(report: &Report, limit: usize) -> String {
    const CUT: &str = "\n_… {n} more row(s) left out to fit a comment: the full tables are in report.html and report.json of the run._\n";
    let blocks = blocks(report);
    // Every head and tail is kept, so reserve them up front.
    let mut reserved: usize = blocks
        .iter()
        .map(|b| b.head.len() + b.tail.len() + if b.rows.is_empty() { 0 } else { CUT.len() + 8 })
        .sum();
    let mut out = String::new();
    for block in blocks {
        reserved -= block.head.len() + block.tail.len();
        if !block.rows.is_empty() {
            reserved -= CUT.len() + 8;
        }
        out.push_str(&block.head);
        let mut kept = 0;
        for row in &block.rows {
            if out.len() + row.len() + block.tail.len() + CUT.len() + 8 + reserved > limit {
                break;
            }
            out.push_str(row);
            kept += 1;
        }
        if kept < block.rows.len() {
            out.push_str(&CUT.replace("{n}", &(block.rows.len() - kept).to_string()));
        }
        out.push_str(&block.tail);
    }
    out
}

fn blocks(report: &Report) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut out = String::new();
    let _ = writeln!(out, "## claimbench: {}", report.headline());
    let _ = writeln!(out);
    let r = &report.run;
    let mut facts = vec![format!("run `{}`", cell(&r.id))];
    facts.push(match &r.gpu {
        Some(gpu) => cell(gpu),
        None => cell(&r.device),
    });
    if let Some(torch) = &r.torch {
        facts.push(format!("torch {}", cell(torch)));
    }
    facts.push(format!(
        "claimbench {} ({})",
        cell(&r.harness_version),
        cell(&r.git_commit)
    ));
    let profiles: Vec<String> = report
        .suites
        .iter()
        .map(|s| format!("{}:{}", s.suite, s.profile))
        .collect();
    if !profiles.is_empty() {
        facts.push(format!("profiles {}", cell(&profiles.join(", "))));
    }
    let _ = writeln!(out, "{}", facts.join(" · "));
    if r.interrupted {
        let _ = writeln!(
            out,
            "\n> **Interrupted**: the run was stopped early; figures cover what finished."
        );
    } else if let Some(why) = &r.incomplete {
        let _ = writeln!(
            out,
            "\n> **Incomplete**: the run was cut short ({}); figures cover what finished.",
            cell(why)
        );
    }
    blocks.push(Block::text(out));

    if let Some(gate) = &report.gate {
        let mut head = String::new();
        let _ = writeln!(head, "\n### Regressions\n");
        if !gate.baselines.is_empty() {
            let _ = writeln!(head, "Compared with {}.", cell(&gate.baselines.join(", ")));
        }
        if !gate.mismatches.is_empty() {
            let _ = writeln!(
                head,
                "\n> **Warning**: the baseline was measured on other hardware or software ({}); timings may differ for reasons other than the code.",
                cell(&gate.mismatches.join(", "))
            );
        }
        let regressions: Vec<&GateEntry> = gate
            .entries
            .iter()
            .filter(|e| e.verdict == GateVerdict::Regression)
            .collect();
        if regressions.is_empty() {
            let _ = writeln!(head, "\nNo regression.");
            blocks.push(Block::text(head));
        } else {
            let _ = write!(head, "\n{GATE_HEADER}");
            let rows = regressions
                .into_iter()
                .map(|e| {
                    let mut row = String::new();
                    gate_row(&mut row, e);
                    row
                })
                .collect();
            blocks.push(Block {
                head,
                rows,
                tail: String::new(),
            });
        }
    }

    if !report.claims.is_empty() {
        blocks.push(claims_block(report));
    }
    let tables = [
        super::fidelity::markdown(&report.fidelity),
        super::slow::markdown(&report.slow_processes),
        super::held::markdown(&report.held_between_calls),
    ];
    for (head, rows) in tables {
        if !rows.is_empty() {
            let tail = String::new();
            blocks.push(Block { head, rows, tail });
        }
    }
    if !report.shifts.is_empty() {
        let (head, rows) = super::shifts::markdown(&report.shifts);
        let tail = String::new();
        blocks.push(Block { head, rows, tail });
    }
    blocks.push(variants_block(report));
    blocks.push(Block::text(quality_text(report)));

    if let Some(gate) = &report.gate {
        let head = format!(
            "\n<details><summary>All comparisons ({})</summary>\n\n{GATE_HEADER}",
            gate.entries.len()
        );
        let rows = gate
            .entries
            .iter()
            .map(|e| {
                let mut row = String::new();
                gate_row(&mut row, e);
                row
            })
            .collect();
        let corrections: Vec<String> = gate
            .corrections
            .iter()
            .map(|(s, c)| format!("{}: {}", cell(s), cell(c)))
            .collect();
        let tail = format!(
            "\nMultiple-comparison correction: {}.\n\n</details>\n",
            corrections.join("; ")
        );
        blocks.push(Block { head, rows, tail });
    }
    blocks
}

/// Judged claims first (refuted, inconclusive, confirmed), one row each; not-applicable claims
/// one row per reason, since they say nothing about the measurement.
fn claims_block(report: &Report) -> Block {
    let head =
        "\n### Claims\n\n| claim | verdict | measured | claimed | reason |\n|---|---|---|---|---|\n"
            .to_string();
    let mut claims: Vec<_> = report.claims.iter().collect();
    claims.sort_by_key(|c| c.verdict);
    let (not_applicable, judged): (Vec<_>, Vec<_>) = claims
        .into_iter()
        .partition(|c| c.verdict == ClaimVerdictKind::NotApplicable);
    let mut rows = Vec::new();
    for c in judged {
        let what = match (&c.metric, c.kind.as_str()) {
            (Some(m), kind) => format!(" · {kind} of `{}`", cell(m)),
            (None, kind) => format!(" · {kind}"),
        };
        let variants = if c.variants.is_empty() {
            String::new()
        } else {
            let separator = match c.kind.as_str() {
                "change" | "difference" => " → ",
                _ => ", ",
            };
            format!(
                " · {}",
                c.variants
                    .iter()
                    .map(|v| format!("`{}`", cell(v)))
                    .collect::<Vec<_>>()
                    .join(separator)
            )
        };
        let flagged = match c.without_flagged {
            Some(without) if without != c.verdict => {
                format!(" ⚠ {} without flagged samples", without.name())
            }
            _ => String::new(),
        };
        rows.push(format!(
            "| **{}** {}<br><sub>{} · {}{what}{variants}</sub> | {}{flagged} | {} | {} | {} |\n",
            cell(&c.id),
            cell(&c.summary),
            cell(&c.suite),
            cell(&c.source),
            verdict_badge(c.verdict),
            cell(&c.measured()),
            cell(&c.claimed),
            cell(&c.reason)
        ));
    }
    for (reason, group) in not_applicable_by_reason(not_applicable) {
        let ids: Vec<String> = group
            .iter()
            .map(|c| format!("**{}** <sub>{}</sub>", cell(&c.id), cell(&c.suite)))
            .collect();
        rows.push(format!(
            "| {} | {} ({}) | – | – | {} |\n",
            ids.join(", "),
            verdict_badge(ClaimVerdictKind::NotApplicable),
            ids.len(),
            cell(reason)
        ));
    }
    Block {
        head,
        rows,
        tail: String::new(),
    }
}

fn variants_block(report: &Report) -> Block {
    let head = "\n### Variants\n\n| variant | outcomes | calls (flagged) | wall | 95 % CI or range | peak allocated | peak reserved | budget |\n|---|---|---:|---:|---|---:|---:|---:|\n".to_string();
    let mut rows = Vec::new();
    for suite in &report.suites {
        for v in &suite.variants {
            let (median, ci) = median_text(&v.wall_ms);
            let bytes = |b: Option<f64>| b.map(format_gib).unwrap_or_else(|| "–".into());
            let mut outcomes = outcomes_text(v);
            if let Some(oom) = &v.oom {
                let _ = write!(outcomes, " ({})", cell(oom));
            }
            rows.push(format!(
                "| `{}/{}` | {} | {} ({}) | {} | {} | {} | {} | {} |\n",
                cell(&suite.suite),
                cell(&v.name),
                outcomes,
                v.calls,
                v.flagged,
                median,
                ci,
                bytes(v.peak_allocated_bytes),
                bytes(v.peak_reserved_bytes),
                bytes(v.budget_bytes)
            ));
        }
    }
    Block {
        head,
        rows,
        tail: String::new(),
    }
}

fn quality_text(report: &Report) -> String {
    let mut out = String::new();
    let q = &report.quality;
    let _ = writeln!(out, "\n### Sample quality\n");
    let _ = writeln!(out, "{}", q.summary());
    if q.flagged > 0 {
        let changes: Vec<String> = q
            .changes()
            .iter()
            .map(|c| format!("- {}", cell(c)))
            .collect();
        if changes.is_empty() {
            let _ = writeln!(out, "Leaving them out changes no verdict.");
        } else {
            let _ = writeln!(out, "Leaving them out changes:\n\n{}", changes.join("\n"));
        }
    }
    out
}
