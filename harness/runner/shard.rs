//! Deterministic sharding: which of a run's jobs (suite × variant × process) shard `I` of `N`
//! runs.
//!
//! The assignment is a pure function of the plans, `N` and the per-variant costs, so every
//! shard (on any host, started at any time) computes the same partition without talking to
//! the others, and `merge` can check it. Jobs are balanced by cost, not by count: longest
//! first, each to the shard with the least cost so far (ties: the lower shard index), which
//! keeps the most and least loaded shards within one job's cost of each other. Within a shard
//! jobs keep the plan's order (interleaving), and a variant's processes may land on different
//! shards: the process is the unit of replication.

use crate::plan::{Job, Plan, VariantPlan};
use crate::store::{RunRecord, ShardJob};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// `--shard I/N`: shard `index` (from 0) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected I/N, e.g. 0/4 (shard I of N, from 0)"))?;
        let parse = |x: &str, what: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{s}`: {what} `{x}` is not a whole number"))
        };
        let (index, count) = (parse(i, "shard index")?, parse(n, "shard count")?);
        if count == 0 {
            return Err(format!("`{s}`: the shard count must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "`{s}`: shard index {index} is not below the count {count} (shards are numbered 0 to {})",
                count - 1
            ));
        }
        Ok(ShardSpec { index, count })
    }
}

/// One job of a run: its suite (index into the plans) and the job within that plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunJob {
    pub suite: usize,
    pub job: Job,
}

/// The cost of one process of each variant, keyed by (suite, variant) name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Costs {
    pub recorded: BTreeMap<(String, String), f64>,
    /// Where `recorded` came from (a run id), for the record.
    pub source: Option<String>,
}

impl Costs {
    /// The mean worker duration (ms) of each variant's processes in a previous run.
    pub fn from_run(record: &RunRecord) -> Costs {
        let mut sums: BTreeMap<(String, String), (f64, u32)> = BTreeMap::new();
        for suite in &record.suites {
            for p in &suite.processes {
                let e = sums
                    .entry((suite.plan.suite.clone(), p.variant.clone()))
                    .or_default();
                e.0 += p.duration_ms;
                e.1 += 1;
            }
        }
        Costs {
            recorded: sums
                .into_iter()
                .filter(|(_, (sum, n))| *n > 0 && sum.is_finite() && *sum > 0.0)
                .map(|(k, (sum, n))| (k, sum / f64::from(n)))
                .collect(),
            source: Some(record.id.clone()),
        }
    }

    /// A process's cost: recorded if this variant ran in the cost source, else estimated.
    pub fn of(&self, suite: &str, variant: &VariantPlan) -> f64 {
        self.recorded
            .get(&(suite.to_string(), variant.name.clone()))
            .copied()
            .unwrap_or_else(|| estimate_ms(variant))
    }

    /// How the record describes these costs.
    pub fn describe(&self) -> String {
        match &self.source {
            Some(id) => format!("recorded in run {id} (estimated for variants it lacks)"),
            None => "estimated from the plan".into(),
        }
    }
}

/// Start-up of a worker process (loading libtorch, building the model), in the same rough
/// units as [`estimate_ms`].
const STARTUP_MS: f64 = 2_000.0;

/// A rough cost of one process when none is recorded: calls per process (warm-up at its
/// maximum, measured calls at their maximum) times a per-call weight, plus start-up. The
/// weight is the `sleep` workload's `ms`, else the product of the size parameters a workload
/// has (`batch`, `views`, the sum of its `*steps`), else 1: right in proportion between
/// variants of one suite, only roughly between suites (pass `--shard-costs` for measured costs).
pub fn estimate_ms(v: &VariantPlan) -> f64 {
    use crate::plan::ParamValue;
    let number = |key: &str| match v.params.get(key) {
        Some(ParamValue::Int(i)) => Some(*i as f64),
        Some(ParamValue::Float(x)) => Some(*x),
        _ => None,
    };
    let calls = f64::from(v.warmup_max.max(v.warmup) + v.repetitions_max.max(v.repetitions));
    let per_call = match number("ms") {
        Some(ms) if v.workload == "sleep" => ms,
        _ => {
            let steps: f64 = v
                .params
                .keys()
                .filter(|k| k.ends_with("steps"))
                .filter_map(|k| number(k))
                .sum();
            let size = [number("batch"), number("views")]
                .into_iter()
                .flatten()
                .product::<f64>();
            size.max(1.0) * steps.max(1.0)
        }
    };
    calls * per_call.max(0.0) + STARTUP_MS
}

/// The identity of what a set of shards runs: SHA-256 over each plan as JSON, without the
/// manifest path as typed (hosts may name one manifest differently; its hash is kept).
pub fn plan_hash(plans: &[&Plan]) -> String {
    let plans: Vec<Plan> = plans
        .iter()
        .map(|p| Plan {
            manifest_path: String::new(),
            ..(*p).clone()
        })
        .collect();
    let json = serde_json::to_vec(&plans).expect("plans serialise");
    format!("{:x}", Sha256::digest(json))
}

/// Every job of the run in execution order (suites in order, each plan's job order).
pub fn all_jobs(plans: &[&Plan]) -> Vec<RunJob> {
    plans
        .iter()
        .enumerate()
        .flat_map(|(suite, p)| p.jobs.iter().map(move |&job| RunJob { suite, job }))
        .collect()
}

/// The shard (0..count) of each job of [`all_jobs`], balanced by `cost` (longest first,
/// each to the least loaded shard; ties by job order and lower shard).
pub fn assign(jobs: &[RunJob], cost: impl Fn(&RunJob) -> f64, count: u32) -> Vec<u32> {
    let count = count.max(1) as usize;
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    let costs: Vec<f64> = jobs
        .iter()
        .map(|j| {
            let c = cost(j);
            if c.is_finite() && c > 0.0 {
                c
            } else {
                0.0
            }
        })
        .collect();
    // Stable sort: equal costs keep the execution order, so the result never depends on
    // anything but the inputs.
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    let mut load = vec![0.0f64; count];
    let mut jobs_in = vec![0usize; count];
    let mut shard_of = vec![0u32; jobs.len()];
    for i in order {
        // Least cost, then fewest jobs (zero-cost jobs still spread), then lowest index.
        let target = (0..count)
            .min_by(|&a, &b| {
                load[a]
                    .total_cmp(&load[b])
                    .then(jobs_in[a].cmp(&jobs_in[b]))
                    .then(a.cmp(&b))
            })
            .expect("count >= 1");
        load[target] += costs[i];
        jobs_in[target] += 1;
        shard_of[i] = target as u32;
    }
    shard_of
}

/// The jobs of each plan that shard `spec` runs (in the plan's order), and the list the
/// record keeps.
pub fn select(plans: &[&Plan], spec: ShardSpec, costs: &Costs) -> (Vec<Vec<Job>>, Vec<ShardJob>) {
    let jobs = all_jobs(plans);
    let shard_of = assign(
        &jobs,
        |j| {
            let plan = plans[j.suite];
            costs.of(&plan.suite, &plan.variants[j.job.variant])
        },
        spec.count,
    );
    let mut per_plan = vec![Vec::new(); plans.len()];
    let mut listed = Vec::new();
    for (j, shard) in jobs.iter().zip(shard_of) {
        if shard == spec.index {
            per_plan[j.suite].push(j.job);
            let plan = plans[j.suite];
            listed.push(ShardJob {
                suite: plan.suite.clone(),
                variant: plan.variants[j.job.variant].name.clone(),
                process: j.job.process,
            });
        }
    }
    (per_plan, listed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A plan of `processes.len()` sleep variants, variant `i` with `processes[i]` processes
    /// of `ms[i]` per call.
    pub(crate) fn sleep_plan(suite: &str, variants: &[(u32, f64)]) -> Plan {
        let variants: Vec<VariantPlan> = variants
            .iter()
            .enumerate()
            .map(|(i, &(processes, ms))| {
                serde_json::from_value(serde_json::json!({
                    "name": format!("v{i}"), "claims": [], "workload": "sleep",
                    "params": {"ms": ms}, "knobs": crate::knobs::Knobs::default(),
                    "description": null, "warmup": 1, "warmup_max": 1, "settle": null,
                    "repetitions": 4, "repetitions_max": 4, "target_rel_ci": null,
                    "processes": processes, "processes_max": processes, "timeout_ms": 1000
                }))
                .unwrap()
            })
            .collect();
        Plan {
            suite: suite.into(),
            description: None,
            replica: None,
            manifest_path: format!("{suite}.toml"),
            manifest_sha256: "0".repeat(64),
            profile: "base".into(),
            order: crate::plan::Order::Interleaved,
            seed: 0,
            adaptive_budget_s: None,
            compare: Default::default(),
            jobs: Plan::schedule(&variants, crate::plan::Order::Interleaved, 0),
            variants,
            claims: Vec::new(),
        }
    }

    fn jobs(n: usize) -> Vec<RunJob> {
        (0..n)
            .map(|i| RunJob {
                suite: i % 3,
                job: Job {
                    variant: i / 3,
                    process: (i % 2) as u32,
                },
            })
            .collect()
    }

    #[test]
    fn shard_specs_are_parsed_with_clear_errors() {
        assert_eq!(
            "2/4".parse::<ShardSpec>(),
            Ok(ShardSpec { index: 2, count: 4 })
        );
        assert!("4/4".parse::<ShardSpec>().unwrap_err().contains("0 to 3"));
        assert!("0/0"
            .parse::<ShardSpec>()
            .unwrap_err()
            .contains("at least 1"));
        assert!("x/2".parse::<ShardSpec>().unwrap_err().contains("`x`"));
        assert!("3".parse::<ShardSpec>().unwrap_err().contains("I/N"));
    }

    #[test]
    fn a_long_job_gets_a_shard_of_its_own() {
        let jobs = jobs(5);
        let costs = [100.0, 10.0, 10.0, 10.0, 10.0];
        let shard_of = assign(
            &jobs,
            |j| costs[jobs.iter().position(|x| x == j).unwrap()],
            2,
        );
        assert_eq!(shard_of[0], 0);
        assert!(shard_of[1..].iter().all(|&s| s == 1), "{shard_of:?}");
    }

    #[test]
    fn the_estimate_follows_sleep_time_and_steps() {
        let mut v: VariantPlan = serde_json::from_value(serde_json::json!({
            "name": "a", "claims": [], "workload": "sleep", "params": {"ms": 10.0},
            "knobs": crate::knobs::Knobs::default(), "description": null, "warmup": 1,
            "warmup_max": 1, "settle": null, "repetitions": 4, "repetitions_max": 4,
            "target_rel_ci": null, "processes": 2, "processes_max": 2, "timeout_ms": 1000
        }))
        .unwrap();
        assert_eq!(estimate_ms(&v), 5.0 * 10.0 + STARTUP_MS);
        v.workload = "unet".into();
        v.params.clear();
        v.params
            .insert("steps".into(), crate::plan::ParamValue::Int(30));
        v.params
            .insert("batch".into(), crate::plan::ParamValue::Int(2));
        assert_eq!(estimate_ms(&v), 5.0 * 60.0 + STARTUP_MS);
    }

    #[test]
    fn the_plan_hash_ignores_the_manifest_path_only() {
        let a = sleep_plan("s", &[(2, 10.0), (3, 20.0)]);
        let mut b = a.clone();
        b.manifest_path = "elsewhere/s.toml".into();
        assert_eq!(plan_hash(&[&a]), plan_hash(&[&b]));
        b.variants[1].repetitions = 5;
        assert_ne!(plan_hash(&[&a]), plan_hash(&[&b]));
        assert_ne!(plan_hash(&[&a]), plan_hash(&[&a, &a]));
    }

    proptest! {
        /// The shards' selections of real plans are disjoint, cover every job, and keep each
        /// plan's order; recorded costs change the balance, never the partition property.
        #[test]
        fn selections_partition_the_plans(
            first in prop::collection::vec((1u32..5, 0.0f64..500.0), 1..8),
            second in prop::collection::vec((1u32..5, 0.0f64..500.0), 0..8),
            count in 1u32..10,
            recorded in any::<bool>(),
        ) {
            let plans = [sleep_plan("a", &first), sleep_plan("b", &second)];
            let plans: Vec<&Plan> = plans.iter().collect();
            let mut costs = Costs::default();
            if recorded {
                costs.recorded.insert(("a".into(), "v0".into()), 1e6);
            }
            let mut seen: Vec<Vec<Job>> = vec![Vec::new(); plans.len()];
            for index in 0..count {
                let (per_plan, listed) = select(&plans, ShardSpec { index, count }, &costs);
                prop_assert_eq!(listed.len(), per_plan.iter().map(Vec::len).sum::<usize>());
                for (s, jobs) in per_plan.into_iter().enumerate() {
                    let positions: Vec<usize> = jobs
                        .iter()
                        .map(|j| plans[s].jobs.iter().position(|x| x == j).unwrap())
                        .collect();
                    prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
                    seen[s].extend(jobs);
                }
            }
            for (s, plan) in plans.iter().enumerate() {
                let mut got = seen[s].clone();
                got.sort_by_key(|j| (j.variant, j.process));
                let mut want = plan.jobs.clone();
                want.sort_by_key(|j| (j.variant, j.process));
                prop_assert_eq!(got, want);
            }
        }


        /// Every job lands on exactly one shard, whatever N and the costs.
        #[test]
        fn shards_partition_the_jobs(
            costs in prop::collection::vec(0.0f64..1e4, 0..200),
            count in 1u32..12,
        ) {
            let jobs = jobs(costs.len());
            let shard_of = assign(&jobs, |j| costs[jobs.iter().position(|x| x == j).unwrap()], count);
            prop_assert_eq!(shard_of.len(), jobs.len());
            let mut seen = vec![0u32; jobs.len()];
            for shard in 0..count {
                for (i, &s) in shard_of.iter().enumerate() {
                    if s == shard {
                        seen[i] += 1;
                    }
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
            prop_assert!(shard_of.iter().all(|&s| s < count));
        }

        /// The most and least loaded shards differ by at most the largest job's cost.
        #[test]
        fn shards_are_balanced_by_cost(
            costs in prop::collection::vec(0.0f64..1e4, 1..200),
            count in 1u32..12,
        ) {
            let jobs = jobs(costs.len());
            let shard_of = assign(&jobs, |j| costs[jobs.iter().position(|x| x == j).unwrap()], count);
            let mut load = vec![0.0; count as usize];
            for (i, &s) in shard_of.iter().enumerate() {
                load[s as usize] += costs[i];
            }
            let max = load.iter().cloned().fold(f64::MIN, f64::max);
            let min = load.iter().cloned().fold(f64::MAX, f64::min);
            let largest = costs.iter().cloned().fold(0.0, f64::max);
            prop_assert!(max - min <= largest + 1e-9, "loads {:?}", load);
        }

        /// The same inputs give the same assignment (every shard computes it on its own).
        #[test]
        fn assignment_is_stable(
            costs in prop::collection::vec(0.0f64..1e4, 0..100),
            count in 1u32..8,
        ) {
            let jobs = jobs(costs.len());
            let cost = |j: &RunJob| costs[jobs.iter().position(|x| x == j).unwrap()];
            prop_assert_eq!(assign(&jobs, cost, count), assign(&jobs, cost, count));
        }
    }
}
