//! The human-readable plan that `claimbench check` prints, so a person can see what a manifest
//! and profile expand to before spending GPU time on it.

use crate::knobs::registry::changes_from_default;
use crate::plan::{CompareSettings, Order, Plan, VariantPlan};
use std::fmt::Write;
use std::time::Duration;

/// Jobs listed by name in the order summary before it is abbreviated.
const LISTED_JOBS: usize = 24;

/// Describes `plan` over several lines: suite, profile, order, comparison settings and
/// adaptive budget, one block per variant (name, description, claims, params, knobs that differ
/// from PyTorch's defaults, run settings), then the jobs in execution order.
pub fn describe_plan(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "suite:    {}", plan.suite);
    if let Some(description) = &plan.description {
        let _ = writeln!(out, "          {description}");
    }
    if let Some(first) = plan.variants.first() {
        let _ = writeln!(out, "workload: {}", first.workload);
    }
    if let Some(replica) = &plan.replica {
        let _ = writeln!(
            out,
            "replica:  {replica} (same-named variants are compared in the report)"
        );
    }
    let sha = plan
        .manifest_sha256
        .get(..12)
        .unwrap_or(&plan.manifest_sha256);
    let _ = writeln!(out, "manifest: {} (sha256 {sha})", plan.manifest_path);
    let _ = writeln!(out, "profile:  {}", plan.profile);
    let _ = writeln!(out, "order:    {}", order_text(plan.order, plan.seed));
    let _ = writeln!(out, "compare:  {}", compare_text(&plan.compare));
    if let Some(seconds) = plan.adaptive_budget_s {
        let _ = writeln!(
            out,
            "adaptive budget: {} of worker time for extra processes",
            humantime::format_duration(Duration::from_secs_f64(seconds))
        );
    }

    for variant in &plan.variants {
        let _ = writeln!(out);
        let _ = writeln!(out, "variant {}", variant.name);
        if let Some(description) = &variant.description {
            let _ = writeln!(out, "  about:   {description}");
        }
        if !variant.claims.is_empty() {
            let _ = writeln!(out, "  claims:  {}", variant.claims.join(", "));
        }
        let params: Vec<String> = variant
            .params
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let _ = writeln!(out, "  params:  {}", params.join(" "));
        let knobs = changes_from_default(&variant.knobs);
        let knobs = if knobs.is_empty() {
            String::from("(defaults)")
        } else {
            knobs.join(" ")
        };
        let _ = writeln!(out, "  knobs:   {knobs}");
        let _ = writeln!(
            out,
            "  run:     {}",
            run_text(variant, plan.adaptive_budget_s)
        );
    }

    if !plan.claims.is_empty() {
        let _ = writeln!(out);
        for claim in &plan.claims {
            let metric = claim
                .check
                .metric()
                .map(|m| format!(" of {m}"))
                .unwrap_or_default();
            let stated = match &claim.check {
                crate::claim::ClaimCheck::NotApplicable { reason } => reason.clone(),
                check => check.claimed(),
            };
            let _ = writeln!(
                out,
                "claim {} ({}{metric}): {stated}",
                claim.id,
                claim.check.kind_name(),
            );
        }
    }

    let _ = writeln!(out);
    let jobs: Vec<String> = plan
        .jobs
        .iter()
        .take(LISTED_JOBS)
        .map(|job| match plan.variants.get(job.variant) {
            Some(variant) => format!("{}#{}", variant.name, job.process),
            None => format!("?{}#{}", job.variant, job.process),
        })
        .collect();
    let _ = writeln!(
        out,
        "jobs:     {} ({} variant{}, {})",
        plan.jobs.len(),
        plan.variants.len(),
        if plan.variants.len() == 1 { "" } else { "s" },
        plan.order.as_str()
    );
    let mut listed = jobs.join(" ");
    if plan.jobs.len() > LISTED_JOBS {
        let _ = write!(listed, " … and {} more", plan.jobs.len() - LISTED_JOBS);
    }
    if !listed.is_empty() {
        let _ = writeln!(out, "          {listed}");
    }
    out
}

/// `warmup 3–20 (settle: …), repetitions 10 (max 40 until CI width ≤ 1 %), processes 2–6,
/// timeout 5m`: each count with its maximum where the maximum can be reached, and a note where
/// a maximum is set but nothing would use it.
fn run_text(v: &VariantPlan, adaptive_budget_s: Option<f64>) -> String {
    let warmup = match v.settle {
        Some(settle) => format!(
            "warmup {} (settle: {} calls within {} %, clock ≥ {} %)",
            range(v.warmup, v.warmup_max),
            settle.window,
            percent(settle.tolerance),
            percent(settle.min_clock_fraction)
        ),
        None if v.warmup_max > v.warmup => format!(
            "warmup {} (fixed; max {} unused without settle)",
            v.warmup, v.warmup_max
        ),
        None => format!("warmup {} (fixed)", v.warmup),
    };
    let repetitions = match v.target_rel_ci {
        Some(target) => format!(
            "repetitions {} (max {} until CI width ≤ {} %)",
            v.repetitions,
            v.repetitions_max,
            percent(target)
        ),
        None if v.repetitions_max > v.repetitions => format!(
            "repetitions {} (max {} unused without target_rel_ci)",
            v.repetitions, v.repetitions_max
        ),
        None => format!("repetitions {}", v.repetitions),
    };
    // Extra processes need a precision target and a budget to spend (see `runner`).
    let missing: Vec<&str> = [
        ("target_rel_ci", v.target_rel_ci.is_none()),
        ("adaptive_budget", adaptive_budget_s.is_none()),
    ]
    .into_iter()
    .filter_map(|(key, missing)| missing.then_some(key))
    .collect();
    let processes = if v.processes_max > v.processes && !missing.is_empty() {
        format!(
            "processes {} (max {} unused without {})",
            v.processes,
            v.processes_max,
            missing.join(" and ")
        )
    } else {
        format!("processes {}", range(v.processes, v.processes_max))
    };
    let timeout = humantime::format_duration(Duration::from_millis(v.timeout_ms));
    format!("{warmup}, {repetitions}, {processes}, timeout {timeout}")
}

/// `alpha 0.05 (holm), time threshold 3 % (gpu_ms 5 %), memory tolerance max(1 %, 16 MiB),
/// reserved max(2 %, 64 MiB), host RSS max(5 %, 32 MiB)`
fn compare_text(compare: &CompareSettings) -> String {
    let mut time = format!("time threshold {} %", percent(compare.time_threshold));
    if !compare.metric_thresholds.is_empty() {
        let metrics: Vec<String> = compare
            .metric_thresholds
            .iter()
            .map(|(metric, threshold)| format!("{metric} {} %", percent(*threshold)))
            .collect();
        let _ = write!(time, " ({})", metrics.join(", "));
    }
    format!(
        "alpha {} ({}), {time}, memory tolerance max({} %, {} MiB), reserved max({} %, {} MiB), \
         host RSS max({} %, {} MiB)",
        compare.alpha,
        compare.correction.name(),
        percent(compare.memory_rel_tolerance),
        rounded(
            compare.memory_abs_tolerance_bytes as f64 / (1024.0 * 1024.0),
            3
        ),
        percent(compare.reserved_rel_tolerance),
        rounded(
            compare.reserved_abs_tolerance_bytes as f64 / (1024.0 * 1024.0),
            3
        ),
        percent(compare.host_rss_rel_tolerance),
        rounded(
            compare.host_rss_abs_tolerance_bytes as f64 / (1024.0 * 1024.0),
            3
        )
    )
}

/// `3` or `3–20`.
fn range(min: u32, max: u32) -> String {
    if max > min {
        format!("{min}–{max}")
    } else {
        min.to_string()
    }
}

/// A fraction as a percentage without float noise: `0.07` → `7`, `0.005` → `0.5`.
fn percent(fraction: f64) -> String {
    rounded(fraction * 100.0, 4)
}

/// `x` rounded to at most `decimals` decimals, without trailing zeros.
fn rounded(x: f64, decimals: i32) -> String {
    let scale = 10f64.powi(decimals);
    ((x * scale).round() / scale).to_string()
}

fn order_text(order: Order, seed: u64) -> String {
    match order {
        Order::Shuffled => format!("shuffled (seed {seed})"),
        other => other.as_str().to_string(),
    }
}
