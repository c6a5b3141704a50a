//! `claimbench baseline save|accept`: stores a run as the baseline of each of its suites.

use super::{ExpectedError, Outcome};
use crate::exit_code;
use crate::store::baseline::Baseline;
use crate::store::Results;
use std::path::PathBuf;

/// Stores `run` (default: the newest) as baselines and prints their paths; `replace` says
/// whether an existing baseline may be replaced (`accept`) or not (`save`).
pub fn store(run: Option<PathBuf>, results: &Results, replace: bool) -> Outcome {
    let run = results.open_run(run)?;
    if run.record.interrupted {
        return Err(ExpectedError::InterruptedBaseline(run.dir));
    }
    for baseline in Baseline::from_run(&run.record, &run.samples) {
        let path = results.save_baseline(&baseline, replace)?;
        println!("{}", path.display());
    }
    Ok(exit_code::OK)
}
