//! `claimbench compare`, and the gate that `run --compare` and `report` share: which
//! baselines a run is compared with, and the comparison.

use super::args::GateArgs;
use super::{ExpectedError, Outcome};
use crate::exit_code;
use crate::store::baseline::{Baseline, BaselineKey};
use crate::store::{self, Results, RunRecord, SampleRow, StoredRun};
use crate::verdict::gate::{gate, GateReport, GateVerdict};
use std::path::{Path, PathBuf};

/// Compares a run (default: the newest) with its baselines, prints the table, stores
/// `compare.json` in the run folder; exit 1 if anything regressed, else 5 if a suite had no
/// baseline (unless `--allow-missing-baseline`).
pub fn compare(run: Option<PathBuf>, results: &Results, options: &GateArgs) -> Outcome {
    let run = results.open_run(run)?;
    let Some(gated) = gate_with(&run.dir, &run.record, &run.samples, results, options, true)?
    else {
        return Ok(exit_code::OK);
    };
    print_gate(&run.dir, &gated.report)?;
    Ok(if gated.report.count(GateVerdict::Regression) > 0 {
        exit_code::REGRESSION
    } else {
        gated.missing_baseline_code(options)
    })
}

/// A gate report, and the same gate with flagged samples left out (for the sensitivity
/// shown in reports).
pub struct Gated {
    pub report: GateReport,
    pub without_flagged: GateReport,
    /// Suites of the run that had no stored baseline, and what exists instead.
    pub missing: Option<MissingBaseline>,
}

impl Gated {
    /// [`exit_code::NO_BASELINE`] when a suite had no baseline and that is not allowed (the
    /// reason printed on stderr), else 0.
    pub fn missing_baseline_code(&self, options: &GateArgs) -> i32 {
        match &self.missing {
            Some(missing) => {
                eprintln!(
                    "{}{missing}",
                    if options.allow_missing_baseline {
                        "note: "
                    } else {
                        "error: "
                    }
                );
                if options.allow_missing_baseline {
                    exit_code::OK
                } else {
                    exit_code::NO_BASELINE
                }
            }
            None => exit_code::OK,
        }
    }
}

/// Suites that the gate could not compare because no baseline is stored for the run's
/// hardware and software, with the baseline folders that hold one for other fingerprints.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingBaseline {
    pub suites: Vec<String>,
    pub folder: PathBuf,
    /// Other fingerprint folders with a baseline of one of `suites`.
    pub elsewhere: Vec<String>,
}

impl std::fmt::Display for MissingBaseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no baseline for {} in {}",
            self.suites.join(", "),
            self.folder.display()
        )?;
        if self.elsewhere.is_empty() {
            write!(
                f,
                "; record one from a run of main with `claimbench baseline save RUN`, or pass --allow-missing-baseline"
            )
        } else {
            write!(
                f,
                "; baselines exist for another hardware or software stack: {} (compare with one through --baseline DIR --allow-mismatch, or re-baseline on this stack with `claimbench baseline save RUN`)",
                self.elsewhere.join(", ")
            )
        }
    }
}

/// Compares a run with its baselines: the explicit `--baseline`, else the stored baselines
/// for the run's fingerprint. With `required` false and no stored baseline, there is no gate.
pub fn gate_with(
    dir: &Path,
    run: &RunRecord,
    samples: &[SampleRow],
    results: &Results,
    options: &GateArgs,
    required: bool,
) -> Result<Option<Gated>, ExpectedError> {
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
                return Err(ExpectedError::HardwareMismatch {
                    run: dir.to_path_buf(),
                    baseline: path.clone(),
                    differences: mismatches,
                });
            }
            (baselines, mismatches)
        }
        None => {
            let suites = run.suites.iter().map(|s| s.plan.suite.as_str());
            (results.baselines(&key, suites)?, Vec::new())
        }
    };
    if baselines.is_empty() && !required {
        return Ok(None);
    }
    let missing = if options.baseline.is_some() {
        None
    } else {
        let suites: Vec<String> = run
            .suites
            .iter()
            .map(|s| s.plan.suite.clone())
            .filter(|s| !baselines.iter().any(|b| b.suite == *s))
            .collect();
        let mut elsewhere: Vec<String> = suites
            .iter()
            .flat_map(|s| results.baseline_keys_with(s))
            .filter(|k| *k != key.dir_name())
            .collect();
        elsewhere.sort();
        elsewhere.dedup();
        (!suites.is_empty()).then(|| MissingBaseline {
            suites,
            folder: results.baseline_dir(&key),
            elsewhere,
        })
    };
    let unflagged: Vec<SampleRow> = samples
        .iter()
        .filter(|s| s.flags.is_empty())
        .cloned()
        .collect();
    Ok(Some(Gated {
        report: gate(run, samples, &baselines, mismatches.clone()),
        without_flagged: gate(run, &unflagged, &baselines, mismatches),
        missing,
    }))
}

/// Baselines from a path: a run folder (its results become the baseline), a folder of
/// baseline files, or one baseline file.
fn load_baselines(path: &Path) -> Result<Vec<Baseline>, ExpectedError> {
    if store::is_run_dir(path) {
        let run = StoredRun::load(path)?;
        return Ok(Baseline::from_run(&run.record, &run.samples));
    }
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        return Ok(files
            .iter()
            .map(|f| Baseline::load(f))
            .collect::<Result<_, _>>()?);
    }
    Ok(vec![Baseline::load(path)?])
}

/// Prints the gate table and stores `compare.json` in the run folder.
pub fn print_gate(dir: &Path, report: &GateReport) -> anyhow::Result<()> {
    print!("{}", crate::report::terminal::gate_table(report));
    store::write_compare(dir, report)
}
