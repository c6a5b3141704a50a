//! The attention layers and per-stream block layers that both SAM 3D flows are made of
//! (TRELLIS' `ModulatedTransformerCrossBlock` and its mixture-of-transformers variant).

use super::layer_norm32;
use crate::models::attention::{attention, AttentionImpl, QkNorm};
use crate::models::dit::modulate;
use crate::models::feed_forward::{Activation, FeedForward};
use crate::models::layers::{LayerNorm, Linear, MultiHeadRmsNorm};
use crate::models::vit::{merge_heads, FusedAttention};
use crate::models::weights::{Builder, Weights};
use tch::Tensor;

/// TRELLIS self-attention: a [`FusedAttention`] under TRELLIS' names (`to_qkv` and `to_out`,
/// both with biases), with its multi-head RMS QK-norm (`q_rms_norm`, `k_rms_norm`) or none.
#[derive(Debug, Clone)]
pub struct SelfAttention(pub FusedAttention);

impl SelfAttention {
    pub(super) fn new(
        b: &mut Builder,
        name: &str,
        dim: i64,
        heads: i64,
        qk_rms_norm: bool,
    ) -> SelfAttention {
        let b = &mut b.scope(name);
        let head_dim = dim / heads;
        // Created in the reference's order: `to_qkv`, the QK-norm, `to_out`.
        SelfAttention(FusedAttention {
            heads,
            head_dim,
            qkv: Linear::new(b, "to_qkv", dim, 3 * dim, true),
            qk_norm: qk_rms_norm.then(|| {
                QkNorm::MultiHeadRms(
                    MultiHeadRmsNorm::new(b, "q_rms_norm", heads, head_dim),
                    MultiHeadRmsNorm::new(b, "k_rms_norm", heads, head_dim),
                )
            }),
            proj: Linear::new(b, "to_out", dim, dim, true),
        })
    }

    pub(super) fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let (q, k, v) = self.0.qkv(w, x);
        self.0
            .proj
            .forward(w, &merge_heads(&attention(&q, &k, &v, imp, false)))
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
        let b = &mut b.scope(name);
        CrossAttention {
            heads,
            head_dim: dim / heads,
            to_q: Linear::new(b, "to_q", dim, dim, true),
            to_kv: Linear::new(b, "to_kv", ctx_dim, 2 * dim, true),
            to_out: Linear::new(b, "to_out", dim, dim, true),
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
    /// The layers, named directly in `b`'s scope (`norm1`, `self_attn`, …).
    pub(super) fn new(b: &mut Builder, c: &FlowBlockConfig) -> StreamLayers {
        StreamLayers {
            norm1: LayerNorm::new(b, "norm1", c.dim, 1e-6, false),
            self_attn: SelfAttention::new(b, "self_attn", c.dim, c.heads, c.qk_rms_norm),
            norm2: LayerNorm::new(b, "norm2", c.dim, 1e-6, true),
            cross_attn: CrossAttention::new(b, "cross_attn", c.dim, c.cond_dim, c.heads),
            norm3: LayerNorm::new(b, "norm3", c.dim, 1e-6, false),
            mlp: mlp(b, "mlp", c.dim, c.mlp_ratio),
        }
    }

    /// `norm1` + adaLN, then `q, k, v` of the self-attention.
    pub(super) fn pre_attention(
        &self,
        w: &Weights,
        x: &Tensor,
        m: &[Tensor],
    ) -> (Tensor, Tensor, Tensor) {
        let h = modulate(&layer_norm32(w, &self.norm1, x), &m[0], &m[1]);
        self.self_attn.0.qkv(w, &h)
    }

    /// Gated self-attention residual, cross-attention and gated MLP.
    pub(super) fn post_attention(
        &self,
        w: &Weights,
        x: &Tensor,
        attn: &Tensor,
        m: &[Tensor],
        ctx: &Tensor,
        imp: AttentionImpl,
    ) -> Tensor {
        let x = x + self.self_attn.0.proj.forward(w, &merge_heads(attn)) * &m[2];
        let h = self
            .cross_attn
            .forward(w, &layer_norm32(w, &self.norm2, &x), ctx, imp);
        let x = x + h;
        let h = modulate(&layer_norm32(w, &self.norm3, &x), &m[3], &m[4]);
        &x + self.mlp.forward(w, &h) * &m[5]
    }
}

/// TRELLIS' MLP: `dim → ratio·dim → dim`, tanh GELU, with biases.
pub(super) fn mlp(b: &mut Builder, name: &str, dim: i64, ratio: i64) -> FeedForward {
    FeedForward::new(b, name, dim, ratio * dim, Activation::GeluTanh, true)
}

/// adaLN: `Linear(dim → 6·dim)` on `SiLU(t_emb)` → (shift, scale, gate) for attention, then MLP,
/// each `[b, 1, dim]`.
pub(super) fn ada_ln(w: &Weights, lin: &Linear, t_emb: &Tensor) -> Vec<Tensor> {
    lin.forward(w, &t_emb.silu()).unsqueeze(1).chunk(6, -1)
}
