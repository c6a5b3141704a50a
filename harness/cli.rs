//! The `claimbench` command line: parse, validate, dispatch. One exit point in [`main`].

use crate::exit_code::{self, CodedError};
use crate::manifest::{self, Manifest, ManifestError, ProfileChoice};
use crate::measure::nvml;
use crate::runner::{self, Launcher};
use crate::store::baseline::{baseline_path, Baseline, BaselineKey};
use crate::store::{self, Fingerprint, RunDir, RunRecord, SampleRow};
use crate::verdict::gate::{gate, GateReport, GateVerdict};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "claimbench",
    version,
    about = "Benchmark GPU pipeline configurations and check performance claims"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenario manifests and record every sample under RESULTS/runs/.
    Run {
        /// Manifests to run (default: every scenarios/*.toml).
        manifests: Vec<PathBuf>,
        /// Profile to run (default: `nightly` on CUDA; `cpu`, else `quick`, without CUDA).
        #[arg(long)]
        profile: Option<String>,
        /// Where run records are written.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Run only the variants whose name contains this text, or any of several texts
        /// separated by commas (claims on the others are reported as not applicable).
        #[arg(long)]
        filter: Option<String>,
        /// Compare with the stored baselines afterwards (exit 1 on a regression).
        #[arg(long)]
        compare: bool,
        /// Baseline to compare with (implies --compare): a baseline file or folder, or a run.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Compare even if the baseline comes from other hardware or software.
        #[arg(long)]
        allow_mismatch: bool,
    },
    /// Compare a run with its baselines; exit 1 on any regression.
    Compare {
        /// Run folder (default: the newest under RESULTS/runs).
        run: Option<PathBuf>,
        /// Baseline to compare with: a baseline file or folder, or another run folder
        /// (default: RESULTS/baselines/<the run's fingerprint>/<suite>.json).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Compare even if the baseline comes from other hardware or software.
        #[arg(long)]
        allow_mismatch: bool,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Judge a run's claims (and regressions, with a baseline) and write the report files
    /// (report.md, report.html, junit.xml, report.json, bmf.json, github-benchmark.json);
    /// exit 1 on a regression or a refuted claim.
    Report {
        /// Run folder (default: the newest under RESULTS/runs).
        run: Option<PathBuf>,
        /// Baseline to compare with: a baseline file or folder, or another run folder
        /// (default: the stored baselines for the run's hardware, if there are any).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Compare even if the baseline comes from other hardware or software.
        #[arg(long)]
        allow_mismatch: bool,
        /// Folder for the report files (default: the run folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// What to print on standard output.
        #[arg(long, value_enum, default_value = "terminal")]
        format: crate::report::Format,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Store or replace baselines (only ever written on request).
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Validate manifests without running them and print the expanded plan.
    Check {
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        #[arg(long)]
        profile: Option<String>,
    },
    /// Pack the binaries and scenarios into a folder that runs on a machine with PyTorch 2.11
    /// and no Rust toolchain.
    Dist {
        /// Output folder.
        #[arg(long, default_value = "dist/claimbench")]
        out: PathBuf,
        /// Folder of manifests to include.
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
    },
    /// Internal: run one job read from stdin (started by `run`).
    #[command(hide = true)]
    Worker,
}

#[derive(Debug, Subcommand)]
enum BaselineAction {
    /// Store a run's results as the baseline of each of its suites; refuses to replace one.
    Save {
        run: PathBuf,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Replace the baselines with a run's results (default: the newest run).
    Accept {
        run: Option<PathBuf>,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
}

/// Runs the command line and returns the exit code; errors are printed here and only here.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_code::USAGE
            } else {
                exit_code::OK
            };
        }
    };
    if let Command::Worker = cli.command {
        return crate::worker::main();
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            code_for(&e)
        }
    }
}

fn code_for(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<CodedError>() {
            return c.code;
        }
        if cause.downcast_ref::<ManifestError>().is_some() {
            return exit_code::USAGE;
        }
    }
    exit_code::ENVIRONMENT
}

fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Run {
            manifests,
            profile,
            results,
            quiet,
            filter,
            compare,
            baseline,
            allow_mismatch,
        } => {
            let gate = (compare || baseline.is_some()).then_some(GateOptions {
                baseline,
                allow_mismatch,
            });
            run(manifests, profile, filter.as_deref(), &results, quiet, gate)
        }
        Command::Compare {
            run,
            baseline,
            allow_mismatch,
            results,
        } => {
            let dir = run_or_latest(run, &results)?;
            compare_run(
                &dir,
                &results,
                &GateOptions {
                    baseline,
                    allow_mismatch,
                },
            )
        }
        Command::Report {
            run,
            baseline,
            allow_mismatch,
            out,
            format,
            results,
        } => {
            let dir = run_or_latest(run, &results)?;
            let options = GateOptions {
                baseline,
                allow_mismatch,
            };
            report_command(&dir, &results, &options, out.as_deref(), format)
        }
        Command::Baseline { action } => baseline_command(action),
        Command::Check { manifests, profile } => check(&manifests, profile.as_deref()),
        Command::Dist { out, scenarios } => dist(&out, &scenarios),
        Command::Worker => unreachable!("handled before dispatch"),
    }
}

fn choice(profile: Option<&str>, cuda_present: bool) -> ProfileChoice<'_> {
    match profile {
        Some(p) => ProfileChoice::Named(p),
        None => ProfileChoice::Auto { cuda_present },
    }
}

fn check(paths: &[PathBuf], profile: Option<&str>) -> Result<i32> {
    let mut failed = false;
    for path in paths {
        // Without a profile, show what a GPU box would run.
        let planned = match Manifest::from_path(path) {
            Ok(m) => manifest::build_plan(&m, choice(profile, true)),
            Err(e) => Err(e),
        };
        match planned {
            Ok(plan) => println!("{}", manifest::describe_plan(&plan)),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        exit_code::USAGE
    } else {
        exit_code::OK
    })
}

/// The manifests of the default suite: `scenarios/*.toml` in the working directory, else next
/// to the executable (a dist folder).
fn default_manifests() -> Result<Vec<PathBuf>> {
    let beside_exe = std::env::current_exe()?
        .parent()
        .map(|d| d.join("scenarios"));
    let dir = [Some(PathBuf::from("scenarios")), beside_exe]
        .into_iter()
        .flatten()
        .find(|d| d.is_dir())
        .ok_or_else(|| CodedError::usage("no manifests given and no scenarios/ folder found"))?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(CodedError::usage(format!(
            "{} holds no .toml manifest",
            dir.display()
        )));
    }
    Ok(found)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// GPU facts from NVML in the parent, which never initialises CUDA itself.
fn parent_gpu() -> Option<nvml::GpuInfo> {
    let nvml = nvml::open().ok()?;
    let device = nvml::device_for_cuda0(&nvml).ok()?;
    nvml::gpu_info(&nvml, &device).ok()
}

fn run(
    paths: Vec<PathBuf>,
    profile: Option<String>,
    filter: Option<&str>,
    results: &Path,
    quiet: bool,
    gate: Option<GateOptions>,
) -> Result<i32> {
    let paths = if paths.is_empty() {
        default_manifests()?
    } else {
        paths
    };
    let gpu = parent_gpu();
    let cuda_present = gpu.is_some();
    // Validate everything before running anything.
    let mut plans = Vec::new();
    for path in &paths {
        let m = Manifest::from_path(path)?;
        let mut plan = manifest::build_plan(&m, choice(profile.as_deref(), cuda_present))?;
        if let Some(text) = filter {
            plan.variants.retain(|v| {
                text.split(',')
                    .map(str::trim)
                    .filter(|part| !part.is_empty())
                    .any(|part| v.name.contains(part))
            });
            plan.jobs = crate::plan::Plan::schedule(&plan.variants, plan.order, plan.seed);
        }
        plans.push((plan, m.source_text().to_string()));
    }
    if let Some(text) = filter {
        if plans.iter().all(|(p, _)| p.variants.is_empty()) {
            return Err(CodedError::usage(format!(
                "no variant name contains `{text}`"
            )));
        }
        plans.retain(|(p, _)| !p.variants.is_empty());
    }
    if !cuda_present {
        eprintln!(
            "note: no CUDA device found; running on CPU with profiles {} (reduced sizes: CPU numbers check correctness, not GPU performance)",
            plans.iter().map(|(p, _)| format!("{}:{}", p.suite, p.profile)).collect::<Vec<_>>().join(", ")
        );
    }
    let fingerprint = Fingerprint {
        gpu,
        harness_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: env!("CLAIMBENCH_GIT_COMMIT").into(),
        host: host_name(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        started_at: chrono::Utc::now().to_rfc3339(),
        ..Default::default()
    };
    let mut run = RunDir::create(results, fingerprint, std::env::args().collect())?;
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
    let gated = match &gate {
        Some(options) => {
            let gated = gate_with(&run.path, &run.record, &run.samples, results, options, true)?;
            if let Some(g) = &gated {
                print_gate(&run.path, &g.report)?;
            }
            gated
        }
        None => None,
    };
    let report = write_report(&run.path, &run.record, &run.samples, gated, &run.path)?;
    if run.record.interrupted {
        eprintln!("interrupted: the records above hold everything finished before Ctrl-C");
        return Ok(exit_code::INTERRUPTED);
    }
    let failures = run
        .record
        .suites
        .iter()
        .flat_map(|s| &s.processes)
        .filter(|p| {
            !matches!(
                p.status,
                crate::worker::protocol::Status::Ok | crate::worker::protocol::Status::Oom
            )
        })
        .count();
    if failures > 0 {
        eprintln!(
            "{failures} worker(s) failed; see the status column and {}/logs",
            run.path.display()
        );
    }
    if report.exit_code() != exit_code::OK {
        return Ok(report.exit_code());
    }
    Ok(if failures > 0 {
        exit_code::WORKER_FAILURES
    } else {
        exit_code::OK
    })
}

/// What to compare a run with.
struct GateOptions {
    baseline: Option<PathBuf>,
    allow_mismatch: bool,
}

/// The newest run folder under `results/runs` when none is given.
fn run_or_latest(run: Option<PathBuf>, results: &Path) -> Result<PathBuf> {
    if let Some(run) = run {
        return Ok(run);
    }
    let runs = results.join("runs");
    let newest = std::fs::read_dir(&runs)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("run.json").is_file())
        .max();
    newest.ok_or_else(|| CodedError::usage(format!("no run found under {}", runs.display())))
}

fn load_run(dir: &Path) -> Result<(RunRecord, Vec<SampleRow>)> {
    let run = RunRecord::load(dir).map_err(|e| CodedError::usage(format!("{e:#}")))?;
    let samples = store::read_samples(&dir.join("samples.csv"))
        .map_err(|e| CodedError::usage(format!("{e:#}")))?;
    Ok((run, samples))
}

/// Baselines from a path: a run folder (its results become the baseline), a folder of
/// baseline files, or one baseline file.
fn load_baselines(path: &Path) -> Result<Vec<Baseline>> {
    let usage = |e: anyhow::Error| CodedError::usage(format!("{e:#}"));
    if path.join("run.json").is_file() {
        let (run, samples) = load_run(path)?;
        return Ok(Baseline::from_run(&run, &samples));
    }
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        return files
            .iter()
            .map(|f| Baseline::load(f).map_err(usage))
            .collect();
    }
    Baseline::load(path).map(|b| vec![b]).map_err(usage)
}

/// A gate report, and the same gate with flagged samples left out (for the sensitivity
/// shown in reports).
struct Gated {
    report: GateReport,
    without_flagged: GateReport,
}

/// Compares a run with its baselines: the explicit `--baseline`, else the stored baselines
/// for the run's fingerprint. With `required` false and no stored baseline, there is no gate.
fn gate_with(
    dir: &Path,
    run: &RunRecord,
    samples: &[SampleRow],
    results: &Path,
    options: &GateOptions,
    required: bool,
) -> Result<Option<Gated>> {
    let key = BaselineKey::of(&run.fingerprint);
    let (baselines, mismatches) = match &options.baseline {
        Some(path) => {
            let baselines = load_baselines(path)?;
            let mut mismatches: Vec<String> = baselines
                .iter()
                .flat_map(|b| key.differences(&b.key))
                .collect();
            mismatches.sort();
            mismatches.dedup();
            if !mismatches.is_empty() && !options.allow_mismatch {
                return Err(CodedError::usage(format!(
                    "refusing to compare {} with {}: they were measured on different hardware or software ({}); timings would differ for reasons other than the code. Pass --allow-mismatch to compare anyway",
                    dir.display(),
                    path.display(),
                    mismatches.join(", ")
                )));
            }
            (baselines, mismatches)
        }
        None => {
            let mut found = Vec::new();
            for suite in &run.suites {
                let path = baseline_path(results, &key, &suite.plan.suite);
                if path.is_file() {
                    found.push(
                        Baseline::load(&path).map_err(|e| CodedError::usage(format!("{e:#}")))?,
                    );
                }
            }
            (found, Vec::new())
        }
    };
    if baselines.is_empty() && !required {
        return Ok(None);
    }
    let unflagged: Vec<SampleRow> = samples
        .iter()
        .filter(|s| s.flags.is_empty())
        .cloned()
        .collect();
    Ok(Some(Gated {
        report: gate(run, samples, &baselines, mismatches.clone()),
        without_flagged: gate(run, &unflagged, &baselines, mismatches),
    }))
}

/// Prints the gate table and stores `compare.json` in the run folder.
fn print_gate(dir: &Path, report: &GateReport) -> Result<()> {
    print!("{}", crate::report::terminal::gate_table(report));
    store::write_atomic(
        &dir.join("compare.json"),
        &serde_json::to_vec_pretty(report)?,
    )
}

/// Compares a run with its baselines, prints the table, stores `compare.json` in the run
/// folder, and returns 1 if anything regressed.
fn compare_run(dir: &Path, results: &Path, options: &GateOptions) -> Result<i32> {
    let (run, samples) = load_run(dir)?;
    let Some(gated) = gate_with(dir, &run, &samples, results, options, true)? else {
        return Ok(exit_code::OK);
    };
    print_gate(dir, &gated.report)?;
    Ok(if gated.report.count(GateVerdict::Regression) > 0 {
        exit_code::REGRESSION
    } else {
        exit_code::OK
    })
}

/// Judges the claims and builds the report, with trends from the other runs beside `dir`.
fn build_report(
    dir: &Path,
    run: &RunRecord,
    samples: &[SampleRow],
    gated: Option<Gated>,
) -> crate::report::model::Report {
    let history = crate::report::trend_runs(dir, run, samples);
    let (gate_report, without) = match gated {
        Some(g) => (Some(g.report), Some(g.without_flagged)),
        None => (None, None),
    };
    crate::report::model::Report::build(
        run,
        samples,
        gate_report,
        without.as_ref(),
        crate::report::model::trends(run, &history),
    )
}

/// Builds the report, writes its files into `out`, and prints the claims and sample quality.
fn write_report(
    dir: &Path,
    run: &RunRecord,
    samples: &[SampleRow],
    gated: Option<Gated>,
    out: &Path,
) -> Result<crate::report::model::Report> {
    let report = build_report(dir, run, samples, gated);
    let written = crate::report::write_files(out, &report)?;
    anstream::print!("{}", crate::report::terminal::claims_table(&report.claims));
    print!("{}", crate::report::terminal::quality_line(&report.quality));
    eprintln!("wrote {} report files to {}", written.len(), out.display());
    Ok(report)
}

/// `claimbench report`: the report of a stored run.
fn report_command(
    dir: &Path,
    results: &Path,
    options: &GateOptions,
    out: Option<&Path>,
    format: crate::report::Format,
) -> Result<i32> {
    let (run, samples) = load_run(dir)?;
    let explicit = options.baseline.is_some();
    let gated = gate_with(dir, &run, &samples, results, options, explicit)?;
    let out = out.unwrap_or(dir);
    if format == crate::report::Format::Terminal {
        print!("{}", crate::report::terminal::summary(&run, &samples));
        if let Some(g) = &gated {
            print!("{}", crate::report::terminal::gate_table(&g.report));
        }
        let report = write_report(dir, &run, &samples, gated, out)?;
        return Ok(report.exit_code());
    }
    // Another format on stdout: the files are still written, the tables are not printed.
    let report = build_report(dir, &run, &samples, gated);
    crate::report::write_files(out, &report)?;
    print!("{}", crate::report::render(&report, format)?);
    Ok(report.exit_code())
}

fn baseline_command(action: BaselineAction) -> Result<i32> {
    let (dir, results, replace) = match action {
        BaselineAction::Save { run, results } => (run, results, false),
        BaselineAction::Accept { run, results } => (run_or_latest(run, &results)?, results, true),
    };
    let (run, samples) = load_run(&dir)?;
    if run.interrupted {
        return Err(CodedError::usage(format!(
            "{} was interrupted; a partial run makes a misleading baseline",
            dir.display()
        )));
    }
    for baseline in Baseline::from_run(&run, &samples) {
        let path = baseline.save(&results, replace)?;
        println!("{}", path.display());
    }
    Ok(exit_code::OK)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Copies the launcher, the engine and the manifests into `out`.
fn dist(out: &Path, scenarios: &Path) -> Result<i32> {
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().context("executable without folder")?;
    if !scenarios.is_dir() {
        return Err(CodedError::usage(format!(
            "scenarios folder {} not found",
            scenarios.display()
        )));
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(out)?;
    for name in ["claimbench", "claimbench-engine"] {
        let from = bin_dir.join(name);
        std::fs::copy(&from, out.join(name))
            .with_context(|| format!("cannot copy {}", from.display()))?;
    }
    copy_dir(scenarios, &out.join("scenarios"))?;
    let readme = "claimbench, packed for a machine with PyTorch 2.11 (no Rust needed).\n\n\
        ./claimbench run              # the default suite (scenarios/*.toml)\n\
        ./claimbench run FILE.toml    # one manifest\n\n\
        libtorch is found through CLAIMBENCH_LIBTORCH (a torch/lib folder), else the torch\n\
        package of `python3` (or CLAIMBENCH_PYTHON).\n";
    store::write_atomic(&out.join("README.txt"), readme.as_bytes())?;
    println!("{}", out.display());
    Ok(exit_code::OK)
}
