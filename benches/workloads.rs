//! Criterion benches of the workloads, through the same measurement path as `claimbench run`
//! (device synchronised inside the timed region). On CPU they run at a small size; with
//! `CLAIMBENCH_BENCH_FULL=1` on a CUDA machine they run at the manifests' full size.

use claimbench::measure::{Meter, Target};
use claimbench::plan::{ParamValue, VariantPlan};
use claimbench::workloads;
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn variant(workload: &str, overrides: &[(&str, i64)]) -> VariantPlan {
    let overrides: Vec<(&str, ParamValue)> = overrides
        .iter()
        .map(|(k, v)| (*k, ParamValue::Int(*v)))
        .collect();
    workloads::default_plan(workload, &overrides).expect("bench parameters are valid")
}

fn target() -> Target {
    let _ = claimbench::ffi::load_torch_cuda();
    match claimbench::ffi::cuda_device_count() {
        Ok(n) if n > 0 => Target::Cuda(0),
        _ => Target::Cpu,
    }
}

fn bench_workload(c: &mut Criterion, name: &str, plan: VariantPlan, target: Target) {
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

fn benches(c: &mut Criterion) {
    let target = target();
    let full = target.is_cuda() && std::env::var_os("CLAIMBENCH_BENCH_FULL").is_some();
    let conv = if full {
        variant("conv_stack", &[("channels", 256), ("blocks", 6)])
    } else {
        variant(
            "conv_stack",
            &[
                ("batch", 1),
                ("channels", 32),
                ("resolution", 16),
                ("blocks", 2),
            ],
        )
    };
    bench_workload(c, "conv_stack", conv, target);
    let matmul = if full {
        variant("matmul", &[])
    } else {
        variant("matmul", &[("m", 128), ("k", 128), ("n", 128)])
    };
    bench_workload(c, "matmul", matmul, target);
}

criterion_group! {
    name = workload_benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(workload_benches);
