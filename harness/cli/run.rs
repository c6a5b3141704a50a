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
use crate::runner::shard::{self, Costs, ShardSpec};
use crate::runner::slots::{Slots, Spread};
use crate::runner::{self, Launcher};
use crate::store::{Fingerprint, Results, RunDir, RunRecord, ShardInfo};
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
    pub scale: ScaleArgs,
}

// Sharding over hosts and GPUs of one host.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScaleArgs {
    /// Run only shard I of N (from 0) of the plans' jobs, balanced by cost; merge the shards'
    /// records with `claimbench merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<ShardSpec>,
    /// Balance the shards by the worker times recorded in this run (give every shard the
    /// same one) rather than by an estimate from the plan.
    #[arg(long, value_name = "RUN", requires = "shard")]
    pub shard_costs: Option<PathBuf>,
    /// Run one worker per GPU at a time on these GPUs (indices or UUIDs, comma-separated, or
    /// `all`), each pinned with CUDA_VISIBLE_DEVICES.
    #[arg(long, value_name = "LIST|all")]
    pub gpus: Option<String>,
    /// With --gpus: how jobs are placed (`claim-groups`: the variants a claim compares
    /// share one GPU).
    #[arg(long, value_enum, default_value = "any", requires = "gpus")]
    pub spread: Spread,
    /// With --gpus: variants whose name contains one of these comma-separated texts run
    /// while no other worker runs.
    #[arg(long, value_name = "TEXT[,TEXT…]", requires = "gpus")]
    pub exclusive: Option<String>,
}

impl ScaleArgs {
    fn slots(&self) -> Result<Slots, ExpectedError> {
        let gpus = match &self.gpus {
            Some(text) => Slots::parse_gpus(text).map_err(ExpectedError::Scale)?,
            None => Vec::new(),
        };
        let exclusive = self
            .exclusive
            .iter()
            .flat_map(|t| t.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Slots {
            gpus,
            spread: self.spread,
            exclusive,
        })
    }
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
        scale,
    } = options;
    let paths = if manifests.is_empty() {
        default_manifests()?
    } else {
        manifests
    };
    let slots = scale.slots()?;
    let gpu = parent_gpu(slots.gpus.first().map(String::as_str));
    let cuda_present = gpu.is_some();
    let plans = plan_all(&paths, &profile, filter.as_deref(), cuda_present)?;
    for (plan, _) in &plans {
        results.check_suite_name_free(&plan.suite)?;
    }
    let (jobs, shard_info) = shard_jobs(&plans, &scale)?;
    if !cuda_present {
        let note = format!(
            "note: no CUDA device found; running on CPU with profiles {} (reduced sizes: CPU numbers check correctness, not GPU performance)",
            plans.iter().map(|(p, _)| format!("{}:{}", p.suite, p.profile)).collect::<Vec<_>>().join(", ")
        );
        eprintln!("{}", crate::text::fit(&note));
    }
    let mut run = results.new_run(Fingerprint::at_start(gpu), std::env::args().collect())?;
    eprintln!("recording to {}", run.path.display());
    if let Some(info) = &shard_info {
        let all: usize = plans.iter().map(|(p, _)| p.jobs.len()).sum();
        eprintln!(
            "shard {}/{}: {} of {all} worker processes (plan hash {}, costs {})",
            info.index,
            info.count,
            info.jobs.len(),
            &info.plan_hash[..12],
            info.costs
        );
    }
    run.record.shard = shard_info;
    runner::install_interrupt_handler()?;
    let launcher = Launcher {
        exe: std::env::current_exe().context("locating the claimbench executable")?,
        stderr_tail_lines: 20,
        slots,
    };
    let total: u64 = plans
        .iter()
        .zip(&jobs)
        .flat_map(|((p, _), jobs)| jobs.iter().map(move |j| &p.variants[j.variant]))
        .map(|v| u64::from(v.warmup + v.repetitions))
        .sum();
    let bar = runner::progress_bar(total, quiet);
    for ((plan, text), jobs) in plans.into_iter().zip(jobs) {
        if runner::interrupted() {
            break;
        }
        let index = run.add_suite(plan, &text)?;
        runner::run_plan(&mut run, index, &jobs, &launcher, &bar)?;
    }
    bar.finish_and_clear();
    run.record.interrupted = runner::interrupted();
    run.record.interrupted_by = runner::stop_signal().map(runner::signal_name);
    run.record.finished_at = Some(chrono::Utc::now().to_rfc3339());
    run.save()?;
    conclude(&run, &results, gate.as_ref(), &shift)
}

/// What `run` (and `merge`) do with a finished record: print the summary, gate it when asked,
/// write the report files, and decide the exit code.
pub(super) fn conclude(
    run: &RunDir,
    results: &Results,
    gate: Option<&GateArgs>,
    shift: &ShiftArgs,
) -> Outcome {
    print!(
        "{}",
        crate::text::fit(&crate::report::terminal::summary(&run.record, &run.samples))
    );
    eprintln!(
        "recorded {} samples in {}",
        run.samples.iter().filter(|s| !s.warmup).count(),
        run.path.display()
    );
    // Only complete runs join the history (a shard's samples join with its merge); the run record stays the source of truth, so a
    // history that cannot be written is a warning, not a failed run.
    if run.record.incomplete().is_none() && run.record.shard.is_none() {
        match results.append_history(&run.record, &run.samples) {
            Ok(warnings) => warnings
                .iter()
                .for_each(|w| eprintln!("warning: {}", crate::text::printable(w))),
            Err(e) => eprintln!("warning: the history was not updated: {e:#}"),
        }
    }
    let gated = match gate {
        Some(options) => {
            let gated = gate_with(&run.path, &run.record, &run.samples, results, options, true)?;
            if let Some(g) = &gated {
                print_gate(&run.path, &g.report)?;
            }
            gated
        }
        None => None,
    };
    // Decided before the report takes the gate; reported after it is written.
    let missing_baseline_code = match (&gated, gate) {
        (Some(g), Some(options)) => g.missing_baseline_code(options),
        _ => exit_code::OK,
    };
    let report = write_report(
        &run.path,
        &run.record,
        &run.samples,
        gated,
        shift,
        &run.path,
    )?;
    let failures = run
        .record
        .suites
        .iter()
        .flat_map(|s| &s.processes)
        .filter(|p| !matches!(p.status, Status::Ok | Status::Oom))
        .count();
    // A merge of incomplete shards says which, itself.
    if let Some(signal) = run
        .record
        .interrupted_by
        .as_ref()
        .filter(|_| run.record.merged_from.is_none())
    {
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

/// The jobs of each plan this run executes (a shard's part with `--shard`), and the shard's
/// description for the record.
fn shard_jobs(
    plans: &[(Plan, String)],
    scale: &ScaleArgs,
) -> Result<(Vec<Vec<crate::plan::Job>>, Option<ShardInfo>), ExpectedError> {
    let Some(spec @ ShardSpec { index, count }) = scale.shard else {
        return Ok((plans.iter().map(|(p, _)| p.jobs.clone()).collect(), None));
    };
    let costs = match &scale.shard_costs {
        Some(dir) => Costs::from_run(&RunRecord::load(dir)?),
        None => Costs::default(),
    };
    let refs: Vec<&Plan> = plans.iter().map(|(p, _)| p).collect();
    let (jobs, listed) = shard::select(&refs, spec, &costs);
    Ok((
        jobs,
        Some(ShardInfo {
            index,
            count,
            plan_hash: shard::plan_hash(&refs),
            costs: costs.describe(),
            jobs: listed,
        }),
    ))
}

/// GPU facts from NVML in the parent, which never initialises CUDA itself: of `gpu` (the
/// first `--gpus` entry) when given, else of the device CUDA would call 0.
fn parent_gpu(gpu: Option<&str>) -> Option<nvml::GpuInfo> {
    let nvml = nvml::open().ok()?;
    let device = match gpu {
        Some(g) => match g.parse::<u32>() {
            Ok(index) => nvml.device_by_index(index).ok()?,
            Err(_) => nvml.device_by_uuid(g).ok()?,
        },
        None => nvml::device_for_cuda0(&nvml).ok()?,
    };
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
