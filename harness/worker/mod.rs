//! The child side of a run: `claimbench worker` reads a [`protocol::WorkerJob`] on stdin,
//! applies the variant's knobs, builds the workload, runs the warm-up and measured calls, and
//! streams [`protocol::Message`]s on stdout.
//!
//! Order matters: environment knobs were set by the parent before this process started, so
//! they are in place before CUDA initialises; libtorch_cuda is loaded next; backend flags and
//! the memory budget are applied before any tensor exists.

pub mod protocol;

use crate::ffi;
use crate::knobs::{DeterministicAlgorithms, DeviceChoice, Knobs};
use crate::measure::{nvml, MeasureError, Meter, Target};
use crate::workloads;
use protocol::{Hello, LogLevel, Message, OomInfo, Outcome, SampleMsg, Status, WorkerJob};
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
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic without message".into());
            classify_failure(message, None, 0)
        }
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
    })
    .map_err(|e| e.to_string())?;
    let mut not_applicable = Vec::new();
    if !target.is_cuda() {
        let defaults = Knobs::default();
        let cuda_only = [
            (
                "cudnn.enabled",
                knobs.cudnn_enabled != defaults.cudnn_enabled,
            ),
            (
                "cudnn.benchmark",
                knobs.cudnn_benchmark != defaults.cudnn_benchmark,
            ),
            (
                "cudnn.deterministic",
                knobs.cudnn_deterministic != defaults.cudnn_deterministic,
            ),
            ("tf32.matmul", knobs.tf32_matmul != defaults.tf32_matmul),
            ("tf32.cudnn", knobs.tf32_cudnn != defaults.tf32_cudnn),
            ("empty_cache", knobs.empty_cache_between_stages),
            ("vram_budget_gib", knobs.vram_budget_gib.is_some()),
        ];
        for (knob, set) in cuda_only {
            if set {
                not_applicable.push(format!(
                    "{knob}: acts on CUDA only; this worker runs on CPU"
                ));
            }
        }
    }
    Ok(not_applicable)
}

/// Sets the allocator's memory fraction so that it may reserve at most `budget_gib`.
fn apply_budget(budget_gib: f64, device: usize) -> Result<(u64, f64), String> {
    let (_, total) = ffi::memory_info(device).map_err(|e| e.to_string())?;
    let budget = (budget_gib * (1u64 << 30) as f64) as u64;
    if budget > total {
        return Err(format!(
            "vram_budget_gib = {budget_gib} exceeds this device's {:.2} GiB",
            total as f64 / (1u64 << 30) as f64
        ));
    }
    let fraction = budget as f64 / total as f64;
    ffi::set_memory_fraction(fraction, device).map_err(|e| e.to_string())?;
    Ok((
        budget,
        ffi::memory_fraction(device).map_err(|e| e.to_string())?,
    ))
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
    let not_applicable = match apply_knobs(knobs, target) {
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
    let (mut budget_bytes, mut memory_fraction) = (None, None);
    if let (Some(gib), Target::Cuda(i)) = (knobs.vram_budget_gib, target) {
        match apply_budget(gib, i) {
            Ok((bytes, fraction)) => {
                budget_bytes = Some(bytes);
                memory_fraction = Some(fraction);
            }
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
    let meter = Meter {
        target,
        empty_cache_between_stages: knobs.empty_cache_between_stages,
        sampler,
    };
    let total = variant.warmup + variant.repetitions;
    let mut completed = 0;
    for call in 0..total {
        let warmup = call < variant.warmup;
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| meter.measure(|s| workload.call(s))));
        let failure = match result {
            Ok(Ok(measurement)) => {
                emit(&Message::Sample(Box::new(SampleMsg {
                    call,
                    warmup,
                    measurement,
                })));
                if !warmup {
                    completed += 1;
                }
                continue;
            }
            Ok(Err(MeasureError::Workload(e))) => format!("{e:#}"),
            Ok(Err(MeasureError::Backend(e))) => e.to_string(),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic without message".into()),
        };
        return classify_failure(failure, budget_bytes, completed);
    }
    finish(Status::Ok, None, None)
}
