//! `report.html`: one self-contained file (inline CSS and SVG, no script, no external
//! resources) that a CI artifact viewer or a browser opens as is. Every string that comes from
//! a manifest or a record goes through [`super::escape::html`].

use super::escape::html as esc;
use super::model::{Report, VariantSummary};
use super::plots;
use crate::claim::{format_gib, Dimension};
use crate::verdict::claims::ClaimVerdictKind;
use crate::verdict::gate::GateVerdict;
use std::fmt::Write;

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #212121; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; margin: .8rem 0; }
th, td { border: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta { color: #555; } .small { font-size: .8rem; color: #555; }
.verdict { font-weight: 600; white-space: nowrap; }
.confirmed, .unchanged, .improvement { color: #2e7d32; } .refuted, .regression { color: #c62828; }
.inconclusive { color: #e68c00; } .not-applicable, .not-compared { color: #757575; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
.scroll { overflow-x: auto; } p, li { overflow-wrap: anywhere; }
@media (max-width: 600px) { body { margin: 1rem auto; padding: 0 .5rem; } table { font-size: .8rem; } .scroll > table { width: max-content; } td, th { max-width: 15rem; } }
tr.plot-row td { border-top: none; padding: 0 .5rem; } tr.plot-row figure { margin: 0; }
code { background: #f5f5f5; padding: 0 .2rem; border-radius: 3px; }
";

fn class(name: &str) -> String {
    name.replace(' ', "-")
}

fn figure(out: &mut String, id: &str, plot: Option<Result<String, String>>) {
    match plot {
        Some(Ok(svg)) => {
            let _ = writeln!(
                out,
                "<figure class=\"plot\" id=\"{}\">{svg}</figure>",
                esc(id)
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(
                out,
                "<p class=\"small\">plot {} could not be drawn: {}</p>",
                esc(id),
                esc(&e)
            );
        }
        None => {}
    }
}

fn variant_row(out: &mut String, suite: &str, v: &VariantSummary) {
    let outcomes = v
        .outcomes
        .iter()
        .map(|(s, n)| format!("{n}× {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    let wall = v.wall_ms.as_ref().map_or(("–".into(), "–".into()), |m| {
        (Dimension::Time.format(m.median), m.interval_text())
    });
    let bytes = |b: Option<f64>| b.map(format_gib).unwrap_or_else(|| "–".into());
    let flags = v
        .flags
        .iter()
        .map(|(f, n)| format!("{f} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "<tr><td><code>{}/{}</code>{}</td><td>{}{}</td><td class=\"num\">{}</td><td class=\"num\">{}{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        esc(suite),
        esc(&v.name),
        v.description
            .as_ref()
            .map(|d| format!("<br><span class=\"small\">{}</span>", esc(d)))
            .unwrap_or_default(),
        esc(if outcomes.is_empty() { "not run" } else { &outcomes }),
        v.oom
            .as_ref()
            .map(|o| format!("<br><span class=\"small\">{}</span>", esc(o)))
            .unwrap_or_default(),
        v.calls,
        v.flagged,
        if flags.is_empty() {
            String::new()
        } else {
            format!("<br><span class=\"small\">{}</span>", esc(&flags))
        },
        esc(&wall.0),
        esc(&wall.1),
        esc(&bytes(v.peak_allocated_bytes)),
        esc(&bytes(v.peak_reserved_bytes)),
        esc(&bytes(v.budget_bytes)),
    );
}

/// Renders the whole report as one HTML document.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let r = &report.run;
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>claimbench report {}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        esc(&r.id)
    );
    let _ = writeln!(out, "<h1>claimbench: {}</h1>", esc(&report.headline()));
    let mut facts = vec![
        format!("run <code>{}</code>", esc(&r.id)),
        esc(r.gpu.as_deref().unwrap_or(&r.device)),
    ];
    if let Some(torch) = &r.torch {
        facts.push(format!("torch {}", esc(torch)));
    }
    facts.push(format!(
        "claimbench {} ({})",
        esc(&r.harness_version),
        esc(&r.git_commit)
    ));
    facts.push(format!("host {}", esc(&r.host)));
    facts.push(format!("started {}", esc(&r.started_at)));
    let _ = writeln!(out, "<p class=\"meta\">{}</p>", facts.join(" · "));
    if r.interrupted {
        let _ = writeln!(
            out,
            "<p class=\"refuted\">Interrupted: figures cover what finished before the stop.</p>"
        );
    } else if let Some(why) = &r.incomplete {
        let _ = writeln!(
            out,
            "<p class=\"refuted\">Incomplete: the run was cut short ({}); figures cover what finished.</p>",
            esc(why)
        );
    }

    if let Some(gate) = &report.gate {
        let _ = writeln!(out, "<h2 id=\"regressions\">Regressions</h2>");
        if !gate.baselines.is_empty() {
            let _ = writeln!(
                out,
                "<p>Compared with {}.</p>",
                esc(&gate.baselines.join(", "))
            );
        }
        if !gate.mismatches.is_empty() {
            let _ = writeln!(
                out,
                "<p class=\"inconclusive\">The baseline was measured on other hardware or software ({}); timings may differ for reasons other than the code.</p>",
                esc(&gate.mismatches.join(", "))
            );
        }
        let _ = writeln!(
            out,
            "<div class=\"scroll\"><table><tr><th>verdict</th><th>variant</th><th>metric</th><th>baseline</th><th>candidate</th><th>change</th><th>95 % CI</th><th>p (adj.)</th><th>reason</th></tr>"
        );
        let mut entries: Vec<_> = gate.entries.iter().collect();
        entries.sort_by_key(|e| e.verdict != GateVerdict::Regression);
        for e in entries {
            let value = |v: Option<f64>| match (v, Dimension::of_metric(&e.metric)) {
                (Some(v), Some(d)) => d.format(v),
                _ => "–".into(),
            };
            let ci = e
                .interval
                .map(|i| format!("[{:+.1} %, {:+.1} %]", 100.0 * i.lower(), 100.0 * i.upper()))
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(
                out,
                "<tr><td class=\"verdict {}\">{}</td><td><code>{}/{}</code></td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                class(e.verdict.name()),
                esc(e.verdict.name()),
                esc(&e.suite),
                esc(&e.variant),
                esc(&e.metric),
                esc(&value(e.baseline_median)),
                esc(&value(e.candidate_median)),
                e.relative_change
                    .map(|c| format!("{:+.1} %", 100.0 * c))
                    .unwrap_or_else(|| "–".into()),
                esc(&ci),
                e.p_adjusted
                    .map(|p| format!("{p:.3}"))
                    .unwrap_or_else(|| "–".into()),
                esc(&e.reason)
            );
        }
        let _ = writeln!(out, "</table></div>");
    }

    if !report.claims.is_empty() {
        let _ = writeln!(out, "<h2 id=\"claims\">Claims</h2>");
        let _ = writeln!(
            out,
            "<p class=\"small\">Green band: the claimed range. Line: the measured interval; dot: the estimate; coloured by verdict.</p>"
        );
        let _ = writeln!(
            out,
            "<div class=\"scroll\"><table><tr><th>claim</th><th>verdict</th><th>measured</th><th>claimed</th></tr>"
        );
        let mut claims: Vec<_> = report.claims.iter().enumerate().collect();
        claims.sort_by_key(|(_, c)| c.verdict);
        for (index, c) in claims {
            let mut plot = String::new();
            figure(
                &mut plot,
                &format!("plot-claim-{index}"),
                plots::claim_interval(c),
            );
            let flagged = match c.without_flagged {
                Some(w) if w != c.verdict => format!(
                    "<br><span class=\"small\">{} without flagged samples</span>",
                    esc(w.name())
                ),
                _ => String::new(),
            };
            let steps: String = c
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "<br><span class=\"small {}\">{} {} {}: {}</span>",
                        class(s.verdict.name()),
                        esc(&s.lower),
                        esc(s.relation.symbol()),
                        esc(&s.upper),
                        esc(&s.reason)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "<tr><td><strong>{}</strong> {}<br><span class=\"small\">{} · {} · {} · line {}</span></td><td class=\"verdict {}\">{}{flagged}</td><td>{}<br><span class=\"small\">{}</span>{steps}</td><td>{}</td></tr>",
                esc(&c.id),
                esc(&c.summary),
                esc(&c.suite),
                esc(&c.source),
                esc(&c.kind),
                c.line,
                class(c.verdict.name()),
                esc(c.verdict.name()),
                esc(&c.measured()),
                esc(&c.reason),
                esc(&c.claimed),
            );
            if !plot.is_empty() {
                let _ = writeln!(
                    out,
                    "<tr class=\"plot-row\"><td colspan=\"4\">{plot}</td></tr>"
                );
            }
        }
        let _ = writeln!(out, "</table></div>");
    }

    for suite in &report.suites {
        let id = crate::store::slug(&suite.suite);
        let _ = writeln!(
            out,
            "<h2 id=\"suite-{}\">Suite {}</h2>",
            esc(&id),
            esc(&suite.suite)
        );
        let mut about = vec![format!("profile {}", esc(&suite.profile))];
        about.push(format!(
            "manifest <code>{}</code>",
            esc(&suite.manifest_path)
        ));
        if let Some(d) = &suite.description {
            about.insert(0, esc(d));
        }
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", about.join(" · "));
        let _ = writeln!(
            out,
            "<div class=\"scroll\"><table><tr><th>variant</th><th>outcomes</th><th>calls</th><th>flagged</th><th>wall</th><th>95 % CI or range</th><th>peak allocated</th><th>peak reserved</th><th>budget</th></tr>"
        );
        for v in &suite.variants {
            variant_row(&mut out, &suite.suite, v);
        }
        let _ = writeln!(out, "</table></div>");
        figure(
            &mut out,
            &format!("plot-distribution-{id}"),
            plots::distributions(suite),
        );
        figure(&mut out, &format!("plot-stages-{id}"), plots::stages(suite));
        figure(&mut out, &format!("plot-memory-{id}"), plots::memory(suite));
        let series: Vec<_> = report
            .trends
            .iter()
            .filter(|t| t.suite == suite.suite)
            .collect();
        figure(
            &mut out,
            &format!("plot-trend-{id}"),
            plots::trend(&suite.suite, &series),
        );
    }

    out.push_str(&super::fidelity::html(&report.fidelity));
    out.push_str(&super::slow::html(&report.slow_processes));
    out.push_str(&super::held::html(&report.held_between_calls));
    out.push_str(&super::shifts::html(&report.shifts));
    let q = &report.quality;
    let _ = writeln!(out, "<h2 id=\"quality\">Sample quality</h2>");
    let _ = writeln!(out, "<p>{}</p>", esc(&q.summary()));
    if q.flagged > 0 {
        let changes: Vec<String> = q
            .changes()
            .iter()
            .map(|c| format!("<li>{}</li>", esc(c)))
            .collect();
        if changes.is_empty() {
            let _ = writeln!(out, "<p>Leaving them out changes no verdict.</p>");
        } else {
            let _ = writeln!(
                out,
                "<p>Leaving them out changes:</p><ul>{}</ul>",
                changes.join("")
            );
        }
    }
    let refuted = report.claim_count(ClaimVerdictKind::Refuted);
    let _ = writeln!(
        out,
        "<p class=\"small\">Exit status {}: {} regression(s), {refuted} refuted claim(s), {} failed worker(s).</p>",
        report.exit_code(),
        report.regressions(),
        report.failed_workers()
    );
    let _ = writeln!(out, "</body>\n</html>");
    out
}
