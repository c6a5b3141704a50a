//! The "Slow processes" section of every report format: processes whose median wall time ran
//! clearly above the fastest process of the same variant, each with what its host did, so a
//! reader can tell a host that ran slower from a slowdown in the workload itself.
//!
//! The evidence is the host CPU probe of each process (`stop.host.cpu_probe_ms`, see
//! `measure::host::CpuProbe`), compared with the fastest probe among the suite's processes:
//! launch-bound GPU calls run at the speed of the host code that issues their kernels, so a
//! process on a slower host CPU is slower as a whole with unchanged GPU work.

use super::section;
use crate::stats::Sample;
use crate::store::{RunRecord, SampleRow};
use crate::text::printable;
use crate::worker::protocol::Status;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A process is listed when its median wall time is at least this multiple of the fastest
/// process median of its variant (between-process spread of a GPU-bound workload stays within
/// a few percent; the slow regime of launch-bound ones is 1.25–1.55×).
pub const SLOW_PROCESS_RATIO: f64 = 1.15;
/// Its host is called slower when its CPU probe took at least this multiple of the suite's
/// fastest probe (probes of one host agree within a few percent when nothing competes).
pub const HOST_SLOW_RATIO: f64 = 1.10;

/// What the record says about why a process was slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowCause {
    /// Its host CPU probe was slower too: the host ran slower for this process.
    HostCpu,
    /// Its probe ran at the suite's usual speed: not explained by host CPU speed.
    NotHostSpeed,
    /// No probe in the record (written before probes existed).
    Unknown,
}

impl SlowCause {
    pub fn text(self) -> &'static str {
        match self {
            SlowCause::HostCpu => "host CPU ran slower",
            SlowCause::NotHostSpeed => "host CPU at usual speed",
            SlowCause::Unknown => "no host CPU probe recorded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowProcess {
    pub suite: String,
    pub variant: String,
    pub process: u32,
    /// Its median wall time ÷ the fastest process median of the variant.
    pub time_ratio: f64,
    /// Its host CPU probe ÷ the fastest probe among the suite's processes.
    pub probe_ratio: Option<f64>,
    pub involuntary_switches: Option<u64>,
    pub last_cpu: Option<u32>,
    pub cause: SlowCause,
}

/// Slow processes of every variant with at least two processes that ended ok.
pub fn slow_processes(run: &RunRecord, samples: &[SampleRow]) -> Vec<SlowProcess> {
    let mut walls: BTreeMap<(&str, &str, u32), Vec<f64>> = BTreeMap::new();
    for row in samples.iter().filter(|r| !r.warmup) {
        walls
            .entry((&row.suite, &row.variant, row.process))
            .or_default()
            .push(row.measurement.wall_ms);
    }
    let mut out = Vec::new();
    for suite in &run.suites {
        let name = suite.plan.suite.as_str();
        let ok: Vec<_> = suite
            .processes
            .iter()
            .filter(|p| p.status == Status::Ok)
            .collect();
        let probe = |p: &crate::store::ProcessRecord| {
            p.stop
                .as_ref()?
                .host
                .as_ref()?
                .cpu_probe_ms
                .filter(|t| t.is_finite() && *t > 0.0)
        };
        let fastest_probe = ok.iter().filter_map(|p| probe(p)).reduce(f64::min);
        let processes = suite.processes_by_variant();
        for v in &suite.plan.variants {
            let medians: Vec<(&crate::store::ProcessRecord, f64)> = processes
                .get(v.name.as_str())
                .into_iter()
                .flatten()
                .filter(|p| p.status == Status::Ok)
                .filter_map(|p| {
                    let w = walls.get(&(name, v.name.as_str(), p.process))?;
                    Some((*p, Sample::new(w.clone()).ok()?.median()))
                })
                .collect();
            if medians.len() < 2 {
                continue;
            }
            let fastest = medians
                .iter()
                .map(|(_, m)| *m)
                .fold(f64::INFINITY, f64::min);
            if fastest.is_nan() || fastest <= 0.0 {
                continue;
            }
            for (p, m) in medians {
                let time_ratio = m / fastest;
                if time_ratio < SLOW_PROCESS_RATIO {
                    continue;
                }
                let probe_ratio = probe(p).zip(fastest_probe).map(|(t, f)| t / f);
                let host = p.stop.as_ref().and_then(|s| s.host.as_ref());
                out.push(SlowProcess {
                    suite: name.to_string(),
                    variant: v.name.clone(),
                    process: p.process,
                    time_ratio,
                    probe_ratio,
                    involuntary_switches: host.map(|h| h.involuntary_switches),
                    last_cpu: host.and_then(|h| h.last_cpu),
                    cause: match probe_ratio {
                        Some(r) if r >= HOST_SLOW_RATIO => SlowCause::HostCpu,
                        Some(_) => SlowCause::NotHostSpeed,
                        None => SlowCause::Unknown,
                    },
                });
            }
        }
    }
    out
}

fn intro() -> String {
    format!(
        "Processes whose median wall time was at least {SLOW_PROCESS_RATIO:.2}× the fastest \
         process of their variant, with the host CPU probe (a fixed piece of host work timed \
         before and after the measured calls) against the suite's fastest; at \
         {HOST_SLOW_RATIO:.2}× or more the host ran slower for that process. Verdicts already \
         treat processes as the unit of replication; this says why they differed"
    )
}

fn fields(r: &SlowProcess) -> [String; 6] {
    [
        format!("{}/{}", r.suite, r.variant),
        r.process.to_string(),
        format!("{:.2}×", r.time_ratio),
        r.probe_ratio
            .map_or_else(|| "–".into(), |x| format!("{x:.2}×")),
        r.involuntary_switches
            .map_or_else(|| "–".into(), |n| n.to_string()),
        r.cause.text().to_string(),
    ]
}

const COLUMNS: [&str; 6] = [
    "variant",
    "process",
    "time ÷ fastest",
    "host CPU probe ÷ fastest",
    "preemptions",
    "reading",
];

/// Terminal lines; nothing when no process was slow.
pub fn terminal(rows: &[SlowProcess]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "slow processes (median ≥ {SLOW_PROCESS_RATIO:.2}× the variant's fastest):"
    );
    for r in rows {
        let [variant, process, time, probe, switches, reading] = fields(r);
        let _ = writeln!(
            out,
            "  {:<44} #{process:<3} {time:>6} of fastest  host CPU probe {probe:>6}  \
             preempted {switches:>5}×  {reading}",
            printable(&variant),
        );
    }
    out
}

fn table(intro: &str) -> section::Table<'_> {
    section::Table {
        id: "slow-processes",
        title: "Slow processes",
        intro,
        columns: &COLUMNS,
        align: "---|---:|---:|---:|---:|---",
    }
}

/// The Markdown section's head and one table row per slow process.
pub fn markdown(rows: &[SlowProcess]) -> (String, Vec<String>) {
    table(&intro()).markdown(rows, fields)
}

/// The HTML section; empty when no process was slow.
pub fn html(rows: &[SlowProcess]) -> String {
    table(&intro()).html(rows, fields)
}
