//! `claimbench baseline save|accept`: stores a run as the baseline of each of its suites.

use super::{ExpectedError, Outcome};
use crate::exit_code;
use crate::store::baseline::Baseline;
use crate::store::Results;
use std::path::PathBuf;

/// Stores `run` (default: the newest) as baselines and prints their paths; `replace` says
/// whether an existing baseline may be replaced (`accept`, which keeps the replaced one as
/// `<suite>.json.prev`) or not (`save`). Incomplete runs and runs with missing or non-finite
/// metric values are refused.
pub fn store(run: Option<PathBuf>, results: &Results, replace: bool) -> Outcome {
    let run = results.open_run(run)?;
    if let Some(why) = run.record.incomplete() {
        return Err(ExpectedError::IncompleteBaseline { run: run.dir, why });
    }
    let baselines = Baseline::from_run(&run.record, &run.samples);
    let problems: Vec<String> = baselines.iter().flat_map(Baseline::problems).collect();
    if !problems.is_empty() {
        return Err(ExpectedError::UnusableBaseline {
            run: run.dir,
            why: problems.join("; "),
        });
    }
    // Every baseline is checked before any is written, so a refusal changes nothing.
    for baseline in baselines {
        let path = results.save_baseline(&baseline, replace)?;
        println!("{}", path.display());
    }
    Ok(exit_code::OK)
}
