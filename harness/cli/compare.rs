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
/// `compare.json` in the run folder; exit 1 if anything regressed.
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
        exit_code::OK
    })
}

/// A gate report, and the same gate with flagged samples left out (for the sensitivity
/// shown in reports).
pub struct Gated {
    pub report: GateReport,
    pub without_flagged: GateReport,
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
