//! The transformer replica models keep the weights' half-precision dtype end to end: a tensor
//! made inside a forward pass in fp32 (a position embedding, a timestep sinusoid, RoPE angles)
//! and added to fp16/bf16 activations would promote them to fp32 silently and double the
//! memory traffic that the replicas exist to reproduce. Run at the tiny presets on CPU.

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
use tch::{Device, Kind, Tensor};

const SDPA: AttentionImpl = AttentionImpl::Sdpa;

fn build<M>(kind: Kind, f: impl FnOnce(&mut Builder) -> M) -> (M, Weights) {
    let mut b = Builder::new(kind, Device::Cpu);
    let m = f(&mut b);
    (m, b.finish())
}

#[test]
fn half_precision_forwards_keep_their_dtype() {
    tch::manual_seed(0);
    for kind in [Kind::Half, Kind::BFloat16] {
        let o = (kind, Device::Cpu);
        let t = Tensor::from_slice(&[0.5f32]);
        let check = |name: &str, out: &Tensor| {
            assert_eq!(out.kind(), kind, "{name} in {kind:?}");
            assert!(
                out.isfinite().all().int64_value(&[]) == 1,
                "{name} in {kind:?}"
            );
        };

        let (m, w) = build(kind, |b| Vit::new(b, "vit", VitConfig::tiny()));
        check(
            "ViT",
            &m.forward(&w, &Tensor::randn([1, 3, 6, 10], o), SDPA),
        );

        let c = DitConfig::tiny();
        let (m, w) = build(kind, |b| Hunyuan3dDit::new(b, "dit", c));
        let x = Tensor::randn([1, c.latent_tokens, c.in_channels], o);
        let ctx = Tensor::randn([1, c.context_tokens, c.context_dim], o);
        check(
            "Hunyuan3D DiT",
            &m.forward(&w, &x, &t, &ctx, Some(&t), SDPA),
        );

        let c = ShapeVaeConfig::tiny();
        let (m, w) = build(kind, |b| ShapeVae::new(b, "vae", c));
        let latents =
            m.decode_latents(&w, &Tensor::randn([1, c.num_latents, c.embed_dim], o), SDPA);
        check("ShapeVAE", &latents);
        // The grid logits are fp32, as the reference casts them before marching cubes.
        assert_eq!(m.decode_grid(&w, &latents, 4, 50, SDPA).kind(), Kind::Float);

        let c = ZImageConfig::tiny();
        let (m, w) = build(kind, |b| ZImageTransformer::new(b, "z", c.clone()));
        let latent = Tensor::randn([1, c.in_channels, 6, 8], o);
        let caption = Tensor::randn([1, 5, c.cap_feat_dim], o);
        check("Z-Image", &m.forward(&w, &latent, &t, &caption, SDPA));

        let c = TextEncoderConfig::tiny();
        let (m, w) = build(kind, |b| TextEncoder::new(b, "te", c));
        let ids = Tensor::randint(c.vocab, [1, c.max_tokens], (Kind::Int64, Device::Cpu));
        check("text encoder", &m.forward(&w, &ids, SDPA));

        let c = SsFlowConfig::tiny();
        let (m, w) = build(kind, |b| SsFlow::new(b, "ss", c.clone()));
        let x = SsLatents {
            shape: Tensor::randn([1, c.shape_tokens(), c.shape_channels], o),
            pose: c
                .pose_channels
                .iter()
                .map(|&ch| Tensor::randn([1, 1, ch], o))
                .collect(),
        };
        let cond = Tensor::randn([1, 5, c.block.cond_dim], o);
        let out = m.forward(&w, &x, &t, Some(&t), &cond, SDPA);
        check("SS flow shape", &out.shape);
        check("SS flow pose", &out.pose[0]);

        let c = SlatFlowConfig::tiny();
        let (m, w) = build(kind, |b| SlatFlow::new(b, "slat", c));
        let x = Tensor::randn([1, 40, c.in_channels], o);
        let cond = Tensor::randn([1, 5, c.block.cond_dim], o);
        check("SLAT flow", &m.forward(&w, &x, 11, &t, &cond, SDPA));

        let c = SsDecoderConfig::tiny();
        let (m, w) = build(kind, |b| SsDecoder::new(b, "dec", c.clone()));
        check(
            "SS decoder",
            &m.forward(&w, &Tensor::randn([1, c.latent_channels, 3, 3, 3], o)),
        );

        for output in [
            DecoderOutput::Gaussians(2),
            DecoderOutput::Mesh { use_color: true },
        ] {
            let c = SlatDecoderConfig::tiny(output);
            let (m, w) = build(kind, |b| SlatDecoder::new(b, "dec", c));
            let x = Tensor::randn([1, 10, c.latent_channels], o);
            check("SLAT decoder", &m.forward(&w, &x, SDPA));
        }

        for stage1 in [true, false] {
            let c = ConditionEmbedderConfig::tiny(stage1);
            let (m, w) = build(kind, |b| ConditionEmbedder::new(b, "cond", c));
            let view = || ConditionView {
                image: Tensor::rand([1, 3, 10, 10], o),
                mask: Tensor::rand([1, 1, 10, 10], o),
                pointmap: stage1.then(|| Tensor::randn([1, 3, 12, 12], o)),
            };
            check("condition embedder", &m.forward(&w, &view(), &view(), SDPA));
        }

        // MoGe returns fp32 outputs (resized and remapped in fp32, as the reference does).
        let (m, w) = build(kind, |b| Moge::new(b, "moge", MogeConfig::tiny()));
        let out = m.forward(&w, &Tensor::rand([1, 3, 10, 8], o), SDPA);
        assert_eq!(out.points.kind(), Kind::Float);
        assert!(out.mask.isfinite().all().int64_value(&[]) == 1);
    }
}
