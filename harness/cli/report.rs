//! `claimbench report`, and the report that `run` writes too: claims judged, the gate if
//! there is one, trends over the earlier runs beside the run, and persistent shifts in the
//! metric histories of the results folder the run lies in.

use super::args::{GateArgs, ShiftArgs};
use super::compare::{gate_with, Gated};
use super::Outcome;
use crate::report::model::{self, Report};
use crate::report::{self as render, Format};
use crate::store::{history, Results, RunRecord, SampleRow};
use crate::text::fit;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The report of a stored run (default: the newest): files written into `out` (default: the
/// run folder), format `format` printed; exit 1 on a regression or a refuted claim, else 6 on
/// a recent worsening shift when `shift.fail_on_change_point`.
pub fn report(
    run: Option<PathBuf>,
    results: &Results,
    options: &GateArgs,
    shift: &ShiftArgs,
    out: Option<&Path>,
    format: Format,
) -> Outcome {
    let run = results.open_run(run)?;
    let (dir, record, samples) = (&run.dir, &run.record, &run.samples);
    let explicit = options.baseline.is_some();
    let gated = gate_with(dir, record, samples, results, options, explicit)?;
    let out = out.unwrap_or(dir);
    if format == Format::Terminal {
        print!("{}", fit(&render::terminal::summary(record, samples)));
        if let Some(g) = &gated {
            print!("{}", fit(&render::terminal::gate_table(&g.report)));
        }
        let report = write_report(dir, record, samples, gated, shift, out)?;
        return Ok(report_exit_code(&report, shift));
    }
    // Another format on stdout: the files are still written, the tables are not printed.
    let report = build_report(dir, record, samples, gated, shift);
    render::write_files(out, &report)?;
    print!("{}", render::render(&report, format)?);
    Ok(report_exit_code(&report, shift))
}

/// The report's own exit code (regressions, refuted claims, failed workers), else 6 for a
/// recent worsening shift when asked.
pub fn report_exit_code(report: &Report, shift: &ShiftArgs) -> i32 {
    match report.exit_code() {
        crate::exit_code::OK => shift
            .exit_code(&report.shifts)
            .unwrap_or(crate::exit_code::OK),
        code => code,
    }
}

/// Judges the claims and builds the report, with trends from the earlier runs beside `dir`.
fn build_report(
    dir: &Path,
    run: &RunRecord,
    samples: &[SampleRow],
    gated: Option<Gated>,
    shift: &ShiftArgs,
) -> Report {
    let results = Results::enclosing(dir);
    let earlier = results.history(dir, run, render::TREND_RUNS - 1);
    let history = render::trend_runs(run, samples, &earlier);
    let (gate_report, without) = match gated {
        Some(g) => (Some(g.report), Some(g.without_flagged)),
        None => (None, None),
    };
    let mut report = Report::build(
        run,
        samples,
        gate_report,
        without.as_ref(),
        model::trends(run, &history),
    );
    let (shifts, warnings) = history::shifts_for_run(&results, run, &shift.config());
    for w in warnings {
        eprintln!("warning: {}", crate::text::printable(&w));
    }
    report.shifts = shifts;
    report
}

/// Builds the report, writes its files into `out`, and prints the claims and sample quality.
pub fn write_report(
    dir: &Path,
    run: &RunRecord,
    samples: &[SampleRow],
    gated: Option<Gated>,
    shift: &ShiftArgs,
    out: &Path,
) -> Result<Report> {
    let report = build_report(dir, run, samples, gated, shift);
    let written = render::write_files(out, &report)?;
    anstream::print!("{}", fit(&render::terminal::claims_table(&report.claims)));
    print!("{}", fit(&render::fidelity::terminal(&report.fidelity)));
    print!("{}", fit(&render::slow::terminal(&report.slow_processes)));
    print!(
        "{}",
        fit(&render::held::terminal(&report.held_between_calls))
    );
    print!("{}", fit(&render::shifts::terminal(&report.shifts)));
    print!("{}", fit(&render::terminal::quality_line(&report.quality)));
    eprintln!("wrote {} report files to {}", written.len(), out.display());
    Ok(report)
}
