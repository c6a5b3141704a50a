//! SAM 3D Objects: condition embedders, the two flow transformers and the decoders, in the
//! shapes of the released configs (TRELLIS-derived modules).
//!
//! - [`ConditionEmbedder`]: DINOv2 ViT-L/14 with registers, two copies (RGB and mask), each
//!   run on a cropped and a full view resized to `input_size` (770 for stage 1, 1036 for stage
//!   2); stage 1 adds a [`PointPatchEmbed`] of the pointmap. Each embedder's tokens pass a
//!   LayerNorm + Llama-3 SwiGLU projection (hidden `int(2·4096/3)` rounded up to 256 = 2816) to
//!   1024, plus a learned embedding of the view (cropped / full). Stage 1 keeps CLS + patches
//!   (3026 tokens per view at 770: 14,152 in all); stage 2 keeps all pre-norm tokens after a
//!   plain LayerNorm (5481 per view at 1036: 21,924).
//! - [`SsFlow`] (stage 1, `SparseStructureFlowTdfyWrapper`): a mixture-of-transformers with
//!   a shape stream (16³ = 4096 tokens × 8 channels, fixed sinusoidal position embedding) and a
//!   pose stream (rotation 6, translation 3, scale 3, translation scale 1: 4 tokens with learned
//!   position embeddings); 24 blocks 1024 wide, 16 heads; per block one adaLN (1024 → 6144)
//!   shared by both streams, and per stream the norms, fused qkv with multi-head RMS QK-norm,
//!   output projection, cross-attention over the context and MLP. The shape stream attends to
//!   itself only; the pose stream attends to all 4100 tokens. Shortcut model: the step size
//!   has its own timestep embedder.
//! - [`SlatFlow`] (stage 2, `SLatFlowModel`): **a dense approximation of the sparse
//!   transformer**. The real model works on the N active voxels of a 64³ grid: sparse-conv
//!   residual blocks at 128 channels, a sparse 2× downsample to the N′ occupied 32³ cells, 24
//!   cross-attention blocks (1024 wide, 16 heads) over those N′ tokens, then a sparse upsample
//!   with skip connections. Here voxels and cells are dense token sequences of the documented
//!   counts (N and N′ are arguments); a sparse 3×3×3 convolution is stood in for by its
//!   gather-GEMM-scatter form: 27 GEMMs, one per kernel offset, each over the token sequence
//!   shifted by that offset (the same weights, FLOPs and transient memory as spconv's native
//!   algorithm, without the neighbour search); downsampling averages groups of tokens and
//!   upsampling repeats them.
//! - [`SsDecoder`]: the dense conv3d structure decoder: latent 8×16³ → channels
//!   [512, 128, 32], 2 residual blocks per stage, 2 middle blocks, channel LayerNorms, conv
//!   + 3-D pixel-shuffle upsampling → 1×64³ occupancy logits.
//! - [`SlatDecoder`]: stand-ins of the Gaussian and mesh decoders (12 blocks 768 wide, 12
//!   heads, Swin attention in 8³ windows). The sparse 3-D windows are approximated by
//!   attention within consecutive runs of `window_tokens` tokens, shifted by half a window
//!   on odd blocks. The mesh decoder's two sparse subdivision blocks (768 → 192 → 96, each
//!   voxel split into 8) use the same convolution stand-in.

use super::attention::{attention, AttentionImpl, QkNormKind};
use super::dit::{modulate, MlpEmbedder};
use super::embeddings::timestep_embedding;
use super::feed_forward::{Activation, FeedForward};
use super::layers::{Conv3d, LayerNorm, Linear};
use super::vit::{merge_heads, Block, BlockConfig, Vit, VitConfig};
use super::weights::{Builder, Init, Param, Weights};
use tch::{Device, Kind, Tensor};

/// LayerNorm computed in fp32 (TRELLIS' `LayerNorm32`: norms stay fp32 in fp16 models).
fn layer_norm32(w: &Weights, ln: &LayerNorm, x: &Tensor) -> Tensor {
    let weight = ln.weight.map(|p| w.get(p).to_kind(Kind::Float));
    let bias = ln.bias.map(|p| w.get(p).to_kind(Kind::Float));
    x.to_kind(Kind::Float)
        .layer_norm([ln.dim], weight.as_ref(), bias.as_ref(), ln.eps, true)
        .to_kind(x.kind())
}

/// GroupNorm over the channels of a token sequence `[b, n, C]`, in fp32.
fn group_norm_tokens(w: &Weights, gn: &GroupNormParams, x: &Tensor) -> Tensor {
    x.transpose(1, 2)
        .to_kind(Kind::Float)
        .group_norm(
            gn.groups,
            Some(&w.get(gn.weight).to_kind(Kind::Float)),
            Some(&w.get(gn.bias).to_kind(Kind::Float)),
            1e-5,
            true,
        )
        .to_kind(x.kind())
        .transpose(1, 2)
}

/// Affine GroupNorm parameters (applied by [`group_norm_tokens`]).
#[derive(Debug, Clone)]
pub struct GroupNormParams {
    pub groups: i64,
    pub weight: Param,
    pub bias: Param,
}

impl GroupNormParams {
    fn new(b: &mut Builder, name: &str, groups: i64, channels: i64) -> GroupNormParams {
        GroupNormParams {
            groups,
            weight: b.param(&format!("{name}.weight"), &[channels], Init::Ones),
            bias: b.param(&format!("{name}.bias"), &[channels], Init::Zeros),
        }
    }
}

/// TRELLIS' absolute position embedding: per coordinate `[sin(x·f), cos(x·f)]` with
/// `f = 10000^(-j/F)`, `F = channels / axes / 2`, zero-padded to `channels`. `coords`:
/// `[n, axes]`; returns `[n, channels]` in fp32.
pub fn sincos_position_embedding(coords: &Tensor, channels: i64) -> Tensor {
    let (n, axes) = coords.size2().expect("[tokens, axes]");
    let freq_dim = channels / axes / 2;
    let device = coords.device();
    let freqs = (Tensor::arange(freq_dim, (Kind::Float, device)) / freq_dim as f64
        * -(10000f64.ln()))
    .exp();
    let out = coords.to_kind(Kind::Float).reshape([-1, 1]) * freqs.unsqueeze(0);
    let embed = Tensor::cat(&[out.sin(), out.cos()], -1).reshape([n, axes * 2 * freq_dim]);
    let missing = channels - axes * 2 * freq_dim;
    if missing > 0 {
        embed.constant_pad_nd([0, missing])
    } else {
        embed
    }
}

/// Coordinates of the first `n` cells of a `side`³ grid in raster order: `[n, 3]`.
pub fn grid_coords(n: i64, side: i64, device: Device) -> Tensor {
    let i = Tensor::arange(n, (Kind::Int64, device));
    Tensor::stack(
        &[
            i.divide_scalar_mode(side * side, "floor"),
            i.divide_scalar_mode(side, "floor").remainder(side),
            i.remainder(side),
        ],
        1,
    )
}

/// TRELLIS' `MultiHeadRMSNorm`: `normalize(x) · γ · sqrt(head_dim)`, γ `[heads, head_dim]`.
#[derive(Debug, Clone)]
pub struct MultiHeadRmsNorm {
    pub gamma: Param,
    pub scale: f64,
}

impl MultiHeadRmsNorm {
    fn new(b: &mut Builder, name: &str, heads: i64, head_dim: i64) -> MultiHeadRmsNorm {
        MultiHeadRmsNorm {
            gamma: b.param(&format!("{name}.gamma"), &[heads, head_dim], Init::Ones),
            scale: (head_dim as f64).sqrt(),
        }
    }

    /// `x`: `[batch, heads, tokens, head_dim]`.
    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let norm = x
            .to_kind(Kind::Float)
            .square()
            .sum_dim_intlist(-1, true, Kind::Float)
            .sqrt()
            .clamp_min(1e-12)
            .to_kind(x.kind());
        x / norm * w.get(self.gamma).unsqueeze(1) * self.scale
    }
}

/// TRELLIS self-attention: fused `to_qkv` (bias), optional multi-head RMS QK-norm, `to_out`.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    pub heads: i64,
    pub head_dim: i64,
    pub to_qkv: Linear,
    pub qk_norm: Option<(MultiHeadRmsNorm, MultiHeadRmsNorm)>,
    pub to_out: Linear,
}

impl SelfAttention {
    fn new(b: &mut Builder, name: &str, dim: i64, heads: i64, qk_rms_norm: bool) -> SelfAttention {
        let head_dim = dim / heads;
        SelfAttention {
            heads,
            head_dim,
            to_qkv: Linear::new(b, &format!("{name}.to_qkv"), dim, 3 * dim, true),
            qk_norm: qk_rms_norm.then(|| {
                (
                    MultiHeadRmsNorm::new(b, &format!("{name}.q_rms_norm"), heads, head_dim),
                    MultiHeadRmsNorm::new(b, &format!("{name}.k_rms_norm"), heads, head_dim),
                )
            }),
            to_out: Linear::new(b, &format!("{name}.to_out"), dim, dim, true),
        }
    }

    /// QK-normed `q, k, v`, each `[batch, heads, tokens, head_dim]`.
    fn qkv(&self, w: &Weights, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, n, _) = x.size3().expect("[batch, tokens, dim]");
        let qkv = self
            .to_qkv
            .forward(w, x)
            .view([b, n, 3, self.heads, self.head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        match &self.qk_norm {
            Some((nq, nk)) => (nq.forward(w, &q), nk.forward(w, &k), v),
            None => (q, k, v),
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let (q, k, v) = self.qkv(w, x);
        self.to_out
            .forward(w, &merge_heads(&attention(&q, &k, &v, imp, false)))
    }

    /// Attention within consecutive windows of `window` tokens after rolling the sequence by
    /// `shift` (zero tokens pad the last window and are dropped after).
    fn forward_windowed(
        &self,
        w: &Weights,
        x: &Tensor,
        window: i64,
        shift: i64,
        imp: AttentionImpl,
    ) -> Tensor {
        let (b, n, c) = x.size3().expect("[batch, tokens, dim]");
        let x = if shift > 0 {
            x.roll([-shift], [1])
        } else {
            x.shallow_clone()
        };
        let pad = (window - n % window) % window;
        let x = if pad > 0 {
            let zeros = Tensor::zeros([b, pad, c], (x.kind(), x.device()));
            Tensor::cat(&[x, zeros], 1)
        } else {
            x
        };
        let windows = (n + pad) / window;
        let h = self
            .forward(w, &x.reshape([b * windows, window, c]), imp)
            .reshape([b, n + pad, c])
            .narrow(1, 0, n);
        if shift > 0 {
            h.roll([shift], [1])
        } else {
            h
        }
    }
}

/// TRELLIS cross-attention: `to_q` on the tokens, `to_kv` on the context (laid out
/// `[2, heads, head_dim]`), `to_out`; biases everywhere, no QK-norm.
#[derive(Debug, Clone)]
pub struct CrossAttention {
    pub heads: i64,
    pub head_dim: i64,
    pub to_q: Linear,
    pub to_kv: Linear,
    pub to_out: Linear,
}

impl CrossAttention {
    fn new(b: &mut Builder, name: &str, dim: i64, ctx_dim: i64, heads: i64) -> CrossAttention {
        CrossAttention {
            heads,
            head_dim: dim / heads,
            to_q: Linear::new(b, &format!("{name}.to_q"), dim, dim, true),
            to_kv: Linear::new(b, &format!("{name}.to_kv"), ctx_dim, 2 * dim, true),
            to_out: Linear::new(b, &format!("{name}.to_out"), dim, dim, true),
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor, ctx: &Tensor, imp: AttentionImpl) -> Tensor {
        let (b, n, _) = x.size3().expect("[batch, tokens, dim]");
        let m = ctx.size()[1];
        let q = self
            .to_q
            .forward(w, x)
            .view([b, n, self.heads, self.head_dim])
            .transpose(1, 2);
        let kv = self
            .to_kv
            .forward(w, ctx)
            .view([b, m, 2, self.heads, self.head_dim])
            .permute([2, 0, 3, 1, 4]);
        self.to_out.forward(
            w,
            &merge_heads(&attention(&q, &kv.get(0), &kv.get(1), imp, false)),
        )
    }
}

/// The per-stream layers of a modulated cross-attention block: `norm1` (no affine) → adaLN →
/// self-attention → gate; `norm2` (affine) → cross-attention; `norm3` (no affine) → adaLN →
/// MLP (tanh GELU) → gate.
#[derive(Debug, Clone)]
pub struct StreamLayers {
    pub norm1: LayerNorm,
    pub self_attn: SelfAttention,
    pub norm2: LayerNorm,
    pub cross_attn: CrossAttention,
    pub norm3: LayerNorm,
    pub mlp: FeedForward,
}

/// Width, heads and MLP ratio of the flow transformers' blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowBlockConfig {
    pub dim: i64,
    pub cond_dim: i64,
    pub heads: i64,
    pub mlp_ratio: i64,
    pub qk_rms_norm: bool,
}

impl StreamLayers {
    fn new(b: &mut Builder, name: &str, c: &FlowBlockConfig) -> StreamLayers {
        StreamLayers {
            norm1: LayerNorm::new(b, &format!("{name}.norm1"), c.dim, 1e-6, false),
            self_attn: SelfAttention::new(
                b,
                &format!("{name}.self_attn"),
                c.dim,
                c.heads,
                c.qk_rms_norm,
            ),
            norm2: LayerNorm::new(b, &format!("{name}.norm2"), c.dim, 1e-6, true),
            cross_attn: CrossAttention::new(
                b,
                &format!("{name}.cross_attn"),
                c.dim,
                c.cond_dim,
                c.heads,
            ),
            norm3: LayerNorm::new(b, &format!("{name}.norm3"), c.dim, 1e-6, false),
            mlp: FeedForward::new(
                b,
                &format!("{name}.mlp"),
                c.dim,
                c.mlp_ratio * c.dim,
                Activation::GeluTanh,
                true,
            ),
        }
    }

    /// `norm1` + adaLN, then `q, k, v` of the self-attention.
    fn pre_attention(&self, w: &Weights, x: &Tensor, m: &[Tensor]) -> (Tensor, Tensor, Tensor) {
        let h = modulate(&layer_norm32(w, &self.norm1, x), &m[0], &m[1]);
        self.self_attn.qkv(w, &h)
    }

    /// Gated self-attention residual, cross-attention and gated MLP.
    fn post_attention(
        &self,
        w: &Weights,
        x: &Tensor,
        attn: &Tensor,
        m: &[Tensor],
        ctx: &Tensor,
        imp: AttentionImpl,
    ) -> Tensor {
        let x = x + self.self_attn.to_out.forward(w, &merge_heads(attn)) * &m[2];
        let h = self
            .cross_attn
            .forward(w, &layer_norm32(w, &self.norm2, &x), ctx, imp);
        let x = x + h;
        let h = modulate(&layer_norm32(w, &self.norm3, &x), &m[3], &m[4]);
        &x + self.mlp.forward(w, &h) * &m[5]
    }
}

/// adaLN: `Linear(dim → 6·dim)` on `SiLU(t_emb)` → (shift, scale, gate) for attention, then MLP,
/// each `[b, 1, dim]`.
fn ada_ln(w: &Weights, lin: &Linear, t_emb: &Tensor) -> Vec<Tensor> {
    lin.forward(w, &t_emb.silu()).unsqueeze(1).chunk(6, -1)
}

/// A modulated transformer cross block (`ModulatedTransformerCrossBlock`).
#[derive(Debug, Clone)]
pub struct CrossBlock {
    pub ada_ln: Linear,
    pub layers: StreamLayers,
}

impl CrossBlock {
    fn new(b: &mut Builder, name: &str, c: &FlowBlockConfig) -> CrossBlock {
        CrossBlock {
            ada_ln: Linear::new(
                b,
                &format!("{name}.adaLN_modulation"),
                c.dim,
                6 * c.dim,
                true,
            ),
            layers: StreamLayers::new(b, name, c),
        }
    }

    fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        t_emb: &Tensor,
        ctx: &Tensor,
        imp: AttentionImpl,
    ) -> Tensor {
        let m = ada_ln(w, &self.ada_ln, t_emb);
        let (q, k, v) = self.layers.pre_attention(w, x, &m);
        let attn = attention(&q, &k, &v, imp, false);
        self.layers.post_attention(w, x, &attn, &m, ctx, imp)
    }
}

/// A mixture-of-transformers block (`MOTModulatedTransformerCrossBlock`) with the shape and
/// pose streams.
#[derive(Debug, Clone)]
pub struct MotBlock {
    pub ada_ln: Linear,
    pub shape: StreamLayers,
    pub pose: StreamLayers,
}

impl MotBlock {
    fn new(b: &mut Builder, name: &str, c: &FlowBlockConfig) -> MotBlock {
        MotBlock {
            ada_ln: Linear::new(
                b,
                &format!("{name}.adaLN_modulation"),
                c.dim,
                6 * c.dim,
                true,
            ),
            shape: StreamLayers::new(b, &format!("{name}.shape"), c),
            pose: StreamLayers::new(b, &format!("{name}.pose"), c),
        }
    }

    fn forward(
        &self,
        w: &Weights,
        shape: &Tensor,
        pose: &Tensor,
        t_emb: &Tensor,
        ctx: &Tensor,
        imp: AttentionImpl,
    ) -> (Tensor, Tensor) {
        let m = ada_ln(w, &self.ada_ln, t_emb);
        let (sq, sk, sv) = self.shape.pre_attention(w, shape, &m);
        let (pq, pk, pv) = self.pose.pre_attention(w, pose, &m);
        // The shape stream is protected: it attends to itself only. Pose queries see the
        // pose keys followed by the shape keys.
        let shape_attn = attention(&sq, &sk, &sv, imp, false);
        let pose_attn = attention(
            &pq,
            &Tensor::cat(&[&pk, &sk], 2),
            &Tensor::cat(&[&pv, &sv], 2),
            imp,
            false,
        );
        (
            self.shape
                .post_attention(w, shape, &shape_attn, &m, ctx, imp),
            self.pose.post_attention(w, pose, &pose_attn, &m, ctx, imp),
        )
    }
}

/// TRELLIS timestep embedding: sinusoid (`[cos, sin]`, max period 10⁴) of the model time,
/// then `Linear(256 → dim) → SiLU → Linear(dim → dim)`.
fn embed_time(w: &Weights, embedder: &MlpEmbedder, t: &Tensor) -> Tensor {
    embedder.forward(
        w,
        &timestep_embedding(t, 256, true, 0.0, 1.0, 10000.0).to_kind(w.kind()),
    )
}

/// One modality's input/output projections (`Latent`): `Linear(c → dim)` + position
/// embedding in; `LayerNorm` (no affine) + `Linear(dim → c)` out.
#[derive(Debug, Clone)]
pub struct LatentMapping {
    pub channels: i64,
    pub input_layer: Linear,
    pub out_layer: Linear,
    /// Learned for the one-token pose latents; the shape latent's is a fixed sinusoid.
    pub pos_emb: Option<Param>,
}

impl LatentMapping {
    fn new(
        b: &mut Builder,
        name: &str,
        channels: i64,
        dim: i64,
        learned_pos: bool,
    ) -> LatentMapping {
        LatentMapping {
            channels,
            input_layer: Linear::new(b, &format!("{name}.input_layer"), channels, dim, true),
            out_layer: Linear::new(b, &format!("{name}.out_layer"), dim, channels, true),
            pos_emb: learned_pos
                .then(|| b.param(&format!("{name}.pos_emb"), &[1, dim], Init::Normal(1.0))),
        }
    }

    fn to_output(&self, w: &Weights, h: &Tensor) -> Tensor {
        let dim = *h.size().last().expect("channels");
        let h = h
            .to_kind(Kind::Float)
            .layer_norm([dim], None::<Tensor>, None::<Tensor>, 1e-5, true)
            .to_kind(h.kind());
        self.out_layer.forward(w, &h)
    }
}

/// Shape of the stage-1 (sparse structure) flow.
#[derive(Debug, Clone, PartialEq)]
pub struct SsFlowConfig {
    /// Side of the shape latent grid (16 → 4096 tokens).
    pub resolution: i64,
    pub shape_channels: i64,
    /// Channels of the one-token pose latents: 6-D rotation, translation, scale, translation
    /// scale (they share one stream).
    pub pose_channels: Vec<i64>,
    pub block: FlowBlockConfig,
    pub blocks: i64,
    /// The shortcut model embeds the step size too.
    pub shortcut: bool,
    /// Model time = `time_scale · t`.
    pub time_scale: f64,
}

impl SsFlowConfig {
    /// `ss_generator`: 0.96 B.
    pub fn sam3d() -> SsFlowConfig {
        SsFlowConfig {
            resolution: 16,
            shape_channels: 8,
            pose_channels: vec![6, 3, 3, 1],
            block: FlowBlockConfig {
                dim: 1024,
                cond_dim: 1024,
                heads: 16,
                mlp_ratio: 4,
                qk_rms_norm: true,
            },
            blocks: 24,
            shortcut: true,
            time_scale: 1000.0,
        }
    }

    pub fn tiny() -> SsFlowConfig {
        SsFlowConfig {
            resolution: 3,
            block: FlowBlockConfig {
                dim: 32,
                cond_dim: 16,
                heads: 4,
                mlp_ratio: 4,
                qk_rms_norm: true,
            },
            blocks: 2,
            ..SsFlowConfig::sam3d()
        }
    }

    pub fn shape_tokens(&self) -> i64 {
        self.resolution.pow(3)
    }
}

/// Stage-1 latents (or velocities).
#[derive(Debug)]
pub struct SsLatents {
    /// `[b, 4096, 8]`.
    pub shape: Tensor,
    /// One `[b, 1, c_i]` per pose latent.
    pub pose: Vec<Tensor>,
}

/// Stage-1 flow: shape (16³ × 8) and pose (4 tokens) streams.
#[derive(Debug, Clone)]
pub struct SsFlow {
    pub config: SsFlowConfig,
    pub t_embedder: MlpEmbedder,
    pub d_embedder: Option<MlpEmbedder>,
    pub shape: LatentMapping,
    pub pose: Vec<LatentMapping>,
    pub blocks: Vec<MotBlock>,
}

impl SsFlow {
    pub fn new(b: &mut Builder, name: &str, config: SsFlowConfig) -> SsFlow {
        let c = &config;
        let dim = c.block.dim;
        SsFlow {
            t_embedder: MlpEmbedder::new(b, &format!("{name}.t_embedder"), 256, dim),
            d_embedder: c
                .shortcut
                .then(|| MlpEmbedder::new(b, &format!("{name}.d_embedder"), 256, dim)),
            shape: LatentMapping::new(
                b,
                &format!("{name}.latent_mapping.shape"),
                c.shape_channels,
                dim,
                false,
            ),
            pose: c
                .pose_channels
                .iter()
                .enumerate()
                .map(|(i, &ch)| {
                    LatentMapping::new(b, &format!("{name}.latent_mapping.pose{i}"), ch, dim, true)
                })
                .collect(),
            blocks: (0..c.blocks)
                .map(|i| MotBlock::new(b, &format!("{name}.blocks.{i}"), &c.block))
                .collect(),
            config,
        }
    }

    /// One backbone pass. `t` (and the shortcut step `d`): `[b]` in [0, 1]; `cond`:
    /// `[b, tokens, cond_dim]`. Returns the velocities in the latents' layout.
    pub fn forward(
        &self,
        w: &Weights,
        latents: &SsLatents,
        t: &Tensor,
        d: Option<&Tensor>,
        cond: &Tensor,
        imp: AttentionImpl,
    ) -> SsLatents {
        let (shape, pose) = (&latents.shape, &latents.pose);
        let c = &self.config;
        assert_eq!(pose.len(), self.pose.len(), "one tensor per pose latent");
        let mut t_emb = embed_time(w, &self.t_embedder, &(t * c.time_scale));
        if let (Some(e), Some(d)) = (&self.d_embedder, d) {
            t_emb += embed_time(w, e, &(d * c.time_scale));
        }
        let coords = grid_coords(c.shape_tokens(), c.resolution, shape.device());
        let pos = sincos_position_embedding(&coords, c.block.dim).to_kind(w.kind());
        let mut hs = self.shape.input_layer.forward(w, shape) + pos;
        let pose_in: Vec<Tensor> = self
            .pose
            .iter()
            .zip(pose)
            .map(|(m, x)| m.input_layer.forward(w, x) + w.get(m.pos_emb.expect("learned")))
            .collect();
        let mut hp = Tensor::cat(&pose_in, 1);
        for block in &self.blocks {
            (hs, hp) = block.forward(w, &hs, &hp, &t_emb, cond, imp);
        }
        let pose_out = self
            .pose
            .iter()
            .enumerate()
            .map(|(i, m)| m.to_output(w, &hp.narrow(1, i as i64, 1)))
            .collect();
        SsLatents {
            shape: self.shape.to_output(w, &hs),
            pose: pose_out,
        }
    }
}

/// Dense stand-in of a sparse 3×3×3 convolution over a token sequence: one GEMM per kernel
/// offset, offset `o` reading the sequence shifted by `o − 13` tokens (zeros past the ends).
/// Weight `[out, 3, 3, 3, in]` as spconv stores it.
#[derive(Debug, Clone)]
pub struct SparseConvStandIn {
    pub weight: Param,
    pub bias: Param,
    pub in_channels: i64,
    pub out_channels: i64,
}

impl SparseConvStandIn {
    fn new(b: &mut Builder, name: &str, in_channels: i64, out_channels: i64) -> SparseConvStandIn {
        SparseConvStandIn {
            weight: b.param(
                &format!("{name}.weight"),
                &[out_channels, 3, 3, 3, in_channels],
                Init::FanIn(27 * in_channels),
            ),
            bias: b.param(&format!("{name}.bias"), &[out_channels], Init::Zeros),
            in_channels,
            out_channels,
        }
    }

    /// `x`: `[b, n, in]` → `[b, n, out]`.
    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let n = x.size()[1];
        let weight = w
            .get(self.weight)
            .reshape([self.out_channels, 27, self.in_channels]);
        let padded = x.constant_pad_nd([0, 0, 13, 13]);
        let mut acc = x.linear(&weight.select(1, 13), Some(&w.get(self.bias)));
        for o in (0..27).filter(|&o| o != 13) {
            acc += padded
                .narrow(1, o, n)
                .linear(&weight.select(1, o), None::<Tensor>);
        }
        acc
    }
}

/// Token-count change of a sparse resampling block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    None,
    /// Sparse 2× downsample: voxels → occupied coarse cells (mean of each group of tokens).
    Down,
    /// Sparse 2× upsample: coarse cells → their voxels (each voxel repeats its cell's token).
    Up,
}

/// Resamples `x` (`[b, n, c]`) to `tokens` tokens.
fn resample_tokens(x: &Tensor, mode: Resample, tokens: i64) -> Tensor {
    let n = x.size()[1];
    match mode {
        Resample::None => x.shallow_clone(),
        Resample::Down => x
            .transpose(1, 2)
            .adaptive_avg_pool1d([tokens])
            .transpose(1, 2),
        Resample::Up => {
            let idx = (Tensor::arange(tokens, (Kind::Int64, x.device())) * n)
                .divide_scalar_mode(tokens, "floor");
            x.index_select(1, &idx)
        }
    }
}

/// Stand-in of `SparseResBlock3d`: LN → SiLU → conv → LN (no affine) · (1 + scale) + shift
/// (from the time embedding) → SiLU → conv, plus a linear skip when the width changes.
#[derive(Debug, Clone)]
pub struct SparseResBlock {
    pub norm1: LayerNorm,
    pub conv1: SparseConvStandIn,
    pub norm2: LayerNorm,
    pub conv2: SparseConvStandIn,
    pub emb_layers: Linear,
    pub skip: Option<Linear>,
    pub resample: Resample,
}

impl SparseResBlock {
    fn new(
        b: &mut Builder,
        name: &str,
        channels: i64,
        emb: i64,
        out: i64,
        resample: Resample,
    ) -> SparseResBlock {
        SparseResBlock {
            norm1: LayerNorm::new(b, &format!("{name}.norm1"), channels, 1e-6, true),
            conv1: SparseConvStandIn::new(b, &format!("{name}.conv1"), channels, out),
            norm2: LayerNorm::new(b, &format!("{name}.norm2"), out, 1e-6, false),
            conv2: SparseConvStandIn::new(b, &format!("{name}.conv2"), out, out),
            emb_layers: Linear::new(b, &format!("{name}.emb_layers"), emb, 2 * out, true),
            skip: (channels != out)
                .then(|| Linear::new(b, &format!("{name}.skip_connection"), channels, out, true)),
            resample,
        }
    }

    /// `tokens`: the token count after resampling.
    fn forward(&self, w: &Weights, x: &Tensor, t_emb: &Tensor, tokens: i64) -> Tensor {
        let e = self
            .emb_layers
            .forward(w, &t_emb.silu())
            .unsqueeze(1)
            .chunk(2, -1);
        let x = resample_tokens(x, self.resample, tokens);
        let h = self
            .conv1
            .forward(w, &layer_norm32(w, &self.norm1, &x).silu());
        let h = layer_norm32(w, &self.norm2, &h) * (&e[0] + 1.0) + &e[1];
        let h = self.conv2.forward(w, &h.silu());
        match &self.skip {
            Some(s) => h + s.forward(w, &x),
            None => h + x,
        }
    }
}

/// Shape of the stage-2 (structured latent) flow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlatFlowConfig {
    pub in_channels: i64,
    pub block: FlowBlockConfig,
    pub blocks: i64,
    /// Width of the sparse-conv residual blocks around the transformer (`io_block_channels`).
    pub io_channels: i64,
    pub io_res_blocks: i64,
    /// Side of the coarse grid the transformer tokens live on (64 / patch size 2).
    pub token_grid: i64,
    pub time_scale: f64,
}

impl SlatFlowConfig {
    /// `slat_generator`.
    pub fn sam3d() -> SlatFlowConfig {
        SlatFlowConfig {
            in_channels: 8,
            block: SsFlowConfig::sam3d().block,
            blocks: 24,
            io_channels: 128,
            io_res_blocks: 2,
            token_grid: 32,
            time_scale: 1000.0,
        }
    }

    pub fn tiny() -> SlatFlowConfig {
        SlatFlowConfig {
            block: SsFlowConfig::tiny().block,
            blocks: 2,
            io_channels: 8,
            token_grid: 4,
            ..SlatFlowConfig::sam3d()
        }
    }
}

/// Stage-2 flow (dense approximation; see the module docs).
#[derive(Debug, Clone)]
pub struct SlatFlow {
    pub config: SlatFlowConfig,
    pub t_embedder: MlpEmbedder,
    pub input_layer: Linear,
    pub input_blocks: Vec<SparseResBlock>,
    pub blocks: Vec<CrossBlock>,
    pub out_blocks: Vec<SparseResBlock>,
    pub out_layer: Linear,
}

impl SlatFlow {
    pub fn new(b: &mut Builder, name: &str, config: SlatFlowConfig) -> SlatFlow {
        let c = config;
        let (io, dim) = (c.io_channels, c.block.dim);
        let res =
            |b: &mut Builder, n: String, ch, out, r| SparseResBlock::new(b, &n, ch, dim, out, r);
        let mut input_blocks: Vec<SparseResBlock> = (0..c.io_res_blocks - 1)
            .map(|i| {
                res(
                    b,
                    format!("{name}.input_blocks.{i}"),
                    io,
                    io,
                    Resample::None,
                )
            })
            .collect();
        input_blocks.push(res(
            b,
            format!("{name}.input_blocks.{}", c.io_res_blocks - 1),
            io,
            dim,
            Resample::Down,
        ));
        let t_embedder = MlpEmbedder::new(b, &format!("{name}.t_embedder"), 256, dim);
        let input_layer = Linear::new(b, &format!("{name}.input_layer"), c.in_channels, io, true);
        let blocks = (0..c.blocks)
            .map(|i| CrossBlock::new(b, &format!("{name}.blocks.{i}"), &c.block))
            .collect();
        // Each output block sees its input concatenated with the matching input block's output.
        let mut out_blocks = vec![res(
            b,
            format!("{name}.out_blocks.0"),
            2 * dim,
            io,
            Resample::Up,
        )];
        out_blocks.extend((1..c.io_res_blocks).map(|i| {
            res(
                b,
                format!("{name}.out_blocks.{i}"),
                2 * io,
                io,
                Resample::None,
            )
        }));
        SlatFlow {
            config,
            t_embedder,
            input_layer,
            input_blocks,
            blocks,
            out_blocks,
            out_layer: Linear::new(b, &format!("{name}.out_layer"), io, c.in_channels, true),
        }
    }

    /// One backbone pass over `x` (`[b, voxels, in_channels]`: the active voxels) with the
    /// transformer on `tokens` coarse cells; `t` `[b]` in [0, 1]; `cond` `[b, ctx, cond_dim]`.
    pub fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        tokens: i64,
        t: &Tensor,
        cond: &Tensor,
        imp: AttentionImpl,
    ) -> Tensor {
        let c = &self.config;
        let voxels = x.size()[1];
        let t_emb = embed_time(w, &self.t_embedder, &(t * c.time_scale));
        let mut h = self.input_layer.forward(w, x);
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        for block in &self.input_blocks {
            let n = if block.resample == Resample::Down {
                tokens
            } else {
                voxels
            };
            h = block.forward(w, &h, &t_emb, n);
            skips.push(h.shallow_clone());
        }
        let coords = grid_coords(tokens, c.token_grid, x.device());
        h += sincos_position_embedding(&coords, c.block.dim).to_kind(w.kind());
        for block in &self.blocks {
            h = block.forward(w, &h, &t_emb, cond, imp);
        }
        for (block, skip) in self.out_blocks.iter().zip(skips.iter().rev()) {
            let n = if block.resample == Resample::Up {
                voxels
            } else {
                skip.size()[1]
            };
            h = block.forward(w, &Tensor::cat(&[&h, skip], -1), &t_emb, n);
        }
        let io = c.io_channels;
        let h = h
            .to_kind(Kind::Float)
            .layer_norm([io], None::<Tensor>, None::<Tensor>, 1e-5, true)
            .to_kind(h.kind());
        self.out_layer.forward(w, &h)
    }
}

/// Channel LayerNorm of an `[b, C, D, H, W]` volume, in fp32 (`ChannelLayerNorm32`).
fn channel_layer_norm(w: &Weights, ln: &LayerNorm, x: &Tensor) -> Tensor {
    layer_norm32(w, ln, &x.permute([0, 2, 3, 4, 1])).permute([0, 4, 1, 2, 3])
}

/// `[b, C·8, D, H, W]` → `[b, C, 2D, 2H, 2W]`.
pub fn pixel_shuffle_3d(x: &Tensor) -> Tensor {
    let (b, c8, d, h, w) = x.size5().expect("[b, C, D, H, W]");
    let c = c8 / 8;
    x.reshape([b, c, 2, 2, 2, d, h, w])
        .permute([0, 1, 5, 2, 6, 3, 7, 4])
        .reshape([b, c, 2 * d, 2 * h, 2 * w])
}

/// `ResBlock3d` with channel LayerNorms.
#[derive(Debug, Clone)]
pub struct ResBlock3d {
    pub norm1: LayerNorm,
    pub conv1: Conv3d,
    pub norm2: LayerNorm,
    pub conv2: Conv3d,
}

impl ResBlock3d {
    fn new(b: &mut Builder, name: &str, ch: i64) -> ResBlock3d {
        ResBlock3d {
            norm1: LayerNorm::new(b, &format!("{name}.norm1"), ch, 1e-5, true),
            conv1: Conv3d::new(b, &format!("{name}.conv1"), ch, ch, 3, 1, 1, true),
            norm2: LayerNorm::new(b, &format!("{name}.norm2"), ch, 1e-5, true),
            conv2: Conv3d::new(b, &format!("{name}.conv2"), ch, ch, 3, 1, 1, true),
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let h = self
            .conv1
            .forward(w, &channel_layer_norm(w, &self.norm1, x).silu());
        let h = self
            .conv2
            .forward(w, &channel_layer_norm(w, &self.norm2, &h).silu());
        h + x
    }
}

/// Shape of the structure decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct SsDecoderConfig {
    pub latent_channels: i64,
    pub out_channels: i64,
    pub channels: Vec<i64>,
    pub res_blocks: i64,
    pub middle_blocks: i64,
}

impl SsDecoderConfig {
    /// `ss_decoder`: 73.7 M.
    pub fn sam3d() -> SsDecoderConfig {
        SsDecoderConfig {
            latent_channels: 8,
            out_channels: 1,
            channels: vec![512, 128, 32],
            res_blocks: 2,
            middle_blocks: 2,
        }
    }

    pub fn tiny() -> SsDecoderConfig {
        SsDecoderConfig {
            channels: vec![16, 8, 4],
            res_blocks: 1,
            middle_blocks: 1,
            ..SsDecoderConfig::sam3d()
        }
    }
}

/// One stage of the structure decoder: residual blocks, then (except last) an upsampler.
#[derive(Debug, Clone)]
pub enum DecoderStep {
    Res(ResBlock3d),
    /// `Conv3d(ch → out·8, 3)` then [`pixel_shuffle_3d`].
    Upsample(Conv3d),
}

/// The dense conv3d sparse-structure decoder.
#[derive(Debug, Clone)]
pub struct SsDecoder {
    pub config: SsDecoderConfig,
    pub input_layer: Conv3d,
    pub middle: Vec<ResBlock3d>,
    pub steps: Vec<DecoderStep>,
    pub out_norm: LayerNorm,
    pub out_conv: Conv3d,
}

impl SsDecoder {
    pub fn new(b: &mut Builder, name: &str, config: SsDecoderConfig) -> SsDecoder {
        let c = &config;
        let first = c.channels[0];
        let last = *c.channels.last().expect("channels");
        let input_layer = Conv3d::new(
            b,
            &format!("{name}.input_layer"),
            c.latent_channels,
            first,
            3,
            1,
            1,
            true,
        );
        let middle = (0..c.middle_blocks)
            .map(|i| ResBlock3d::new(b, &format!("{name}.middle_block.{i}"), first))
            .collect();
        let mut steps = Vec::new();
        for (i, &ch) in c.channels.iter().enumerate() {
            for _ in 0..c.res_blocks {
                let n = format!("{name}.blocks.{}", steps.len());
                steps.push(DecoderStep::Res(ResBlock3d::new(b, &n, ch)));
            }
            if let Some(&next) = c.channels.get(i + 1) {
                let n = format!("{name}.blocks.{}.conv", steps.len());
                steps.push(DecoderStep::Upsample(Conv3d::new(
                    b,
                    &n,
                    ch,
                    next * 8,
                    3,
                    1,
                    1,
                    true,
                )));
            }
        }
        SsDecoder {
            input_layer,
            middle,
            steps,
            out_norm: LayerNorm::new(b, &format!("{name}.out_layer.0"), last, 1e-5, true),
            out_conv: Conv3d::new(
                b,
                &format!("{name}.out_layer.2"),
                last,
                c.out_channels,
                3,
                1,
                1,
                true,
            ),
            config,
        }
    }

    /// `[b, 8, 16, 16, 16]` → `[b, 1, 64, 64, 64]` logits.
    pub fn forward(&self, w: &Weights, z: &Tensor) -> Tensor {
        let mut h = self.input_layer.forward(w, z);
        for block in &self.middle {
            h = block.forward(w, &h);
        }
        for step in &self.steps {
            h = match step {
                DecoderStep::Res(r) => r.forward(w, &h),
                DecoderStep::Upsample(conv) => pixel_shuffle_3d(&conv.forward(w, &h)),
            };
        }
        self.out_conv
            .forward(w, &channel_layer_norm(w, &self.out_norm, &h).silu())
    }
}

/// What a structured-latent decoder outputs per voxel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderOutput {
    /// Gaussians per voxel, 14 values each (offset 3, colour 3, scale 3, rotation 4,
    /// opacity 1).
    Gaussians(i64),
    /// FlexiCubes features at 4× the voxel resolution after two subdivisions: SDF 8, deform
    /// 24, weights 21 (+ colour 48 with `use_color`).
    Mesh { use_color: bool },
}

impl DecoderOutput {
    pub fn channels(&self) -> i64 {
        match *self {
            DecoderOutput::Gaussians(n) => 14 * n,
            DecoderOutput::Mesh { use_color } => 8 + 24 + 21 + if use_color { 48 } else { 0 },
        }
    }
}

/// Shape of a structured-latent decoder stand-in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlatDecoderConfig {
    pub latent_channels: i64,
    pub dim: i64,
    pub blocks: i64,
    pub heads: i64,
    pub mlp_ratio: i64,
    /// Tokens per attention window. The reference uses 8³ Swin windows over the active
    /// voxels; a surface crosses such a window in about 8²–2·8² voxels, so 128 tokens
    /// [inferred].
    pub window_tokens: i64,
    /// Side of the voxel grid (for the position embedding).
    pub resolution: i64,
    pub output: DecoderOutput,
}

impl SlatDecoderConfig {
    /// `slat_decoder_gs`: 32 Gaussians per voxel (~85 M).
    pub fn gaussian() -> SlatDecoderConfig {
        SlatDecoderConfig {
            latent_channels: 8,
            dim: 768,
            blocks: 12,
            heads: 12,
            mlp_ratio: 4,
            window_tokens: 128,
            resolution: 64,
            output: DecoderOutput::Gaussians(32),
        }
    }

    /// `slat_decoder_gs_4`: 4 Gaussians per voxel.
    pub fn gaussian4() -> SlatDecoderConfig {
        SlatDecoderConfig {
            output: DecoderOutput::Gaussians(4),
            ..SlatDecoderConfig::gaussian()
        }
    }

    /// `slat_decoder_mesh` (FlexiCubes with colour).
    pub fn mesh() -> SlatDecoderConfig {
        SlatDecoderConfig {
            output: DecoderOutput::Mesh { use_color: true },
            ..SlatDecoderConfig::gaussian()
        }
    }

    /// Tiny versions of the above (CPU tests).
    pub fn tiny(output: DecoderOutput) -> SlatDecoderConfig {
        SlatDecoderConfig {
            dim: 32,
            blocks: 2,
            heads: 4,
            window_tokens: 4,
            resolution: 4,
            output,
            ..SlatDecoderConfig::gaussian()
        }
    }
}

/// Stand-in of `SparseSubdivideBlock3d`: GroupNorm → SiLU → split every voxel into 8 → conv →
/// GroupNorm → SiLU → conv, plus a 1×1×1 conv skip of the split input.
#[derive(Debug, Clone)]
pub struct SubdivideBlock {
    pub norm1: GroupNormParams,
    pub conv1: SparseConvStandIn,
    pub norm2: GroupNormParams,
    pub conv2: SparseConvStandIn,
    pub skip: Linear,
}

impl SubdivideBlock {
    fn new(b: &mut Builder, name: &str, ch: i64, out: i64) -> SubdivideBlock {
        let groups = 32.min(out);
        SubdivideBlock {
            norm1: GroupNormParams::new(b, &format!("{name}.act_layers.0"), groups, ch),
            conv1: SparseConvStandIn::new(b, &format!("{name}.out_layers.0"), ch, out),
            norm2: GroupNormParams::new(b, &format!("{name}.out_layers.1"), groups, out),
            conv2: SparseConvStandIn::new(b, &format!("{name}.out_layers.3"), out, out),
            skip: Linear::new(b, &format!("{name}.skip_connection"), ch, out, true),
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let split = |t: &Tensor| t.repeat_interleave_self_int(8, 1, None);
        let h = split(&group_norm_tokens(w, &self.norm1, x).silu());
        let h = self.conv1.forward(w, &h);
        let h = self
            .conv2
            .forward(w, &group_norm_tokens(w, &self.norm2, &h).silu());
        h + self.skip.forward(w, &split(x))
    }
}

/// A transformer block of the decoders: LN (no affine) → windowed self-attention → LN → MLP.
#[derive(Debug, Clone)]
pub struct WindowBlock {
    pub norm1: LayerNorm,
    pub attn: SelfAttention,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
}

/// Gaussian or mesh decoder stand-in (see the module docs).
#[derive(Debug, Clone)]
pub struct SlatDecoder {
    pub config: SlatDecoderConfig,
    pub input_layer: Linear,
    pub blocks: Vec<WindowBlock>,
    pub subdivide: Vec<SubdivideBlock>,
    pub out_layer: Linear,
}

impl SlatDecoder {
    pub fn new(b: &mut Builder, name: &str, config: SlatDecoderConfig) -> SlatDecoder {
        let c = config;
        let blocks = (0..c.blocks)
            .map(|i| {
                let n = format!("{name}.blocks.{i}");
                WindowBlock {
                    norm1: LayerNorm::new(b, &format!("{n}.norm1"), c.dim, 1e-6, false),
                    attn: SelfAttention::new(b, &format!("{n}.attn"), c.dim, c.heads, false),
                    norm2: LayerNorm::new(b, &format!("{n}.norm2"), c.dim, 1e-6, false),
                    mlp: FeedForward::new(
                        b,
                        &format!("{n}.mlp"),
                        c.dim,
                        c.mlp_ratio * c.dim,
                        Activation::GeluTanh,
                        true,
                    ),
                }
            })
            .collect();
        let (subdivide, last) = match c.output {
            DecoderOutput::Gaussians(_) => (Vec::new(), c.dim),
            DecoderOutput::Mesh { .. } => (
                vec![
                    SubdivideBlock::new(b, &format!("{name}.upsample.0"), c.dim, c.dim / 4),
                    SubdivideBlock::new(b, &format!("{name}.upsample.1"), c.dim / 4, c.dim / 8),
                ],
                c.dim / 8,
            ),
        };
        SlatDecoder {
            config,
            input_layer: Linear::new(
                b,
                &format!("{name}.input_layer"),
                c.latent_channels,
                c.dim,
                true,
            ),
            blocks,
            subdivide,
            out_layer: Linear::new(
                b,
                &format!("{name}.out_layer"),
                last,
                c.output.channels(),
                true,
            ),
        }
    }

    /// `x`: `[b, voxels, latent_channels]` → `[b, voxels, channels]` (Gaussians) or
    /// `[b, 64·voxels, channels]` (mesh).
    pub fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let c = &self.config;
        let n = x.size()[1];
        let coords = grid_coords(n, c.resolution, x.device());
        let mut h = self.input_layer.forward(w, x)
            + sincos_position_embedding(&coords, c.dim).to_kind(w.kind());
        for (i, block) in self.blocks.iter().enumerate() {
            let shift = if i % 2 == 1 { c.window_tokens / 2 } else { 0 };
            let a = block.attn.forward_windowed(
                w,
                &layer_norm32(w, &block.norm1, &h),
                c.window_tokens,
                shift,
                imp,
            );
            h += a;
            let m = block.mlp.forward(w, &layer_norm32(w, &block.norm2, &h));
            h += m;
        }
        for block in &self.subdivide {
            h = block.forward(w, &h);
        }
        self.out_layer.forward(w, &h)
    }
}

/// Llama-3 `FeedForward` hidden width: `int(2·h/3)` rounded up to a multiple of 256
/// (4096 → 2816).
pub fn llama3_hidden(hidden: i64) -> i64 {
    let h = 2 * hidden / 3;
    (h + 255) / 256 * 256
}

/// An embedder's output projection: LayerNorm → SwiGLU (`w2(SiLU(w1 x) · w3 x)`, no biases).
#[derive(Debug, Clone)]
pub struct Projection {
    pub norm: LayerNorm,
    pub w1: Linear,
    pub w3: Linear,
    pub w2: Linear,
}

impl Projection {
    fn new(b: &mut Builder, name: &str, input: i64, output: i64, multiplier: f64) -> Projection {
        let hidden = llama3_hidden((multiplier * output as f64) as i64);
        Projection {
            norm: LayerNorm::new(b, &format!("{name}.0"), input, 1e-5, true),
            w1: Linear::new(b, &format!("{name}.1.w1"), input, hidden, false),
            w3: Linear::new(b, &format!("{name}.1.w3"), input, hidden, false),
            w2: Linear::new(b, &format!("{name}.1.w2"), hidden, output, false),
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let h = self.norm.forward(w, x);
        self.w2
            .forward(w, &(self.w1.forward(w, &h).silu() * self.w3.forward(w, &h)))
    }
}

/// Shape of the pointmap patch embedder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointPatchEmbedConfig {
    pub input_size: i64,
    pub patch_size: i64,
    pub dim: i64,
    pub heads: i64,
    pub mlp_ratio: f64,
}

impl PointPatchEmbedConfig {
    /// Stage 1: 256×256 pointmap, 8×8 windows → 1024 tokens × 512.
    pub fn sam3d() -> PointPatchEmbedConfig {
        PointPatchEmbedConfig {
            input_size: 256,
            patch_size: 8,
            dim: 512,
            heads: 16,
            mlp_ratio: 2.0,
        }
    }

    pub fn tokens(&self) -> i64 {
        (self.input_size / self.patch_size).pow(2)
    }
}

/// `PointPatchEmbed`: every point of the (nearest-resized) pointmap is projected 3 → dim;
/// each window of `patch_size²` points plus a CLS token runs through one ViT block; the
/// window's CLS output plus a (bilinearly resized) grid position embedding is its token.
#[derive(Debug, Clone)]
pub struct PointPatchEmbed {
    pub config: PointPatchEmbedConfig,
    pub point_proj: Linear,
    pub invalid_xyz_token: Param,
    pub pos_embed: Param,
    pub pos_embed_window: Param,
    pub cls_token: Param,
    pub block: Block,
}

impl PointPatchEmbed {
    fn new(b: &mut Builder, name: &str, config: PointPatchEmbedConfig) -> PointPatchEmbed {
        let c = config;
        let grid = c.input_size / c.patch_size;
        PointPatchEmbed {
            config,
            point_proj: Linear::new(b, &format!("{name}.point_proj"), 3, c.dim, true),
            invalid_xyz_token: b.param(
                &format!("{name}.invalid_xyz_token"),
                &[c.dim],
                Init::Normal(0.02),
            ),
            pos_embed: b.param(
                &format!("{name}.pos_embed"),
                &[1, c.dim, grid, grid],
                Init::Normal(0.02),
            ),
            pos_embed_window: b.param(
                &format!("{name}.pos_embed_window"),
                &[1, 1 + c.patch_size * c.patch_size, c.dim],
                Init::Normal(0.02),
            ),
            cls_token: b.param(
                &format!("{name}.cls_token"),
                &[1, 1, c.dim],
                Init::Normal(0.02),
            ),
            block: Block::new(
                b,
                &format!("{name}.blocks.0"),
                &BlockConfig {
                    dim: c.dim,
                    heads: c.heads,
                    mlp_hidden: (c.dim as f64 * c.mlp_ratio) as i64,
                    activation: Activation::Gelu,
                    qkv_bias: true,
                    qk_norm: QkNormKind::None,
                    layer_scale: false,
                    eps: 1e-6,
                },
            ),
        }
    }

    /// `xyz`: `[b, 3, H, W]` → `[b, windows, dim]`.
    pub fn forward(&self, w: &Weights, xyz: &Tensor, imp: AttentionImpl) -> Tensor {
        let c = &self.config;
        let (s, p, dim) = (c.input_size, c.patch_size, c.dim);
        let g = s / p;
        let b = xyz.size()[0];
        let xyz = xyz
            .upsample_nearest2d([s, s], None, None)
            .permute([0, 2, 3, 1]);
        let x = self
            .point_proj
            .forward(w, &xyz)
            .view([b, g, p, g, p, dim])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b * g * g, p * p, dim]);
        let cls = w.get(self.cls_token).expand([b * g * g, 1, dim], false);
        let toks = Tensor::cat(&[cls, x], 1) + w.get(self.pos_embed_window);
        let toks = self.block.forward(w, &toks, imp);
        let pos = w
            .get(self.pos_embed)
            .permute([0, 2, 3, 1])
            .reshape([1, g * g, dim]);
        toks.select(1, 0).view([b, g * g, dim]) + pos
    }
}

/// Shape of a condition embedder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConditionEmbedderConfig {
    pub vit: VitConfig,
    /// Side the images are resized to before the ViT.
    pub input_size: i64,
    /// Stage 2 keeps all pre-norm tokens (after a plain LayerNorm); stage 1 the normed CLS and
    /// patch tokens.
    pub prenorm_features: bool,
    pub point: Option<PointPatchEmbedConfig>,
    pub out_dim: i64,
    pub projection_multiplier: f64,
}

impl ConditionEmbedderConfig {
    /// Stage 1: two ViT-L/14-reg at 770 and the pointmap embedder (0.63 B; 14,152 tokens).
    pub fn stage1() -> ConditionEmbedderConfig {
        ConditionEmbedderConfig {
            vit: VitConfig::vit_l14_reg4(),
            input_size: 770,
            prenorm_features: false,
            point: Some(PointPatchEmbedConfig::sam3d()),
            out_dim: 1024,
            projection_multiplier: 4.0,
        }
    }

    /// Stage 2: two ViT-L/14-reg at 1036, pre-norm features (0.62 B; 21,924 tokens).
    pub fn stage2() -> ConditionEmbedderConfig {
        ConditionEmbedderConfig {
            input_size: 1036,
            prenorm_features: true,
            point: None,
            ..ConditionEmbedderConfig::stage1()
        }
    }

    /// Tiny versions (CPU tests), with or without the pointmap embedder.
    pub fn tiny(stage1: bool) -> ConditionEmbedderConfig {
        ConditionEmbedderConfig {
            vit: VitConfig::tiny(),
            input_size: 6,
            prenorm_features: !stage1,
            point: stage1.then_some(PointPatchEmbedConfig {
                input_size: 8,
                patch_size: 2,
                dim: 16,
                heads: 2,
                mlp_ratio: 2.0,
            }),
            out_dim: 32,
            projection_multiplier: 4.0,
        }
    }

    /// Tokens per view from one DINO copy.
    pub fn dino_tokens(&self) -> i64 {
        let all = self.vit.tokens(self.input_size, self.input_size);
        if self.prenorm_features {
            all
        } else {
            all - self.vit.registers
        }
    }

    /// Context length: 2 DINO copies × 2 views, plus 2 pointmap views.
    pub fn tokens(&self) -> i64 {
        4 * self.dino_tokens() + self.point.map_or(0, |p| 2 * p.tokens())
    }
}

/// The inputs of one view (cropped or full).
#[derive(Debug)]
pub struct ConditionView {
    /// `[b, 3, H, W]` in [0, 1].
    pub image: Tensor,
    /// `[b, 1, H, W]`.
    pub mask: Tensor,
    /// `[b, 3, H, W]` (stage 1 only).
    pub pointmap: Option<Tensor>,
}

/// `EmbedderFuser`: DINO (RGB), DINO (mask) and optionally the pointmap embedder, each on the
/// cropped and full views, projected to `out_dim`, plus a learned per-view embedding.
#[derive(Debug, Clone)]
pub struct ConditionEmbedder {
    pub config: ConditionEmbedderConfig,
    pub dinos: Vec<Vit>,
    pub point: Option<PointPatchEmbed>,
    pub projections: Vec<Projection>,
    pub idx_emb: Param,
}

impl ConditionEmbedder {
    pub fn new(b: &mut Builder, name: &str, config: ConditionEmbedderConfig) -> ConditionEmbedder {
        let c = config;
        let dinos: Vec<Vit> = (0..2)
            .map(|i| Vit::new(b, &format!("{name}.embedder_list.{i}.backbone"), c.vit))
            .collect();
        let point = c
            .point
            .map(|p| PointPatchEmbed::new(b, &format!("{name}.embedder_list.2"), p));
        let mut inputs = vec![c.vit.dim, c.vit.dim];
        if let Some(p) = c.point {
            inputs.push(p.dim);
        }
        let projections = inputs
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                Projection::new(
                    b,
                    &format!("{name}.projection_nets.{i}"),
                    d,
                    c.out_dim,
                    c.projection_multiplier,
                )
            })
            .collect();
        ConditionEmbedder {
            config,
            dinos,
            point,
            projections,
            // Position groups "cropped" and "full", plus one spare row as the reference has.
            idx_emb: b.param(
                &format!("{name}.idx_emb"),
                &[3, c.out_dim],
                Init::Normal(0.03),
            ),
        }
    }

    /// Resize to the input size, grey masks to 3 channels, ImageNet normalisation.
    fn preprocess(&self, x: &Tensor) -> Tensor {
        let s = self.config.input_size;
        let x = x.upsample_bilinear2d([s, s], false, None, None);
        let x = if x.size()[1] == 1 {
            x.repeat([1, 3, 1, 1])
        } else {
            x
        };
        let opts = (x.kind(), x.device());
        let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406])
            .to_kind(opts.0)
            .to_device(opts.1);
        let std = Tensor::from_slice(&[0.229f32, 0.224, 0.225])
            .to_kind(opts.0)
            .to_device(opts.1);
        (x - mean.view([1, 3, 1, 1])) / std.view([1, 3, 1, 1])
    }

    fn dino(&self, w: &Weights, vit: &Vit, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let x = self.preprocess(x);
        if self.config.prenorm_features {
            let (h, _) = vit.forward_blocks(w, &x, 0, imp);
            let dim = self.config.vit.dim;
            h.to_kind(Kind::Float)
                .layer_norm([dim], None::<Tensor>, None::<Tensor>, 1e-5, true)
                .to_kind(h.kind())
        } else {
            let h = vit.forward(w, &x, imp);
            let regs = self.config.vit.registers;
            let n = h.size()[1];
            Tensor::cat(&[h.narrow(1, 0, 1), h.narrow(1, 1 + regs, n - 1 - regs)], 1)
        }
    }

    /// Context tokens `[b, tokens, out_dim]` for the cropped and full views.
    pub fn forward(
        &self,
        w: &Weights,
        crop: &ConditionView,
        full: &ConditionView,
        imp: AttentionImpl,
    ) -> Tensor {
        let views = [crop, full];
        let mut tokens = Vec::new();
        for (e, proj) in self.projections.iter().enumerate() {
            for (g, view) in views.iter().enumerate() {
                let t = match e {
                    0 => self.dino(w, &self.dinos[0], &view.image, imp),
                    1 => self.dino(w, &self.dinos[1], &view.mask, imp),
                    _ => {
                        let xyz = view.pointmap.as_ref().expect("stage 1 needs pointmaps");
                        self.point
                            .as_ref()
                            .expect("pointmap embedder")
                            .forward(w, xyz, imp)
                    }
                };
                let idx = w.get(self.idx_emb).narrow(0, g as i64, 1).unsqueeze(0);
                tokens.push(proj.forward(w, &t) + idx);
            }
        }
        Tensor::cat(&tokens, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{count, finite, max_diff, opts, within};

    #[test]
    fn full_size_parameter_counts() {
        let ss = count(|b| SsFlow::new(b, "ss", SsFlowConfig::sam3d()));
        assert!(within(ss, 0.96e9), "SS flow: {ss}");

        let slat = count(|b| SlatFlow::new(b, "slat", SlatFlowConfig::sam3d()));
        assert!(within(slat, 0.60e9), "SLAT flow: {slat}");

        let dec = count(|b| SsDecoder::new(b, "dec", SsDecoderConfig::sam3d()));
        assert!(within(dec, 73.7e6), "SS decoder: {dec}");
        let gs = count(|b| SlatDecoder::new(b, "gs", SlatDecoderConfig::gaussian()));
        assert!(within(gs, 85e6), "Gaussian decoder: {gs}");

        assert_eq!(llama3_hidden(4096), 2816);
        let c1 = ConditionEmbedderConfig::stage1();
        let c2 = ConditionEmbedderConfig::stage2();
        assert_eq!((c1.tokens(), c2.tokens()), (14_152, 21_924));
        let e1 = count(|b| ConditionEmbedder::new(b, "c", c1));
        assert!(within(e1, 0.63e9), "stage-1 condition embedder: {e1}");
        let e2 = count(|b| ConditionEmbedder::new(b, "c", c2));
        assert!(within(e2, 0.62e9), "stage-2 condition embedder: {e2}");
    }

    #[test]
    fn ss_flow_shapes_attention_and_offload() {
        tch::manual_seed(0);
        let c = SsFlowConfig::tiny();
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let m = SsFlow::new(&mut b, "ss", c.clone());
        let mut w = b.finish();
        let x = SsLatents {
            shape: Tensor::randn([1, c.shape_tokens(), c.shape_channels], opts()),
            pose: c
                .pose_channels
                .iter()
                .map(|&ch| Tensor::randn([1, 1, ch], opts()))
                .collect(),
        };
        let cond = Tensor::randn([1, 10, c.block.cond_dim], opts());
        let (t, d) = (
            Tensor::from_slice(&[0.3f32]),
            Tensor::from_slice(&[0.04f32]),
        );
        let run = |w: &Weights, x: &SsLatents, imp| m.forward(w, x, &t, Some(&d), &cond, imp);
        let out = run(&w, &x, AttentionImpl::Sdpa);
        assert_eq!(out.shape.size(), x.shape.size());
        assert!(finite(&out.shape));
        for (o, i) in out.pose.iter().zip(&x.pose) {
            assert_eq!(o.size(), i.size());
        }
        let math = run(&w, &x, AttentionImpl::Math);
        assert!(max_diff(&math.shape, &out.shape) < 1e-4);
        assert!(max_diff(&math.pose[0], &out.pose[0]) < 1e-4);
        // The shape stream never sees the pose tokens; the pose stream sees both.
        let moved = SsLatents {
            shape: x.shape.shallow_clone(),
            pose: x.pose.iter().map(|p| p + 1.0).collect(),
        };
        let out2 = run(&w, &moved, AttentionImpl::Sdpa);
        assert!(
            max_diff(&out2.shape, &out.shape) < 1e-6,
            "shape depends on pose"
        );
        assert!(
            max_diff(&out2.pose[1], &out.pose[1]) > 1e-4,
            "pose ignores pose"
        );
        w.offload_sequential(Device::Cpu);
        let offloaded = run(&w, &x, AttentionImpl::Sdpa);
        assert!(offloaded.shape.equal(&out.shape), "sequential offload");
    }

    #[test]
    fn slat_flow_shapes_and_offload() {
        tch::manual_seed(1);
        let c = SlatFlowConfig::tiny();
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let m = SlatFlow::new(&mut b, "slat", c);
        let mut w = b.finish();
        let x = Tensor::randn([1, 40, c.in_channels], opts());
        let cond = Tensor::randn([1, 7, c.block.cond_dim], opts());
        let t = Tensor::from_slice(&[0.5f32]);
        let out = m.forward(&w, &x, 11, &t, &cond, AttentionImpl::Sdpa);
        assert_eq!(out.size(), x.size());
        assert!(finite(&out));
        w.move_to(Device::Cpu);
        assert!(m
            .forward(&w, &x, 11, &t, &cond, AttentionImpl::Sdpa)
            .equal(&out));
        w.offload_sequential(Device::Cpu);
        assert!(m
            .forward(&w, &x, 11, &t, &cond, AttentionImpl::Sdpa)
            .equal(&out));
    }

    #[test]
    fn sparse_conv_stand_in_is_a_shifted_sum() {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let conv = SparseConvStandIn::new(&mut b, "c", 2, 3);
        let w = b.finish();
        let x = Tensor::randn([1, 30, 2], opts());
        let y = conv.forward(&w, &x);
        // Token 15 sees tokens 2..=28 through the 27 offsets.
        let weight = w.get(conv.weight).reshape([3, 27, 2]);
        let expected = (0..27)
            .map(|o| {
                x.get(0)
                    .get(2 + o)
                    .matmul(&weight.select(1, o).transpose(0, 1))
            })
            .fold(Tensor::zeros([3], opts()), |a, t| a + t);
        assert!(max_diff(&y.get(0).get(15), &expected) < 1e-5);
    }

    #[test]
    fn ss_decoder_upsamples_to_four_times_the_grid() {
        tch::manual_seed(2);
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let m = SsDecoder::new(&mut b, "dec", SsDecoderConfig::tiny());
        let w = b.finish();
        let z = Tensor::randn([1, 8, 3, 3, 3], opts());
        let out = m.forward(&w, &z);
        assert_eq!(out.size(), vec![1, 1, 12, 12, 12]);
        assert!(finite(&out));
        // Pixel shuffle: channel group (i, j, k) lands at offset (i, j, k) of each 2×2×2 cell.
        let x = Tensor::arange(8, opts()).view([1, 8, 1, 1, 1]);
        let y = pixel_shuffle_3d(&x);
        assert_eq!(y.double_value(&[0, 0, 1, 0, 1]), 5.0);
    }

    #[test]
    fn decoders_and_window_attention() {
        tch::manual_seed(3);
        for output in [
            DecoderOutput::Gaussians(2),
            DecoderOutput::Mesh { use_color: true },
        ] {
            let c = SlatDecoderConfig::tiny(output);
            let mut b = Builder::new(Kind::Float, Device::Cpu);
            let m = SlatDecoder::new(&mut b, "dec", c);
            let w = b.finish();
            let x = Tensor::randn([1, 10, c.latent_channels], opts());
            let out = m.forward(&w, &x, AttentionImpl::Sdpa);
            let voxels = if matches!(output, DecoderOutput::Mesh { .. }) {
                640
            } else {
                10
            };
            assert_eq!(out.size(), vec![1, voxels, output.channels()]);
            assert!(finite(&out));
            assert!(max_diff(&m.forward(&w, &x, AttentionImpl::Math), &out) < 1e-4);
        }
        // Tokens in different windows do not interact (no shift).
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let attn = SelfAttention::new(&mut b, "a", 16, 2, false);
        let w = b.finish();
        let x = Tensor::randn([1, 8, 16], opts());
        let y = attn.forward_windowed(&w, &x, 4, 0, AttentionImpl::Sdpa);
        let x2 = x.copy();
        let _ = x2.narrow(1, 6, 1).fill_(3.0);
        let y2 = attn.forward_windowed(&w, &x2, 4, 0, AttentionImpl::Sdpa);
        assert!(max_diff(&y.narrow(1, 0, 4), &y2.narrow(1, 0, 4)) < 1e-6);
        // With a shift of 2 the first window is tokens 2..6, which includes token 5 but not 6.
        let y3 = attn.forward_windowed(&w, &x2, 4, 2, AttentionImpl::Sdpa);
        let y4 = attn.forward_windowed(&w, &x, 4, 2, AttentionImpl::Sdpa);
        assert!(max_diff(&y3.narrow(1, 2, 4), &y4.narrow(1, 2, 4)) < 1e-6);
    }

    #[test]
    fn condition_embedders_produce_the_documented_token_counts() {
        tch::manual_seed(4);
        for stage1 in [true, false] {
            let c = ConditionEmbedderConfig::tiny(stage1);
            let mut b = Builder::new(Kind::Float, Device::Cpu);
            let m = ConditionEmbedder::new(&mut b, "cond", c);
            let w = b.finish();
            let view = || ConditionView {
                image: Tensor::rand([1, 3, 10, 10], opts()),
                mask: Tensor::rand([1, 1, 10, 10], opts()),
                pointmap: stage1.then(|| Tensor::randn([1, 3, 12, 12], opts())),
            };
            let (crop, full) = (view(), view());
            let out = m.forward(&w, &crop, &full, AttentionImpl::Sdpa);
            assert_eq!(
                out.size(),
                vec![1, c.tokens(), c.out_dim],
                "stage1 = {stage1}"
            );
            assert!(finite(&out));
        }
    }
}
