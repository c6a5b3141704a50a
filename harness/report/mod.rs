//! Presentation of run records: the terminal tables, and the report files that
//! `claimbench report` (and `claimbench run`) write into a run folder.
//!
//! [`model::Report`] is computed once; every format renders it: Markdown for a pull-request
//! comment, one self-contained HTML file with SVG plots, JUnit XML for CI test views, the
//! report as JSON, and Bencher (BMF) and github-action-benchmark exports for history services.

pub mod escape;
pub mod export;
pub mod fidelity;
pub mod held;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod model;
pub mod plots;
pub mod section;
pub mod shifts;
pub mod slow;
pub mod terminal;
#[cfg(test)]
mod tests;

use crate::store::baseline::BaselineKey;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// What `claimbench report --format` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The tables (with colour on a terminal).
    Terminal,
    Markdown,
    Html,
    Junit,
    Json,
    /// Bencher Metric Format.
    Bmf,
    /// github-action-benchmark, `customSmallerIsBetter`.
    GithubBenchmark,
}

/// File names of the report files, in the order they are written.
pub const FILES: &[(&str, Format)] = &[
    ("report.md", Format::Markdown),
    ("report.html", Format::Html),
    ("junit.xml", Format::Junit),
    ("report.json", Format::Json),
    ("bmf.json", Format::Bmf),
    ("github-benchmark.json", Format::GithubBenchmark),
];

/// Renders `report` in a file format (`Terminal` has no file form and renders as Markdown).
pub fn render(report: &model::Report, format: Format) -> Result<String> {
    let json =
        |v: &serde_json::Value| -> Result<String> { Ok(serde_json::to_string_pretty(v)? + "\n") };
    Ok(match format {
        Format::Terminal | Format::Markdown => markdown::render(report),
        Format::Html => html::render(report),
        Format::Junit => junit::render(report).context("rendering JUnit XML")?,
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
        Format::Bmf => json(&export::bmf(report))?,
        Format::GithubBenchmark => json(&export::github_benchmark(report))?,
    })
}

/// Writes every report file into `dir` (created if needed); returns their paths.
pub fn write_files(dir: &Path, report: &model::Report) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, format) in FILES {
        let path = dir.join(name);
        crate::store::write_atomic(&path, render(report, *format)?.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// How many stored runs (the current one included) a trend plot shows.
pub const TREND_RUNS: usize = 30;

/// Per-variant median wall times of `earlier` runs (oldest first, as
/// [`crate::store::Results::history`] gives them) followed by `run` itself, for trend lines.
/// Only runs on the same hardware as `run` (GPU model, or the CPU) count: a line through a CPU
/// run and an H200 run of the same suite shows the hardware, not the code.
pub fn trend_runs(
    run: &crate::store::RunRecord,
    samples: &[crate::store::SampleRow],
    earlier: &[crate::store::StoredRun],
) -> Vec<model::RunMedians> {
    let hardware = |r: &crate::store::RunRecord| BaselineKey::of(&r.fingerprint, "").gpu;
    earlier
        .iter()
        .filter(|other| hardware(&other.record) == hardware(run))
        .map(|other| (&other.record, other.samples.as_slice()))
        .chain(std::iter::once((run, samples)))
        .map(|(record, rows)| model::RunMedians {
            run: record.id.clone(),
            started_at: record.fingerprint.started_at.clone(),
            medians: model::run_medians(record, rows),
        })
        .collect()
}
