//! `claimbench run`: validates every manifest, runs the plans, records them, then gates and
//! reports.

use super::args::{GateArgs, ProfileArgs, ShiftArgs};
use super::compare::{gate_with, print_gate};
use super::report::write_report;
use super::{ExpectedError, Outcome};
use crate::exit_code;
use crate::manifest::{self, Manifest};
use crate::measure::nvml;
use crate::plan::Plan;
use crate::runner::{self, Launcher};
use crate::store::{Fingerprint, Results};
use crate::worker::protocol::Status;
use anyhow::Context;
use std::path::PathBuf;

pub struct RunOptions {
    pub manifests: Vec<PathBuf>,
    pub profile: ProfileArgs,
    pub filter: Option<String>,
    pub results: Results,
    pub quiet: bool,
    /// Compare with baselines afterwards.
    pub gate: Option<GateArgs>,
    pub shift: ShiftArgs,
}

pub fn run(options: RunOptions) -> Outcome {
    let RunOptions {
        manifests,
        profile,
        filter,
        results,
        quiet,
        gate,
        shift,
    } = options;
    let paths = if manifests.is_empty() {
        default_manifests()?
    } else {
        manifests
    };
    let gpu = parent_gpu();
    let cuda_present = gpu.is_some();
    let plans = plan_all(&paths, &profile, filter.as_deref(), cuda_present)?;
    if !cuda_present {
        eprintln!(
            "note: no CUDA device found; running on CPU with profiles {} (reduced sizes: CPU numbers check correctness, not GPU performance)",
            plans.iter().map(|(p, _)| format!("{}:{}", p.suite, p.profile)).collect::<Vec<_>>().join(", ")
        );
    }
    let mut run = results.new_run(Fingerprint::at_start(gpu), std::env::args().collect())?;
    eprintln!("recording to {}", run.path.display());
    runner::install_interrupt_handler()?;
    let launcher = Launcher {
        exe: std::env::current_exe().context("locating the claimbench executable")?,
        stderr_tail_lines: 20,
    };
    let total: u64 = plans
        .iter()
        .flat_map(|(p, _)| p.jobs.iter().map(move |j| &p.variants[j.variant]))
        .map(|v| u64::from(v.warmup + v.repetitions))
        .sum();
    let bar = runner::progress_bar(total, quiet);
    for (plan, text) in plans {
        if runner::interrupted() {
            break;
        }
        let index = run.add_suite(plan, &text)?;
        runner::run_plan(&mut run, index, &launcher, &bar)?;
    }
    bar.finish_and_clear();
    run.record.interrupted = runner::interrupted();
    run.record.interrupted_by = runner::stop_signal().map(runner::signal_name);
    run.record.finished_at = Some(chrono::Utc::now().to_rfc3339());
    run.save()?;
    print!(
        "{}",
        crate::report::terminal::summary(&run.record, &run.samples)
    );
    eprintln!(
        "recorded {} samples in {}",
        run.samples.iter().filter(|s| !s.warmup).count(),
        run.path.display()
    );
    // Only complete runs join the history; the run record stays the source of truth, so a
    // history that cannot be written is a warning, not a failed run.
    if run.record.incomplete().is_none() {
        match results.append_history(&run.record, &run.samples) {
            Ok(warnings) => warnings
                .iter()
                .for_each(|w| eprintln!("warning: {}", crate::text::printable(w))),
            Err(e) => eprintln!("warning: the history was not updated: {e:#}"),
        }
    }
    let gated = match &gate {
        Some(options) => {
            let gated = gate_with(
                &run.path,
                &run.record,
                &run.samples,
                &results,
                options,
                true,
            )?;
            if let Some(g) = &gated {
                print_gate(&run.path, &g.report)?;
            }
            gated
        }
        None => None,
    };
    // Decided before the report takes the gate; reported after it is written.
    let missing_baseline_code = match (&gated, &gate) {
        (Some(g), Some(options)) => g.missing_baseline_code(options),
        _ => exit_code::OK,
    };
    let report = write_report(
        &run.path,
        &run.record,
        &run.samples,
        gated,
        &shift,
        &run.path,
    )?;
    let failures = run
        .record
        .suites
        .iter()
        .flat_map(|s| &s.processes)
        .filter(|p| !matches!(p.status, Status::Ok | Status::Oom))
        .count();
    if let Some(signal) = &run.record.interrupted_by {
        let by = if signal == "SIGINT" { "Ctrl-C" } else { signal };
        eprintln!("interrupted: the records above hold everything finished before {by}");
    } else if failures > 0 {
        eprintln!(
            "{failures} worker(s) failed; see the status column and {}/logs",
            run.path.display()
        );
    }
    let code = run_exit_code(run.record.interrupted, report.exit_code(), failures);
    Ok(match runner::stop_signal() {
        Some(signal) => interrupted_exit_code(signal),
        None if code == exit_code::OK => shift
            .exit_code(&report.shifts)
            .unwrap_or(missing_baseline_code),
        None => code,
    })
}

/// The exit code of a run stopped by `signal`: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
/// (128 + the signal number, as a shell reports a process killed by it).
fn interrupted_exit_code(signal: i32) -> i32 {
    match signal {
        libc::SIGTERM => exit_code::TERMINATED,
        libc::SIGHUP => exit_code::HUNG_UP,
        _ => exit_code::INTERRUPTED,
    }
}

/// The exit code of a finished run: Ctrl-C first, then what the report found (a regression or
/// a refuted claim), then failed workers. Out-of-memory outcomes are measurements, not
/// failures, and are not counted in `failed_workers`.
fn run_exit_code(interrupted: bool, report_code: i32, failed_workers: usize) -> i32 {
    if interrupted {
        exit_code::INTERRUPTED
    } else if report_code != exit_code::OK {
        report_code
    } else if failed_workers > 0 {
        exit_code::WORKER_FAILURES
    } else {
        exit_code::OK
    }
}

/// Every manifest parsed and planned (with `--filter` applied) before anything runs, with its
/// text; suites left without variants by the filter are dropped.
fn plan_all(
    paths: &[PathBuf],
    profile: &ProfileArgs,
    filter: Option<&str>,
    cuda_present: bool,
) -> Result<Vec<(Plan, String)>, ExpectedError> {
    let mut plans: Vec<(Plan, String)> = Vec::new();
    for path in paths {
        let m = Manifest::from_path(path)?;
        // One run holds each suite once: samples, logs and the stored manifest are keyed by
        // the suite's name (as a file name).
        if let Some((first, _)) = plans
            .iter()
            .find(|(p, _)| crate::plan::slug(&p.suite) == crate::plan::slug(m.suite_name()))
        {
            return Err(ExpectedError::DuplicateSuite {
                first: PathBuf::from(&first.manifest_path),
                second: path.clone(),
                names: (first.suite.clone(), m.suite_name().to_string()),
            });
        }
        let mut plan = manifest::build_plan(&m, profile.choice(cuda_present))?;
        if let Some(text) = filter {
            plan.retain_variants(text);
        }
        plans.push((plan, m.source_text().to_string()));
    }
    if let Some(text) = filter {
        if plans.iter().all(|(p, _)| p.variants.is_empty()) {
            return Err(ExpectedError::NoVariantMatches(text.to_string()));
        }
        plans.retain(|(p, _)| !p.variants.is_empty());
    }
    Ok(plans)
}

/// The manifests of the default suite: `scenarios/*.toml` in the working directory, else next
/// to the executable (a dist folder).
fn default_manifests() -> Result<Vec<PathBuf>, ExpectedError> {
    let beside_exe = std::env::current_exe()?
        .parent()
        .map(|d| d.join("scenarios"));
    let dir = [Some(PathBuf::from("scenarios")), beside_exe]
        .into_iter()
        .flatten()
        .find(|d| d.is_dir())
        .ok_or(ExpectedError::NoScenarios)?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(ExpectedError::EmptyScenarios(dir));
    }
    Ok(found)
}

/// GPU facts from NVML in the parent, which never initialises CUDA itself.
fn parent_gpu() -> Option<nvml::GpuInfo> {
    let nvml = nvml::open().ok()?;
    let device = nvml::device_for_cuda0(&nvml).ok()?;
    nvml::gpu_info(&nvml, &device).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_of_a_run_ranks_interruption_then_verdicts_then_failures() {
        use exit_code::*;
        assert_eq!(run_exit_code(false, OK, 0), OK);
        assert_eq!(run_exit_code(false, OK, 2), WORKER_FAILURES);
        assert_eq!(run_exit_code(false, REGRESSION, 2), REGRESSION);
        assert_eq!(run_exit_code(true, REGRESSION, 2), INTERRUPTED);
    }

    #[test]
    fn each_stop_signal_has_its_exit_code() {
        assert_eq!(interrupted_exit_code(libc::SIGINT), exit_code::INTERRUPTED);
        assert_eq!(interrupted_exit_code(libc::SIGTERM), 143);
        assert_eq!(interrupted_exit_code(libc::SIGHUP), 129);
    }
}
