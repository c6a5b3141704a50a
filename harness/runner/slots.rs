//! Several GPUs of one host (`run --gpus 0,1,…`): one worker slot per GPU, each running one
//! worker at a time with `CUDA_VISIBLE_DEVICES` pinned to its GPU (the worker's NVML
//! telemetry and VRAM budget follow the pin: they are per GPU because a GPU holds one worker).
//!
//! Free slots take the next job in the plan's order. Neighbours share CPU cores, PCIe and
//! memory bandwidth; whether that perturbs timings is not measured here, so two options limit
//! it: [`Spread::ClaimGroups`] keeps the variants one claim compares on one GPU (their
//! processes then never run side by side with each other, and see the same device), and
//! `exclusive` variants run with every other slot idle.

use super::{interrupted, run_job, store_result, Launcher};
use crate::plan::{Job, Plan};
use crate::store::RunDir;
use anyhow::Result;
use indicatif::ProgressBar;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, RwLock};

/// How jobs are placed on the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Spread {
    /// Any free GPU takes the next job.
    #[default]
    Any,
    /// The variants that one claim compares (joined over shared variants) run on one GPU.
    ClaimGroups,
}

/// Where workers run.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    /// One entry per slot: the `CUDA_VISIBLE_DEVICES` value its workers get. Empty: one slot
    /// whose workers inherit the parent's devices.
    pub gpus: Vec<String>,
    pub spread: Spread,
    /// Variants whose name contains one of these texts run with every other slot idle.
    pub exclusive: Vec<String>,
}

impl Slots {
    /// `--gpus`: `all` (the parent's `CUDA_VISIBLE_DEVICES` entries, else every GPU NVML
    /// lists), or a comma-separated list of indices or UUIDs.
    pub fn parse_gpus(text: &str) -> Result<Vec<String>, String> {
        if text.trim() == "all" {
            let visible = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
            let listed: Vec<String> = visible
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if !listed.is_empty() {
                return Ok(listed);
            }
            let count = crate::measure::nvml::open()
                .map_err(|e| format!("--gpus all: cannot list GPUs: {e}"))?
                .device_count()
                .map_err(|e| format!("--gpus all: cannot count GPUs: {e}"))?;
            if count == 0 {
                return Err("--gpus all: NVML lists no GPU".into());
            }
            return Ok((0..count).map(|i| i.to_string()).collect());
        }
        let gpus: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
        if let Some(bad) = gpus
            .iter()
            .find(|g| g.is_empty() || !g.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(format!(
                "--gpus {text}: `{bad}` is not a GPU index or UUID (expected e.g. 0,1,2 or all)"
            ));
        }
        let mut seen = gpus.clone();
        seen.sort();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("--gpus {text}: GPU `{}` is listed twice", w[0]));
        }
        Ok(gpus)
    }

    fn is_exclusive(&self, variant: &str) -> bool {
        self.exclusive.iter().any(|t| variant.contains(t.as_str()))
    }
}

/// For each job, the slot it must run on (`None`: any). With [`Spread::ClaimGroups`], the
/// variants linked by claims form groups, and groups go to slots longest first (by their
/// jobs' count), each to the least loaded slot; variants in no claim run anywhere.
pub fn pin(plan: &Plan, jobs: &[Job], slots: usize, spread: Spread) -> Vec<Option<usize>> {
    if spread == Spread::Any || slots <= 1 {
        return vec![None; jobs.len()];
    }
    let index = |name: &str| plan.variants.iter().position(|v| v.name == name);
    // Union-find over variant indices.
    let mut parent: Vec<usize> = (0..plan.variants.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut claimed = vec![false; plan.variants.len()];
    for claim in &plan.claims {
        let members: Vec<usize> = claim
            .check
            .variants()
            .into_iter()
            .filter_map(index)
            .collect();
        for &m in &members {
            claimed[m] = true;
        }
        for pair in members.windows(2) {
            let (a, b) = (root(&mut parent, pair[0]), root(&mut parent, pair[1]));
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut group_jobs: BTreeMap<usize, usize> = BTreeMap::new();
    for j in jobs.iter().filter(|j| claimed[j.variant]) {
        *group_jobs.entry(root(&mut parent, j.variant)).or_default() += 1;
    }
    let mut groups: Vec<(usize, usize)> = group_jobs.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut load = vec![0usize; slots];
    let mut slot_of: BTreeMap<usize, usize> = BTreeMap::new();
    for (group, count) in groups {
        let target = (0..slots).min_by_key(|&s| (load[s], s)).expect("slots > 1");
        load[target] += count;
        slot_of.insert(group, target);
    }
    jobs.iter()
        .map(|j| claimed[j.variant].then(|| slot_of[&root(&mut parent, j.variant)]))
        .collect()
}

/// Runs `jobs` of `plan` on the launcher's GPU slots at once, storing each finished worker
/// in `run` (from this thread, so the record is written by one writer). Workers are spawned
/// from the slot threads, which outlive their workers, so the parent-death signal still
/// fires only when the run ends.
pub(super) fn run_parallel(
    run: &mut RunDir,
    suite_index: usize,
    plan: &Plan,
    jobs: &[Job],
    launcher: &Launcher,
    progress: &ProgressBar,
) -> Result<()> {
    let slots = &launcher.slots;
    let pinned = pin(plan, jobs, slots.gpus.len(), slots.spread);
    let exclusive: Vec<bool> = jobs
        .iter()
        .map(|j| slots.is_exclusive(&plan.variants[j.variant].name))
        .collect();
    let queue = Mutex::new((0..jobs.len()).collect::<VecDeque<usize>>());
    // Ordinary jobs share the host (read), exclusive ones hold it alone (write).
    let host = RwLock::new(());
    let stop = AtomicBool::new(false);
    let run_path = run.path.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for (slot, gpu) in slots.gpus.iter().enumerate() {
            let tx = tx.clone();
            let (queue, host, stop, pinned, exclusive) =
                (&queue, &host, &stop, &pinned, &exclusive);
            let run_path = &run_path;
            scope.spawn(move || loop {
                if interrupted() || stop.load(Ordering::SeqCst) {
                    return;
                }
                let next = {
                    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                    q.iter()
                        .position(|&i| pinned[i].is_none_or(|s| s == slot))
                        .and_then(|at| q.remove(at))
                };
                let Some(i) = next else { return };
                let result = if exclusive[i] {
                    let _alone = host.write().unwrap_or_else(|p| p.into_inner());
                    run_job(run_path, plan, &jobs[i], launcher, Some(gpu), progress)
                } else {
                    let _shared = host.read().unwrap_or_else(|p| p.into_inner());
                    run_job(run_path, plan, &jobs[i], launcher, Some(gpu), progress)
                };
                if tx.send((i, result)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for (i, result) in rx {
            let stored = result.and_then(|(record, samples)| {
                store_result(run, suite_index, plan, &jobs[i], record, samples, progress)
            });
            if let Err(e) = stored {
                stop.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    // Workers finished in any order; the record keeps the plan's, as a sequential run does.
    super::merge::canonical_order(&mut run.record, &mut run.samples);
    run.save()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_lists_are_checked() {
        assert_eq!(
            Slots::parse_gpus("0, 1,GPU-ab12").unwrap(),
            ["0", "1", "GPU-ab12"]
        );
        assert!(Slots::parse_gpus("0,,1").unwrap_err().contains("``"));
        assert!(Slots::parse_gpus("0,0").unwrap_err().contains("twice"));
        assert!(Slots::parse_gpus("0;1").unwrap_err().contains("`0;1`"));
    }

    #[test]
    fn claim_groups_stay_on_one_slot() {
        let mut plan = crate::runner::shard::tests::sleep_plan("s", &[(3, 1.0); 5]);
        let change = |a: &str, b: &str| crate::claim::ClaimSpec {
            id: "T0-01".into(),
            source: String::new(),
            summary: String::new(),
            line: 1,
            check: crate::claim::ClaimCheck::Change {
                metric: "wall_ms".into(),
                baseline: a.into(),
                candidate: b.into(),
                expected: crate::claim::parse_range("0%..10%", crate::claim::Dimension::Relative)
                    .unwrap(),
            },
        };
        // v0–v1–v2 are one group (shared v1), v3 another, v4 is in no claim.
        plan.claims = vec![change("v0", "v1"), change("v1", "v2"), change("v3", "v0")];
        plan.claims.pop();
        plan.claims.push(change("v3", "v3"));
        let pins = pin(&plan, &plan.jobs, 2, Spread::ClaimGroups);
        let slot_of = |v: usize| -> Vec<Option<usize>> {
            plan.jobs
                .iter()
                .zip(&pins)
                .filter(|(j, _)| j.variant == v)
                .map(|(_, p)| *p)
                .collect()
        };
        let first = slot_of(0)[0].expect("pinned");
        for v in 0..3 {
            assert!(slot_of(v).iter().all(|&p| p == Some(first)), "v{v}");
        }
        assert!(slot_of(3).iter().all(|&p| p == Some(1 - first)));
        assert!(slot_of(4).iter().all(Option::is_none));
        assert!(pin(&plan, &plan.jobs, 2, Spread::Any)
            .iter()
            .all(Option::is_none));
    }
}
