//! The SAM 3D workload at its tiny preset on the CPU: load order and resident set, stages,
//! loading strategies, precision and autocast, token counts; full-size counts without allocating.

use super::*;
use crate::measure::Measurement;
use crate::models::test_util::count;
use crate::plan::ParamValue;
use crate::workloads::build_default_plan;

fn build(overrides: &[(&str, ParamValue)]) -> Sam3d {
    build_with(Dtype::Fp16, overrides)
}

fn build_with(dtype: Dtype, overrides: &[(&str, ParamValue)]) -> Sam3d {
    let mut all = vec![
        ("preset", ParamValue::Str("tiny".into())),
        ("input_resolution", ParamValue::Int(56)),
    ];
    all.extend(overrides.iter().cloned());
    build_default_plan("sam3d", &all, |setup| {
        Sam3d::new(&Setup {
            target: setup.target,
            dtype,
            params: setup.params,
            warmup: setup.warmup,
        })
    })
}

fn call(w: &mut Sam3d) -> Measurement {
    crate::workloads::measure_once(w)
}

fn names(m: &Measurement) -> Vec<&str> {
    m.stages.iter().map(|s| s.name.as_str()).collect()
}

fn quick() -> Vec<(&'static str, ParamValue)> {
    vec![
        ("ss_steps", ParamValue::Int(1)),
        ("slat_steps", ParamValue::Int(1)),
    ]
}

#[test]
fn interval_cfg_gives_the_documented_backbone_passes() {
    assert_eq!(
        (flow_evals(25, SS_RESCALE), flow_evals(25, SLAT_RESCALE)),
        (44, 38)
    );
    let mut w = build(&[
        ("ss_steps", ParamValue::Int(25)),
        ("slat_steps", ParamValue::Int(25)),
    ]);
    let m = call(&mut w);
    assert_eq!(m.counters["ss_flow_evals"], 44);
    assert_eq!(m.counters["slat_flow_evals"], 38);
    let stages = names(&m);
    let order = [
        "depth",
        "preprocess",
        "condition_ss",
        "ss_flow",
        "ss_decode",
        "condition_slat",
        "slat_flow",
        "decode_mesh",
        "decode_gaussians",
        "cleanup",
    ];
    let at = |s: &str| {
        stages
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("missing stage {s}: {stages:?}"))
    };
    for pair in order.windows(2) {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{pair:?} out of order: {stages:?}"
        );
    }
    assert!(m.counters["mesh_faces"] > 0, "the extraction made faces");
    assert!(w.loaded().is_empty(), "cleanup frees every model");
}

#[test]
fn models_are_built_in_the_real_order_and_all_stay_resident() {
    let w = build(&[]);
    assert_eq!(w.load_order(), REAL_ORDER, "all_at_once builds at set-up");
    assert_eq!(w.loaded(), REAL_ORDER);
    let mut no_cleanup = quick();
    no_cleanup.push(("cleanup", ParamValue::Bool(false)));
    let mut kept = build(&no_cleanup);
    let m = call(&mut kept);
    assert!(!names(&m).iter().any(|s| s.starts_with("load_")));
    assert_eq!(
        kept.loaded(),
        REAL_ORDER,
        "nothing is freed without cleanup"
    );
    // After a cleanup, the next call re-creates them in the same order, timed.
    let mut all = quick();
    all.push(("cleanup", ParamValue::Bool(true)));
    let mut w2 = build(&all);
    call(&mut w2);
    let m = call(&mut w2);
    let loads: Vec<&str> = names(&m)
        .into_iter()
        .filter_map(|s| s.strip_prefix("load_"))
        .collect();
    assert_eq!(loads, REAL_ORDER);
    assert_eq!(w2.load_order()[9..], REAL_ORDER);
    drop(w);
}

/// Builds one model into a builder.
type Build<'a> = dyn Fn(&mut Builder) + 'a;

/// Parameters of each model at full size, counted without allocating: (fp16, fp32).
fn full_size_counts() -> Vec<(&'static str, i64, i64)> {
    let m = Models::for_preset("full");
    let count = |f: &dyn Fn(&mut Builder)| {
        let mut b = Builder::counting();
        f(&mut b);
        let w = b.finish();
        assert_eq!(
            w.numel(),
            w.numel_of_kind(Kind::Half) + w.numel_of_kind(Kind::Float)
        );
        (w.numel_of_kind(Kind::Half), w.numel_of_kind(Kind::Float))
    };
    let builds: [(&str, &Build); 9] = [
        ("moge", &|b| {
            let _ = Moge::new(b, "m", m.moge.clone());
        }),
        ("ss_generator", &|b| {
            let _ = SsFlow::new(b, "m", m.ss.clone());
        }),
        ("slat_generator", &|b| {
            let _ = SlatFlow::new(b, "m", m.slat);
        }),
        ("ss_decoder", &|b| {
            let _ = SsDecoder::new(b, "m", m.ss_decoder.clone());
        }),
        ("slat_decoder_gs", &|b| {
            let _ = SlatDecoder::new(b, "m", m.gs);
        }),
        ("slat_decoder_gs_4", &|b| {
            let _ = SlatDecoder::new(b, "m", m.gs4);
        }),
        ("slat_decoder_mesh", &|b| {
            let _ = SlatDecoder::new(b, "m", m.mesh);
        }),
        ("ss_condition_embedder", &|b| {
            let _ = ConditionEmbedder::new(b, "m", m.ss_condition);
        }),
        ("slat_condition_embedder", &|b| {
            let _ = ConditionEmbedder::new(b, "m", m.slat_condition);
        }),
    ];
    builds
        .iter()
        .map(|(name, f)| {
            let (half, fp32) = count(*f);
            (*name, half, fp32)
        })
        .collect()
}

#[test]
fn full_size_resident_set_matches_the_released_pipeline() {
    // The counts (fp16, fp32) of the released pipeline's construction, model by model:
    // `use_fp16` leaves the flows' and SLAT decoders' torsos fp16 and everything else fp32.
    let released = [
        ("moge", 0, 314_174_020),
        ("ss_generator", 957_087_744, 2_874_389),
        ("slat_generator", 599_014_144, 1_418_376),
        ("ss_decoder", 0, 73_671_201),
        ("slat_decoder_gs", 85_017_600, 351_424),
        ("slat_decoder_gs_4", 85_017_600, 49_976),
        ("slat_decoder_mesh", 90_907_488, 19_205),
        ("ss_condition_embedder", 0, 634_485_760),
        ("slat_condition_embedder", 0, 626_054_144),
    ];
    let counts = full_size_counts();
    assert_eq!(counts, released);
    assert_eq!(
        counts.iter().map(|c| c.0).collect::<Vec<_>>(),
        REAL_ORDER,
        "built in the real order"
    );
    let params: i64 = counts.iter().map(|(_, h, f)| h + f).sum();
    let bytes: i64 = counts.iter().map(|(_, h, f)| 2 * h + 4 * f).sum();
    assert_eq!((params, bytes), (3_470_143_071, 10_246_483_132));
    // With the mesh decoder's dense grid: 15.24 GB resident before the first call.
    let grid =
        crate::models::sam3d::DenseGrid::bytes_at(Models::for_preset("full").mesh.grid_resolution);
    assert_eq!(bytes + grid, 15_239_960_788);
}

#[test]
fn condition_embedders_hold_two_dino_copies_at_the_released_sizes() {
    let m = Models::for_preset("full");
    let vit = count(|b| crate::models::vit::Vit::new(b, "v", m.ss_condition.vit));
    assert_eq!(vit, 304_372_736, "DINOv2 ViT-L/14 with 4 registers");
    for (c, size, tokens) in [
        (m.ss_condition, 770, 14_152),
        (m.slat_condition, 1036, 21_924),
    ] {
        assert_eq!(c.vit, crate::models::vit::VitConfig::vit_l14_reg4());
        assert_eq!((c.input_size, c.tokens()), (size, tokens));
        let mut b = Builder::counting();
        let e = ConditionEmbedder::new(&mut b, "e", c);
        let w = b.finish();
        let dino: i64 = w
            .shapes()
            .filter(|(n, _)| n.contains(".backbone."))
            .map(|(_, s)| s.iter().product::<i64>())
            .sum();
        assert_eq!((e.dinos.len(), dino), (2, 2 * vit));
    }
}

#[test]
fn dino_token_counts_do_not_depend_on_the_input_resolution() {
    let mut counts = Vec::new();
    for size in [56, 100] {
        let mut all = quick();
        all.push(("input_resolution", ParamValue::Int(size)));
        all.push(("decode_mesh", ParamValue::Bool(false)));
        let m = call(&mut build(&all));
        counts.push((
            m.counters["ss_context_tokens"],
            m.counters["slat_context_tokens"],
        ));
    }
    let m = Models::for_preset("tiny");
    let expected = (
        m.ss_condition.tokens() as u64,
        m.slat_condition.tokens() as u64,
    );
    assert_eq!(counts, vec![expected, expected]);
}

#[test]
fn autocast_leaves_the_stored_dtypes_as_built() {
    for dtype in [Dtype::Fp16, Dtype::Fp32] {
        let mut all = quick();
        all.push(("cleanup", ParamValue::Bool(false)));
        let mut w = build_with(dtype, &all);
        let before: Vec<(String, Kind)> = stored_kinds(&w);
        let before_flags = ffi::backend_flags().unwrap();
        call(&mut w);
        assert_eq!(stored_kinds(&w), before, "{dtype:?}");
        assert_eq!(
            ffi::backend_flags().unwrap(),
            before_flags,
            "autocast restored"
        );
        // fp32 everywhere but the torsos of the flows and SLAT decoders.
        for (name, kind) in &before {
            // Norms (the subdivision blocks' GroupNorms are `act_layers.0` and
            // `out_layers.1`) stay fp32 inside the torso.
            let norm = name.contains("norm")
                || name.contains(".act_layers.0.")
                || name.contains(".out_layers.1.");
            let torso = ["ss_generator", "slat_generator", "slat_decoder_"]
                .iter()
                .any(|m| name.starts_with(m))
                && (name.contains(".blocks.")
                    || name.contains("_blocks.")
                    || name.contains(".upsample."))
                && !norm;
            let want = if torso { Kind::Half } else { Kind::Float };
            assert_eq!(*kind, want, "{name}");
        }
    }
}

fn stored_kinds(w: &Sam3d) -> Vec<(String, Kind)> {
    let mut out = Vec::new();
    macro_rules! add {
        ($($slot:ident),*) => {$(
            let m = w.$slot.loaded().expect("loaded");
            out.extend(m.weights.kinds().map(|(n, k)| (n.to_string(), k)));
        )*};
    }
    add!(
        moge,
        ss_generator,
        slat_generator,
        ss_decoder,
        decoder_gs,
        decoder_gs4,
        decoder_mesh,
        ss_condition,
        slat_condition
    );
    out
}

#[test]
fn an_enclosing_fp16_autocast_reaches_the_mesh_extraction_and_fails_there() {
    // The note's `torch.cuda.amp.autocast()` around the call: the decoders' output layers
    // produce fp16 features, and FlexiCubes' fp32 accumulators refuse them.
    let mut all = quick();
    all.push(("cleanup", ParamValue::Bool(false)));
    let mut w = build(&all);
    let before = ffi::backend_flags().unwrap();
    ffi::set_backend_flags(&ffi::BackendFlags {
        autocast_cpu: Autocast::Fp16,
        ..before
    })
    .unwrap();
    let _guard = tch::no_grad_guard();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::measure::Meter::cpu().measure(|s| w.call(s))
    }));
    ffi::set_backend_flags(&before).unwrap();
    let msg = match out {
        Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
        Ok(Err(e)) => format!("{e:?}"),
        Ok(Ok(_)) => panic!("the mesh extraction ran under fp16 autocast"),
    };
    assert!(msg.contains("same scalar type"), "{msg}");
    // Without the mesh decoder the same call completes.
    let mut all = quick();
    all.push(("decode_mesh", ParamValue::Bool(false)));
    let mut w = build(&all);
    ffi::set_backend_flags(&ffi::BackendFlags {
        autocast_cpu: Autocast::Fp16,
        ..before
    })
    .unwrap();
    let out = crate::measure::Meter::cpu().measure(|s| w.call(s));
    ffi::set_backend_flags(&before).unwrap();
    assert!(out.is_ok(), "{:?}", out.err());
}

#[test]
fn sequential_loading_loads_and_frees_around_each_stage() {
    let mut all = quick();
    all.extend([
        ("load", ParamValue::Str("sequential".into())),
        ("cleanup", ParamValue::Bool(false)),
        ("decode_mesh", ParamValue::Bool(false)),
    ]);
    let mut w = build(&all);
    assert!(w.loaded().is_empty(), "nothing is created at set-up");
    let m = call(&mut w);
    let stages = names(&m);
    for s in [
        "moge",
        "ss_condition_embedder",
        "ss_generator",
        "ss_decoder",
        "slat_condition_embedder",
        "slat_generator",
        "slat_decoder_gs",
    ] {
        let (load, unload) = (format!("load_{s}"), format!("unload_{s}"));
        let at = |x: &str| stages.iter().position(|y| *y == x);
        assert!(
            at(&load) < at(&unload) && at(&load).is_some(),
            "{s}: {stages:?}"
        );
    }
    assert!(
        !stages
            .iter()
            .any(|s| s.contains("decoder_mesh") || s.contains("gs_4")),
        "the mesh decoder is off and slat_decoder_gs_4 is never run: {stages:?}"
    );
    assert!(w.loaded().is_empty(), "no model stays loaded after a call");
}

#[test]
fn lazy_loads_each_model_in_the_first_call_only() {
    let mut all = quick();
    all.extend([
        ("load", ParamValue::Str("lazy".into())),
        ("cleanup", ParamValue::Bool(false)),
    ]);
    let mut w = build(&all);
    assert!(w.loaded().is_empty());
    assert!(names(&call(&mut w)).contains(&"load_ss_generator"));
    assert!(
        !names(&call(&mut w)).iter().any(|s| s.starts_with("load_")),
        "lazy loads once"
    );
    assert!(!w.loaded().contains(&"slat_decoder_gs_4"), "never used");
    // Used in the call's order: MoGe, then each stage's embedder before its flow.
    assert_eq!(
        w.load_order(),
        [
            "moge",
            "ss_condition_embedder",
            "ss_generator",
            "ss_decoder",
            "slat_condition_embedder",
            "slat_generator",
            "slat_decoder_mesh",
            "slat_decoder_gs"
        ]
    );
}
