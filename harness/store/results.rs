//! The results folder, and the only code that knows its layout:
//!
//! ```text
//! <results>/runs/<UTC time>-<gpu>-<host>/{run.json, samples.csv, compare.json, manifests/, logs/}
//! <results>/baselines/<software stack>/<profile>/<suite>.json
//! <results>/history/<software stack>/<profile>/<suite>/<variant>/<metric>.csv
//! ```
//!
//! Folder and file names are slugs of suite and variant names, which several names can share
//! (`nap.x`, `nap-x`): a baseline holds its suite's exact name, and each history folder a
//! `name.txt`, so one suite's files are never read or replaced as another's.
//!
//! Baselines stored before the profile was part of their key lie at
//! `baselines/<software stack>/<suite>.json`; they are never used, only named (see
//! [`Results::legacy_baseline`]).

use super::baseline::{Baseline, BaselineKey};
use super::error::StoreError;
use super::{
    csv_io, slug, write_atomic, Fingerprint, RunRecord, SampleRow, SuiteRecord, FORMAT_VERSION,
};
use crate::plan::Plan;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const RUNS: &str = "runs";
const BASELINES: &str = "baselines";
const HISTORY: &str = "history";
const RUN_FILE: &str = "run.json";
const SAMPLES_FILE: &str = "samples.csv";
const COMPARE_FILE: &str = "compare.json";
const MANIFESTS: &str = "manifests";
const LOGS: &str = "logs";

/// A results folder: run records under `runs/`, baselines under `baselines/`.
#[derive(Debug, Clone)]
pub struct Results {
    root: PathBuf,
    /// `root/runs`, except for [`Results::enclosing`].
    runs: PathBuf,
}

impl Results {
    pub fn new(root: impl Into<PathBuf>) -> Results {
        let root = root.into();
        let runs = root.join(RUNS);
        Results { root, runs }
    }

    /// The results folder around a run folder: its runs are the folders beside `run_dir`.
    pub fn enclosing(run_dir: &Path) -> Results {
        let runs = run_dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = runs.parent().map(Path::to_path_buf).unwrap_or_default();
        Results { root, runs }
    }

    /// The run folders (those holding a run record), oldest first.
    pub fn runs(&self) -> Vec<PathBuf> {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(&self.runs)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_run_dir(p))
            .collect();
        // Numbers compared as numbers: a run id's suffix `-10` comes after `-2`.
        runs.sort_by(|a, b| natural_order(&a.to_string_lossy(), &b.to_string_lossy()));
        runs
    }

    /// The newest run folder (run ids start with the UTC start time).
    pub fn latest(&self) -> Result<PathBuf, StoreError> {
        self.runs().pop().ok_or_else(|| StoreError::NoRun {
            runs: self.runs.clone(),
        })
    }

    /// Loads `run`, or the newest run without one.
    pub fn open_run(&self, run: Option<PathBuf>) -> Result<StoredRun, StoreError> {
        let dir = match run {
            Some(dir) => dir,
            None => self.latest()?,
        };
        StoredRun::load(&dir)
    }

    /// Creates `runs/<UTC time>-<gpu>-<host>/` (with a numeric suffix if taken) and writes an
    /// empty record into it.
    pub fn new_run(&self, fingerprint: Fingerprint, command: Vec<String>) -> Result<RunDir> {
        std::fs::create_dir_all(&self.runs)
            .with_context(|| format!("cannot create {}", self.runs.display()))?;
        let time = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let gpu = fingerprint
            .gpu
            .as_ref()
            .map(|g| slug(&g.name))
            .unwrap_or_else(|| "cpu".into());
        let base = format!("{time}-{gpu}-{}", slug(&fingerprint.host));
        let mut id = base.clone();
        let mut n = 1;
        let path = loop {
            let candidate = self.runs.join(&id);
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    n += 1;
                    id = format!("{base}-{n}");
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", candidate.display()))
                }
            }
        };
        for sub in [MANIFESTS, LOGS] {
            std::fs::create_dir_all(path.join(sub))?;
        }
        let record = RunRecord {
            format_version: FORMAT_VERSION.into(),
            id,
            fingerprint,
            command,
            finished_at: None,
            interrupted: false,
            interrupted_by: None,
            suites: Vec::new(),
            shard: None,
            merged_from: None,
        };
        let dir = RunDir {
            path,
            record,
            samples: Vec::new(),
        };
        dir.save()?;
        Ok(dir)
    }

    /// `baselines/<stack>/<profile>/`: the baselines valid for one fingerprint and profile.
    pub fn baseline_dir(&self, key: &BaselineKey) -> PathBuf {
        self.root.join(BASELINES).join(key.dir_name())
    }

    /// `baselines/<stack>/<profile>/<suite>.json`
    pub fn baseline_path(&self, key: &BaselineKey, suite: &str) -> PathBuf {
        self.baseline_dir(key).join(format!("{}.json", slug(suite)))
    }

    /// The stored baselines for `key` of those `suites` that have one. A file at a suite's
    /// place that holds another suite's baseline is an error: it is never compared against.
    pub fn baselines<'a>(
        &self,
        key: &BaselineKey,
        suites: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Baseline>, StoreError> {
        let mut found = Vec::new();
        for suite in suites {
            let path = self.baseline_path(key, suite);
            if path.is_file() {
                let baseline = Baseline::load(&path)?;
                same_owner(&path, "baseline", "suite", &baseline.suite, suite)?;
                found.push(baseline);
            }
        }
        Ok(found)
    }

    /// Refuses `suite` when a stored baseline or history of another suite lies where its
    /// files would go (suite names that differ only in `.`, `_` or `-`). `run` asks before
    /// any worker starts, so the clash is found before GPU time is spent, not after.
    pub fn check_suite_name_free(&self, suite: &str) -> Result<(), StoreError> {
        let file = format!("{}.json", slug(suite));
        for (_, path) in self.baseline_files() {
            if path.file_name().is_some_and(|n| n == file.as_str()) {
                // An unreadable baseline is reported by whatever reads it, not here.
                if let Ok(stored) = Baseline::load(&path) {
                    same_owner(&path, "baseline", "suite", &stored.suite, suite)?;
                }
            }
        }
        for (_, stack) in subfolders(&self.history_root()) {
            for (_, profile) in subfolders(&stack) {
                let marker = profile.join(slug(suite)).join(NAME_FILE);
                if let Ok(stored) = std::fs::read_to_string(&marker) {
                    same_owner(&marker, "history", "suite", &stored, suite)?;
                }
            }
        }
        Ok(())
    }

    /// `history/`: the metric histories.
    pub fn history_root(&self) -> PathBuf {
        self.root.join(HISTORY)
    }

    /// `history/<stack>/<profile>/<suite>/<variant>/<metric>.csv`: one series.
    pub fn history_file(
        &self,
        key: &BaselineKey,
        suite: &str,
        variant: &str,
        metric: &str,
    ) -> PathBuf {
        self.history_root()
            .join(key.dir_name())
            .join(slug(suite))
            .join(slug(variant))
            .join(format!("{}.csv", metric_file_name(metric)))
    }

    /// The baseline folders (`<stack>/<profile>`) that hold a baseline of `suite`, sorted.
    pub fn baseline_keys_with(&self, suite: &str) -> Vec<String> {
        let file = format!("{}.json", slug(suite));
        let mut keys: Vec<String> = subfolders(&self.root.join(BASELINES))
            .into_iter()
            .flat_map(|(stack, path)| {
                subfolders(&path)
                    .into_iter()
                    .map(move |(profile, path)| (format!("{stack}/{profile}"), path))
            })
            .filter(|(_, path)| path.join(&file).is_file())
            .map(|(key, _)| key)
            .collect();
        keys.sort();
        keys
    }

    /// A baseline of `suite` for `key`'s software stack stored in the layout from before
    /// profiles were part of the key (`baselines/<stack>/<suite>.json`), if there is one.
    pub fn legacy_baseline(&self, key: &BaselineKey, suite: &str) -> Option<PathBuf> {
        let path = self
            .root
            .join(BASELINES)
            .join(key.stack_name())
            .join(format!("{}.json", slug(suite)));
        path.is_file().then_some(path)
    }

    /// Every stored baseline file, sorted by path: `(stack/profile, suite file)`, with the
    /// old layout's files as `(stack, suite file)`.
    pub fn baseline_files(&self) -> Vec<(String, PathBuf)> {
        let json = |p: &Path| p.is_file() && p.extension().is_some_and(|x| x == "json");
        let files_in = |dir: &Path| -> Vec<PathBuf> {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| json(p))
                .collect();
            files.sort();
            files
        };
        let mut out = Vec::new();
        for (stack, stack_dir) in subfolders(&self.root.join(BASELINES)) {
            out.extend(files_in(&stack_dir).into_iter().map(|f| (stack.clone(), f)));
            for (profile, dir) in subfolders(&stack_dir) {
                let key = format!("{stack}/{profile}");
                out.extend(files_in(&dir).into_iter().map(|f| (key.clone(), f)));
            }
        }
        out
    }

    /// The path `baseline` would be saved at, or why it may not be: a baseline is there
    /// and `replace` is not set, or the file there is another suite's.
    pub fn check_baseline_slot(
        &self,
        baseline: &Baseline,
        replace: bool,
    ) -> Result<PathBuf, StoreError> {
        let path = self.baseline_path(&baseline.key, &baseline.suite);
        // A stored file that cannot be read is replaced as before (and kept as `.prev`).
        if let Ok(stored) = Baseline::load(&path) {
            same_owner(&path, "baseline", "suite", &stored.suite, &baseline.suite)?;
        }
        if path.exists() && !replace {
            return Err(StoreError::BaselineExists { path });
        }
        Ok(path)
    }

    /// Writes a baseline to its place; refuses to replace one unless `replace`. A replaced
    /// baseline is kept beside it as `<suite>.json.prev` (the one before is dropped).
    pub fn save_baseline(&self, baseline: &Baseline, replace: bool) -> Result<PathBuf, StoreError> {
        let path = self.check_baseline_slot(baseline, replace)?;
        let write = || -> Result<()> {
            std::fs::create_dir_all(path.parent().expect("baseline path has a folder"))?;
            if path.is_file() {
                let previous = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                write_atomic(&previous_baseline_path(&path), &previous)?;
            }
            write_atomic(&path, &serde_json::to_vec_pretty(baseline)?)
        };
        write().map_err(StoreError::Write)?;
        Ok(path)
    }

    /// The stored runs before `current` (its id, and not `current_dir` itself) that share a
    /// suite with it, at most `limit`, oldest first: the history of trend plots. Unreadable
    /// runs are skipped: a trend line is a convenience, not a verdict.
    pub fn history(&self, current_dir: &Path, current: &RunRecord, limit: usize) -> Vec<StoredRun> {
        let suites: Vec<&str> = current
            .suites
            .iter()
            .map(|s| s.plan.suite.as_str())
            .collect();
        let mut history: Vec<StoredRun> = self
            .runs()
            .into_iter()
            .filter(|p| p.file_name() != current_dir.file_name())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n < current.id.as_str())
            })
            .rev()
            .filter_map(|p| {
                let record = RunRecord::load(&p).ok()?;
                if !record
                    .suites
                    .iter()
                    .any(|s| suites.contains(&s.plan.suite.as_str()))
                {
                    return None;
                }
                let samples = csv_io::read_samples(&p.join(SAMPLES_FILE)).ok()?;
                Some(StoredRun {
                    dir: p,
                    record,
                    samples,
                })
            })
            .take(limit)
            .collect();
        history.reverse();
        history
    }
}

/// Metric names (`wall_ms`, `stage_<name>_ms`) kept as they are where they are file-name
/// safe, so the file says which metric it holds.
fn metric_file_name(metric: &str) -> String {
    if !metric.is_empty()
        && metric
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        metric.to_string()
    } else {
        slug(metric)
    }
}

/// The file in each history suite and variant folder that holds the exact name the folder
/// was made for, since folder names are slugs that several names share.
pub(super) const NAME_FILE: &str = "name.txt";

/// Errs unless the file at `path` (a baseline, a history folder's name file) belongs to
/// `wanted`: same slug is not same name.
pub(super) fn same_owner(
    path: &Path,
    what: &'static str,
    kind: &'static str,
    stored: &str,
    wanted: &str,
) -> Result<(), StoreError> {
    if stored == wanted {
        return Ok(());
    }
    Err(StoreError::NameTaken {
        what,
        kind,
        path: path.to_path_buf(),
        stored: stored.to_string(),
        wanted: wanted.to_string(),
    })
}

/// The subfolders of `dir` with UTF-8 names, sorted; none if `dir` cannot be read.
fn subfolders(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
        .collect();
    found.sort();
    found
}

/// Where `accept` keeps the baseline it replaced: `<suite>.json.prev`.
pub fn previous_baseline_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    path.with_file_name(name)
}

/// Whether `dir` holds a run record.
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join(RUN_FILE).is_file()
}

impl RunRecord {
    /// Reads `run.json` from a run directory, refusing other major format versions.
    pub fn load(dir: &Path) -> Result<RunRecord, StoreError> {
        super::read_versioned(&dir.join(RUN_FILE), "run record")
    }
}

/// A run read back from its folder.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub dir: PathBuf,
    pub record: RunRecord,
    pub samples: Vec<SampleRow>,
}

impl StoredRun {
    /// Reads `run.json` and `samples.csv` of a run folder and checks that they agree (see
    /// [`consistent_samples`]).
    pub fn load(dir: &Path) -> Result<StoredRun, StoreError> {
        let record = RunRecord::load(dir)?;
        let path = dir.join(SAMPLES_FILE);
        let samples = csv_io::read_samples(&path)?;
        let samples = consistent_samples(&path, &record, samples).map_err(StoreError::Samples)?;
        Ok(StoredRun {
            dir: dir.to_path_buf(),
            record,
            samples,
        })
    }
}

/// Checks `samples.csv`'s rows against `run.json`: every row names a suite and a variant of
/// the record, and every recorded process has as many measured rows as `run.json` says.
/// Rows of a process that `run.json` does not list are dropped: `samples.csv` is written
/// first, so a run killed between the two writes leaves them without an outcome.
fn consistent_samples(
    path: &Path,
    record: &RunRecord,
    samples: Vec<SampleRow>,
) -> anyhow::Result<Vec<SampleRow>> {
    use std::collections::{BTreeMap, HashMap, HashSet};
    let file = path.display();
    let mut counts: BTreeMap<(&str, &str, u32), (u64, u64)> = BTreeMap::new();
    for suite in &record.suites {
        for p in &suite.processes {
            counts
                .entry((&suite.plan.suite, &p.variant, p.process))
                .or_default()
                .0 += u64::from(p.samples);
        }
    }
    // Suite name → its variants' names: one lookup per row, however many variants there are.
    let by_suite: HashMap<&str, (&SuiteRecord, HashSet<&str>)> = record
        .suites
        .iter()
        .map(|s| {
            let variants = s.plan.variants.iter().map(|v| v.name.as_str()).collect();
            (s.plan.suite.as_str(), (s, variants))
        })
        .collect();
    let mut listed = Vec::with_capacity(samples.len());
    for (i, row) in samples.iter().enumerate() {
        let Some((suite, variants)) = by_suite.get(row.suite.as_str()) else {
            anyhow::bail!(
                "{file}: row {}, column suite: suite `{}` is not in run.json",
                i + 2,
                row.suite
            );
        };
        if !variants.contains(row.variant.as_str()) {
            let known: Vec<&str> = suite
                .plan
                .variants
                .iter()
                .map(|v| v.name.as_str())
                .collect();
            anyhow::bail!(
                "{file}: row {}, column variant: unknown variant `{}` of suite `{}` (run.json lists {})",
                i + 2,
                row.variant,
                row.suite,
                known.join(", ")
            );
        }
        let count = counts.get_mut(&(row.suite.as_str(), row.variant.as_str(), row.process));
        listed.push(count.is_some());
        if let Some(c) = count {
            c.1 += u64::from(!row.warmup);
        }
    }
    for ((suite, variant, process), (recorded, found)) in &counts {
        if recorded != found {
            anyhow::bail!(
                "{file} disagrees with run.json: suite `{suite}`, variant `{variant}`, process {process}: run.json records {recorded} measured call(s), samples.csv has {found}"
            );
        }
    }
    Ok(samples
        .into_iter()
        .zip(listed)
        .filter_map(|(row, listed)| listed.then_some(row))
        .collect())
}

/// Stores a comparison's table as `compare.json` in a run folder.
pub fn write_compare(run_dir: &Path, table: &impl serde::Serialize) -> Result<()> {
    write_atomic(
        &run_dir.join(COMPARE_FILE),
        &serde_json::to_vec_pretty(table)?,
    )
}

/// A run directory being written.
pub struct RunDir {
    pub path: PathBuf,
    pub record: RunRecord,
    pub samples: Vec<SampleRow>,
}

impl RunDir {
    /// Adds a suite and stores its manifest as run.
    pub fn add_suite(&mut self, plan: Plan, manifest_text: &str) -> Result<usize> {
        let file = format!("{MANIFESTS}/{}.toml", slug(&plan.suite));
        write_atomic(&self.path.join(&file), manifest_text.as_bytes())?;
        self.record.suites.push(super::SuiteRecord {
            plan,
            manifest_file: file,
            processes: Vec::new(),
            adaptive: None,
        });
        self.save()?;
        Ok(self.record.suites.len() - 1)
    }

    /// Where a worker's stderr goes, relative to the run folder.
    pub fn log_file(suite: &str, variant: &str, process: u32) -> String {
        format!("{LOGS}/{}.{}.p{process}.stderr", slug(suite), slug(variant))
    }

    /// Rewrites `samples.csv`, then `run.json`, each atomically. In that order a failure (or a
    /// kill) between the two leaves rows of a process that `run.json` does not list yet, which
    /// loading drops, never a process recorded without its rows.
    pub fn save(&self) -> Result<()> {
        write_atomic(
            &self.path.join(SAMPLES_FILE),
            &csv_io::write_samples(&self.samples)?,
        )?;
        let json = serde_json::to_vec_pretty(&self.record)?;
        write_atomic(&self.path.join(RUN_FILE), &json)?;
        Ok(())
    }
}
/// Orders text with runs of digits compared by value (`run-2` < `run-10`).
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(text: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = text.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &text[start..i]));
                start = i;
            }
        }
        out
    }
    for (x, y) in chunks(a).into_iter().zip(chunks(b)) {
        let order = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_run_is_found_by_number_not_by_text() {
        let dir = tempfile::tempdir().unwrap();
        let results = Results::new(dir.path());
        for id in [
            "20261201T010203Z-cpu-vm",
            "20261201T010203Z-cpu-vm-2",
            "20261201T010203Z-cpu-vm-10",
        ] {
            let run = dir.path().join("runs").join(id);
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(run.join(RUN_FILE), "{}").unwrap();
        }
        let latest = results.latest().unwrap();
        assert!(latest.ends_with("20261201T010203Z-cpu-vm-10"), "{latest:?}");
        assert!(natural_order("a-2", "a-10").is_lt());
        assert!(natural_order("20261201T01", "20261130T23").is_gt());
        assert!(natural_order("é1", "é01").is_lt());
    }
}
