//! The compact per-variant table printed at the end of `claimbench run`.

use crate::store::{RunRecord, SampleRow};
use crate::text::printable;
use std::collections::{BTreeMap, HashMap};
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
        let processes = suite.processes_by_variant();
        // Every measured row, whatever its process's outcome: grouped in one pass.
        let mut rows: HashMap<&str, Vec<&SampleRow>> = HashMap::new();
        for s in samples
            .iter()
            .filter(|s| s.suite == suite.plan.suite && !s.warmup)
        {
            rows.entry(s.variant.as_str()).or_default().push(s);
        }
        for variant in &suite.plan.variants {
            let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
            for p in processes.get(variant.name.as_str()).into_iter().flatten() {
                *outcomes.entry(p.status.as_str()).or_default() += 1;
            }
            if outcomes.is_empty() {
                outcomes.insert("not run", 0);
            }
            let measured = rows
                .get(variant.name.as_str())
                .map_or(&[][..], Vec::as_slice);
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
    if let Some(why) = run.incomplete() {
        let _ = writeln!(
            out,
            "incomplete run: cut short because {why}; the table covers what finished"
        );
    }
    out
}

fn fmt_value(metric: &str, v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if metric.ends_with("_bytes") => format!("{:.1} MiB", x / (1u64 << 20) as f64),
        Some(x) => format!("{x:.3} ms"),
    }
}

fn fmt_pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:+.1}%", x * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// The regression table: regressions first, then the rest, one line per (variant, metric).
pub fn gate_table(report: &crate::verdict::gate::GateReport) -> String {
    use crate::verdict::gate::GateVerdict;
    let mut out = String::new();
    if !report.mismatches.is_empty() {
        let _ = writeln!(
            out,
            "warning: baseline from different hardware/software ({}); timings may not be comparable",
            report.mismatches.join(", ")
        );
    }
    // 120 columns: the adjusted p-value only with `--wide`, the reason on its own line.
    let wide = crate::text::is_wide();
    let _ = if wide {
        writeln!(
            out,
            "{:<14} {:<36} {:<20} {:>14} {:>14} {:>8} {:>19} {:>8}  reason",
            "verdict", "variant", "metric", "baseline", "candidate", "change", "95% CI", "p (adj)"
        )
    } else {
        writeln!(
            out,
            "{:<14} {:<32} {:<18} {:>12} {:>12} {:>8} {:>17}",
            "verdict", "variant", "metric", "baseline", "candidate", "change", "95% CI"
        )
    };
    let rank = |v: GateVerdict| match v {
        GateVerdict::Regression => 0,
        GateVerdict::Inconclusive => 1,
        GateVerdict::Improvement => 2,
        GateVerdict::InsufficientReplication => 3,
        GateVerdict::NotCompared => 4,
        GateVerdict::Unchanged => 5,
    };
    let mut entries: Vec<_> = report.entries.iter().collect();
    entries.sort_by_key(|e| rank(e.verdict));
    for e in entries {
        let ci = e
            .interval
            .map(|i| format!("[{:+.1}%, {:+.1}%]", i.lower() * 100.0, i.upper() * 100.0))
            .unwrap_or_else(|| "–".into());
        let p = e
            .p_adjusted
            .map(|p| format!("{p:.3}"))
            .unwrap_or_else(|| "–".into());
        let variant = format!("{}/{}", e.suite, e.variant);
        let (base, cand) = (
            fmt_value(&e.metric, e.baseline_median),
            fmt_value(&e.metric, e.candidate_median),
        );
        let change = fmt_pct(e.relative_change);
        let reason = printable(&e.reason);
        let _ = if wide {
            writeln!(
                out,
                "{:<14} {variant:<36} {:<20} {base:>14} {cand:>14} {change:>8} {ci:>19} {p:>8}  {reason}",
                e.verdict.name(),
                e.metric,
            )
        } else {
            writeln!(
                out,
                "{:<14} {variant:<32} {:<18} {base:>12} {cand:>12} {change:>8} {ci:>17}",
                e.verdict.name(),
                e.metric,
            )
            .and_then(|()| match reason.is_empty() {
                true => Ok(()),
                false => writeln!(out, "{:<14} {reason} (adjusted p {p})", ""),
            })
        };
        if !e.config_changes.is_empty() {
            let _ = writeln!(
                out,
                "{:<14} configuration changed since the baseline: {}",
                "",
                printable(&e.config_changes.join(", "))
            );
        }
    }
    let _ = writeln!(
        out,
        "{} regression(s), {} improvement(s), {} inconclusive, {} insufficient replication, {} unchanged, {} not compared; correction: {}",
        report.count(GateVerdict::Regression),
        report.count(GateVerdict::Improvement),
        report.count(GateVerdict::Inconclusive),
        report.count(GateVerdict::InsufficientReplication),
        report.count(GateVerdict::Unchanged),
        report.count(GateVerdict::NotCompared),
        report.corrections.iter().map(|(s, c)| format!("{s}: {c}")).collect::<Vec<_>>().join("; ")
    );
    out
}

/// Colour of a claim verdict on a terminal.
fn verdict_style(v: crate::verdict::claims::ClaimVerdictKind) -> anstyle::Style {
    use crate::verdict::claims::ClaimVerdictKind as K;
    let colour = match v {
        K::Confirmed => anstyle::AnsiColor::Green,
        K::Refuted => anstyle::AnsiColor::Red,
        K::Inconclusive => anstyle::AnsiColor::Yellow,
        K::InsufficientReplication => anstyle::AnsiColor::Cyan,
        K::NotApplicable => anstyle::AnsiColor::BrightBlack,
    };
    anstyle::Style::new().fg_color(Some(colour.into())).bold()
}

/// The claims, refuted first, three lines each: verdict, id, suite and summary; what was
/// measured against what was claimed; the reason. Not-applicable claims say nothing about the
/// measurement, so they are folded into one line per reason (a CPU run has dozens). Verdicts
/// carry ANSI colours: print through `anstream`, which drops them when stdout is no terminal
/// or `NO_COLOR` is set.
pub fn claims_table(claims: &[crate::verdict::claims::ClaimVerdict]) -> String {
    use crate::verdict::claims::ClaimVerdictKind;
    let mut out = String::new();
    if claims.is_empty() {
        return out;
    }
    let _ = writeln!(out, "claims");
    let mut sorted: Vec<_> = claims.iter().collect();
    sorted.sort_by_key(|c| c.verdict);
    let (not_applicable, judged): (Vec<_>, Vec<_>) = sorted
        .into_iter()
        .partition(|c| c.verdict == ClaimVerdictKind::NotApplicable);
    for c in judged {
        let style = verdict_style(c.verdict);
        let verdict = format!("{:<15}", c.verdict.name());
        let _ = writeln!(
            out,
            "  {style}{verdict}{style:#} {} ({}): {}",
            c.id,
            c.suite,
            printable(&c.summary)
        );
        let _ = writeln!(
            out,
            "  {:<15} measured {}; claimed {}",
            "",
            printable(&c.measured()),
            printable(&c.claimed)
        );
        let _ = writeln!(out, "  {:<15} {}", "", printable(&c.reason));
        if let Some(without) = c.without_flagged.filter(|w| *w != c.verdict) {
            let _ = writeln!(
                out,
                "  {:<15} {} without the {} flagged samples",
                "",
                without.name(),
                c.flagged_samples
            );
        }
    }
    let style = verdict_style(ClaimVerdictKind::NotApplicable);
    for (reason, group) in crate::report::model::not_applicable_by_reason(not_applicable) {
        let ids: Vec<String> = group
            .iter()
            .map(|c| format!("{} ({})", c.id, c.suite))
            .collect();
        let verdict = format!("{:<15}", ClaimVerdictKind::NotApplicable.name());
        let _ = writeln!(
            out,
            "  {style}{verdict}{style:#} {} claim(s): {}",
            ids.len(),
            printable(reason)
        );
        let _ = writeln!(out, "  {:<15} {}", "", ids.join(", "));
    }
    let counts: Vec<String> = ClaimVerdictKind::ALL
        .iter()
        .map(|&k| {
            let n = claims.iter().filter(|c| c.verdict == k).count();
            format!("{n} {}", k.name())
        })
        .collect();
    let _ = writeln!(out, "{}", counts.join(", "));
    out
}

/// How many samples were flagged and whether any verdict depends on them.
pub fn quality_line(q: &crate::report::model::Quality) -> String {
    if q.flagged == 0 {
        return format!(
            "sample quality: none of {} measured samples flagged\n",
            q.measured
        );
    }
    let changed = q.claims_changed.len() + q.gate_changed.len();
    let effect = if changed == 0 {
        "no verdict changes without them".to_string()
    } else {
        format!("{changed} verdict(s) change without them (see the report)")
    };
    format!(
        "sample quality: {} of {} measured samples flagged ({}); {effect}\n",
        q.flagged,
        q.measured,
        q.by_flag_text()
    )
}
