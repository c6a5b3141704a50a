//! Merging the records of a run's shards (`run --shard I/N`) into the record one unsharded run
//! with the same samples would have written: the same plans, every process in the plans'
//! job order, every sample in its process's place. Statistics, claims, gate and reports are
//! then computed from it by the code that handles any run.
//!
//! Shards that do not belong together (other plans, hardware or software, balancing costs,
//! a shard given twice) are refused; missing, interrupted or cut-short shards are listed (which
//! shard, which processes did not run) and never merged as complete.

use crate::store::baseline::BaselineKey;
use crate::store::{
    MergedFrom, MergedShard, RunRecord, SampleRow, ShardInfo, ShardJob, StoredRun, SuiteRecord,
};
use std::collections::{BTreeMap, BTreeSet};

/// What the shards add up to.
#[derive(Debug)]
pub struct Merged {
    /// The merged record, its id and command still those of the first shard.
    pub record: RunRecord,
    pub samples: Vec<SampleRow>,
    /// One line per missing or incomplete shard (empty: the merge is complete).
    pub incomplete: Vec<String>,
}

/// Why shards cannot be merged at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

fn name(run: &StoredRun) -> String {
    run.dir.display().to_string()
}

/// Merges `shards` (any order); see the module documentation.
pub fn merge(shards: &[StoredRun]) -> Result<Merged, Mismatch> {
    let Some(first) = shards.first() else {
        return Err(Mismatch("no shard given".into()));
    };
    let mut infos: Vec<(&StoredRun, &ShardInfo)> = Vec::new();
    for s in shards {
        let info = s.record.shard.as_ref().ok_or_else(|| {
            Mismatch(format!(
                "{} is not a shard (it was not run with --shard I/N)",
                name(s)
            ))
        })?;
        let plans: Vec<&crate::plan::Plan> = s.record.suites.iter().map(|x| &x.plan).collect();
        if super::shard::plan_hash(&plans) != info.plan_hash {
            return Err(Mismatch(format!(
                "{}: its plans do not match the plan hash it records (the record was edited?)",
                name(s)
            )));
        }
        infos.push((s, info));
    }
    let (_, reference) = infos[0];
    for &(s, info) in &infos[1..] {
        let differs = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            Mismatch(format!(
                "{} and {} ran different {what} ({a} ≠ {b}); merge only the shards of one run",
                name(first),
                name(s)
            ))
        };
        if info.plan_hash != reference.plan_hash {
            return Err(differs(
                "plans: plan hashes",
                &short(&reference.plan_hash),
                &short(&info.plan_hash),
            ));
        }
        if info.count != reference.count {
            return Err(differs("shard counts", &reference.count, &info.count));
        }
        if info.costs != reference.costs {
            return Err(differs(
                "shard assignments: balancing costs",
                &reference.costs,
                &info.costs,
            ));
        }
        let f = (&first.record.fingerprint, &s.record.fingerprint);
        if (f.0.harness_version.as_str(), f.0.git_commit.as_str())
            != (f.1.harness_version.as_str(), f.1.git_commit.as_str())
        {
            return Err(differs(
                "claimbench builds",
                &format!("{} {}", f.0.harness_version, f.0.git_commit),
                &format!("{} {}", f.1.harness_version, f.1.git_commit),
            ));
        }
    }
    // Hardware class, among the shards whose workers reported their stack.
    let measured: Vec<&StoredRun> = shards
        .iter()
        .filter(|s| s.record.fingerprint.device.is_some())
        .collect();
    if let Some(m0) = measured.first() {
        // The hardware and software part of the key; the plans (and so profiles) already match.
        let key = BaselineKey::of(&m0.record.fingerprint, "");
        for m in &measured[1..] {
            let diff = key.differences(&BaselineKey::of(&m.record.fingerprint, ""));
            if !diff.is_empty() {
                return Err(Mismatch(format!(
                    "{} and {} were measured on different hardware or software ({}); their timings do not belong in one run",
                    name(m0),
                    name(m),
                    diff.join(", ")
                )));
            }
        }
    }
    let count = reference.count;
    let mut by_index: BTreeMap<u32, &StoredRun> = BTreeMap::new();
    for &(s, info) in &infos {
        if let Some(other) = by_index.insert(info.index, s) {
            return Err(Mismatch(format!(
                "shard {}/{count} is given twice: {} and {} (keep one)",
                info.index,
                name(other),
                name(s)
            )));
        }
    }
    // The shards' assignments must partition the plans' jobs.
    let all_jobs: BTreeSet<ShardJob> = first
        .record
        .suites
        .iter()
        .flat_map(|s| {
            s.plan.jobs.iter().map(|j| ShardJob {
                suite: s.plan.suite.clone(),
                variant: s.plan.variants[j.variant].name.clone(),
                process: j.process,
            })
        })
        .collect();
    let mut assigned: BTreeMap<&ShardJob, u32> = BTreeMap::new();
    for &(_, info) in &infos {
        for job in &info.jobs {
            if !all_jobs.contains(job) {
                return Err(Mismatch(format!(
                    "shard {}/{count} lists a job the plans lack ({} {} p{})",
                    info.index, job.suite, job.variant, job.process
                )));
            }
            if let Some(other) = assigned.insert(job, info.index) {
                return Err(Mismatch(format!(
                    "shards {other}/{count} and {}/{count} were both assigned {} {} p{}",
                    info.index, job.suite, job.variant, job.process
                )));
            }
        }
    }

    let mut incomplete = Vec::new();
    let missing: Vec<String> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        let not_run: Vec<String> = all_jobs
            .iter()
            .filter(|j| !assigned.contains_key(j))
            .map(describe_job)
            .collect();
        incomplete.push(format!(
            "shard(s) {} missing (not given), so these processes did not run: {}",
            missing.join(", "),
            abbreviate(&not_run)
        ));
    }
    let mut merged_shards = Vec::new();
    for (&index, s) in &by_index {
        let info = s.record.shard.as_ref().expect("checked above");
        let ran: BTreeSet<ShardJob> = s
            .record
            .suites
            .iter()
            .flat_map(|suite| {
                suite.processes.iter().map(|p| ShardJob {
                    suite: suite.plan.suite.clone(),
                    variant: p.variant.clone(),
                    process: p.process,
                })
            })
            .collect();
        let not_run: Vec<String> = info
            .jobs
            .iter()
            .filter(|j| !ran.contains(j))
            .map(describe_job)
            .collect();
        let interrupted = s.record.suites.iter().flat_map(|suite| {
            suite
                .processes
                .iter()
                .filter(|p| p.status == crate::worker::protocol::Status::Interrupted)
                .map(|p| {
                    format!(
                        "{} {} p{} (interrupted)",
                        suite.plan.suite, p.variant, p.process
                    )
                })
        });
        let lost: Vec<String> = interrupted.chain(not_run).collect();
        let why = s.record.incomplete().or_else(|| {
            (!lost.is_empty()).then(|| "some of its processes did not finish".to_string())
        });
        if let Some(why) = &why {
            incomplete.push(format!(
                "shard {index}/{count} ({}) is incomplete: {why}; processes not run to their end: {}",
                name(s),
                if lost.is_empty() {
                    "none listed".to_string()
                } else {
                    abbreviate(&lost)
                }
            ));
        }
        merged_shards.push(MergedShard {
            index,
            run: s.record.id.clone(),
            host: s.record.fingerprint.host.clone(),
            incomplete: why,
        });
    }

    // The record: the first shard's plans, every shard's processes and samples.
    let base = by_index.values().next().expect("at least one shard");
    let mut record = base.record.clone();
    if let Some(m) = measured.first() {
        record.fingerprint = m.record.fingerprint.clone();
    }
    let mut hosts: Vec<&str> = by_index
        .values()
        .map(|s| s.record.fingerprint.host.as_str())
        .collect();
    hosts.sort();
    hosts.dedup();
    record.fingerprint.host = hosts.join(",");
    record.fingerprint.started_at = by_index
        .values()
        .map(|s| s.record.fingerprint.started_at.clone())
        .min()
        .unwrap_or_default();
    record.finished_at = by_index
        .values()
        .map(|s| s.record.finished_at.clone())
        .collect::<Option<Vec<_>>>()
        .and_then(|ends| ends.into_iter().max());
    record.interrupted = !incomplete.is_empty();
    record.interrupted_by = record
        .interrupted
        .then(|| format!("incomplete shards (of {count})"));
    record.shard = None;
    record.merged_from = Some(MergedFrom {
        plan_hash: reference.plan_hash.clone(),
        count,
        shards: merged_shards,
    });
    record.suites = base
        .record
        .suites
        .iter()
        .map(|suite| SuiteRecord {
            plan: suite.plan.clone(),
            manifest_file: suite.manifest_file.clone(),
            processes: by_index
                .values()
                .flat_map(|s| s.record.suites.iter())
                .filter(|x| x.plan.suite == suite.plan.suite)
                .flat_map(|x| x.processes.iter().cloned())
                .collect(),
            adaptive: None,
        })
        .collect();
    let mut samples: Vec<SampleRow> = by_index
        .values()
        .flat_map(|s| s.samples.iter().cloned())
        .collect();
    canonical_order(&mut record, &mut samples);
    Ok(Merged {
        record,
        samples,
        incomplete,
    })
}

/// Puts processes in their plan's job order (processes the plan does not list, such as
/// adaptive extras, after them in recorded order) and samples in their process's place, each
/// process's calls in recorded order: the order a sequential run records. A record already in
/// that order is left as it is.
pub fn canonical_order(record: &mut RunRecord, samples: &mut Vec<SampleRow>) {
    for suite in record.suites.iter_mut() {
        let position = |variant: &str, process: u32| {
            suite
                .plan
                .jobs
                .iter()
                .position(|j| {
                    suite.plan.variants[j.variant].name == variant && j.process == process
                })
                .unwrap_or(usize::MAX)
        };
        let mut keyed: Vec<(usize, crate::store::ProcessRecord)> = suite
            .processes
            .drain(..)
            .map(|p| (position(&p.variant, p.process), p))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        suite.processes = keyed.into_iter().map(|(_, p)| p).collect();
    }
    let mut place: BTreeMap<(&str, &str, u32), (usize, usize)> = BTreeMap::new();
    for (s, suite) in record.suites.iter().enumerate() {
        for (i, p) in suite.processes.iter().enumerate() {
            place.insert((&suite.plan.suite, &p.variant, p.process), (s, i));
        }
    }
    let mut keyed: Vec<((usize, usize), usize)> = samples
        .iter()
        .enumerate()
        .map(|(n, row)| {
            let at = place
                .get(&(row.suite.as_str(), row.variant.as_str(), row.process))
                .copied()
                .unwrap_or((usize::MAX, usize::MAX));
            (at, n)
        })
        .collect();
    keyed.sort();
    let mut taken: Vec<Option<SampleRow>> = samples.drain(..).map(Some).collect();
    samples.extend(
        keyed
            .into_iter()
            .map(|(_, n)| taken[n].take().expect("each row once")),
    );
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

fn describe_job(j: &ShardJob) -> String {
    format!("{} {} p{}", j.suite, j.variant, j.process)
}

/// At most 20 items, then how many more.
fn abbreviate(items: &[String]) -> String {
    const SHOWN: usize = 20;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{}, and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}
