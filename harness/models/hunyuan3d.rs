//! Hunyuan3D-2 shape generation: the flow-matching DiT (`hunyuan3d-dit-v2-0`) and the
//! ShapeVAE decoder (latent transformer and cross-attention volume decoder).
//!
//! DiT (`Hunyuan3DDiT` defaults, identical across the public copies of the v2-0 config):
//! latents `[b, 3072, 64]` → `latent_in` (64 → 1024); DINOv2-g context `[b, 1370, 1536]` →
//! `cond_in` (1536 → 1024); vector = `time_in(sinusoid(1000·t, 256))` (+ `guidance_in` when the
//! checkpoint has a guidance embedding: turbo/fast); 16 double-stream blocks (img = latents,
//! txt = context), then 32 single-stream blocks over `[context, latents]` (4442 tokens); the
//! latent part goes through the final layer (1024 → 64). Hidden 1024, 16 heads × 64, MLP ratio
//! 4 (tanh GELU), qkv bias, QK RMSNorm. No positional encoding (`pe = None`).
//!
//! ShapeVAE (`ShapeVAE` with `num_latents 3072, embed_dim 64, width 1024, heads 16,
//! num_decoder_layers 16, num_freqs 8, include_pi false, qkv_bias false, qk_norm true`):
//! `latents / scale_factor` → `post_kl` (64 → 1024) → 16 residual attention blocks (LN, qkv
//! without bias, per-head LayerNorm QK-norm, proj, GELU MLP 4096) over the 3072 tokens. The
//! volume decoder embeds query points with a Fourier embedding (3 + 3·2·8 = 51 dims), projects
//! them to 1024, runs one residual cross-attention block against the latents (its key/value
//! projection `c_kv` runs on all 3072 latents again for every chunk of queries, as the
//! reference does with `kv_cache=False`), then `ln_post` and `Linear(1024 → 1)` occupancy.
//! The grid is `(octree_resolution + 1)³` points in `[-box_v, box_v]³`, built on the host in
//! fp32 and copied whole to the device in the model dtype, decoded `num_chunks` points at a
//! time; the logits stay in the model dtype until the concatenated grid is cast to fp32.

use super::attention::{attention, AttentionImpl, QkNorm, QkNormKind};
use super::dit::{DitBlockConfig, DoubleStreamBlock, FinalLayer, MlpEmbedder, SingleStreamBlock};
use super::embeddings::timestep_embedding;
use super::feed_forward::{Activation, FeedForward};
use super::layers::{LayerNorm, Linear};
use super::vit::{apply_qk_norm, merge_heads, qk_norm, Block, BlockConfig};
use super::weights::{Builder, Weights};
use tch::{Device, Kind, Tensor};

/// Shape of the Hunyuan3D DiT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DitConfig {
    pub in_channels: i64,
    pub context_dim: i64,
    pub hidden: i64,
    pub heads: i64,
    pub depth: i64,
    pub depth_single: i64,
    pub mlp_ratio: f64,
    pub qkv_bias: bool,
    /// Turbo and fast checkpoints embed the guidance scale (and run without CFG batching).
    pub guidance_embed: bool,
    /// The sinusoid sees `time_factor · t`.
    pub time_factor: f64,
    /// Latent tokens (the VAE's `num_latents`).
    pub latent_tokens: i64,
    /// Conditioning tokens (DINOv2-g at 518 px: 1369 patches + CLS).
    pub context_tokens: i64,
}

impl DitConfig {
    /// `hunyuan3d-dit-v2-0`: 1.113 B parameters.
    pub fn v2_0() -> DitConfig {
        DitConfig {
            in_channels: 64,
            context_dim: 1536,
            hidden: 1024,
            heads: 16,
            depth: 16,
            depth_single: 32,
            mlp_ratio: 4.0,
            qkv_bias: true,
            guidance_embed: false,
            time_factor: 1000.0,
            latent_tokens: 3072,
            context_tokens: 1370,
        }
    }

    /// `hunyuan3d-dit-v2-0-turbo` / `-fast`: as v2-0 with a guidance embedder.
    pub fn v2_0_turbo() -> DitConfig {
        DitConfig {
            guidance_embed: true,
            ..DitConfig::v2_0()
        }
    }

    /// `hunyuan3d-dit-v2-mini`: 8 double and 16 single blocks.
    pub fn v2_mini() -> DitConfig {
        DitConfig {
            depth: 8,
            depth_single: 16,
            ..DitConfig::v2_0()
        }
    }

    /// The same code at a few thousand parameters (CPU tests).
    pub fn tiny() -> DitConfig {
        DitConfig {
            in_channels: 8,
            context_dim: 12,
            hidden: 32,
            heads: 4,
            depth: 2,
            depth_single: 2,
            mlp_ratio: 4.0,
            qkv_bias: true,
            guidance_embed: true,
            time_factor: 1000.0,
            latent_tokens: 24,
            context_tokens: 9,
        }
    }

    fn block(&self) -> DitBlockConfig {
        DitBlockConfig {
            dim: self.hidden,
            heads: self.heads,
            mlp_ratio: self.mlp_ratio,
            qkv_bias: self.qkv_bias,
        }
    }
}

/// Width of the sinusoidal time embedding fed to the time and guidance embedders.
pub const TIME_EMBED_DIM: i64 = 256;

/// The Hunyuan3D-DiT flow model.
#[derive(Debug, Clone)]
pub struct Hunyuan3dDit {
    pub config: DitConfig,
    pub latent_in: Linear,
    pub time_in: MlpEmbedder,
    pub cond_in: Linear,
    pub guidance_in: Option<MlpEmbedder>,
    pub double_blocks: Vec<DoubleStreamBlock>,
    pub single_blocks: Vec<SingleStreamBlock>,
    pub final_layer: FinalLayer,
}

impl Hunyuan3dDit {
    pub fn new(b: &mut Builder, name: &str, config: DitConfig) -> Hunyuan3dDit {
        let b = &mut b.scope(name);
        let c = config;
        let block = c.block();
        Hunyuan3dDit {
            config,
            latent_in: Linear::new(b, "latent_in", c.in_channels, c.hidden, true),
            time_in: MlpEmbedder::new(b, "time_in", TIME_EMBED_DIM, c.hidden),
            cond_in: Linear::new(b, "cond_in", c.context_dim, c.hidden, true),
            guidance_in: c
                .guidance_embed
                .then(|| MlpEmbedder::new(b, "guidance_in", TIME_EMBED_DIM, c.hidden)),
            double_blocks: (0..c.depth)
                .map(|i| DoubleStreamBlock::new(b, &format!("double_blocks.{i}"), &block))
                .collect(),
            single_blocks: (0..c.depth_single)
                .map(|i| SingleStreamBlock::new(b, &format!("single_blocks.{i}"), &block))
                .collect(),
            final_layer: FinalLayer::new(b, "final_layer", c.hidden, c.in_channels),
        }
    }

    fn embed_time(&self, w: &Weights, t: &Tensor) -> Tensor {
        timestep_embedding(
            t,
            TIME_EMBED_DIM,
            true,
            0.0,
            self.config.time_factor,
            10000.0,
        )
        .to_kind(w.kind())
    }

    /// One model call: `x` `[b, latents, in_channels]`, `t` `[b]` in [0, 1], `context`
    /// `[b, context_tokens, context_dim]`, `guidance` `[b]` when the model embeds it.
    pub fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        t: &Tensor,
        context: &Tensor,
        guidance: Option<&Tensor>,
        imp: AttentionImpl,
    ) -> Tensor {
        let mut latent = self.latent_in.forward(w, x);
        let mut vec = self.time_in.forward(w, &self.embed_time(w, t));
        if let Some(g_in) = &self.guidance_in {
            let g = guidance.expect("this model embeds the guidance scale: pass `guidance`");
            vec += g_in.forward(w, &self.embed_time(w, g));
        }
        let mut cond = self.cond_in.forward(w, context);
        for block in &self.double_blocks {
            (latent, cond) = block.forward(w, &latent, &cond, &vec, imp);
        }
        let n_cond = cond.size()[1];
        let n_latent = latent.size()[1];
        let mut h = Tensor::cat(&[cond, latent], 1);
        for block in &self.single_blocks {
            h = block.forward(w, &h, &vec, imp);
        }
        self.final_layer
            .forward(w, &h.narrow(1, n_cond, n_latent), &vec)
    }
}

/// Shape of the ShapeVAE decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeVaeConfig {
    pub num_latents: i64,
    pub embed_dim: i64,
    pub width: i64,
    pub heads: i64,
    pub layers: i64,
    pub num_freqs: i64,
    pub include_pi: bool,
    pub qkv_bias: bool,
    pub mlp_ratio: i64,
    /// Latents are divided by this before `post_kl`.
    pub scale_factor: f64,
    /// Half-side of the decoded box (`box_v`).
    pub box_v: f64,
}

impl ShapeVaeConfig {
    /// The v2-0 ShapeVAE.
    pub fn v2_0() -> ShapeVaeConfig {
        ShapeVaeConfig {
            num_latents: 3072,
            embed_dim: 64,
            width: 1024,
            heads: 16,
            layers: 16,
            num_freqs: 8,
            include_pi: false,
            qkv_bias: false,
            mlp_ratio: 4,
            scale_factor: 0.999_094_304_262_252_9,
            box_v: 1.01,
        }
    }

    pub fn tiny() -> ShapeVaeConfig {
        ShapeVaeConfig {
            num_latents: 16,
            embed_dim: 8,
            width: 32,
            heads: 4,
            layers: 2,
            num_freqs: 4,
            ..ShapeVaeConfig::v2_0()
        }
    }

    /// Width of the Fourier point embedding: `3·(2·num_freqs + 1)` (51 for 8 frequencies).
    pub fn fourier_dim(&self) -> i64 {
        3 * (2 * self.num_freqs + 1)
    }
}

/// `FourierEmbedder` (`logspace`, `include_input`): `[x, sin(x·f), cos(x·f)]` with
/// `f = 2^0 … 2^(n−1)` (times π if `include_pi`), per coordinate. `x`: `[…, 3]`.
pub fn fourier_embed(x: &Tensor, num_freqs: i64, include_pi: bool) -> Tensor {
    let pi = if include_pi {
        std::f64::consts::PI
    } else {
        1.0
    };
    let freqs = Tensor::arange(num_freqs, (Kind::Float, x.device())).exp2() * pi;
    let mut shape = x.size();
    let last = shape.pop().expect("points have coordinates");
    shape.push(last * num_freqs);
    let embed = (x.to_kind(Kind::Float).unsqueeze(-1) * freqs)
        .reshape(shape.as_slice())
        .to_kind(x.kind());
    Tensor::cat(&[x.shallow_clone(), embed.sin(), embed.cos()], -1)
}

/// The volume decoder: queries → one residual cross-attention block over the latents →
/// occupancy logit.
#[derive(Debug, Clone)]
pub struct GeoDecoder {
    pub num_freqs: i64,
    pub include_pi: bool,
    pub heads: i64,
    pub width: i64,
    pub query_proj: Linear,
    pub ln_1: LayerNorm,
    pub ln_2: LayerNorm,
    pub ln_3: LayerNorm,
    pub c_q: Linear,
    pub c_kv: Linear,
    pub qk_norm: QkNorm,
    pub c_proj: Linear,
    pub mlp: FeedForward,
    pub ln_post: LayerNorm,
    pub output_proj: Linear,
}

impl GeoDecoder {
    pub fn new(b: &mut Builder, name: &str, c: &ShapeVaeConfig) -> GeoDecoder {
        let b = &mut b.scope(name);
        let width = c.width;
        let ln = |b: &mut Builder, n: &str| LayerNorm::new(b, n, width, 1e-6, true);
        GeoDecoder {
            num_freqs: c.num_freqs,
            include_pi: c.include_pi,
            heads: c.heads,
            width,
            query_proj: Linear::new(b, "query_proj", c.fourier_dim(), width, true),
            ln_1: ln(b, "ln_1"),
            ln_2: ln(b, "ln_2"),
            ln_3: ln(b, "ln_3"),
            c_q: Linear::new(b, "attn.c_q", width, width, c.qkv_bias),
            c_kv: Linear::new(b, "attn.c_kv", width, 2 * width, c.qkv_bias),
            qk_norm: qk_norm(b, "attn", QkNormKind::Layer, width / c.heads, 1e-6)
                .expect("LayerNorm QK-norm"),
            c_proj: Linear::new(b, "attn.c_proj", width, width, true),
            mlp: FeedForward::new(b, "mlp", width, c.mlp_ratio * width, Activation::Gelu, true),
            ln_post: ln(b, "ln_post"),
            output_proj: Linear::new(b, "output_proj", width, 1, true),
        }
    }

    /// Occupancy logits `[b, m, 1]` for `points` `[b, m, 3]` given decoded `latents`
    /// `[b, n, width]`.
    pub fn forward(
        &self,
        w: &Weights,
        points: &Tensor,
        latents: &Tensor,
        imp: AttentionImpl,
    ) -> Tensor {
        let (b, m, _) = points.size3().expect("[batch, points, 3]");
        let n = latents.size()[1];
        let (heads, hd) = (self.heads, self.width / self.heads);
        let x = self
            .query_proj
            .forward(w, &fourier_embed(points, self.num_freqs, self.include_pi));
        let q = self
            .c_q
            .forward(w, &self.ln_1.forward(w, &x))
            .view([b, m, heads, hd])
            .transpose(1, 2);
        // c_kv is laid out per head as [k | v] (`kv.view(b, n, heads, -1).split(hd)`).
        let kv = self
            .c_kv
            .forward(w, &self.ln_2.forward(w, latents))
            .view([b, n, heads, 2 * hd])
            .transpose(1, 2);
        let (k, v) = (kv.narrow(3, 0, hd), kv.narrow(3, hd, hd));
        let (q, k) = apply_qk_norm(Some(&self.qk_norm), w, q, k);
        let attn = merge_heads(&attention(&q, &k, &v, imp, false));
        let x = x + self.c_proj.forward(w, &attn);
        let x = &x + self.mlp.forward(w, &self.ln_3.forward(w, &x));
        self.output_proj.forward(w, &self.ln_post.forward(w, &x))
    }
}

/// The `(resolution + 1)³` grid points in `[-box_v, box_v]³`, `[points, 3]`, x slowest
/// (`meshgrid(…, indexing="ij")`), on the host in fp32, as hy3dgen builds them with numpy.
pub fn dense_grid(resolution: i64, box_v: f64) -> Tensor {
    let axis = Tensor::linspace(-box_v, box_v, resolution + 1, (Kind::Float, Device::Cpu));
    let grids = Tensor::meshgrid_indexing(&[&axis, &axis, &axis], "ij");
    Tensor::stack(&grids, -1).reshape([-1, 3])
}

/// The grid as `VanillaVolumeDecoder` queries it: `torch.from_numpy(xyz).to(device, dtype)`
/// with the latents' device and dtype, a blocking copy that converts on the host and then
/// moves the whole grid, so the device holds `(r+1)³·3` values in the model dtype (fp16 in
/// the real pipeline) for the whole volume decode, and the fp32 original stays on the host.
pub fn query_grid(resolution: i64, box_v: f64, latents: &Tensor) -> Tensor {
    dense_grid(resolution, box_v)
        .to_kind(latents.kind())
        .to_device(latents.device())
}

/// ShapeVAE decoder: latent transformer and volume decoder.
#[derive(Debug, Clone)]
pub struct ShapeVae {
    pub config: ShapeVaeConfig,
    pub post_kl: Linear,
    pub blocks: Vec<Block>,
    pub geo_decoder: GeoDecoder,
}

impl ShapeVae {
    pub fn new(b: &mut Builder, name: &str, config: ShapeVaeConfig) -> ShapeVae {
        let b = &mut b.scope(name);
        let c = config;
        let block = BlockConfig {
            dim: c.width,
            heads: c.heads,
            mlp_hidden: c.mlp_ratio * c.width,
            activation: Activation::Gelu,
            qkv_bias: c.qkv_bias,
            qk_norm: QkNormKind::Layer,
            layer_scale: false,
            eps: 1e-6,
        };
        ShapeVae {
            config,
            post_kl: Linear::new(b, "post_kl", c.embed_dim, c.width, true),
            blocks: (0..c.layers)
                .map(|i| Block::new(b, &format!("transformer.resblocks.{i}"), &block))
                .collect(),
            geo_decoder: GeoDecoder::new(b, "geo_decoder", &c),
        }
    }

    /// `latents / scale_factor → post_kl → transformer`: `[b, n, embed_dim]` → `[b, n, width]`.
    pub fn decode_latents(&self, w: &Weights, z: &Tensor, imp: AttentionImpl) -> Tensor {
        let mut x = self.post_kl.forward(w, &(z / self.config.scale_factor));
        for block in &self.blocks {
            x = block.forward(w, &x, imp);
        }
        x
    }

    /// Occupancy logits for `points` (`[m, 3]`, shared by the batch), `chunk` points at a
    /// time: `[b, m]` in the latents' dtype (each chunk's logits kept as the geometry decoder
    /// returns them, then concatenated, as hy3dgen does).
    pub fn query_points(
        &self,
        w: &Weights,
        latents: &Tensor,
        points: &Tensor,
        chunk: i64,
        imp: AttentionImpl,
    ) -> Tensor {
        assert!(chunk > 0, "num_chunks must be positive");
        let b = latents.size()[0];
        let m = points.size()[0];
        let points = points.to_kind(latents.kind());
        let parts: Vec<Tensor> = (0..m)
            .step_by(chunk as usize)
            .map(|start| {
                let len = chunk.min(m - start);
                let p = points
                    .narrow(0, start, len)
                    .unsqueeze(0)
                    .expand([b, len, 3], false);
                self.geo_decoder
                    .forward(w, &p, latents, imp)
                    .squeeze_dim(-1)
            })
            .collect();
        Tensor::cat(&parts, 1)
    }

    /// `VanillaVolumeDecoder`: logits on the `(octree_resolution + 1)³` grid ([`query_grid`]),
    /// decoded `num_chunks` points at a time, concatenated, then `.float()`:
    /// `[b, r+1, r+1, r+1]` in fp32.
    pub fn decode_grid(
        &self,
        w: &Weights,
        latents: &Tensor,
        octree_resolution: i64,
        num_chunks: i64,
        imp: AttentionImpl,
    ) -> Tensor {
        let grid = query_grid(octree_resolution, self.config.box_v, latents);
        let side = octree_resolution + 1;
        let b = latents.size()[0];
        self.query_points(w, latents, &grid, num_chunks, imp)
            .view([b, side, side, side])
            .to_kind(Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{assert_offload_transparent, count, max_diff, within};
    use crate::models::SliceSize;

    #[test]
    fn full_size_parameter_counts() {
        let dit = count(|b| Hunyuan3dDit::new(b, "dit", DitConfig::v2_0()));
        assert!(within(dit, 1.113e9), "DiT v2-0: {dit}");
        let mini = count(|b| Hunyuan3dDit::new(b, "dit", DitConfig::v2_mini()));
        assert!(within(mini, 0.559e9), "DiT v2-mini: {mini}");
        let turbo = count(|b| Hunyuan3dDit::new(b, "dit", DitConfig::v2_0_turbo()));
        assert_eq!(
            turbo - dit,
            256 * 1024 + 1024 + 1024 * 1024 + 1024,
            "guidance embedder"
        );
        let mut b = Builder::counting();
        let vae = ShapeVae::new(&mut b, "vae", ShapeVaeConfig::v2_0());
        let w = b.finish();
        let geo: i64 = w
            .shapes()
            .filter(|(n, _)| n.starts_with("vae.geo_decoder."))
            .map(|(_, s)| s.iter().product::<i64>())
            .sum();
        assert!(
            within(w.numel() - geo, 201.6e6),
            "latent transformer: {}",
            w.numel() - geo
        );
        assert!(within(geo, 12.65e6), "geo decoder: {geo}");
        assert_eq!(vae.config.fourier_dim(), 51);
    }

    fn tiny_dit() -> (Hunyuan3dDit, Weights) {
        tch::manual_seed(0);
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let dit = Hunyuan3dDit::new(&mut b, "dit", DitConfig::tiny());
        (dit, b.finish())
    }

    fn dit_inputs(c: &DitConfig) -> (Tensor, Tensor, Tensor, Tensor) {
        let opts = (Kind::Float, Device::Cpu);
        (
            Tensor::randn([2, c.latent_tokens, c.in_channels], opts),
            Tensor::from_slice(&[0.3f32, 0.7]),
            Tensor::randn([2, c.context_tokens, c.context_dim], opts),
            Tensor::from_slice(&[5.0f32, 5.0]),
        )
    }

    #[test]
    fn dit_shapes_attention_implementations_and_offload() {
        let (dit, mut w) = tiny_dit();
        let c = dit.config;
        let (x, t, ctx, g) = dit_inputs(&c);
        let run = |w: &Weights, imp| dit.forward(w, &x, &t, &ctx, Some(&g), imp);
        let reference = run(&w, AttentionImpl::Sdpa);
        assert_eq!(reference.size(), vec![2, c.latent_tokens, c.in_channels]);
        assert!(reference.isfinite().all().int64_value(&[]) == 1);
        for imp in [
            AttentionImpl::Math,
            AttentionImpl::Sliced(SliceSize::Auto),
            AttentionImpl::Sliced(SliceSize::Fixed(3)),
        ] {
            let err = max_diff(&run(&w, imp), &reference);
            assert!(err < 1e-4, "{imp}: {err}");
        }
        assert_offload_transparent(&mut w, |w| run(w, AttentionImpl::Sdpa), &reference);
    }

    #[test]
    #[should_panic(expected = "guidance")]
    fn guidance_models_require_the_scale() {
        let (dit, w) = tiny_dit();
        let (x, t, ctx, _) = dit_inputs(&dit.config);
        let _ = dit.forward(&w, &x, &t, &ctx, None, AttentionImpl::Sdpa);
    }

    #[test]
    fn fourier_embedding_layout() {
        let x = Tensor::from_slice(&[0.5f32, -1.0, 0.25]).view([1, 3]);
        let e = fourier_embed(&x, 2, false);
        assert_eq!(e.size(), vec![1, 15]);
        // [x (3), sin(x·1), sin(x·2) per coordinate (6), cos … (6)]
        let got = e.get(0).get(4).double_value(&[]);
        assert!((got - (0.5f64 * 2.0).sin()).abs() < 1e-6, "{got}");
    }

    #[test]
    fn vae_chunked_volume_decode_equals_unchunked() {
        tch::manual_seed(2);
        let c = ShapeVaeConfig::tiny();
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let vae = ShapeVae::new(&mut b, "vae", c);
        let mut w = b.finish();
        let z = Tensor::randn([2, c.num_latents, c.embed_dim], (Kind::Float, Device::Cpu));
        let latents = vae.decode_latents(&w, &z, AttentionImpl::Sdpa);
        assert_eq!(latents.size(), vec![2, c.num_latents, c.width]);
        let r = 6; // 343 points
        let whole = vae.decode_grid(&w, &latents, r, 7 * 7 * 7, AttentionImpl::Sdpa);
        assert_eq!(whole.size(), vec![2, 7, 7, 7]);
        assert_eq!(whole.kind(), Kind::Float);
        for chunk in [50, 64, 1] {
            let chunked = vae.decode_grid(&w, &latents, r, chunk, AttentionImpl::Sdpa);
            let err = max_diff(&chunked, &whole);
            assert!(err < 1e-5, "chunks of {chunk}: {err}");
        }
        // Grid corners are at ±box_v, x slowest; built on the host in fp32, queried in the
        // latents' dtype and device.
        let grid = dense_grid(r, c.box_v);
        assert_eq!(grid.size(), vec![343, 3]);
        assert_eq!((grid.kind(), grid.device()), (Kind::Float, Device::Cpu));
        let half = query_grid(r, c.box_v, &latents.to_kind(Kind::Half));
        assert_eq!((half.kind(), half.size()), (Kind::Half, vec![343, 3]));
        assert!((grid.get(0).get(0).double_value(&[]) + 1.01).abs() < 1e-6);
        assert!((grid.get(342).get(2).double_value(&[]) - 1.01).abs() < 1e-6);
        assert!(
            (grid.get(1).get(2).double_value(&[]) - grid.get(0).get(2).double_value(&[])) > 0.0
        );
        // Sequential offload decodes the same grid.
        w.offload_sequential(Device::Cpu);
        let offloaded = vae.decode_grid(&w, &latents, r, 50, AttentionImpl::Sdpa);
        assert!(max_diff(&offloaded, &whole) < 1e-5);
    }
}
