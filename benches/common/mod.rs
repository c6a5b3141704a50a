//! Helpers shared by the criterion benches.
#![allow(dead_code)]

use claimbench::measure::{Meter, Target};
use claimbench::plan::VariantPlan;
use claimbench::workloads;
use criterion::Criterion;
use std::time::Duration;

/// CUDA device 0 when libtorch sees one, else the CPU.
pub fn target() -> Target {
    let _ = claimbench::ffi::load_torch_cuda();
    match claimbench::ffi::cuda_device_count() {
        Ok(n) if n > 0 => Target::Cuda(0),
        _ => Target::Cpu,
    }
}

/// Benches one call of `plan`'s workload, timed by `Meter` as `claimbench run` times it
/// (criterion's `iter_custom` gets the measured wall time, device synchronised).
pub fn bench_workload(c: &mut Criterion, name: &str, plan: VariantPlan, target: Target) {
    let _guard = tch::no_grad_guard();
    let mut workload = workloads::build(&plan, target).expect("workload builds");
    let meter = Meter {
        target,
        empty_cache_between_stages: false,
        sampler: None,
    };
    let device = if target.is_cuda() { "cuda" } else { "cpu" };
    c.bench_function(&format!("{device}/{name}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let m = meter
                    .measure(|s| workload.call(s))
                    .unwrap_or_else(|_| panic!("{name} failed"));
                total += Duration::from_secs_f64(m.wall_ms / 1e3);
            }
            total
        })
    });
}
