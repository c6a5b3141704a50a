//! Metric histories: after every complete run, each variant's per-process medians are appended
//! to one CSV file per (hardware and software stack, profile, suite, variant, metric), placed by
//! [`Results::history_file`]. Columns: `run_id, commit, time, process, value`, one row per
//! worker process that ended ok; `value` is the median of the process's measured calls.
//!
//! Appending is crash-safe for earlier rows: a run's rows go out in one `write` on a file
//! opened for appending, then `fsync`. A crash can only leave the last line half-written; a
//! reader ignores such a line (no final newline) with a warning, and the next append cuts it
//! off before writing.
//!
//! Change points ([`shifts`]) are looked for in the series of per-run values, each the median
//! of the run's process medians: one value per run, so that runs (not processes, which share
//! a run's machine state) are what the permutation test exchanges.

use super::baseline::{metric_values, BaselineKey};
use super::results::{same_owner, NAME_FILE};
use super::{slug, write_atomic, Results, RunRecord, SampleRow};
use crate::stats::changepoint::{change_points, ChangePointConfig};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

const HEADER: &str = "run_id,commit,time,process,value";

/// A change point is "recent" when at most this many runs came after it: the window in which
/// `--fail-on-change-point` fails.
pub const RECENT_RUNS: usize = 10;

/// One row: one worker process of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub run_id: String,
    pub commit: String,
    /// The run's start time (RFC 3339).
    pub time: String,
    pub process: u32,
    pub value: f64,
}

/// One series' rows as read, and the warnings reading raised.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub rows: Vec<HistoryRow>,
    pub warnings: Vec<String>,
}

/// One run's value in a series: the median of its process medians.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPoint {
    pub run_id: String,
    pub commit: String,
    pub time: String,
    pub processes: usize,
    pub value: f64,
}

/// Which series a history file holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SeriesId {
    /// `<stack>/<profile>`, as baselines are keyed.
    pub key: String,
    pub suite: String,
    pub variant: String,
    pub metric: String,
}

/// A persistent shift: a reported change point with the runs around it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shift {
    #[serde(flatten)]
    pub series: SeriesId,
    /// Median of the per-run values before and after.
    pub before: f64,
    pub after: f64,
    /// `after / before − 1`; every recorded metric is better smaller, so > 0 is worse.
    pub relative_change: f64,
    pub p_value: f64,
    /// The last run before the change and the first after it, with their commits.
    pub last_before: String,
    pub commit_before: String,
    pub first_after: String,
    pub commit_after: String,
    /// Runs from `first_after` to the newest, inclusive.
    pub runs_since: usize,
    /// The newest change point of its series, within the last [`RECENT_RUNS`] runs, and worse:
    /// what `--fail-on-change-point` fails on.
    pub recent_worsening: bool,
}

/// Per (suite, variant, metric): the per-process medians of `run`'s processes that ended ok.
pub fn run_rows(
    run: &RunRecord,
    samples: &[SampleRow],
) -> BTreeMap<(String, String, String), Vec<HistoryRow>> {
    let mut values: BTreeMap<(String, String, String, u32), Vec<f64>> = BTreeMap::new();
    for suite in &run.suites {
        for row in suite.measured_rows(samples).into_values().flatten() {
            for (metric, value) in metric_values(row) {
                let key = (row.suite.clone(), row.variant.clone(), metric, row.process);
                values.entry(key).or_default().push(value);
            }
        }
    }
    let mut out: BTreeMap<(String, String, String), Vec<HistoryRow>> = BTreeMap::new();
    for ((suite, variant, metric, process), v) in values {
        out.entry((suite, variant, metric))
            .or_default()
            .push(HistoryRow {
                run_id: run.id.clone(),
                commit: run.fingerprint.git_commit.clone(),
                time: run.fingerprint.started_at.clone(),
                process,
                value: median(&v),
            });
    }
    out
}

impl Results {
    /// Appends a complete run's per-process medians to the histories of its suites; returns
    /// the warnings (half-written lines cut off). A run already in a history is not added again.
    pub fn append_history(&self, run: &RunRecord, samples: &[SampleRow]) -> Result<Vec<String>> {
        if let Some(why) = run.incomplete() {
            bail!("run {} is not added to the history: {why}", run.id);
        }
        let mut warnings = Vec::new();
        // Per variant folder: whether it is this variant's (checked once, warned once).
        let mut owned: HashMap<PathBuf, bool> = HashMap::new();
        for ((suite, variant, metric), rows) in run_rows(run, samples) {
            let profile = run
                .suites
                .iter()
                .find(|s| s.plan.suite == suite)
                .map_or("", |s| s.plan.profile.as_str());
            let key = BaselineKey::of(&run.fingerprint, profile);
            let path = self.history_file(&key, &suite, &variant, &metric);
            let variant_dir = path.parent().context("history file without a folder")?;
            let ours = match owned.get(variant_dir) {
                Some(&ours) => ours,
                None => {
                    let suite_dir = variant_dir.parent().context("history without a suite")?;
                    let claimed = claim_folder(suite_dir, "suite", &suite)
                        .and_then(|()| claim_folder(variant_dir, "variant", &variant));
                    if let Err(e) = &claimed {
                        warnings.push(format!("{e:#}; this run was not added to it"));
                    }
                    owned.insert(variant_dir.to_path_buf(), claimed.is_ok());
                    claimed.is_ok()
                }
            };
            if ours {
                warnings.extend(append(&path, &rows)?);
            }
        }
        Ok(warnings)
    }

    /// Every history file under the results folder with its series, sorted.
    pub fn history_series(&self) -> Vec<(SeriesId, PathBuf)> {
        let mut out = Vec::new();
        let root = self.history_root();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "csv") {
                    let parts: Vec<String> = path
                        .strip_prefix(&root)
                        .unwrap_or(&path)
                        .with_extension("")
                        .iter()
                        .map(|p| p.to_string_lossy().into_owned())
                        .collect();
                    if let [stack_name, profile, suite, variant, metric] = parts.as_slice() {
                        let id = SeriesId {
                            key: format!("{stack_name}/{profile}"),
                            suite: suite.clone(),
                            variant: variant.clone(),
                            metric: metric.clone(),
                        };
                        out.push((id, path));
                    }
                }
            }
        }
        out.sort();
        out
    }
}

/// Makes `dir` the history folder of `name` (writing its name file), or checks that it is:
/// folders are named by slugs, which names differing only in `.`, `_` or `-` share. A folder
/// from before name files existed is taken by the first name that appends to it.
fn claim_folder(dir: &Path, kind: &'static str, name: &str) -> Result<()> {
    let marker = dir.join(NAME_FILE);
    match std::fs::read_to_string(&marker) {
        Ok(stored) => Ok(same_owner(&marker, "history", kind, &stored, name)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            write_atomic(&marker, name.as_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", marker.display())),
    }
}

/// Appends `rows` to the history file at `path` (created with its header), in one write.
fn append(path: &Path, rows: &[HistoryRow]) -> Result<Vec<String>> {
    let dir = path.parent().context("history file without a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut warnings = Vec::new();
    if !text.is_empty() && !text.ends_with('\n') {
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        file.set_len(keep as u64)
            .with_context(|| format!("cannot cut {}", path.display()))?;
        file.seek(std::io::SeekFrom::End(0))?;
        warnings.push(format!(
            "{}: line {}: dropped a half-written line (an earlier append was cut short)",
            path.display(),
            text[..keep].lines().count() + 1
        ));
        text.truncate(keep);
    }
    if rows.first().is_some_and(|r| {
        text.lines()
            .any(|l| l.starts_with(&format!("{},", r.run_id)))
    }) {
        return Ok(warnings);
    }
    let mut out = Vec::new();
    {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(&mut out);
        if text.is_empty() {
            w.write_record(HEADER.split(','))?;
        }
        for r in rows {
            w.write_record([
                r.run_id.as_str(),
                &r.commit,
                &r.time,
                &r.process.to_string(),
                &r.value.to_string(),
            ])?;
        }
        w.flush()?;
    }
    file.write_all(&out)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot append to {}", path.display()))?;
    Ok(warnings)
}

/// Reads a history file. A last line without its newline (a crash mid-append) is ignored
/// with a warning; any other row that does not parse is an error naming file and line.
pub fn read(path: &Path) -> Result<History> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut warnings = Vec::new();
    let complete = match text.rfind('\n') {
        Some(i) if i + 1 < text.len() => {
            warnings.push(format!(
                "{}: line {}: ignored a half-written last line (an append was cut short)",
                path.display(),
                text[..=i].lines().count() + 1
            ));
            &text[..=i]
        }
        None if !text.is_empty() => {
            warnings.push(format!(
                "{}: line 1: ignored a half-written line (an append was cut short)",
                path.display()
            ));
            ""
        }
        _ => text.as_str(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(complete.as_bytes());
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 1;
        let at = |what: &str| format!("{}: line {line}: {what}", path.display());
        let record = record.with_context(|| at("not CSV"))?;
        if line == 1 {
            if record.iter().collect::<Vec<_>>().join(",") != HEADER {
                bail!(at(&format!("expected the header `{HEADER}`")));
            }
            continue;
        }
        if record.len() != 5 {
            bail!(at(&format!("expected 5 columns, found {}", record.len())));
        }
        let process = record[3].parse().map_err(|_| {
            anyhow::anyhow!(at(&format!(
                "column process: `{}` is not a process number",
                &record[3]
            )))
        })?;
        let value: f64 = record[4]
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                anyhow::anyhow!(at(&format!(
                    "column value: `{}` is not a finite number",
                    &record[4]
                )))
            })?;
        rows.push(HistoryRow {
            run_id: record[0].to_string(),
            commit: record[1].to_string(),
            time: record[2].to_string(),
            process,
            value,
        });
    }
    Ok(History { rows, warnings })
}

/// One point per run, in the order the runs were appended; with `up_to`, the runs after that
/// run id are left out (a report on an older run sees the history as it was then).
pub fn per_run(rows: &[HistoryRow], up_to: Option<&str>) -> Vec<RunPoint> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_run: BTreeMap<&str, Vec<&HistoryRow>> = BTreeMap::new();
    for r in rows {
        if !by_run.contains_key(r.run_id.as_str()) {
            order.push(&r.run_id);
        }
        by_run.entry(&r.run_id).or_default().push(r);
    }
    if let Some(last) = up_to.and_then(|id| order.iter().position(|r| *r == id)) {
        order.truncate(last + 1);
    }
    order
        .into_iter()
        .map(|id| {
            let rows = &by_run[id];
            let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
            RunPoint {
                run_id: id.to_string(),
                commit: rows[0].commit.clone(),
                time: rows[0].time.clone(),
                processes: rows.len(),
                value: median(&values),
            }
        })
        .collect()
}

/// The persistent shifts of one series of run points.
pub fn shifts(series: &SeriesId, points: &[RunPoint], config: &ChangePointConfig) -> Vec<Shift> {
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    // Values were checked finite when read.
    let found = change_points(&values, config).unwrap_or_default();
    let newest = found.last().map(|c| c.index);
    found
        .into_iter()
        .map(|c| {
            let runs_since = points.len() - c.index;
            Shift {
                series: series.clone(),
                before: c.before,
                after: c.after,
                relative_change: c.relative_change,
                p_value: c.p_value,
                last_before: points[c.index - 1].run_id.clone(),
                commit_before: points[c.index - 1].commit.clone(),
                first_after: points[c.index].run_id.clone(),
                commit_after: points[c.index].commit.clone(),
                runs_since,
                recent_worsening: Some(c.index) == newest
                    && runs_since <= RECENT_RUNS
                    && c.relative_change > 0.0,
            }
        })
        .collect()
}

/// The shifts in the histories of `run`'s suites (for its stack and profiles), as they stood
/// at `run`; and the warnings raised reading them (a broken history is skipped, not fatal:
/// the report is about the run).
pub fn shifts_for_run(
    results: &Results,
    run: &RunRecord,
    config: &ChangePointConfig,
) -> (Vec<Shift>, Vec<String>) {
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    for suite in &run.suites {
        let key = BaselineKey::of(&run.fingerprint, &suite.plan.profile);
        for (id, path) in results.history_series() {
            if id.key != key.dir_name() || id.suite != slug(&suite.plan.suite) {
                continue;
            }
            match read(&path) {
                Ok(h) => {
                    warnings.extend(h.warnings);
                    let points = per_run(&h.rows, Some(&run.id));
                    found.extend(shifts(&id, &points, config));
                }
                Err(e) => warnings.push(format!("{e:#}; history skipped")),
            }
        }
    }
    (found, warnings)
}

/// Median of a non-empty slice.
fn median(x: &[f64]) -> f64 {
    crate::stats::sample::median_in_place(&mut x.to_vec())
}

#[cfg(test)]
mod tests;
