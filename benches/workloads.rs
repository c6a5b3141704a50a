//! Criterion benches of the workloads, through the same measurement path as `claimbench run`
//! (device synchronised inside the timed region). On CPU they run at a small size; with
//! `CLAIMBENCH_BENCH_FULL=1` on a CUDA machine they run at the manifests' full size.

mod common;

use common::{bench_workload, target};

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
