//! `report.md`: for a pull-request comment or a CI step summary. What needs attention comes
//! first: regressions, then claims, then the per-variant summary and sample quality, with the
//! full comparison table folded away.

use super::escape::markdown_cell as cell;
use super::model::{MetricSummary, Report, VariantSummary};
use crate::claim::{format_gib, Dimension};
use crate::verdict::claims::ClaimVerdictKind;
use crate::verdict::gate::{GateEntry, GateVerdict};
use std::fmt::Write;

fn verdict_badge(v: ClaimVerdictKind) -> &'static str {
    match v {
        ClaimVerdictKind::Confirmed => "✅ confirmed",
        ClaimVerdictKind::Refuted => "❌ refuted",
        ClaimVerdictKind::Inconclusive => "❔ inconclusive",
        ClaimVerdictKind::NotApplicable => "➖ not applicable",
    }
}

fn gate_badge(v: GateVerdict) -> &'static str {
    match v {
        GateVerdict::Regression => "❌ regression",
        GateVerdict::Improvement => "🚀 improvement",
        GateVerdict::Unchanged => "✅ unchanged",
        GateVerdict::Inconclusive => "❔ inconclusive",
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
        Some(m) => (
            Dimension::Time.format(m.median),
            format!(
                "[{}, {}]",
                Dimension::Time.format(m.lower),
                Dimension::Time.format(m.upper)
            ),
        ),
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
pub fn render(report: &Report) -> String {
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

    if let Some(gate) = &report.gate {
        let _ = writeln!(out, "\n### Regressions\n");
        if !gate.baselines.is_empty() {
            let _ = writeln!(out, "Compared with {}.", cell(&gate.baselines.join(", ")));
        }
        if !gate.mismatches.is_empty() {
            let _ = writeln!(
                out,
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
            let _ = writeln!(out, "\nNo regression.");
        } else {
            let _ = write!(out, "\n{GATE_HEADER}");
            for e in regressions {
                gate_row(&mut out, e);
            }
        }
    }

    if !report.claims.is_empty() {
        let _ = writeln!(out, "\n### Claims\n");
        let _ = writeln!(
            out,
            "| claim | verdict | measured | claimed | reason |\n|---|---|---|---|---|"
        );
        let mut claims: Vec<_> = report.claims.iter().collect();
        claims.sort_by_key(|c| c.verdict);
        for c in claims {
            let what = match (&c.metric, c.kind.as_str()) {
                (_, "not-applicable") => String::new(),
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
            let _ = writeln!(
                out,
                "| **{}** {}<br><sub>{} · {}{what}{variants}</sub> | {}{flagged} | {} | {} | {} |",
                cell(&c.id),
                cell(&c.summary),
                cell(&c.suite),
                cell(&c.source),
                verdict_badge(c.verdict),
                cell(&c.measured()),
                cell(&c.claimed),
                cell(&c.reason)
            );
        }
    }

    let _ = writeln!(out, "\n### Variants\n");
    let _ = writeln!(
        out,
        "| variant | outcomes | calls (flagged) | median wall | 95 % CI | peak allocated | peak reserved | budget |\n|---|---|---:|---:|---|---:|---:|---:|"
    );
    for suite in &report.suites {
        for v in &suite.variants {
            let (median, ci) = median_text(&v.wall_ms);
            let bytes = |b: Option<f64>| b.map(format_gib).unwrap_or_else(|| "–".into());
            let mut outcomes = outcomes_text(v);
            if let Some(oom) = &v.oom {
                let _ = write!(outcomes, " ({})", cell(oom));
            }
            let _ = writeln!(
                out,
                "| `{}/{}` | {} | {} ({}) | {} | {} | {} | {} | {} |",
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
            );
        }
    }

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

    if let Some(gate) = &report.gate {
        let _ = writeln!(
            out,
            "\n<details><summary>All comparisons ({})</summary>\n",
            gate.entries.len()
        );
        let _ = write!(out, "{GATE_HEADER}");
        for e in &gate.entries {
            gate_row(&mut out, e);
        }
        let corrections: Vec<String> = gate
            .corrections
            .iter()
            .map(|(s, c)| format!("{}: {}", cell(s), cell(c)))
            .collect();
        let _ = writeln!(
            out,
            "\nMultiple-comparison correction: {}.\n\n</details>",
            corrections.join("; ")
        );
    }
    out
}
