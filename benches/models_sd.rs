//! Criterion benches of the Stable Diffusion replicas (the `unet` and `vae_decode` workloads),
//! through the same measurement path as `claimbench run`. On CPU they run the `tiny` presets
//! in fp32; with `CLAIMBENCH_BENCH_FULL=1` on a CUDA machine they run SD 2.1 at full size in
//! fp16 (UNet: batch 2 at 512 px; VAE: one 768-px image, plain and tiled).

mod common;

use common::{bench_workload, target};

use claimbench::knobs::Dtype;
use claimbench::plan::{ParamValue, VariantPlan};
use claimbench::workloads;
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn plan(workload: &str, overrides: &[(&str, ParamValue)], dtype: Dtype) -> VariantPlan {
    let mut plan =
        workloads::default_plan(workload, overrides).expect("bench parameters are valid");
    plan.knobs.dtype = dtype;
    plan
}

fn benches(c: &mut Criterion) {
    let target = target();
    let full = target.is_cuda() && std::env::var_os("CLAIMBENCH_BENCH_FULL").is_some();
    let s = |v: &str| ParamValue::Str(v.into());
    let i = ParamValue::Int;
    let (dtype, unet, vae) = if full {
        (
            Dtype::Fp16,
            vec![
                ("preset", s("sd21")),
                ("resolution", i(512)),
                ("batch", i(2)),
            ],
            vec![("preset", s("sd")), ("resolution", i(768)), ("batch", i(1))],
        )
    } else {
        (
            Dtype::Fp32,
            vec![
                ("preset", s("tiny")),
                ("resolution", i(64)),
                ("batch", i(2)),
            ],
            vec![
                ("preset", s("tiny")),
                ("resolution", i(128)),
                ("batch", i(1)),
            ],
        )
    };
    for attention in ["sdpa", "sliced:auto"] {
        let mut params = unet.clone();
        params.push(("attention", s(attention)));
        bench_workload(
            c,
            &format!("unet/{attention}"),
            plan("unet", &params, dtype),
            target,
        );
    }
    for tiling in [false, true] {
        let mut params = vae.clone();
        params.push(("tiling", ParamValue::Bool(tiling)));
        if full && tiling {
            // 512-px tiles, so that a 768-px image is actually tiled (2 × 2 tiles).
            params.push(("tile_size", i(512)));
        } else if tiling {
            params.push(("tile_size", i(64)));
        }
        let name = if tiling {
            "vae_decode/tiled"
        } else {
            "vae_decode/plain"
        };
        bench_workload(c, name, plan("vae_decode", &params, dtype), target);
    }
}

criterion_group! {
    name = sd_benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(sd_benches);
