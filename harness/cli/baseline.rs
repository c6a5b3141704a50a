//! `claimbench baseline save|accept|list`: stores a run as the baseline of each of its suites
//! (under its hardware, software and profile), and lists what is stored.

use super::{ExpectedError, Outcome};
use crate::exit_code;
use crate::store::baseline::Baseline;
use crate::store::Results;
use crate::text::printable;
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
    for baseline in &baselines {
        results.check_baseline_slot(baseline, replace)?;
    }
    for baseline in baselines {
        let path = results.save_baseline(&baseline, replace)?;
        println!("{}", path.display());
        eprintln!(
            "stored suite {} for profile {} from {}",
            printable(&baseline.suite),
            printable(baseline.key.profile_shown()),
            printable(&baseline.source_run)
        );
    }
    Ok(exit_code::OK)
}

/// Prints one line per stored baseline: stack, profile, suite, source run, file. Files stored
/// before profiles were part of the key show profile `unrecorded` and how to replace them;
/// unreadable files are listed with their error, never skipped silently.
pub fn list(results: &Results) -> Outcome {
    let files = results.baseline_files();
    if files.is_empty() {
        println!("no baselines stored");
        return Ok(exit_code::OK);
    }
    println!("{:<10} {:<24} {:<32} file", "profile", "suite", "from run");
    for (key, file) in files {
        match Baseline::load(&file) {
            Ok(b) => {
                let old = !key.contains('/');
                println!(
                    "{:<10} {:<24} {:<32} {}{}",
                    printable(b.key.profile_shown()),
                    printable(&b.suite),
                    printable(&b.source_run),
                    file.display(),
                    if old {
                        " (stored before baselines were kept per profile; not used: re-baseline with `claimbench baseline save RUN`)"
                    } else {
                        ""
                    }
                );
            }
            Err(e) => println!(
                "{:<10} {:<24} {:<32} {} ({e})",
                "?",
                "?",
                "?",
                file.display()
            ),
        }
    }
    Ok(exit_code::OK)
}
