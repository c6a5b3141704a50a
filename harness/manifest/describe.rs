//! The human-readable plan that `claimbench check` prints, so a person can see what a manifest
//! and profile expand to before spending GPU time on it.

use super::parse::{device_name, order_name};
use crate::knobs::Knobs;
use crate::plan::{Order, Plan};
use std::fmt::Write;
use std::time::Duration;

/// Jobs listed by name in the order summary before it is abbreviated.
const LISTED_JOBS: usize = 24;

/// Describes `plan` over several lines: suite, profile and order, one block per variant (name,
/// claims, params, knobs that differ from PyTorch's defaults, run settings), then the jobs in
/// execution order.
pub fn describe_plan(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "suite:    {}", plan.suite);
    if let Some(description) = &plan.description {
        let _ = writeln!(out, "          {description}");
    }
    if let Some(first) = plan.variants.first() {
        let _ = writeln!(out, "workload: {}", first.workload);
    }
    let sha = plan
        .manifest_sha256
        .get(..12)
        .unwrap_or(&plan.manifest_sha256);
    let _ = writeln!(out, "manifest: {} (sha256 {sha})", plan.manifest_path);
    let _ = writeln!(out, "profile:  {}", plan.profile);
    let _ = writeln!(out, "order:    {}", order_text(plan.order, plan.seed));

    for variant in &plan.variants {
        let _ = writeln!(out);
        let _ = writeln!(out, "variant {}", variant.name);
        if !variant.claims.is_empty() {
            let _ = writeln!(out, "  claims:  {}", variant.claims.join(", "));
        }
        let params: Vec<String> = variant
            .params
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let _ = writeln!(out, "  params:  {}", params.join(" "));
        let knobs = knob_changes(&variant.knobs);
        let knobs = if knobs.is_empty() {
            String::from("(defaults)")
        } else {
            knobs.join(" ")
        };
        let _ = writeln!(out, "  knobs:   {knobs}");
        let timeout = humantime::format_duration(Duration::from_millis(variant.timeout_ms));
        let _ = writeln!(
            out,
            "  run:     warmup {}, repetitions {}, processes {}, timeout {timeout}",
            variant.warmup, variant.repetitions, variant.processes
        );
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
        order_name(plan.order)
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

fn order_text(order: Order, seed: u64) -> String {
    match order {
        Order::Shuffled => format!("shuffled (seed {seed})"),
        other => order_name(other).to_string(),
    }
}

/// Knobs that differ from the defaults, spelt as in a manifest.
fn knob_changes(knobs: &Knobs) -> Vec<String> {
    let default = Knobs::default();
    let mut changes = Vec::new();
    let mut flag = |name: &str, value: bool, default: bool| {
        if value != default {
            changes.push(format!("{name}={value}"));
        }
    };
    flag("cudnn.enabled", knobs.cudnn_enabled, default.cudnn_enabled);
    flag(
        "cudnn.benchmark",
        knobs.cudnn_benchmark,
        default.cudnn_benchmark,
    );
    flag(
        "cudnn.deterministic",
        knobs.cudnn_deterministic,
        default.cudnn_deterministic,
    );
    flag("tf32.matmul", knobs.tf32_matmul, default.tf32_matmul);
    flag("tf32.cudnn", knobs.tf32_cudnn, default.tf32_cudnn);
    flag(
        "empty_cache",
        knobs.empty_cache_between_stages,
        default.empty_cache_between_stages,
    );
    if knobs.deterministic_algorithms != default.deterministic_algorithms {
        changes.push(format!(
            "deterministic_algorithms={}",
            knobs.deterministic_algorithms.as_str()
        ));
    }
    if knobs.dtype != default.dtype {
        changes.push(format!("dtype={}", knobs.dtype));
    }
    if let Some(gib) = knobs.vram_budget_gib {
        changes.push(format!("vram_budget_gib={gib}"));
    }
    if knobs.device != default.device {
        changes.push(format!("device={}", device_name(knobs.device)));
    }
    for (name, value) in &knobs.env {
        changes.push(format!("env.{name}={value}"));
    }
    changes
}
