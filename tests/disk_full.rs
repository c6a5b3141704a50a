//! A results folder that fills up during `claimbench run` (README: "Run records", "What
//! claimbench guarantees"): what the run leaves either agrees (run.json and samples.csv list
//! the same processes and measured calls) or is refused on load, and the run exits 3
//! (environment: I/O failure). Each attempt fills the disk at another point: while the record
//! is created, between samples.csv and run.json, at the second worker, at the final save, while
//! the report files are written.
//!
//! Two ways to fill it: a per-file size limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored so that
//! a write past it fails with EFBIG as on a full disk), which needs no privileges and always
//! runs; and a small tmpfs (ENOSPC), which needs root and says so on stderr when it cannot run.

mod common;

use common::{only_run, Sandbox};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Two variants, one process each, 64 stages per call (wide rows, so that samples.csv soon
/// outgrows run.json): `few` records 2 measured calls, `many` 40.
const NAPS: &str = r#"[suite]
name = "naps"
workload = "sleep"

[knobs]
device = "cpu"

[run]
warmup = 1
settle = false
repetitions = 2

[[variant]]
name = "few"
params = { ms = 0.1, stages = 64 }

[[variant]]
name = "many"
params = { ms = 0.1, stages = 64 }
run = { repetitions = 40 }
"#;

const REPORT_FILES: [&str; 6] = [
    "report.md",
    "report.html",
    "junit.xml",
    "report.json",
    "bmf.json",
    "github-benchmark.json",
];

/// `claimbench ARGS` in `cwd`; with `fsize`, no file it writes may grow past that many bytes.
fn claimbench(cwd: &Path, args: &[&str], fsize: Option<u64>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_claimbench"));
    command
        .current_dir(cwd)
        .args(args)
        .env_remove("CUDA_VISIBLE_DEVICES");
    if let Some(limit) = fsize {
        // SAFETY: between fork and exec, only async-signal-safe calls (setrlimit, signal).
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // An ignored signal stays ignored through exec, in the workers too.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    assert_cmd::Command::from_std(command)
        // Generous: a guard against hangs, not a speed check (a loaded 2-core CI box took
        // over two minutes to write the reports of the unlimited run).
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap_or_else(|e| panic!("claimbench {args:?} did not finish: {e}"))
}

/// Runs `commands` (each a working directory and arguments) side by side.
fn side_by_side(commands: &[(&Path, Vec<&str>)]) -> Vec<Output> {
    std::thread::scope(|s| {
        let running: Vec<_> = commands
            .iter()
            .map(|(cwd, args)| s.spawn(move || claimbench(cwd, args, None)))
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// `(suite, variant, process)`
type Process = (String, String, u32);

/// How far a run got before the disk filled, judged from what it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No run.json.
    NoRecord,
    /// run.json without `finished_at`: its suites and listed processes, and whether
    /// samples.csv holds rows of a process run.json does not list yet.
    Unfinished {
        suites: usize,
        listed: usize,
        unlisted_rows: bool,
    },
    /// `finished_at` written; whether all six report files were too.
    Finished { all_reports: bool },
}

/// A run folder as left on disk, read without claimbench.
struct Left {
    dir: PathBuf,
    record: Option<Value>,
    /// Measured rows of samples.csv per process (0 for a process with only warm-up rows).
    rows: Option<BTreeMap<Process, u64>>,
}

impl Left {
    /// Reads both files, which must be whole wherever they exist: they are only ever replaced
    /// by a rename.
    fn read(dir: &Path) -> Left {
        let record = std::fs::read_to_string(dir.join("run.json"))
            .ok()
            .map(|text| {
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}/run.json is half-written: {e}", dir.display()))
            });
        let rows = std::fs::read(dir.join("samples.csv"))
            .ok()
            .map(|bytes| measured_rows(&dir.join("samples.csv"), &bytes));
        Left {
            dir: dir.to_path_buf(),
            record,
            rows,
        }
    }

    fn phase(&self) -> Phase {
        let Some(record) = &self.record else {
            return Phase::NoRecord;
        };
        if record["finished_at"].is_string() {
            let all_reports = REPORT_FILES.iter().all(|f| self.dir.join(f).is_file());
            return Phase::Finished { all_reports };
        }
        let listed = listed(record);
        Phase::Unfinished {
            suites: record["suites"].as_array().map_or(0, Vec::len),
            listed: listed.len(),
            unlisted_rows: self
                .rows
                .iter()
                .flat_map(BTreeMap::keys)
                .any(|p| !listed.contains_key(p)),
        }
    }

    /// Why run.json and samples.csv disagree, if they do. Rows of one process that run.json
    /// does not list are allowed (samples.csv is written first); two such processes would mean
    /// a recorded process was lost from run.json.
    fn disagreement(&self) -> Option<String> {
        let record = self.record.as_ref()?;
        let Some(rows) = &self.rows else {
            return Some("run.json without samples.csv".into());
        };
        let listed = listed(record);
        for (process, calls) in &listed {
            let found = rows.get(process).copied().unwrap_or(0);
            if found != *calls {
                return Some(format!(
                    "{process:?}: run.json records {calls} measured calls, samples.csv has {found}"
                ));
            }
        }
        let planned: BTreeSet<(&str, &str)> = record["suites"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| {
                let suite = s["plan"]["suite"].as_str().unwrap();
                s["plan"]["variants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |v| (suite, v["name"].as_str().unwrap()))
            })
            .collect();
        let unlisted: Vec<&Process> = rows.keys().filter(|p| !listed.contains_key(*p)).collect();
        if unlisted.len() > 1
            || unlisted
                .iter()
                .any(|(s, v, _)| !planned.contains(&(s.as_str(), v.as_str())))
        {
            return Some(format!(
                "samples.csv has rows of processes run.json does not list: {unlisted:?}"
            ));
        }
        None
    }

    /// Measured calls run.json records, per variant.
    fn listed_per_variant(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((_, variant, _), calls) in self.record.as_ref().map(listed).unwrap_or_default() {
            *out.entry(variant).or_default() += calls;
        }
        out
    }
}

/// Measured calls per process that run.json records.
fn listed(record: &Value) -> BTreeMap<Process, u64> {
    let mut out = BTreeMap::new();
    for suite in record["suites"].as_array().into_iter().flatten() {
        let name = suite["plan"]["suite"].as_str().unwrap().to_string();
        for p in suite["processes"].as_array().unwrap() {
            let process = (
                name.clone(),
                p["variant"].as_str().unwrap().to_string(),
                p["process"].as_u64().unwrap() as u32,
            );
            *out.entry(process).or_default() += p["samples"].as_u64().unwrap();
        }
    }
    out
}

/// Measured rows of a whole samples.csv per process.
fn measured_rows(path: &Path, bytes: &[u8]) -> BTreeMap<Process, u64> {
    let path = path.display();
    assert!(
        bytes.ends_with(b"\n"),
        "{path} does not end with a newline: half-written"
    );
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{path} has no column {name}"))
    };
    let [suite, variant, process, warmup] = ["suite", "variant", "process", "warmup"].map(column);
    let mut rows = BTreeMap::new();
    for record in reader.records() {
        let r = record.unwrap_or_else(|e| panic!("{path} is half-written: {e}"));
        let key = (
            r[suite].to_string(),
            r[variant].to_string(),
            r[process].parse().unwrap(),
        );
        *rows.entry(key).or_default() += u64::from(&r[warmup] == "false");
    }
    rows
}

/// Temporary files of `write_atomic` left anywhere under `dir`.
fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(temporary_files(&path));
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))
        {
            found.push(path);
        }
    }
    found
}

/// Baseline files stored under `results`.
fn baseline_files(results: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![results.join("baselines")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "json") {
                found.push(path);
            }
        }
    }
    found
}

/// Asserts `output` is a refusal to load the record: exit 2 with an error naming the file
/// (or, for `baseline save`, saying the run is incomplete).
fn assert_refused(what: &str, output: &Output, context: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{context}: `{what}` should refuse the record\nstderr: {stderr}"
    );
    assert!(
        ["run.json", "samples.csv", "incomplete"]
            .iter()
            .any(|w| stderr.contains(w)),
        "{context}: `{what}` refused without naming the file: {stderr}"
    );
}

/// Checks one attempt: `run` is the output of `claimbench run --results results`, whose disk
/// filled with `os_error`. With `in_place`, `report` also runs against the full folder itself,
/// and must leave the records as they were. Returns how far the run got.
fn check_attempt(
    label: &str,
    results: &Path,
    run: &Output,
    os_error: &str,
    checks: &Path,
    in_place: bool,
) -> Phase {
    let runs: Vec<PathBuf> = std::fs::read_dir(results.join("runs"))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(runs.len() <= 1, "{label}: several run folders: {runs:?}");
    let code = run.status.code();
    let stderr = text(&run.stderr);
    let context = format!("{label}: `claimbench run` exited {code:?}\nstderr:\n{stderr}");
    let Some(dir) = runs.first() else {
        assert_eq!(code, Some(3), "{context}");
        return Phase::NoRecord;
    };
    let left = Left::read(dir);
    let phase = left.phase();
    let context = format!("{context}\nleft: {phase:?}");
    let complete = phase == Phase::Finished { all_reports: true };
    assert_eq!(code, Some(if complete { 0 } else { 3 }), "{context}");
    if !complete {
        assert!(
            stderr.contains("error: ") && stderr.contains(os_error),
            "{context}: no error saying `{os_error}`"
        );
        // A failed atomic write names the record it was writing, not only its temporary file.
        assert!(
            !stderr.contains("/.tmp") || stderr.contains("cannot write "),
            "{context}: the error names only a temporary file"
        );
    }
    let leftovers = temporary_files(dir);
    assert!(
        leftovers.is_empty(),
        "{context}: temporary files left: {leftovers:?}"
    );
    let disagreement = left.disagreement();

    std::fs::create_dir_all(checks).unwrap();
    let (out, baselines) = (checks.join("report"), checks.join("results"));
    let run_dir = utf8(dir);
    let mut commands: Vec<(&Path, Vec<&str>)> = vec![
        (checks, vec!["report", run_dir, "--out", utf8(&out)]),
        (
            checks,
            vec!["baseline", "save", run_dir, "--results", utf8(&baselines)],
        ),
    ];
    let finished = matches!(phase, Phase::Finished { .. });
    if in_place {
        commands.push((checks, vec!["report", run_dir]));
        if finished {
            commands.push((checks, vec!["history", "--results", utf8(results)]));
        }
    }
    let before = ["run.json", "samples.csv"].map(|f| std::fs::read(dir.join(f)).ok());
    let outputs = side_by_side(&commands);

    // `report` (into a folder with space): a cut-short run is reported as such.
    let report = &outputs[0];
    if phase == Phase::NoRecord || disagreement.is_some() {
        assert_refused("report", report, &format!("{context}\n{disagreement:?}"));
    } else {
        let stdout = text(&report.stdout);
        assert_eq!(
            report.status.code(),
            Some(0),
            "{context}: `report` failed\nstderr: {}",
            text(&report.stderr)
        );
        assert_eq!(
            stdout.contains("incomplete run: cut short"),
            !finished,
            "{context}: {stdout}"
        );
        let json: Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        let recorded: u64 = left.listed_per_variant().values().sum();
        assert_eq!(
            json["quality"]["measured"].as_u64(),
            Some(recorded),
            "{context}: the report counts other samples than run.json records"
        );
    }

    // `baseline save` (into a folder with space): only from a finished run whose files agree.
    let save = &outputs[1];
    if finished && disagreement.is_none() {
        assert_eq!(
            save.status.code(),
            Some(0),
            "{context}: `baseline save` failed\nstderr: {}",
            text(&save.stderr)
        );
        let files = baseline_files(&baselines);
        assert_eq!(files.len(), 1, "{context}: {files:?}");
        let baseline: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
        let stored: BTreeMap<String, u64> = baseline["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let values = v["metrics"]["wall_ms"].as_array().unwrap();
                let count = values.iter().map(|p| p.as_array().unwrap().len() as u64);
                (v["name"].as_str().unwrap().to_string(), count.sum())
            })
            .collect();
        assert_eq!(stored, left.listed_per_variant(), "{context}");
    } else {
        assert_refused("baseline save", save, &context);
        let files = baseline_files(&baselines);
        assert!(
            files.is_empty(),
            "{context}: a refused save wrote {files:?}"
        );
    }

    if in_place {
        // In the full folder: the report files fit or the command fails on I/O (exit 3); the
        // records stay as they were.
        let report = &outputs[2];
        let stderr = text(&report.stderr);
        let expected: &[i32] = if phase == Phase::NoRecord {
            &[2]
        } else {
            &[0, 3]
        };
        assert!(
            report.status.code().is_some_and(|c| expected.contains(&c)),
            "{context}: `report` in the full folder exited {:?}\nstderr: {stderr}",
            report.status.code()
        );
        let after = ["run.json", "samples.csv"].map(|f| std::fs::read(dir.join(f)).ok());
        assert!(
            before == after,
            "{context}: `report` in the full folder changed the records"
        );
        let leftovers = temporary_files(dir);
        assert!(
            leftovers.is_empty(),
            "{context}: `report` left temporary files: {leftovers:?}"
        );
        if finished {
            let history = &outputs[3];
            assert_eq!(
                history.status.code(),
                Some(0),
                "{context}: `history` on the full folder\nstderr: {}",
                text(&history.stderr)
            );
        }
    }
    phase
}

/// Sizes of a complete run's files, and of run.json and samples.csv as they were once the
/// suite was added and once the first worker was recorded: where the limits must fall.
struct Sizes {
    suite_added_record: u64,
    first_samples: u64,
    first_record: u64,
    samples: u64,
    record: u64,
    report_html: u64,
}

impl Sizes {
    fn of(dir: &Path) -> Sizes {
        let size = |f: &str| std::fs::metadata(dir.join(f)).unwrap().len();
        let samples = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
        let line = |l: &str| l.len() as u64 + 1;
        let mut lines = samples.lines();
        let header = line(lines.next().unwrap());
        let few: u64 = lines.filter(|l| l.starts_with("naps,few,")).map(line).sum();
        let record: Value =
            serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(record["suites"][0]["processes"][0]["variant"], "few");
        // The record as `run` wrote it after its first `processes` workers.
        let record_after = |processes: usize| {
            let mut r = record.clone();
            r["finished_at"] = Value::Null;
            r["suites"][0]["processes"]
                .as_array_mut()
                .unwrap()
                .truncate(processes);
            serde_json::to_vec_pretty(&r).unwrap().len() as u64
        };
        Sizes {
            suite_added_record: record_after(0),
            first_samples: header + few,
            first_record: record_after(1),
            samples: size("samples.csv"),
            record: size("run.json"),
            report_html: size("report.html"),
        }
    }
}

/// The midpoint of `[low, high)`, which must not be empty.
fn between(low: u64, high: u64, what: &str) -> u64 {
    assert!(
        low < high,
        "no limit lets {what} ({low} ≥ {high} bytes): adjust the manifest"
    );
    (low + high) / 2
}

#[test]
fn a_file_size_limit_leaves_records_that_agree_or_are_refused() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", NAPS);
    let attempt = |name: &str, limit: Option<u64>| {
        let results = sb.path().join(name).join("results");
        let args = [
            "run",
            "--quiet",
            "--results",
            utf8(&results),
            manifest.as_str(),
        ];
        let run = claimbench(sb.path(), &args, limit);
        (results, run)
    };
    let (results, run) = attempt("unlimited", None);
    let checks = sb.path().join("unlimited/checks");
    let phase = check_attempt("no limit", &results, &run, "", &checks, false);
    assert_eq!(phase, Phase::Finished { all_reports: true });
    let s = Sizes::of(&only_run(&results));

    let unfinished = |suites, listed, unlisted_rows| Phase::Unfinished {
        suites,
        listed,
        unlisted_rows,
    };
    let attempts = [
        ("no file fits", 64, Phase::NoRecord),
        (
            "run.json outgrows the limit when the suite is added",
            s.suite_added_record / 2,
            unfinished(0, 0, false),
        ),
        (
            "the first worker's samples.csv fits, its run.json does not",
            between(
                s.suite_added_record.max(s.first_samples),
                s.first_record,
                "the first worker's samples.csv but not its run.json",
            ),
            unfinished(1, 0, true),
        ),
        (
            "the second worker's samples.csv does not fit",
            between(
                s.first_record,
                s.samples,
                "the first worker but not the second",
            ),
            unfinished(1, 1, false),
        ),
        (
            "the records fit, report.html does not",
            between(
                s.samples.max(s.record),
                s.report_html,
                "the records but not report.html",
            ),
            Phase::Finished { all_reports: false },
        ),
    ];
    for (i, (label, limit, expected)) in attempts.into_iter().enumerate() {
        let name = format!("limit-{i}");
        let (results, run) = attempt(&name, Some(limit));
        let label = format!("{label} (files limited to {limit} bytes)");
        let checks = sb.path().join(name).join("checks");
        let phase = check_attempt(&label, &results, &run, "File too large", &checks, false);
        assert_eq!(phase, expected, "{label}: the run stopped elsewhere");
    }
}

/// A tmpfs of `bytes` on a fresh folder, unmounted when dropped (also when a test panics).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no folder to mount on: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run `mount`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`mount -t tmpfs` failed ({}): {}",
                out.status,
                text(&out.stderr)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmount = |lazy: bool| {
            let mut umount = Command::new("umount");
            if lazy {
                umount.arg("-l");
            }
            umount
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !unmount(false) && !unmount(true) {
            let _ = writeln!(
                std::io::stderr(),
                "disk_full: could not unmount the tmpfs at {}",
                self.dir.path().display()
            );
        }
    }
}

#[test]
fn a_full_tmpfs_leaves_records_that_agree_or_are_refused_when_tmpfs_can_be_mounted() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", NAPS);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let attempt = |name: &str, bytes: u64| -> Option<(Phase, u64)> {
        let tmpfs = match Tmpfs::mount(bytes) {
            Ok(tmpfs) => tmpfs,
            Err(why) => {
                // Not captured by the test harness: always shown.
                let _ = writeln!(
                    std::io::stderr(),
                    "disk_full: NOT RUN: the tmpfs test needs to mount a tmpfs (root): {why}; \
                     a_file_size_limit_leaves_records_that_agree_or_are_refused covers the same \
                     property without root"
                );
                return None;
            }
        };
        let results = tmpfs.path().join("results");
        let args = [
            "run",
            "--quiet",
            "--results",
            utf8(&results),
            manifest.as_str(),
        ];
        let run = claimbench(sb.path(), &args, None);
        let label = format!("tmpfs of {} pages", bytes / page);
        let checks = sb.path().join(name);
        let phase = check_attempt(
            &label,
            &results,
            &run,
            "No space left on device",
            &checks,
            true,
        );
        let samples_pages = std::fs::read_dir(results.join("runs"))
            .ok()
            .and_then(|mut runs| runs.next()?.ok())
            .and_then(|run| std::fs::metadata(run.path().join("samples.csv")).ok())
            .map_or(0, |m| m.len().div_ceil(page));
        Some((phase, samples_pages))
    };
    // Room for everything first: the size of samples.csv places the smaller tmpfs.
    let Some((phase, p)) = attempt("roomy", 8 << 20) else {
        return;
    };
    assert_eq!(phase, Phase::Finished { all_reports: true });
    // At the end samples.csv (p pages) is rewritten whole beside itself: about 2p + 4 pages,
    // the metric histories (a page per metric) and the reports come on top.
    let attempts = [
        ("one page", 1, Phase::NoRecord),
        (
            "room for both workers but not the final rewrite of samples.csv",
            (3 * p + 8) / 2,
            Phase::Unfinished {
                suites: 1,
                listed: 2,
                unlisted_rows: false,
            },
        ),
        (
            "room for the records but not the history and reports",
            2 * p + 16,
            Phase::Finished { all_reports: false },
        ),
    ];
    for (i, (label, pages, expected)) in attempts.into_iter().enumerate() {
        let Some((phase, _)) = attempt(&format!("tmpfs-{i}"), pages * page) else {
            return;
        };
        assert_eq!(
            phase, expected,
            "{label} ({pages} pages): the run stopped elsewhere"
        );
    }
}

#[test]
fn a_truncated_record_is_refused_on_load() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("naps.toml", NAPS);
    let results = sb.path().join("results");
    let run = claimbench(
        sb.path(),
        &[
            "run",
            "--quiet",
            "--filter",
            "few",
            "--results",
            utf8(&results),
            &manifest,
        ],
        None,
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let dir = only_run(&results);
    let samples = std::fs::read(dir.join("samples.csv")).unwrap();
    let record = std::fs::read(dir.join("run.json")).unwrap();
    let end = samples.len() - 1; // the final newline
    let last_row = samples[..end].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let last_cell = samples[..end].iter().rposition(|&b| b == b',').unwrap() + 1;
    assert!(
        end - last_cell >= 2,
        "the last cell is too short to cut into"
    );
    // As a writer that is not atomic leaves a file on a full disk: a prefix of it.
    let cases = [
        ("samples.csv", "cut inside the last cell", end - 1),
        ("samples.csv", "cut before the last cell", last_cell),
        ("samples.csv", "cut mid-row", (last_row + end) / 2),
        ("samples.csv", "cut after a whole row", last_row),
        ("run.json", "cut in half", record.len() / 2),
    ];
    let mut accepted = Vec::new();
    for (i, (file, how, keep)) in cases.into_iter().enumerate() {
        std::fs::write(dir.join("samples.csv"), &samples).unwrap();
        std::fs::write(dir.join("run.json"), &record).unwrap();
        let whole = if file == "run.json" {
            &record
        } else {
            &samples
        };
        std::fs::write(dir.join(file), &whole[..keep]).unwrap();
        let checks = sb.path().join(format!("cut-{i}"));
        std::fs::create_dir_all(&checks).unwrap();
        let out = checks.join("report");
        let baselines = checks.join("results");
        let run_dir = utf8(&dir);
        let outputs = side_by_side(&[
            (&checks, vec!["report", run_dir, "--out", utf8(&out)]),
            (
                &checks,
                vec!["baseline", "save", run_dir, "--results", utf8(&baselines)],
            ),
        ]);
        for (command, output) in ["report", "baseline save"].iter().zip(&outputs) {
            let stderr = text(&output.stderr);
            if output.status.code() != Some(2) || !stderr.contains(file) {
                accepted.push(format!(
                    "{file} {how} ({keep} of {} bytes): `{command}` exited {:?}, stderr: {}",
                    whole.len(),
                    output.status.code(),
                    stderr.trim()
                ));
            }
        }
        let files = baseline_files(&baselines);
        if !files.is_empty() {
            accepted.push(format!("{file} {how}: a baseline was stored: {files:?}"));
        }
    }
    assert!(
        accepted.is_empty(),
        "half-written records were not refused (exit 2 naming the file):\n{}",
        accepted.join("\n")
    );
}
