//! The `claimbench` command line: the clap definition, dispatch, and the one exit point,
//! [`main`]. Each command's handler lives in its own file; arguments that several commands
//! take are declared once in [`args`].

mod args;
mod baseline;
mod check;
mod compare;
mod dist;
mod error;
mod history;
mod merge;
mod report;
mod run;

pub use error::ExpectedError;

use crate::exit_code;
use args::{GateArgs, ProfileArgs, ResultsArgs, ShiftArgs};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// What a command handler returns: the exit code of a command that ran to its end (a
/// regression or refuted claim, failed workers, Ctrl-C), or the error that stopped it.
type Outcome = Result<i32, ExpectedError>;

#[derive(Debug, Parser)]
#[command(
    name = "claimbench",
    version,
    about = "Benchmark GPU pipeline configurations and check performance claims"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print terminal lines at full length instead of wrapping them to 120 columns
    #[arg(long, global = true)]
    wide: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenario manifests and record every sample under RESULTS/runs/.
    #[command(mut_arg("baseline", |a| a.help(
        "Baseline to compare with (implies --compare): a baseline file or folder, or a run",
    )))]
    Run {
        /// Manifests to run (default: every scenarios/*.toml).
        manifests: Vec<PathBuf>,
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        results: ResultsArgs,
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
        #[command(flatten)]
        gate: GateArgs,
        #[command(flatten)]
        shift: ShiftArgs,
        #[command(flatten)]
        scale: run::ScaleArgs,
    },
    /// Compare a run with its baselines; exit 1 on any regression.
    #[command(mut_arg("baseline", |a| a.help(
        "Baseline to compare with: a baseline file or folder, or another run folder \
         (default: RESULTS/baselines/<the run's fingerprint>/<profile>/<suite>.json)",
    )))]
    Compare {
        /// Run folder (default: the newest under RESULTS/runs).
        run: Option<PathBuf>,
        #[command(flatten)]
        gate: GateArgs,
        #[command(flatten)]
        results: ResultsArgs,
    },
    /// Judge a run's claims (and regressions, with a baseline) and write the report files
    /// (report.md, report.html, junit.xml, report.json, bmf.json, github-benchmark.json);
    /// exit 1 on a regression or a refuted claim.
    #[command(mut_arg("baseline", |a| a.help(
        "Baseline to compare with: a baseline file or folder, or another run folder \
         (default: the stored baselines for the run's hardware, if there are any)",
    )))]
    Report {
        /// Run folder (default: the newest under RESULTS/runs).
        run: Option<PathBuf>,
        #[command(flatten)]
        gate: GateArgs,
        /// Folder for the report files (default: the run folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// What to print on standard output.
        #[arg(long, value_enum, default_value = "terminal")]
        format: crate::report::Format,
        #[command(flatten)]
        results: ResultsArgs,
        #[command(flatten)]
        shift: ShiftArgs,
    },
    /// List the metric histories (per-process medians of every complete run) and their
    /// persistent shifts (change points).
    History {
        /// Show only series whose `<stack>/<profile> <suite>/<variant> <metric>` contains this.
        filter: Option<String>,
        /// Print every run's value (median of its process medians).
        #[arg(long)]
        runs: bool,
        #[command(flatten)]
        results: ResultsArgs,
        #[command(flatten)]
        shift: ShiftArgs,
    },
    /// Merge the records of a run's shards (`run --shard I/N`) into one run record and write
    /// its report, as an unsharded run with the same samples would; refuses shards of other
    /// plans or hardware, duplicates, and (unless --allow-incomplete) missing or interrupted
    /// shards (exit 7).
    #[command(mut_arg("baseline", |a| a.help(
        "Baseline to compare with (implies --compare): a baseline file or folder, or a run",
    )))]
    Merge {
        /// The shards' run folders, in any order.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        #[command(flatten)]
        results: ResultsArgs,
        /// Write the merged record even when shards are missing or incomplete (marked
        /// incomplete; still exit 7).
        #[arg(long)]
        allow_incomplete: bool,
        /// Compare with the stored baselines afterwards (exit 1 on a regression).
        #[arg(long)]
        compare: bool,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Store, replace or list baselines (only ever written on request).
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Validate manifests without running them and print the expanded plan.
    Check {
        /// Manifests to check.
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        #[command(flatten)]
        profile: ProfileArgs,
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
        /// Run folder.
        run: PathBuf,
        #[command(flatten)]
        results: ResultsArgs,
    },
    /// Replace the baselines with a run's results (default: the newest run).
    Accept {
        /// Run folder (default: the newest under RESULTS/runs).
        run: Option<PathBuf>,
        #[command(flatten)]
        results: ResultsArgs,
    },
    /// List the stored baselines with their profile, suite and source run.
    List {
        #[command(flatten)]
        results: ResultsArgs,
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
    crate::text::set_wide(cli.wide);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::text::printable(&e.report()));
            e.exit_code()
        }
    }
}

fn dispatch(command: Command) -> Outcome {
    match command {
        Command::Run {
            manifests,
            profile,
            results,
            quiet,
            filter,
            compare,
            gate,
            shift,
            scale,
        } => {
            let gate = (compare || gate.baseline.is_some()).then_some(gate);
            run::run(run::RunOptions {
                manifests,
                profile,
                filter,
                results: results.folder(),
                quiet,
                gate,
                shift,
                scale,
            })
        }
        Command::Merge {
            runs,
            results,
            allow_incomplete,
            compare,
            gate,
        } => merge::merge(merge::MergeOptions {
            runs,
            results: results.folder(),
            allow_incomplete,
            gate: (compare || gate.baseline.is_some()).then_some(gate),
        }),
        Command::Compare { run, gate, results } => compare::compare(run, &results.folder(), &gate),
        Command::Report {
            run,
            gate,
            out,
            format,
            results,
            shift,
        } => report::report(
            run,
            &results.folder(),
            &gate,
            &shift,
            out.as_deref(),
            format,
        ),
        Command::History {
            filter,
            runs,
            results,
            shift,
        } => history::history(&results.folder(), filter.as_deref(), runs, &shift),
        Command::Baseline { action } => match action {
            BaselineAction::Save { run, results } => {
                baseline::store(Some(run), &results.folder(), false)
            }
            BaselineAction::Accept { run, results } => {
                baseline::store(run, &results.folder(), true)
            }
            BaselineAction::List { results } => baseline::list(&results.folder()),
        },
        Command::Check { manifests, profile } => check::check(&manifests, &profile),
        Command::Dist { out, scenarios } => dist::dist(&out, &scenarios),
        Command::Worker => Ok(crate::worker::main()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shared_arguments_reach_every_command() {
        let cli = Cli::try_parse_from([
            "claimbench",
            "report",
            "r",
            "--baseline",
            "b",
            "--allow-mismatch",
            "--results",
            "elsewhere",
        ])
        .unwrap();
        let Command::Report { gate, results, .. } = cli.command else {
            panic!("not report");
        };
        assert_eq!(gate.baseline, Some(PathBuf::from("b")));
        assert!(gate.allow_mismatch);
        assert_eq!(results.results, PathBuf::from("elsewhere"));
    }
}
