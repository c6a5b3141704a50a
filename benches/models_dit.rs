//! Criterion benches of the transformer-family replica models: one forward call each (device
//! synchronised inside the timed region). On CPU they run the `tiny` presets; with
//! `CLAIMBENCH_BENCH_FULL=1` on a CUDA machine they run the full-size models at the pipelines'
//! sizes and dtypes (fp16 for Hunyuan3D and SAM 3D, bf16 for Z-Image), one model resident at
//! a time.

mod common;

use common::target;

use claimbench::measure::Target;
use claimbench::models::hunyuan3d::{DitConfig, Hunyuan3dDit, ShapeVae, ShapeVaeConfig};
use claimbench::models::moge::{Moge, MogeConfig};
use claimbench::models::sam3d::{
    ConditionEmbedder, ConditionEmbedderConfig, ConditionView, DecoderOutput, SlatDecoder,
    SlatDecoderConfig, SlatFlow, SlatFlowConfig, SsDecoder, SsDecoderConfig, SsFlow, SsFlowConfig,
    SsLatents,
};
use claimbench::models::vit::{Vit, VitConfig};
use claimbench::models::zimage::{TextEncoder, TextEncoderConfig, ZImageConfig, ZImageTransformer};
use claimbench::models::{AttentionImpl, Builder, Weights};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

const SDPA: AttentionImpl = AttentionImpl::Sdpa;

struct Bench {
    target: Target,
    full: bool,
}

impl Bench {
    fn device(&self) -> Device {
        self.target.tch_device()
    }

    /// fp32 on CPU; the pipeline's dtype at full size.
    fn kind(&self, full_kind: Kind) -> Kind {
        if self.full {
            full_kind
        } else {
            Kind::Float
        }
    }

    fn builder(&self, full_kind: Kind) -> Builder {
        Builder::new(self.kind(full_kind), self.device())
    }

    fn randn(&self, shape: &[i64], kind: Kind) -> Tensor {
        Tensor::randn(shape, (kind, self.device()))
    }

    fn rand(&self, shape: &[i64], kind: Kind) -> Tensor {
        Tensor::rand(shape, (kind, self.device()))
    }

    /// `[b]` timesteps of value `t` (fp32, as pipelines pass them).
    fn time(&self, b: i64, t: f64) -> Tensor {
        Tensor::full([b], t, (Kind::Float, self.device()))
    }

    fn run<T>(&self, c: &mut Criterion, name: &str, mut call: impl FnMut() -> T) {
        let device = if self.target.is_cuda() { "cuda" } else { "cpu" };
        let size = if self.full { "full" } else { "tiny" };
        let target = self.target;
        c.bench_function(&format!("{device}/{size}/{name}"), |b| {
            b.iter(|| {
                let out = call();
                target.synchronize();
                out
            })
        });
    }

    fn pick<T>(&self, full: T, tiny: T) -> T {
        if self.full {
            full
        } else {
            tiny
        }
    }
}

fn built<M>(b: Builder, f: impl FnOnce(&mut Builder) -> M) -> (M, Weights) {
    let mut b = b;
    let m = f(&mut b);
    (m, b.finish())
}

fn vits(c: &mut Criterion, x: &Bench) {
    let kind = x.kind(Kind::Half);
    for (name, cfg) in [
        ("dinov2_vitl14_reg", VitConfig::vit_l14_reg4()),
        ("dinov2_vitg14", VitConfig::vit_g14()),
    ] {
        let cfg = x.pick(cfg, VitConfig::tiny());
        let side = x.pick(518, 8);
        let (vit, w) = built(x.builder(Kind::Half), |b| Vit::new(b, "vit", cfg));
        let img = x.randn(&[1, 3, side, side], kind);
        x.run(c, name, || vit.forward(&w, &img, SDPA));
    }
}

fn hunyuan3d(c: &mut Criterion, x: &Bench) {
    let kind = x.kind(Kind::Half);
    let cfg = x.pick(DitConfig::v2_0(), DitConfig::tiny());
    let (dit, w) = built(x.builder(Kind::Half), |b| Hunyuan3dDit::new(b, "dit", cfg));
    // Batch 2: classifier-free guidance doubles the batch.
    let lat = x.randn(&[2, cfg.latent_tokens, cfg.in_channels], kind);
    let ctx = x.randn(&[2, cfg.context_tokens, cfg.context_dim], kind);
    let t = x.time(2, 0.5);
    let g = x.time(2, 5.0);
    let guidance = cfg.guidance_embed.then_some(&g);
    x.run(c, "hunyuan3d_dit", || {
        dit.forward(&w, &lat, &t, &ctx, guidance, SDPA)
    });
    drop((dit, w));

    let cfg = x.pick(ShapeVaeConfig::v2_0(), ShapeVaeConfig::tiny());
    let (vae, w) = built(x.builder(Kind::Half), |b| ShapeVae::new(b, "vae", cfg));
    let z = x.randn(&[1, cfg.num_latents, cfg.embed_dim], kind);
    x.run(c, "shapevae_latents", || vae.decode_latents(&w, &z, SDPA));
    let latents = vae.decode_latents(&w, &z, SDPA);
    // One chunk of the volume decode (num_chunks = 8000 points at full size).
    let chunk = x.pick(8000, 100);
    let points = x.rand(&[chunk, 3], Kind::Float) * 2.02 - 1.01;
    x.run(c, "shapevae_volume_chunk", || {
        vae.query_points(&w, &latents, &points, chunk, SDPA)
    });
}

fn zimage(c: &mut Criterion, x: &Bench) {
    let kind = x.kind(Kind::BFloat16);
    let cfg = x.pick(ZImageConfig::turbo(), ZImageConfig::tiny());
    let (m, w) = built(x.builder(Kind::BFloat16), |b| {
        ZImageTransformer::new(b, "zimage", cfg.clone())
    });
    // 1024² → 16 × 128 × 128 latent (4096 tokens); a 128-token caption.
    let side = x.pick(128, 8);
    let latent = x.randn(&[1, cfg.in_channels, side, side], kind);
    let caption = x.randn(&[1, x.pick(128, 5), cfg.cap_feat_dim], kind);
    let t = x.time(1, 0.5);
    x.run(c, "zimage_dit", || {
        m.forward(&w, &latent, &t, &caption, SDPA)
    });
    drop((m, w));

    let cfg = x.pick(TextEncoderConfig::qwen3_4b(), TextEncoderConfig::tiny());
    let (te, w) = built(x.builder(Kind::BFloat16), |b| {
        TextEncoder::new(b, "te", cfg)
    });
    let ids = Tensor::randint(cfg.vocab, [1, cfg.max_tokens], (Kind::Int64, x.device()));
    x.run(c, "qwen3_text_encoder", || te.forward(&w, &ids, SDPA));
}

fn sam3d(c: &mut Criterion, x: &Bench) {
    let kind = x.kind(Kind::Half);
    for (name, stage1) in [
        ("sam3d_condition_stage1", true),
        ("sam3d_condition_stage2", false),
    ] {
        let cfg = match (x.full, stage1) {
            (true, true) => ConditionEmbedderConfig::stage1(),
            (true, false) => ConditionEmbedderConfig::stage2(),
            (false, s) => ConditionEmbedderConfig::tiny(s),
        };
        let (m, w) = built(x.builder(Kind::Half), |b| {
            ConditionEmbedder::new(b, "cond", cfg)
        });
        let s = cfg.input_size;
        let view = || ConditionView {
            image: x.rand(&[1, 3, s, s], kind),
            mask: x.rand(&[1, 1, s, s], kind),
            pointmap: cfg
                .point
                .map(|p| x.randn(&[1, 3, p.input_size, p.input_size], kind)),
        };
        let (crop, full) = (view(), view());
        x.run(c, name, || m.forward(&w, &crop, &full, SDPA));
    }

    let cfg = x.pick(SsFlowConfig::sam3d(), SsFlowConfig::tiny());
    let (m, w) = built(x.builder(Kind::Half), |b| SsFlow::new(b, "ss", cfg.clone()));
    let lat = SsLatents {
        shape: x.randn(&[1, cfg.shape_tokens(), cfg.shape_channels], kind),
        pose: cfg
            .pose_channels
            .iter()
            .map(|&ch| x.randn(&[1, 1, ch], kind))
            .collect(),
    };
    let ctx_tokens = x.pick(ConditionEmbedderConfig::stage1().tokens(), 10);
    let cond = x.randn(&[1, ctx_tokens, cfg.block.cond_dim], kind);
    let (t, d) = (x.time(1, 0.5), x.time(1, 0.04));
    x.run(c, "sam3d_ss_flow", || {
        m.forward(&w, &lat, &t, Some(&d), &cond, SDPA)
    });
    drop((m, w));

    let cfg = x.pick(SsDecoderConfig::sam3d(), SsDecoderConfig::tiny());
    let (m, w) = built(x.builder(Kind::Half), |b| {
        SsDecoder::new(b, "dec", cfg.clone())
    });
    let r = x.pick(16, 4);
    let z = x.randn(&[1, cfg.latent_channels, r, r, r], kind);
    x.run(c, "sam3d_ss_decoder", || m.forward(&w, &z));
    drop((m, w));

    // 20k active voxels → 5k transformer tokens (the notes' middle case).
    let cfg = x.pick(SlatFlowConfig::sam3d(), SlatFlowConfig::tiny());
    let (m, w) = built(x.builder(Kind::Half), |b| SlatFlow::new(b, "slat", cfg));
    let (voxels, tokens) = x.pick((20_000, 5_000), (40, 11));
    let lat = x.randn(&[1, voxels, cfg.in_channels], kind);
    let ctx_tokens = x.pick(ConditionEmbedderConfig::stage2().tokens(), 10);
    let cond = x.randn(&[1, ctx_tokens, cfg.block.cond_dim], kind);
    let t = x.time(1, 0.5);
    x.run(c, "sam3d_slat_flow", || {
        m.forward(&w, &lat, tokens, &t, &cond, SDPA)
    });
    drop((m, w));

    for (name, full_cfg, tiny_out) in [
        (
            "sam3d_gaussian_decoder",
            SlatDecoderConfig::gaussian(),
            DecoderOutput::Gaussians(2),
        ),
        (
            "sam3d_mesh_decoder",
            SlatDecoderConfig::mesh(),
            DecoderOutput::Mesh { use_color: true },
        ),
    ] {
        let cfg = x.pick(full_cfg, SlatDecoderConfig::tiny(tiny_out));
        let (m, w) = built(x.builder(Kind::Half), |b| SlatDecoder::new(b, "dec", cfg));
        let lat = x.randn(&[1, voxels, cfg.latent_channels], kind);
        x.run(c, name, || m.forward(&w, &lat, SDPA));
    }

    let cfg = x.pick(MogeConfig::vitl(), MogeConfig::tiny());
    let (m, w) = built(x.builder(Kind::Half), |b| Moge::new(b, "moge", cfg));
    let (h, wd) = x.pick((770, 770), (10, 8));
    let img = x.rand(&[1, 3, h, wd], kind);
    x.run(c, "moge_vitl", || m.forward(&w, &img, SDPA).mask);
}

fn benches(c: &mut Criterion) {
    let _guard = tch::no_grad_guard();
    let target = target();
    let full = target.is_cuda() && std::env::var_os("CLAIMBENCH_BENCH_FULL").is_some();
    let x = Bench { target, full };
    vits(c, &x);
    hunyuan3d(c, &x);
    zimage(c, &x);
    sam3d(c, &x);
}

criterion_group! {
    name = model_benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(model_benches);
