//! Measuring one workload call: wall time, GPU time, stage times, allocator peaks, device
//! telemetry and host memory.
//!
//! Method, per measured call ([`Meter::measure`]):
//! 1. the caching allocator's peak counters are reset and the device is synchronised, so the
//!    call starts with an idle GPU and fresh peaks; the bytes then allocated are read (what the
//!    workload keeps from one call to the next shows as growth over its first call's);
//! 2. the host clock is read and a CUDA start event recorded on the current stream;
//! 3. the workload runs its stages; at every stage boundary [`Stages::stage`] synchronises the
//!    device and reads the host clock, so a stage's time is the host wall time from the previous
//!    boundary to the end of its device work (including `empty_cache` when that knob is on);
//! 4. a CUDA end event is recorded, the device synchronised and the host clock read again: the
//!    call's wall time therefore includes all device work (the sync is inside the timed region);
//!    its GPU time is the elapsed time between the two events;
//! 5. peak allocated and peak reserved bytes are read from the allocator, NVML telemetry is
//!    aggregated over the window (see [`nvml`]), and the process's peak RSS is read.
//!
//! On CPU the same steps run without events, allocator statistics or telemetry.
//!
//! Before the first call, after the workload is built, both workers (Rust and Python) empty the
//! allocator's cache: peak reserved memory then counts what the calls cache, not the blocks
//! that building freed.

pub mod host;
pub mod nvml;
pub mod rss;

use crate::ffi;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// Where a workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Cuda(usize),
}

impl Target {
    pub fn tch_device(self) -> tch::Device {
        match self {
            Target::Cpu => tch::Device::Cpu,
            Target::Cuda(i) => tch::Device::Cuda(i),
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, Target::Cuda(_))
    }

    /// Waits until all queued device work has finished (no-op on CPU).
    pub fn synchronize(self) {
        if let Target::Cuda(i) = self {
            tch::Cuda::synchronize(i as i64);
        }
    }
}

/// Time of one stage of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    pub name: String,
    pub wall_ms: f64,
}

/// What a workload reports while it runs one call: stage boundaries and counters (e.g. UNet
/// evaluations), so claims about evaluation counts can be checked from the record.
pub struct Stages {
    target: Target,
    empty_cache: bool,
    last: Instant,
    times: Vec<StageTime>,
    counters: BTreeMap<String, u64>,
}

impl Stages {
    fn new(target: Target, empty_cache: bool) -> Self {
        Stages {
            target,
            empty_cache,
            last: Instant::now(),
            times: Vec::new(),
            counters: BTreeMap::new(),
        }
    }

    /// Runs `f` as the named stage: the device is synchronised when it returns (and the
    /// allocator cache emptied if the knob asks for it), then the time since the previous
    /// boundary is recorded. Stages of the same name within one call add up.
    pub fn stage<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let out = f();
        self.target.synchronize();
        if self.empty_cache && self.target.is_cuda() {
            // A failure here is an allocator bug, not a workload outcome; surface it loudly.
            ffi::empty_cache().expect("empty_cache between stages");
        }
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1e3;
        self.last = now;
        match self.times.iter_mut().find(|s| s.name == name) {
            Some(s) => s.wall_ms += ms,
            None => self.times.push(StageTime {
                name: name.to_string(),
                wall_ms: ms,
            }),
        }
        out
    }

    /// Runs `f` as one stage named `name`, whatever stages `f` marks inside: their times are
    /// dropped, their counters kept. For comparing with code that times the same span as one
    /// stage (a real pipeline's whole call).
    pub fn as_one<T>(&mut self, name: &str, f: impl FnOnce(&mut Stages) -> T) -> T {
        let mut inner = Stages::new(self.target, false);
        let out = self.stage(name, || f(&mut inner));
        for (counter, n) in inner.counters {
            self.count(&counter, n);
        }
        out
    }

    /// Adds `n` to a named counter (e.g. `unet_evals`).
    pub fn count(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.to_string()).or_insert(0) += n;
    }
}

/// Everything measured for one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub wall_ms: f64,
    /// Between CUDA events around the call; `None` on CPU.
    pub gpu_ms: Option<f64>,
    pub stages: Vec<StageTime>,
    pub counters: BTreeMap<String, u64>,
    /// Allocator peaks since the reset before this call; `None` on CPU.
    pub peak_allocated_bytes: Option<u64>,
    pub peak_reserved_bytes: Option<u64>,
    /// Bytes allocated when the call began, after the synchronisation before it; `None` on CPU.
    #[serde(default)]
    pub allocated_at_start_bytes: Option<u64>,
    pub telemetry: Option<nvml::Telemetry>,
    /// Peak resident set of the worker process so far (monotone over the process's life).
    pub host_peak_rss_bytes: Option<u64>,
}

/// Measures calls on one target; owns the optional NVML sampler.
pub struct Meter {
    pub target: Target,
    pub empty_cache_between_stages: bool,
    pub sampler: Option<nvml::Sampler>,
}

impl Meter {
    /// A meter for CPU calls: no telemetry, no cache emptying (tests, benches, tools).
    pub fn cpu() -> Meter {
        Meter {
            target: Target::Cpu,
            empty_cache_between_stages: false,
            sampler: None,
        }
    }

    /// Measures one call of `call` following the module-level method.
    pub fn measure<E>(
        &self,
        call: impl FnOnce(&mut Stages) -> Result<(), E>,
    ) -> Result<Measurement, MeasureError<E>> {
        let device = match self.target {
            Target::Cuda(i) => Some(i),
            Target::Cpu => None,
        };
        let events = match device {
            Some(i) => {
                ffi::reset_peak_stats(i).map_err(MeasureError::Backend)?;
                let pair = (ffi::CudaEvent::new(), ffi::CudaEvent::new());
                Some((
                    pair.0.map_err(MeasureError::Backend)?,
                    pair.1.map_err(MeasureError::Backend)?,
                ))
            }
            None => None,
        };
        self.target.synchronize();
        let allocated_at_start_bytes = match device {
            Some(i) => Some(
                ffi::memory_stats(i)
                    .map_err(MeasureError::Backend)?
                    .allocated_current_bytes,
            ),
            None => None,
        };
        let mut stages = Stages::new(self.target, self.empty_cache_between_stages);
        let start = Instant::now();
        stages.last = start;
        if let (Some((ev0, _)), Some(i)) = (&events, device) {
            ev0.record(i).map_err(MeasureError::Backend)?;
        }
        call(&mut stages).map_err(MeasureError::Workload)?;
        if let (Some((_, ev1)), Some(i)) = (&events, device) {
            ev1.record(i).map_err(MeasureError::Backend)?;
        }
        self.target.synchronize();
        let end = Instant::now();
        let gpu_ms = match &events {
            Some((ev0, ev1)) => {
                ev1.synchronize().map_err(MeasureError::Backend)?;
                Some(ev0.elapsed_ms(ev1).map_err(MeasureError::Backend)?)
            }
            None => None,
        };
        let stats = match device {
            Some(i) => Some(ffi::memory_stats(i).map_err(MeasureError::Backend)?),
            None => None,
        };
        Ok(Measurement {
            wall_ms: (end - start).as_secs_f64() * 1e3,
            gpu_ms,
            stages: stages.times,
            counters: stages.counters,
            peak_allocated_bytes: stats.map(|s| s.allocated_peak_bytes),
            peak_reserved_bytes: stats.map(|s| s.reserved_peak_bytes),
            allocated_at_start_bytes,
            telemetry: self.sampler.as_ref().map(|s| s.window(start, end)),
            host_peak_rss_bytes: rss::peak_rss_bytes(),
        })
    }
}

/// Why a measurement failed: the workload's own error, or the measuring machinery's.
#[derive(Debug)]
pub enum MeasureError<E> {
    Workload(E),
    Backend(ffi::ShimError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_accumulate_and_counters_add_up() {
        let meter = Meter {
            target: Target::Cpu,
            empty_cache_between_stages: false,
            sampler: None,
        };
        let m = meter
            .measure(|s| -> Result<(), ()> {
                s.stage("a", || {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                });
                s.stage("b", || ());
                s.stage("a", || {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                });
                s.count("evals", 2);
                s.count("evals", 3);
                Ok(())
            })
            .unwrap();
        let names: Vec<_> = m.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(m.stages[0].wall_ms >= 10.0, "{:?}", m.stages);
        let stage_sum: f64 = m.stages.iter().map(|s| s.wall_ms).sum();
        assert!(
            stage_sum <= m.wall_ms + 1e-6,
            "stages {stage_sum} > call {}",
            m.wall_ms
        );
        assert_eq!(m.counters["evals"], 5);
        assert_eq!(m.gpu_ms, None);
        assert!(m.host_peak_rss_bytes.unwrap() > 0);
    }

    #[test]
    fn workload_errors_pass_through() {
        let meter = Meter {
            target: Target::Cpu,
            empty_cache_between_stages: false,
            sampler: None,
        };
        let err = meter.measure(|_| Err::<(), _>("boom")).unwrap_err();
        assert!(matches!(err, MeasureError::Workload("boom")));
    }
}
