//! The child side of a run: `claimbench worker` reads a [`protocol::WorkerJob`] on stdin,
//! applies the variant's knobs, builds the workload, runs the warm-up and measured calls, and
//! streams [`protocol::Message`]s on stdout.
//!
//! Order matters: environment knobs were set by the parent before this process started, so
//! they are in place before CUDA initialises; libtorch_cuda is loaded next; backend flags and
//! the memory budget are applied before any tensor exists.

pub mod protocol;

use crate::ffi;
use crate::knobs::{Autocast, DeterministicAlgorithms, DeviceChoice, Knobs};
use crate::measure::{nvml, MeasureError, Measurement, Meter, Target};
use crate::plan::Settle;
use crate::stats::{check_flat, Sample, StopReason, StoppingRule};
use crate::workloads;
use protocol::{
    Hello, LogLevel, Message, OomInfo, Outcome, SampleFlag, SampleMsg, Status, StopInfo, WorkerJob,
};
use std::io::{BufRead, Write};
use std::panic::AssertUnwindSafe;

/// Writes one protocol message as a JSON line and flushes, so the parent sees it at once.
fn emit(message: &Message) {
    let mut out = std::io::stdout().lock();
    // A closed stdout means the parent is gone; nothing useful is left to do but exit.
    if serde_json::to_writer(&mut out, message).is_err()
        || writeln!(out).is_err()
        || out.flush().is_err()
    {
        std::process::exit(141);
    }
}

fn log(level: LogLevel, message: impl Into<String>) {
    emit(&Message::Log {
        level,
        message: message.into(),
    });
}

fn finish(status: Status, message: Option<String>, oom: Option<OomInfo>) -> i32 {
    emit(&Message::Outcome(Outcome {
        status,
        message,
        oom,
    }));
    match status {
        Status::Ok => 0,
        _ => 1,
    }
}

/// Entry point of `claimbench worker`; returns the process exit code.
pub fn main() -> i32 {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut input) {
        return finish(
            Status::Error,
            Some(format!("cannot read the job from stdin: {e}")),
            None,
        );
    }
    let job: WorkerJob = match serde_json::from_str(&input) {
        Ok(job) => job,
        Err(e) => {
            return finish(
                Status::Error,
                Some(format!("malformed job on stdin: {e}")),
                None,
            )
        }
    };
    if job.protocol != protocol::PROTOCOL_VERSION {
        return finish(
            Status::Error,
            Some(format!(
                "protocol {} requested, this worker speaks {}",
                job.protocol,
                protocol::PROTOCOL_VERSION
            )),
            None,
        );
    }
    // Panics inside libtorch calls carry tch's error text; they are classified below, and the
    // default hook's report stays on stderr for the parent's log.
    match std::panic::catch_unwind(AssertUnwindSafe(|| run(&job))) {
        Ok(code) => code,
        Err(payload) => classify_failure(panic_message(payload), None, 0),
    }
}

/// Turns a failure message into an `oom` or `error` outcome, with allocator state for OOMs.
fn classify_failure(message: String, budget_bytes: Option<u64>, completed_calls: u32) -> i32 {
    if protocol::is_oom_message(&message) {
        let stats = ffi::memory_stats(0).ok();
        let oom = OomInfo {
            requested_bytes: protocol::requested_bytes(&message),
            allocated_bytes: stats.map(|s| s.allocated_current_bytes),
            reserved_bytes: stats.map(|s| s.reserved_current_bytes),
            budget_bytes,
            completed_calls,
        };
        finish(Status::Oom, Some(message), Some(oom))
    } else {
        finish(Status::Error, Some(message), None)
    }
}

fn select_target(choice: DeviceChoice) -> Result<Target, String> {
    let cuda_devices = ffi::cuda_device_count().map_err(|e| e.to_string())?;
    match choice {
        DeviceChoice::Cpu => Ok(Target::Cpu),
        DeviceChoice::Auto if cuda_devices == 0 => Ok(Target::Cpu),
        DeviceChoice::Auto | DeviceChoice::Cuda if cuda_devices > 0 => Ok(Target::Cuda(0)),
        _ => Err("device = \"cuda\" was requested but libtorch sees no CUDA device".into()),
    }
}

/// Applies backend flags; returns the knobs that cannot act on this target.
fn apply_knobs(knobs: &Knobs, target: Target) -> Result<Vec<String>, String> {
    ffi::set_backend_flags(&ffi::BackendFlags {
        cudnn_enabled: knobs.cudnn_enabled,
        cudnn_benchmark: knobs.cudnn_benchmark,
        cudnn_deterministic: knobs.cudnn_deterministic,
        deterministic_algorithms: knobs.deterministic_algorithms != DeterministicAlgorithms::Off,
        deterministic_warn_only: knobs.deterministic_algorithms
            == DeterministicAlgorithms::WarnOnly,
        tf32_matmul: knobs.tf32_matmul,
        tf32_cudnn: knobs.tf32_cudnn,
        // Set once for the worker's thread, so it is in force around every call.
        autocast_cpu: if target.is_cuda() {
            Autocast::Off
        } else {
            knobs.autocast
        },
        autocast_cuda: if target.is_cuda() {
            knobs.autocast
        } else {
            Autocast::Off
        },
    })
    .map_err(|e| e.to_string())?;
    let mut not_applicable = Vec::new();
    if let Some(mode) = knobs.torch_compile {
        not_applicable.push(format!(
            "compile: torch.compile(mode=\"{}\") needs TorchDynamo, which libtorch does not have; recorded, not applied",
            mode.as_str()
        ));
    }
    if !target.is_cuda() {
        for knob in crate::knobs::registry::cuda_only_changes(knobs) {
            not_applicable.push(format!(
                "{knob}: acts on CUDA only; this worker runs on CPU"
            ));
        }
    }
    Ok(not_applicable)
}

/// How the VRAM budget was applied.
struct Budget {
    budget_bytes: u64,
    overhead_bytes: Option<u64>,
    fraction: f64,
}

/// Sets the allocator's memory fraction so that this process fits in `budget_gib` of device
/// memory, as on a card of that size: the CUDA context and library handles, which a real card
/// must also hold, are measured (NVML) and taken off the allocator's share. If they cannot be
/// measured, the whole budget goes to the allocator and a warning says so.
/// A budget larger than the device cannot be emulated: `Ok(None)`, and the caller records the
/// knob as not applicable (the run is then limited by the real device only).
fn apply_budget(budget_gib: f64, device: usize) -> Result<Option<Budget>, String> {
    let (_, total) = ffi::memory_info(device).map_err(|e| e.to_string())?;
    let budget = (budget_gib * (1u64 << 30) as f64) as u64;
    if budget > total {
        return Ok(None);
    }
    let reserved = ffi::memory_stats(device)
        .map_err(|e| e.to_string())?
        .reserved_current_bytes;
    let overhead = match nvml::process_overhead_bytes(reserved) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            log(
                LogLevel::Warn,
                format!("CUDA context size unknown ({e}); the whole budget goes to the allocator"),
            );
            None
        }
    };
    let allocator_share = budget.saturating_sub(overhead.unwrap_or(0));
    if allocator_share == 0 {
        return Err(format!(
            "vram_budget_gib = {budget_gib} is smaller than this process's CUDA context"
        ));
    }
    ffi::set_memory_fraction(allocator_share as f64 / total as f64, device)
        .map_err(|e| e.to_string())?;
    Ok(Some(Budget {
        budget_bytes: budget,
        overhead_bytes: overhead,
        fraction: ffi::memory_fraction(device).map_err(|e| e.to_string())?,
    }))
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic without message".into());
    libtorch_error_of(&message).unwrap_or(message)
}

/// tch's infallible tensor methods panic with `called `Result::unwrap()` on an `Err` value:
/// Torch("…")`; the record keeps libtorch's own message (unescaped), which is what a user of
/// the library would see, not the wrapper that reads like a harness crash.
fn libtorch_error_of(panic: &str) -> Option<String> {
    let inner = panic
        .strip_prefix("called `Result::unwrap()` on an `Err` value: Torch(\"")?
        .strip_suffix("\")")?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            // `\u{1b}`: Debug's escape of other control characters.
            Some('u') => {
                let code: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let ch = code
                    .strip_prefix('{')
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32);
                out.push(ch.unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// NVML clock-throttle reasons that mark a sample as throttled: hardware slowdown, software
/// and hardware thermal limits, power brake. `sw_power_cap` is left out on purpose: a saturated
/// datacenter GPU sits at its power limit and trims boost clocks all the time, so flagging it
/// would flag every heavy call (it is still recorded in `throttle_reasons`); a clock drop deep
/// enough to matter is caught by `low_clock`, as nvbench does with its clock threshold.
const SLOWDOWN_REASONS: u64 = 0x8 | 0x20 | 0x40 | 0x80;

/// Conditions under which a sample's time is suspect; reports show how verdicts change
/// without flagged samples.
fn quality_flags(
    m: &Measurement,
    sm_clock_max: Option<u32>,
    min_clock_fraction: f64,
) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(t) = &m.telemetry {
        if t.throttle_reasons
            .is_some_and(|bits| bits & SLOWDOWN_REASONS != 0)
        {
            flags.push(SampleFlag::Throttled.as_str().to_string());
        }
        if let (Some(clock), Some(max)) = (t.sm_clock_min_mhz, sm_clock_max) {
            if f64::from(clock) < min_clock_fraction * f64::from(max) {
                flags.push(SampleFlag::LowClock.as_str().to_string());
            }
        }
        if t.compute_processes_max.is_some_and(|n| n > 1) {
            flags.push(SampleFlag::SharedGpu.as_str().to_string());
        }
    }
    flags
}

/// Whether the last `window` warm-up calls agree within `tolerance` and ran at a high clock.
fn is_settled(warm: &[Measurement], rule: &Settle, sm_clock_max: Option<u32>) -> bool {
    let window = rule.window as usize;
    if warm.len() < window {
        return false;
    }
    let last = &warm[warm.len() - window..];
    let (lo, hi) = last.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), m| {
        (lo.min(m.wall_ms), hi.max(m.wall_ms))
    });
    let times_agree = lo > 0.0 && hi / lo - 1.0 <= rule.tolerance;
    let clocks_up = match sm_clock_max {
        Some(max) => last.iter().all(|m| {
            m.telemetry
                .and_then(|t| t.sm_clock_min_mhz)
                .is_none_or(|c| f64::from(c) >= rule.min_clock_fraction * f64::from(max))
        }),
        None => true,
    };
    times_agree && clocks_up
}

fn run(job: &WorkerJob) -> i32 {
    let variant = &job.variant;
    let knobs = &variant.knobs;
    let cuda_load = ffi::load_torch_cuda();
    let _no_grad = tch::no_grad_guard();
    let target = match select_target(knobs.device) {
        Ok(t) => t,
        Err(e) => {
            let detail = cuda_load
                .err()
                .map(|l| format!(" (loading libtorch_cuda.so: {l})"))
                .unwrap_or_default();
            return finish(Status::Error, Some(format!("{e}{detail}")), None);
        }
    };
    let mut not_applicable = match apply_knobs(knobs, target) {
        Ok(n) => n,
        Err(e) => return finish(Status::Error, Some(format!("applying knobs: {e}")), None),
    };
    if let Target::Cuda(i) = target {
        // Creates the CUDA context and the caching allocator's state for the device; the
        // allocator's statistics and limits are undefined before its first allocation.
        let init = tch::Tensor::f_zeros([1], (tch::Kind::Float, tch::Device::Cuda(i)))
            .map(drop)
            .map_err(|e| e.to_string())
            .and_then(|()| ffi::empty_cache().map_err(|e| e.to_string()));
        if let Err(e) = init {
            return classify_failure(format!("initialising CUDA: {e}"), None, 0);
        }
    }
    let (mut budget_bytes, mut memory_fraction, mut overhead_bytes) = (None, None, None);
    if let (Some(gib), Target::Cuda(i)) = (knobs.vram_budget_gib, target) {
        match apply_budget(gib, i) {
            Ok(Some(b)) => {
                budget_bytes = Some(b.budget_bytes);
                memory_fraction = Some(b.fraction);
                overhead_bytes = b.overhead_bytes;
            }
            Ok(None) => not_applicable.push(format!(
                "vram_budget_gib: {gib} GiB exceeds this device's memory, so a larger card cannot be emulated; ran without a limit"
            )),
            Err(e) => {
                return finish(
                    Status::Error,
                    Some(format!("applying the VRAM budget: {e}")),
                    None,
                )
            }
        }
    }
    let sampler = match target {
        Target::Cuda(_) => match nvml::Sampler::start(nvml::DEFAULT_INTERVAL) {
            Ok(s) => Some(s),
            Err(e) => {
                log(LogLevel::Warn, format!("no device telemetry: {e}"));
                None
            }
        },
        Target::Cpu => None,
    };
    let versions = match ffi::versions() {
        Ok(v) => v,
        Err(e) => return finish(Status::Error, Some(e.to_string()), None),
    };
    let backend_flags = match ffi::backend_flags() {
        Ok(f) => f,
        Err(e) => return finish(Status::Error, Some(e.to_string()), None),
    };
    emit(&Message::Hello(Box::new(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        pid: std::process::id(),
        device: match target {
            Target::Cpu => "cpu".into(),
            Target::Cuda(i) => format!("cuda:{i}"),
        },
        versions,
        gpu: sampler.as_ref().map(|s| s.info().clone()),
        backend_flags,
        memory_fraction,
        budget_bytes,
        cuda_overhead_bytes: overhead_bytes,
        not_applicable,
        environment: knobs
            .env
            .keys()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect(),
    })));

    let mut workload = match workloads::build(variant, target) {
        Ok(w) => w,
        Err(e) => return classify_failure(format!("{e:#}"), budget_bytes, 0),
    };
    if target.is_cuda() {
        // What building left in the allocator's cache (initialisation temporaries) is not the
        // pipeline's: calls start from the weights alone, as the Python worker's do.
        target.synchronize();
        if let Err(e) = ffi::empty_cache() {
            return finish(
                Status::Error,
                Some(format!("emptying the cache: {e}")),
                None,
            );
        }
    }
    let meter = Meter {
        target,
        empty_cache_between_stages: knobs.empty_cache_between_stages,
        sampler,
    };
    let mut allocator_trace = AllocatorTrace::plan(job, target);
    let sm_clock_max = meter.sampler.as_ref().map(|s| s.info().sm_clock_max_mhz);
    let min_clock_fraction = variant.settle.unwrap_or_default().min_clock_fraction;
    let mut call: u32 = 0;
    // One call, measured and streamed; a failure ends the process with its outcome.
    let mut run_call = |warmup: bool| -> Result<Measurement, String> {
        if let Some(trace) = allocator_trace.as_ref().filter(|t| t.call == call) {
            if let Err(e) = trace.begin() {
                warn(format!("CLAIMBENCH_CUDA_MEMORY_TRACE: {e}"));
                allocator_trace = None;
            }
        }
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| meter.measure(|s| workload.call(s))));
        let outcome = match result {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(MeasureError::Workload(e))) => Err(format!("{e:#}")),
            Ok(Err(MeasureError::Backend(e))) => Err(e.to_string()),
            Err(payload) => Err(panic_message(payload)),
        };
        // Written whether or not the call completed: the trace of a call that ran out of
        // memory shows what was alive when it did. A diagnostic that cannot be written is
        // a warning, never the call's outcome.
        // Recording began before this call if it is the traced one (else the plan is gone).
        let traced = allocator_trace.as_ref().is_some_and(|t| t.call == call)
            && allocator_trace.take().map(AllocatorTrace::write).is_some();
        let measurement = outcome?;
        let mut flags = quality_flags(&measurement, sm_clock_max, min_clock_fraction);
        if traced {
            flags.push(SampleFlag::AllocatorTrace.as_str().to_string());
        }
        emit(&Message::Sample(Box::new(SampleMsg {
            call,
            warmup,
            flags,
            measurement: measurement.clone(),
        })));
        call += 1;
        Ok(measurement)
    };

    // Warm-up: at least `warmup` calls; with `settle`, more until the call time and the SM
    // clock have settled, never more than `warmup_max`.
    let mut warm: Vec<Measurement> = Vec::new();
    let settled = loop {
        let n = warm.len() as u32;
        let settled = match variant.settle {
            Some(rule) => is_settled(&warm, &rule, sm_clock_max),
            None => n >= variant.warmup,
        };
        if n >= variant.warmup_max || (n >= variant.warmup && settled) {
            break settled;
        }
        match run_call(true) {
            Ok(m) => warm.push(m),
            Err(e) => return classify_failure(e, budget_bytes, 0),
        }
    };
    emit(&Message::WarmedUp {
        calls: warm.len() as u32,
        settled,
    });

    // Measured calls: at least `repetitions`; with `target_rel_ci`, more until the interval of
    // this process's median is narrow enough, never more than `repetitions_max`.
    let rule = variant.target_rel_ci.and_then(|target| {
        StoppingRule::new(target, variant.repetitions_max as usize)
            .ok()
            .map(|r| r.with_min_units(variant.repetitions as usize))
    });
    let mut times: Vec<f64> = Vec::new();
    // Host CPU speed, probed outside the timed calls (before the first and after the last).
    let mut probe = crate::measure::host::CpuProbe::new();
    probe.run();
    let host_before = crate::measure::host::snapshot();
    let mut stop = loop {
        let n = times.len() as u32;
        if n >= variant.repetitions && rule.is_none() {
            break StopInfo {
                reason: "fixed".into(),
                relative_ci: None,
                host: None,
            };
        }
        if n >= variant.repetitions_max {
            break StopInfo {
                reason: "max".into(),
                relative_ci: None,
                host: None,
            };
        }
        if let (Some(rule), true) = (&rule, n >= variant.repetitions) {
            if let Ok(sample) = Sample::new(times.clone()) {
                let decision = check_flat(&sample, rule);
                if decision.should_stop() {
                    let reason = match decision.reason {
                        StopReason::Precise => "precise",
                        _ => "max",
                    };
                    break StopInfo {
                        reason: reason.into(),
                        relative_ci: Some(decision.relative_width),
                        host: None,
                    };
                }
            }
        }
        match run_call(false) {
            Ok(m) => times.push(m.wall_ms),
            Err(e) => return classify_failure(e, budget_bytes, n),
        }
    };
    if let Some(trace) = allocator_trace {
        warn(format!(
            "CLAIMBENCH_CUDA_MEMORY_TRACE_CALL={}: the process made only {call} calls; no trace written",
            trace.call
        ));
    }
    stop.host = host_before.and_then(crate::measure::host::usage_since);
    probe.run();
    if let Some(host) = &mut stop.host {
        host.cpu_probe_ms = probe.median_ms();
    }
    emit(&Message::Measured(stop));
    finish(Status::Ok, None, None)
}

/// Diagnostic: with `CLAIMBENCH_CUDA_MEMORY_TRACE=DIR`, the CUDA caching allocator's trace of
/// one call is written to `DIR/<suite>.<variant>.p<process>.csv`, also when that call fails
/// (out of memory), in the format the Python worker writes too, followed by the segments held
/// when it ends (`segment_at_end` rows: with the trace they give what earlier calls left
/// reserved); `python3 -m claimbench.memory_trace` reads them. The call is the first (from the
/// weights alone, after building and emptying the cache) or, with
/// `CLAIMBENCH_CUDA_MEMORY_TRACE_CALL=N`, call `N` counted from 0 with warm-ups, so that a
/// measured call, whose reserved memory includes what the warm-ups cached, can be traced.
/// Recording slows that call: its sample carries the `allocator_trace` quality flag.
struct AllocatorTrace {
    path: std::path::PathBuf,
    /// The index of the traced call.
    call: u32,
}

/// Events kept: a diffusion call makes some 10^5 allocations; the oldest are dropped beyond.
const ALLOCATOR_TRACE_ENTRIES: usize = 4_000_000;

/// `CLAIMBENCH_CUDA_MEMORY_TRACE_CALL`: the index of the call to trace (0 when unset).
fn traced_call_index(value: Option<std::ffi::OsString>) -> Result<u32, String> {
    match value {
        None => Ok(0),
        Some(text) => text
            .to_str()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
            format!(
                "CLAIMBENCH_CUDA_MEMORY_TRACE_CALL={text:?} is not a call index (0 is the first call, warm-ups counted); no trace written"
            )
        }),
    }
}

impl AllocatorTrace {
    /// Plans the trace, or says in a warning why there is none: a diagnostic never fails the
    /// variant.
    fn plan(job: &WorkerJob, target: Target) -> Option<Self> {
        let dir = std::env::var_os("CLAIMBENCH_CUDA_MEMORY_TRACE")?;
        let planned = traced_call_index(std::env::var_os("CLAIMBENCH_CUDA_MEMORY_TRACE_CALL"))
            .and_then(|call| {
                if !target.is_cuda() {
                    return Err("no CUDA allocator on this device; no trace written".into());
                }
                let path = std::path::Path::new(&dir).join(format!(
                    "{}.{}.p{}.csv",
                    job.suite, job.variant.name, job.process
                ));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| {
                        format!("creating {}: {e}", path.parent().unwrap_or(&path).display())
                    })
                    .map(|()| Self { path, call })
            });
        planned
            .map_err(|e| warn(format!("CLAIMBENCH_CUDA_MEMORY_TRACE: {e}")))
            .ok()
    }

    /// Starts recording, just before the traced call.
    fn begin(&self) -> Result<(), String> {
        ffi::cuda_memory_history(ALLOCATOR_TRACE_ENTRIES).map_err(|e| e.to_string())
    }

    /// Writes the trace and stops recording; a failure is a warning.
    fn write(self) {
        let written = ffi::write_cuda_memory_trace(&self.path);
        let stopped = ffi::cuda_memory_history(0);
        let message = match (written, stopped) {
            (Ok(()), Ok(())) => {
                return emit(&Message::Log {
                    level: protocol::LogLevel::Info,
                    message: format!(
                        "allocator trace of call {}: {}",
                        self.call,
                        self.path.display()
                    ),
                })
            }
            (Err(e), Ok(())) | (Ok(()), Err(e)) => e.to_string(),
            (Err(w), Err(s)) => format!("{w}; stopping the recording: {s}"),
        };
        warn(format!(
            "CLAIMBENCH_CUDA_MEMORY_TRACE: {}: {message}",
            self.path.display()
        ));
    }
}

fn warn(message: String) {
    emit(&Message::Log {
        level: protocol::LogLevel::Warn,
        message,
    });
}

#[cfg(test)]
mod tests {
    use super::{libtorch_error_of, panic_message, quality_flags, traced_call_index};
    use crate::measure::nvml::Telemetry;
    use crate::measure::Measurement;

    fn measured(throttle_reasons: u64, sm_clock_min_mhz: u32, processes: u32) -> Measurement {
        Measurement {
            wall_ms: 1.0,
            gpu_ms: Some(1.0),
            stages: Vec::new(),
            counters: Default::default(),
            peak_allocated_bytes: None,
            peak_reserved_bytes: None,
            allocated_at_start_bytes: None,
            telemetry: Some(Telemetry {
                readings: 10,
                memory_used_max_bytes: None,
                sm_clock_min_mhz: Some(sm_clock_min_mhz),
                sm_clock_mean_mhz: Some(f64::from(sm_clock_min_mhz)),
                temperature_max_c: None,
                power_mean_w: None,
                throttle_reasons: Some(throttle_reasons),
                compute_processes_max: Some(processes),
            }),
            host_peak_rss_bytes: None,
        }
    }

    #[test]
    fn a_tch_panic_is_recorded_as_libtorch_s_message() {
        let payload = std::panic::catch_unwind(|| {
            tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu)).view([3])
        })
        .expect_err("viewing 2 elements as 3 must fail");
        let message = panic_message(payload);
        assert!(!message.starts_with("called `Result"), "{message}");
        assert!(message.contains("shape '[3]' is invalid"), "{message}");
        // Escapes are undone; anything that is not tch's wrapper stays as it was.
        let wrapped = r#"called `Result::unwrap()` on an `Err` value: Torch("CUDA out of memory.\nsaid \"x\" \\ \u{1b}[0m\0")"#;
        assert_eq!(
            libtorch_error_of(wrapped).as_deref(),
            Some("CUDA out of memory.\nsaid \"x\" \\ \u{1b}[0m\0")
        );
        // Debug formatting round-trips through it.
        let text = "a\tb\r\n\u{7f}\u{1b}é\"\\";
        let debug = format!("called `Result::unwrap()` on an `Err` value: Torch({text:?})");
        assert_eq!(libtorch_error_of(&debug).as_deref(), Some(text));
        assert_eq!(libtorch_error_of("index out of bounds"), None);
    }

    #[test]
    fn the_traced_call_is_the_first_unless_an_index_is_given() {
        assert_eq!(traced_call_index(None), Ok(0));
        assert_eq!(traced_call_index(Some("3".into())), Ok(3));
        assert_eq!(traced_call_index(Some(" 2 ".into())), Ok(2));
        for bad in ["-1", "+3", "first", "", "²"] {
            let e = traced_call_index(Some(bad.into())).unwrap_err();
            assert!(
                e.contains("CLAIMBENCH_CUDA_MEMORY_TRACE_CALL") && e.contains("not a call index"),
                "{e}"
            );
        }
    }

    #[test]
    fn power_cap_alone_is_not_throttling_but_thermal_and_low_clocks_are() {
        let flags =
            |bits, clock, procs| quality_flags(&measured(bits, clock, procs), Some(1980), 0.75);
        assert!(
            flags(0x4, 1800, 1).is_empty(),
            "sw_power_cap at a high clock"
        );
        assert_eq!(
            flags(0x4, 1400, 1),
            ["low_clock"],
            "power cap deep enough to matter"
        );
        assert_eq!(flags(0x20, 1900, 1), ["throttled"], "sw_thermal");
        assert_eq!(flags(0x8 | 0x4, 1900, 1), ["throttled"], "hw_slowdown");
        assert_eq!(flags(0x0, 1900, 2), ["shared_gpu"]);
        assert!(quality_flags(&measured(0x40, 900, 1), None, 0.75) == ["throttled"]);
    }
}
