//! `claimbench merge RUN…`: the records of a run's shards made into one run record (see
//! [`crate::runner::merge`]), then gated and reported exactly as `run` does.

use super::args::GateArgs;
use super::{ExpectedError, Outcome};
use crate::exit_code;
use crate::runner::merge::merge as merge_shards;
use crate::store::{Results, StoredRun};
use anyhow::Context;
use std::path::{Path, PathBuf};

pub struct MergeOptions {
    pub runs: Vec<PathBuf>,
    pub results: Results,
    pub allow_incomplete: bool,
    pub gate: Option<GateArgs>,
}

pub fn merge(options: MergeOptions) -> Outcome {
    let shards = options
        .runs
        .iter()
        .map(|dir| StoredRun::load(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = merge_shards(&shards).map_err(|e| ExpectedError::MergeMismatch(e.0))?;
    if !merged.incomplete.is_empty() && !options.allow_incomplete {
        return Err(ExpectedError::IncompleteShards(
            merged.incomplete.join("; "),
        ));
    }
    let mut run = options.results.new_run(
        merged.record.fingerprint.clone(),
        std::env::args().collect(),
    )?;
    eprintln!(
        "merging {} shard(s) into {}",
        shards.len(),
        run.path.display()
    );
    // Stored manifests and worker logs, copied from the shards (log names are unique per
    // suite, variant and process; a manifest is the same in every shard: the plans match).
    for shard in &shards {
        for suite in &shard.record.suites {
            copy_into(&shard.dir, &run.path, &suite.manifest_file)?;
            for p in &suite.processes {
                copy_into(&shard.dir, &run.path, &p.log_file)?;
            }
        }
    }
    let id = run.record.id.clone();
    let command = run.record.command.clone();
    run.record = merged.record;
    run.record.id = id;
    run.record.command = command;
    run.samples = merged.samples;
    run.save()?;
    let code = super::run::conclude(
        &run,
        &options.results,
        options.gate.as_ref(),
        &super::args::ShiftArgs::default(),
    )?;
    if merged.incomplete.is_empty() {
        return Ok(code);
    }
    for line in &merged.incomplete {
        eprintln!("incomplete: {line}");
    }
    eprintln!("the merged record is marked incomplete: reports say so and baselines refuse it");
    Ok(exit_code::INCOMPLETE_SHARDS)
}

/// Copies `rel` from one run folder to another, if the source has it (a worker that never
/// started has no log).
fn copy_into(from: &Path, to: &Path, rel: &str) -> Result<(), ExpectedError> {
    let source = from.join(rel);
    if !source.is_file() {
        return Ok(());
    }
    let target = to.join(rel);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(&source, &target)
        .with_context(|| format!("cannot copy {} to {}", source.display(), target.display()))?;
    Ok(())
}
