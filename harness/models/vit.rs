//! Vision Transformers as DINOv2 builds them, and the pre-norm transformer pieces the other
//! token models reuse (fused-QKV self-attention, the LN → attention → LN → MLP block).
//!
//! DINOv2 (`dinov2/models/vision_transformer.py`, hub `backbones.py`):
//! - patch embedding `Conv2d(3, dim, k=14, s=14)`, a CLS token, optional register tokens
//!   (inserted after CLS, after the position embedding is added), a learned position embedding
//!   for a 37×37 grid (518 px / 14) plus CLS, interpolated bicubically to the input's patch grid;
//! - blocks: `LN → attention (fused qkv with bias) → LayerScale → residual`,
//!   `LN → MLP (GELU) or SwiGLU → LayerScale → residual`; final LN;
//! - the hub's plain models interpolate with `offset 0.1` and no antialiasing, the `_reg`
//!   models with `offset 0.0` and antialiasing;
//! - the state dict carries an unused `mask_token` (`[1, dim]`); it is counted here as well.

use super::attention::{attention, AttentionImpl, QkNorm, QkNormKind};
use super::feed_forward::{Activation, FeedForward};
use super::layers::{Conv2d, LayerNorm, Linear, RmsNorm};
use super::weights::{Builder, Init, Param, Weights};
use tch::{Kind, Tensor};

/// `[batch, heads, tokens, head_dim]` → `[batch, tokens, heads·head_dim]`.
pub fn merge_heads(x: &Tensor) -> Tensor {
    let (b, h, n, d) = x.size4().expect("[batch, heads, tokens, head_dim]");
    x.transpose(1, 2).reshape([b, n, h * d])
}

/// Per-head QK-norm (`head_dim` wide) of the given kind, or none.
pub fn qk_norm(
    b: &mut Builder,
    name: &str,
    kind: QkNormKind,
    head_dim: i64,
    eps: f64,
) -> Option<QkNorm> {
    let b = &mut b.scope(name);
    match kind {
        QkNormKind::None => None,
        QkNormKind::Rms => Some(QkNorm::Rms(
            RmsNorm::new(b, "norm_q", head_dim, eps),
            RmsNorm::new(b, "norm_k", head_dim, eps),
        )),
        QkNormKind::Layer => Some(QkNorm::Layer(
            LayerNorm::new(b, "norm_q", head_dim, eps, true),
            LayerNorm::new(b, "norm_k", head_dim, eps, true),
        )),
    }
}

/// Applies an optional QK-norm to `[batch, heads, tokens, head_dim]` queries and keys.
pub fn apply_qk_norm(norm: Option<&QkNorm>, w: &Weights, q: Tensor, k: Tensor) -> (Tensor, Tensor) {
    match norm {
        None => (q, k),
        Some(QkNorm::Rms(nq, nk)) => (nq.forward(w, &q), nk.forward(w, &k)),
        Some(QkNorm::Layer(nq, nk)) => (nq.forward(w, &q), nk.forward(w, &k)),
        Some(QkNorm::MultiHeadRms(nq, nk)) => (nq.forward(w, &q), nk.forward(w, &k)),
    }
}

/// Self-attention with one fused `qkv` projection (`dim → 3·dim`, laid out `[3, heads,
/// head_dim]`) and an output projection with bias, as DINOv2, Flux-style DiTs and the
/// Hunyuan3D ShapeVAE have it; optional per-head QK-norm.
#[derive(Debug, Clone)]
pub struct FusedAttention {
    pub heads: i64,
    pub head_dim: i64,
    pub qkv: Linear,
    pub proj: Linear,
    pub qk_norm: Option<QkNorm>,
}

impl FusedAttention {
    pub fn new(
        b: &mut Builder,
        name: &str,
        dim: i64,
        heads: i64,
        qkv_bias: bool,
        norm: QkNormKind,
        norm_eps: f64,
    ) -> FusedAttention {
        assert_eq!(
            dim % heads,
            0,
            "{name}: {dim} channels do not split into {heads} heads"
        );
        let head_dim = dim / heads;
        FusedAttention {
            heads,
            head_dim,
            qkv: Linear::new(b, &format!("{name}.qkv"), dim, 3 * dim, qkv_bias),
            proj: Linear::new(b, &format!("{name}.proj"), dim, dim, true),
            qk_norm: qk_norm(b, name, norm, head_dim, norm_eps),
        }
    }

    /// Projects `x` (`[batch, tokens, dim]`) to QK-normed queries, keys and values, each
    /// `[batch, heads, tokens, head_dim]`.
    pub fn qkv(&self, w: &Weights, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, n, _) = x.size3().expect("[batch, tokens, channels]");
        let qkv = self
            .qkv
            .forward(w, x)
            .view([b, n, 3, self.heads, self.head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k) = apply_qk_norm(self.qk_norm.as_ref(), w, qkv.get(0), qkv.get(1));
        (q, k, qkv.get(2))
    }

    /// Merges the heads of an attention output and applies the output projection.
    pub fn project(&self, w: &Weights, out: &Tensor) -> Tensor {
        self.proj.forward(w, &merge_heads(out))
    }

    pub fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let (q, k, v) = self.qkv(w, x);
        self.project(w, &attention(&q, &k, &v, imp, false))
    }
}

/// Shape of a pre-norm transformer [`Block`].
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    pub dim: i64,
    pub heads: i64,
    pub mlp_hidden: i64,
    pub activation: Activation,
    pub qkv_bias: bool,
    pub qk_norm: QkNormKind,
    /// DINOv2's LayerScale (a learned per-channel gain on each branch).
    pub layer_scale: bool,
    pub eps: f64,
}

/// `x + ls1·attn(LN(x))`, then `x + ls2·mlp(LN(x))`: the DINOv2/timm ViT block; without
/// LayerScale and with a LayerNorm QK-norm it is the Hunyuan3D ShapeVAE's
/// `ResidualAttentionBlock`.
#[derive(Debug, Clone)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: FusedAttention,
    pub ls1: Option<Param>,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
    pub ls2: Option<Param>,
}

impl Block {
    pub fn new(b: &mut Builder, name: &str, c: &BlockConfig) -> Block {
        let b = &mut b.scope(name);
        let ls = |b: &mut Builder, n: &str| {
            c.layer_scale
                .then(|| b.param(&format!("{n}.gamma"), &[c.dim], Init::Ones))
        };
        Block {
            norm1: LayerNorm::new(b, "norm1", c.dim, c.eps, true),
            attn: FusedAttention::new(b, "attn", c.dim, c.heads, c.qkv_bias, c.qk_norm, c.eps),
            ls1: ls(b, "ls1"),
            norm2: LayerNorm::new(b, "norm2", c.dim, c.eps, true),
            mlp: FeedForward::new(b, "mlp", c.dim, c.mlp_hidden, c.activation, true),
            ls2: ls(b, "ls2"),
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let scale = |h: Tensor, ls: Option<Param>| match ls {
            Some(g) => h * w.get(g),
            None => h,
        };
        let h = self.attn.forward(w, &self.norm1.forward(w, x), imp);
        let x = x + scale(h, self.ls1);
        let h = self.mlp.forward(w, &self.norm2.forward(w, &x));
        &x + scale(h, self.ls2)
    }
}

/// The feed-forward layer of a ViT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VitFfn {
    /// `fc1 → GELU → fc2`, hidden `mlp_ratio·dim`.
    Mlp,
    /// DINOv2's `SwiGLUFFNFused`: hidden [`swiglu_fused_hidden`]`(mlp_ratio·dim)`.
    SwiGlu,
}

/// DINOv2's `SwiGLUFFNFused` hidden width: `(int(h·2/3) + 7) // 8 · 8` (ViT-g: 6144 → 4096).
pub fn swiglu_fused_hidden(hidden: i64) -> i64 {
    (hidden * 2 / 3 + 7) / 8 * 8
}

/// Shape of a DINOv2 ViT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitConfig {
    pub dim: i64,
    pub depth: i64,
    pub heads: i64,
    pub patch_size: i64,
    pub in_channels: i64,
    pub mlp_ratio: f64,
    pub ffn: VitFfn,
    pub registers: i64,
    /// Side of the learned position-embedding grid (518 / 14 = 37).
    pub pos_grid: i64,
    pub interpolate_antialias: bool,
    pub interpolate_offset: f64,
}

impl VitConfig {
    /// `dinov2_vitl14`: 1024 wide, 24 blocks, 16 heads, MLP 4096, no registers.
    pub fn vit_l14() -> VitConfig {
        VitConfig {
            dim: 1024,
            depth: 24,
            heads: 16,
            patch_size: 14,
            in_channels: 3,
            mlp_ratio: 4.0,
            ffn: VitFfn::Mlp,
            registers: 0,
            pos_grid: 37,
            interpolate_antialias: false,
            interpolate_offset: 0.1,
        }
    }

    /// `dinov2_vitl14_reg`: as ViT-L/14 with 4 register tokens.
    pub fn vit_l14_reg4() -> VitConfig {
        VitConfig {
            registers: 4,
            interpolate_antialias: true,
            interpolate_offset: 0.0,
            ..VitConfig::vit_l14()
        }
    }

    /// `dinov2_vitg14` (`vit_giant2`): 1536 wide, 40 blocks, 24 heads, SwiGLU hidden 4096.
    pub fn vit_g14() -> VitConfig {
        VitConfig {
            dim: 1536,
            depth: 40,
            heads: 24,
            ffn: VitFfn::SwiGlu,
            ..VitConfig::vit_l14()
        }
    }

    /// A few-thousand-parameter ViT of the same code (CPU tests): 2-px patches, a 4×4
    /// position grid, one register token.
    pub fn tiny() -> VitConfig {
        VitConfig {
            dim: 32,
            depth: 2,
            heads: 4,
            patch_size: 2,
            in_channels: 3,
            mlp_ratio: 4.0,
            ffn: VitFfn::Mlp,
            registers: 1,
            pos_grid: 4,
            interpolate_antialias: true,
            interpolate_offset: 0.0,
        }
    }

    /// Hidden width of the feed-forward layer.
    pub fn mlp_hidden(&self) -> i64 {
        let hidden = (self.dim as f64 * self.mlp_ratio) as i64;
        match self.ffn {
            VitFfn::Mlp => hidden,
            VitFfn::SwiGlu => swiglu_fused_hidden(hidden),
        }
    }

    /// CLS + registers + patches for a `height`×`width` image.
    pub fn tokens(&self, height: i64, width: i64) -> i64 {
        1 + self.registers + (height / self.patch_size) * (width / self.patch_size)
    }
}

/// A DINOv2 ViT.
#[derive(Debug, Clone)]
pub struct Vit {
    pub config: VitConfig,
    pub patch_embed: Conv2d,
    pub cls_token: Param,
    pub register_tokens: Option<Param>,
    pub mask_token: Param,
    pub pos_embed: Param,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
}

impl Vit {
    pub fn new(b: &mut Builder, name: &str, config: VitConfig) -> Vit {
        let b = &mut b.scope(name);
        let c = config;
        let block = BlockConfig {
            dim: c.dim,
            heads: c.heads,
            mlp_hidden: c.mlp_hidden(),
            activation: match c.ffn {
                VitFfn::Mlp => Activation::Gelu,
                VitFfn::SwiGlu => Activation::Swiglu,
            },
            qkv_bias: true,
            qk_norm: QkNormKind::None,
            layer_scale: true,
            eps: 1e-6,
        };
        Vit {
            config,
            patch_embed: Conv2d::new(
                b,
                "patch_embed",
                c.in_channels,
                c.dim,
                c.patch_size,
                c.patch_size,
                0,
                true,
            ),
            cls_token: b.param("cls_token", &[1, 1, c.dim], Init::Normal(1e-6)),
            register_tokens: (c.registers > 0).then(|| {
                b.param(
                    "register_tokens",
                    &[1, c.registers, c.dim],
                    Init::Normal(1e-6),
                )
            }),
            mask_token: b.param("mask_token", &[1, c.dim], Init::Zeros),
            pos_embed: b.param(
                "pos_embed",
                &[1, 1 + c.pos_grid * c.pos_grid, c.dim],
                Init::Normal(0.02),
            ),
            blocks: (0..c.depth)
                .map(|i| Block::new(b, &format!("blocks.{i}"), &block))
                .collect(),
            norm: LayerNorm::new(b, "norm", c.dim, 1e-6, true),
        }
    }

    /// Tokens ahead of the patches: CLS and the registers.
    pub fn prefix_tokens(&self) -> i64 {
        1 + self.config.registers
    }

    /// The position embedding for a `rows`×`cols` patch grid: the learned grid as is when it
    /// matches, else resampled bicubically in fp32 (with DINOv2's scale offset and
    /// antialiasing settings).
    pub fn position_embedding(&self, w: &Weights, rows: i64, cols: i64) -> Tensor {
        let (g, dim) = (self.config.pos_grid, self.config.dim);
        let pos = w.get(self.pos_embed);
        if rows == g && cols == g {
            return pos;
        }
        let grid = pos
            .narrow(1, 1, g * g)
            .to_kind(Kind::Float)
            .reshape([1, g, g, dim])
            .permute([0, 3, 1, 2]);
        let offset = self.config.interpolate_offset;
        let (sh, sw) = if offset != 0.0 {
            (
                Some((rows as f64 + offset) / g as f64),
                Some((cols as f64 + offset) / g as f64),
            )
        } else {
            (None, None)
        };
        let grid = if self.config.interpolate_antialias {
            grid.internal_upsample_bicubic2d_aa([rows, cols], false, sh, sw)
        } else {
            grid.upsample_bicubic2d([rows, cols], false, sh, sw)
        };
        let grid = grid
            .permute([0, 2, 3, 1])
            .reshape([1, rows * cols, dim])
            .to_kind(pos.kind());
        Tensor::cat(&[pos.narrow(1, 0, 1), grid], 1)
    }

    /// Patch embedding, CLS, position embedding and registers: `[batch, 1 + R + N, dim]`.
    pub fn prepare_tokens(&self, w: &Weights, image: &Tensor) -> Tensor {
        let x = self.patch_embed.forward(w, image);
        let (b, dim, rows, cols) = x.size4().expect("patch grid");
        let x = x.flatten(2, 3).transpose(1, 2);
        let cls = w.get(self.cls_token).expand([b, 1, dim], false);
        let x = Tensor::cat(&[cls, x], 1) + self.position_embedding(w, rows, cols);
        match self.register_tokens {
            None => x,
            Some(r) => {
                let regs = w.get(r).expand([b, self.config.registers, dim], false);
                let n = x.size()[1];
                Tensor::cat(&[x.narrow(1, 0, 1), regs, x.narrow(1, 1, n - 1)], 1)
            }
        }
    }

    /// Runs the blocks; returns the final pre-norm tokens and the pre-norm outputs of the
    /// last `keep_last` blocks (for `get_intermediate_layers`).
    pub fn forward_blocks(
        &self,
        w: &Weights,
        image: &Tensor,
        keep_last: usize,
        imp: AttentionImpl,
    ) -> (Tensor, Vec<Tensor>) {
        let mut x = self.prepare_tokens(w, image);
        let first_kept = self.blocks.len().saturating_sub(keep_last);
        let mut kept = Vec::with_capacity(keep_last);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(w, &x, imp);
            if i >= first_kept {
                kept.push(x.shallow_clone());
            }
        }
        (x, kept)
    }

    /// `forward_features`: all tokens (CLS, registers, patches) after the final norm.
    pub fn forward(&self, w: &Weights, image: &Tensor, imp: AttentionImpl) -> Tensor {
        let (x, _) = self.forward_blocks(w, image, 0, imp);
        self.norm.forward(w, &x)
    }

    /// `get_intermediate_layers(n, return_class_token=True, norm=True)`: for each of the last
    /// `n` blocks, its normed patch tokens `[batch, N, dim]` and CLS token `[batch, dim]`.
    pub fn intermediate_layers(
        &self,
        w: &Weights,
        image: &Tensor,
        n: usize,
        imp: AttentionImpl,
    ) -> Vec<(Tensor, Tensor)> {
        let (_, kept) = self.forward_blocks(w, image, n, imp);
        let prefix = self.prefix_tokens();
        kept.iter()
            .map(|x| {
                let x = self.norm.forward(w, x);
                let patches = x.size()[1] - prefix;
                (x.narrow(1, prefix, patches), x.select(1, 0))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{count, within_by as within};
    use crate::models::SliceSize;
    use tch::Device;

    #[test]
    fn swiglu_rounding_matches_dinov2() {
        assert_eq!(swiglu_fused_hidden(6144), 4096);
        assert_eq!(swiglu_fused_hidden(4 * 1024), 2736);
    }

    #[test]
    fn full_size_parameter_counts() {
        let l = count(|b| Vit::new(b, "vit", VitConfig::vit_l14()));
        assert!(within(l, 304.0e6, 0.01), "ViT-L/14: {l}");
        // Without the 1370×1024 position embedding: 302.96 M.
        assert!(
            within(l - 1370 * 1024, 302.96e6, 0.001),
            "ViT-L/14 excl. pos: {l}"
        );
        let reg = count(|b| Vit::new(b, "vit", VitConfig::vit_l14_reg4()));
        assert_eq!(reg - l, 4 * 1024, "four register tokens");
        let g = count(|b| Vit::new(b, "vit", VitConfig::vit_g14()));
        assert!(within(g, 1.136e9, 0.01), "ViT-g/14: {g}");
    }

    #[test]
    fn tokens_and_shapes_at_any_input_size() {
        tch::manual_seed(0);
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let c = VitConfig::tiny();
        let vit = Vit::new(&mut b, "vit", c);
        let w = b.finish();
        // The learned grid as is (8 px / 2 = 4), and resampled to 3×5 patches.
        for (h, wd) in [(8, 8), (6, 10)] {
            let img = Tensor::randn([2, 3, h, wd], (Kind::Float, Device::Cpu));
            let out = vit.forward(&w, &img, AttentionImpl::Sdpa);
            assert_eq!(out.size(), vec![2, c.tokens(h, wd), c.dim]);
            assert!(out.isfinite().all().int64_value(&[]) == 1);
        }
        let img = Tensor::randn([1, 3, 6, 10], (Kind::Float, Device::Cpu));
        let layers = vit.intermediate_layers(&w, &img, 2, AttentionImpl::Sdpa);
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].0.size(), vec![1, 15, c.dim]);
        assert_eq!(layers[1].1.size(), vec![1, c.dim]);
        // The last intermediate layer is the final output's patch part.
        let full = vit.forward(&w, &img, AttentionImpl::Sdpa);
        let diff = (&layers[1].0 - full.narrow(1, 2, 15))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn attention_implementations_agree_through_the_model() {
        tch::manual_seed(1);
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let vit = Vit::new(&mut b, "vit", VitConfig::tiny());
        let w = b.finish();
        let img = Tensor::randn([1, 3, 8, 6], (Kind::Float, Device::Cpu));
        let reference = vit.forward(&w, &img, AttentionImpl::Sdpa);
        for imp in [AttentionImpl::Math, AttentionImpl::Sliced(SliceSize::Max)] {
            let out = vit.forward(&w, &img, imp);
            let err = (&out - &reference).abs().max().double_value(&[]);
            assert!(err < 1e-4, "{imp}: {err}");
        }
    }
}
