//! Presentation of run records: the terminal tables, and the report files that
//! `claimbench report` (and `claimbench run`) write into a run folder.
//!
//! [`model::Report`] is computed once; every format renders it: Markdown for a pull-request
//! comment, one self-contained HTML file with SVG plots, JUnit XML for CI test views, the
//! report as JSON, and Bencher (BMF) and github-action-benchmark exports for history services.

pub mod escape;
pub mod export;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod model;
pub mod plots;
pub mod terminal;
#[cfg(test)]
mod tests;

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

/// Per-variant median wall times of the stored runs beside `dir` (its parent folder) that
/// share a suite with `run` and are not newer than it, oldest first and `run` itself last.
/// Unreadable runs are skipped: a trend
/// line is a convenience, not a verdict.
pub fn trend_runs(
    dir: &Path,
    run: &crate::store::RunRecord,
    samples: &[crate::store::SampleRow],
) -> Vec<model::RunMedians> {
    let suites: Vec<&str> = run.suites.iter().map(|s| s.plan.suite.as_str()).collect();
    let mut others: Vec<PathBuf> = dir
        .parent()
        .and_then(|p| std::fs::read_dir(p).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("run.json").is_file() && p.file_name() != dir.file_name())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n < run.id.as_str())
        })
        .collect();
    others.sort();
    let mut history: Vec<_> = others
        .iter()
        .rev()
        .filter_map(|p| {
            let other = crate::store::RunRecord::load(p).ok()?;
            if !other
                .suites
                .iter()
                .any(|s| suites.contains(&s.plan.suite.as_str()))
            {
                return None;
            }
            let rows = crate::store::read_samples(&p.join("samples.csv")).ok()?;
            Some(model::RunMedians {
                run: other.id.clone(),
                started_at: other.fingerprint.started_at.clone(),
                medians: model::run_medians(&other, &rows),
            })
        })
        .take(TREND_RUNS - 1)
        .collect();
    history.reverse();
    history.push(model::RunMedians {
        run: run.id.clone(),
        started_at: run.fingerprint.started_at.clone(),
        medians: model::run_medians(run, samples),
    });
    history
}
