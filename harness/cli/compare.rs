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
/// hardware, software and profile, with what is stored instead.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingBaseline {
    pub suites: Vec<MissingSuite>,
}

/// One suite without a baseline for its key.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingSuite {
    pub suite: String,
    pub profile: String,
    /// Where its baseline would be.
    pub folder: PathBuf,
    /// Other `<stack>/<profile>` folders with a baseline of this suite.
    pub elsewhere: Vec<String>,
    /// A baseline of this stack in the layout from before profiles were part of the key.
    pub legacy: Option<PathBuf>,
}

impl std::fmt::Display for MissingBaseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, m) in self.suites.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "no baseline for {} (no baseline for profile {}) in {}",
                m.suite,
                m.profile,
                m.folder.display()
            )?;
            let rebaseline = format!(
                "re-baseline with `claimbench baseline save RUN` from a run with `--profile {}` on this stack",
                m.profile
            );
            if let Some(old) = &m.legacy {
                write!(
                    f,
                    "; {} was stored before baselines were kept per profile and is not used (it is left in place); {rebaseline}",
                    old.display()
                )?;
            }
            if !m.elsewhere.is_empty() {
                write!(
                    f,
                    "; baselines exist for another profile or hardware and software stack: {} (compare with one through --baseline FILE --allow-mismatch, or {rebaseline})",
                    m.elsewhere.join(", ")
                )?;
            } else if m.legacy.is_none() {
                write!(
                    f,
                    "; record one from a run of main with `claimbench baseline save RUN`, or pass --allow-missing-baseline"
                )?;
            }
        }
        Ok(())
    }
}

/// Compares a run with its baselines: the explicit `--baseline`, else the stored baselines
/// for the run's fingerprint and each suite's profile. With `required` false and no stored
/// baseline, there is no gate.
pub fn gate_with(
    dir: &Path,
    run: &RunRecord,
    samples: &[SampleRow],
    results: &Results,
    options: &GateArgs,
    required: bool,
) -> Result<Option<Gated>, ExpectedError> {
    let key_of = |suite: &str| {
        let profile = run
            .suites
            .iter()
            .find(|s| s.plan.suite == suite)
            .map_or("", |s| s.plan.profile.as_str());
        BaselineKey::of(&run.fingerprint, profile)
    };
    let (baselines, mismatches) = match &options.baseline {
        Some(path) => {
            let baselines = load_baselines(path)?;
            let mut mismatches: Vec<String> = baselines
                .iter()
                .flat_map(|b| key_of(&b.suite).differences(&b.key))
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
            let mut found = Vec::new();
            for suite in &run.suites {
                let key = key_of(&suite.plan.suite);
                found.extend(results.baselines(&key, [suite.plan.suite.as_str()])?);
            }
            (found, Vec::new())
        }
    };
    if baselines.is_empty() && !required {
        return Ok(None);
    }
    let missing = if options.baseline.is_some() {
        None
    } else {
        let suites: Vec<MissingSuite> = run
            .suites
            .iter()
            .filter(|s| !baselines.iter().any(|b| b.suite == s.plan.suite))
            .map(|s| {
                let key = key_of(&s.plan.suite);
                MissingSuite {
                    suite: s.plan.suite.clone(),
                    profile: s.plan.profile.clone(),
                    folder: results.baseline_dir(&key),
                    elsewhere: results
                        .baseline_keys_with(&s.plan.suite)
                        .into_iter()
                        .filter(|k| *k != key.dir_name())
                        .collect(),
                    legacy: results.legacy_baseline(&key, &s.plan.suite),
                }
            })
            .collect();
        (!suites.is_empty()).then_some(MissingBaseline { suites })
    };
    let unflagged: Vec<SampleRow> = samples
        .iter()
        .filter(|s| s.flags.is_empty())
        .cloned()
        .collect();
    let allow = options.allow_config_change;
    Ok(Some(Gated {
        report: gate(run, samples, &baselines, mismatches.clone(), allow),
        without_flagged: gate(run, &unflagged, &baselines, mismatches, allow),
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
    print!(
        "{}",
        crate::text::fit(&crate::report::terminal::gate_table(report))
    );
    store::write_compare(dir, report)
}
