//! Attention with selectable implementations, as diffusers users switch them:
//! - `sdpa`: fused `scaled_dot_product_attention` (flash / memory-efficient kernels);
//! - `math`: explicit QKᵀ → softmax → V, materialising the whole score matrix;
//! - `sliced`: diffusers' attention slicing (`SlicedAttnProcessor`): the (batch·heads) rows are
//!   processed `slice_size` at a time with explicit matmuls, so only one slice's score matrix
//!   exists at once. `auto` = heads/2, `max` = 1, or a fixed count.
//!
//! `upcast` computes the scores and softmax in fp32, as diffusers' `upcast_attention` does for
//! the non-SDPA processors (SD 2.1 sets it).

use super::layers::{LayerNorm, Linear, MultiHeadRmsNorm, RmsNorm};
use super::weights::{Builder, Weights};
use serde::{Deserialize, Serialize};
use std::fmt;
use tch::{Kind, Tensor};

/// Rows of (batch·heads) per slice of sliced attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SliceSize {
    /// heads / 2 (diffusers' `"auto"`).
    Auto,
    /// One row at a time (diffusers' `"max"`, or `1`).
    Max,
    Fixed(i64),
}

/// Which attention kernel path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AttentionImpl {
    #[default]
    Sdpa,
    Math,
    Sliced(SliceSize),
}

impl AttentionImpl {
    /// Parses the manifest spelling: `sdpa`, `math`, `sliced` (= auto), `sliced:auto`,
    /// `sliced:max`, `sliced:N`.
    pub fn parse(text: &str) -> Option<AttentionImpl> {
        match text {
            "sdpa" => Some(AttentionImpl::Sdpa),
            "math" => Some(AttentionImpl::Math),
            "sliced" | "sliced:auto" => Some(AttentionImpl::Sliced(SliceSize::Auto)),
            "sliced:max" | "sliced:1" => Some(AttentionImpl::Sliced(SliceSize::Max)),
            other => {
                let n: i64 = other.strip_prefix("sliced:")?.parse().ok()?;
                (n >= 1).then_some(AttentionImpl::Sliced(SliceSize::Fixed(n)))
            }
        }
    }
}

impl fmt::Display for AttentionImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttentionImpl::Sdpa => f.write_str("sdpa"),
            AttentionImpl::Math => f.write_str("math"),
            AttentionImpl::Sliced(SliceSize::Auto) => f.write_str("sliced:auto"),
            AttentionImpl::Sliced(SliceSize::Max) => f.write_str("sliced:max"),
            AttentionImpl::Sliced(SliceSize::Fixed(n)) => write!(f, "sliced:{n}"),
        }
    }
}

/// Which keys each query may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mask {
    /// Every key.
    #[default]
    None,
    /// Query `i` sees keys `0..=i` (decoder language models). `Sdpa` uses the fused kernel's
    /// causal mode; `Math` and `Sliced` fill the future scores with −∞ before the softmax.
    Causal,
}

/// Attention over `q`, `k`, `v` shaped `[batch, heads, tokens, head_dim]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, imp: AttentionImpl, upcast: bool) -> Tensor {
    masked_attention(q, k, v, imp, upcast, Mask::None)
}

/// [`attention`] with a [`Mask`].
pub fn masked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    imp: AttentionImpl,
    upcast: bool,
    mask: Mask,
) -> Tensor {
    let (batch, heads, lq, d) = q.size4().expect("q is [batch, heads, tokens, head_dim]");
    let scale = 1.0 / (d as f64).sqrt();
    let lk = k.size()[2];
    // diffusers' `get_attention_scores` then `bmm`, with its release points: the raw scores
    // are freed (`del attention_scores`) before the probabilities are cast back, so at most two
    // score-sized tensors are alive at any time (matmul output and scaled copy, which stand for
    // `baddbmm`'s empty input and output; then scores and probabilities).
    let explicit = |q: &Tensor, k: &Tensor, v: &Tensor| -> Tensor {
        let kind = q.kind();
        let probs = {
            let (q, k) = if upcast {
                (q.to_kind(Kind::Float), k.to_kind(Kind::Float))
            } else {
                (q.shallow_clone(), k.shallow_clone())
            };
            let scores = q.matmul(&k.transpose(-1, -2)) * scale;
            let scores = match mask {
                Mask::None => scores,
                Mask::Causal => {
                    let future = Tensor::ones([lq, lk], (Kind::Bool, q.device())).triu(1);
                    scores.masked_fill(&future, f64::NEG_INFINITY)
                }
            };
            scores.softmax(-1, scores.kind())
        };
        probs.to_kind(kind).matmul(v)
    };
    match imp {
        AttentionImpl::Sdpa => Tensor::scaled_dot_product_attention(
            q,
            k,
            v,
            None::<Tensor>,
            0.0,
            mask == Mask::Causal,
            scale,
            false,
        ),
        AttentionImpl::Math => explicit(q, k, v),
        AttentionImpl::Sliced(size) => {
            let rows = batch * heads;
            let slice = match size {
                SliceSize::Auto => (heads / 2).max(1),
                SliceSize::Max => 1,
                SliceSize::Fixed(n) => n,
            };
            let q = q.reshape([rows, lq, d]);
            let k = k.reshape([rows, lk, d]);
            let v = v.reshape([rows, lk, v.size()[3]]);
            // diffusers' `SlicedAttnProcessor`: one output buffer, each slice written into it
            // and released before the next is computed.
            let out = Tensor::zeros([rows, lq, v.size()[2]], (q.kind(), q.device()));
            for start in (0..rows).step_by(slice as usize) {
                let len = slice.min(rows - start);
                let part = explicit(
                    &q.narrow(0, start, len),
                    &k.narrow(0, start, len),
                    &v.narrow(0, start, len),
                );
                out.narrow(0, start, len).copy_(&part);
            }
            out.reshape([batch, heads, lq, -1])
        }
    }
}

/// Per-head normalisation of queries and keys (QK-norm).
#[derive(Debug, Clone)]
pub enum QkNorm {
    Rms(RmsNorm, RmsNorm),
    Layer(LayerNorm, LayerNorm),
    /// TRELLIS' `MultiHeadRMSNorm` (SAM 3D).
    MultiHeadRms(MultiHeadRmsNorm, MultiHeadRmsNorm),
}

/// Multi-head attention with separate q/k/v/out projections (diffusers' `Attention`):
/// self-attention when no context is given, cross-attention otherwise.
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    pub heads: i64,
    pub head_dim: i64,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub qk_norm: Option<QkNorm>,
    pub upcast: bool,
}

/// Shape of a [`MultiHeadAttention`].
#[derive(Debug, Clone, Copy)]
pub struct AttentionConfig {
    pub query_dim: i64,
    /// Key/value input width (`query_dim` for self-attention).
    pub context_dim: i64,
    pub heads: i64,
    pub head_dim: i64,
    pub qkv_bias: bool,
    pub out_bias: bool,
    pub qk_norm: QkNormKind,
    pub upcast: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNormKind {
    None,
    Rms,
    Layer,
}

impl MultiHeadAttention {
    pub fn new(b: &mut Builder, name: &str, c: AttentionConfig) -> MultiHeadAttention {
        let b = &mut b.scope(name);
        let inner = c.heads * c.head_dim;
        let qk_norm = match c.qk_norm {
            QkNormKind::None => None,
            QkNormKind::Rms => Some(QkNorm::Rms(
                RmsNorm::new(b, "norm_q", c.head_dim, 1e-6),
                RmsNorm::new(b, "norm_k", c.head_dim, 1e-6),
            )),
            QkNormKind::Layer => Some(QkNorm::Layer(
                LayerNorm::new(b, "norm_q", c.head_dim, 1e-6, true),
                LayerNorm::new(b, "norm_k", c.head_dim, 1e-6, true),
            )),
        };
        MultiHeadAttention {
            heads: c.heads,
            head_dim: c.head_dim,
            to_q: Linear::new(b, "to_q", c.query_dim, inner, c.qkv_bias),
            to_k: Linear::new(b, "to_k", c.context_dim, inner, c.qkv_bias),
            to_v: Linear::new(b, "to_v", c.context_dim, inner, c.qkv_bias),
            to_out: Linear::new(b, "to_out", inner, c.query_dim, c.out_bias),
            qk_norm,
            upcast: c.upcast,
        }
    }

    /// `[batch, tokens, heads·head_dim]` → `[batch, heads, tokens, head_dim]`
    pub fn split_heads(&self, x: &Tensor) -> Tensor {
        let (b, n, _) = x.size3().expect("[batch, tokens, channels]");
        x.view([b, n, self.heads, self.head_dim]).transpose(1, 2)
    }

    /// Applies the QK-norm, if any, to `[batch, heads, tokens, head_dim]` tensors.
    pub fn norm_qk(&self, w: &Weights, q: Tensor, k: Tensor) -> (Tensor, Tensor) {
        match &self.qk_norm {
            None => (q, k),
            Some(QkNorm::Rms(nq, nk)) => (nq.forward(w, &q), nk.forward(w, &k)),
            Some(QkNorm::Layer(nq, nk)) => (nq.forward(w, &q), nk.forward(w, &k)),
            Some(QkNorm::MultiHeadRms(nq, nk)) => (nq.forward(w, &q), nk.forward(w, &k)),
        }
    }

    /// `x`: `[batch, tokens, query_dim]`; `context`: `[batch, ctx_tokens, context_dim]`.
    pub fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        context: Option<&Tensor>,
        imp: AttentionImpl,
    ) -> Tensor {
        let ctx = context.unwrap_or(x);
        if imp == AttentionImpl::Math && self.qk_norm.is_none() {
            return self.attn_processor(w, x, ctx);
        }
        let q = self.split_heads(&self.to_q.forward(w, x));
        let k = self.split_heads(&self.to_k.forward(w, ctx));
        let v = self.split_heads(&self.to_v.forward(w, ctx));
        let (q, k) = self.norm_qk(w, q, k);
        let out = attention(&q, &k, &v, imp, self.upcast);
        let (b, _, n, _) = out.size4().expect("attention output");
        self.to_out.forward(
            w,
            &out.transpose(1, 2)
                .reshape([b, n, self.heads * self.head_dim]),
        )
    }
}

impl MultiHeadAttention {
    /// diffusers' `AttnProcessor` (what `math` selects there), statement by statement, so the
    /// caching allocator sees the same tensors in the same order and places its blocks as it
    /// does there: the heads are folded into the batch by copies (`head_to_batch_dim`, each
    /// projection freed once copied); q and k are upcast; the scores come from `baddbmm` over
    /// an empty input of their own size, freed after it; the fp32 scores are freed once
    /// softmaxed and the fp32 probabilities once cast back; the fp16 probabilities and the
    /// folded q, k, v live until return; heads are unfolded by a copy and the output divided by
    /// `rescale_output_factor` (1) into a new tensor. Same values and allocated peak as
    /// [`attention`]'s `Math`; only the placement of blocks, hence reserved memory, can differ.
    fn attn_processor(&self, w: &Weights, x: &Tensor, ctx: &Tensor) -> Tensor {
        let heads = self.heads;
        let head_to_batch_dim = |t: Tensor| {
            let (b, n, c) = t.size3().expect("[batch, tokens, channels]");
            t.reshape([b, n, heads, c / heads])
                .permute([0, 2, 1, 3])
                .reshape([b * heads, n, c / heads])
        };
        let query = self.to_q.forward(w, x);
        let key = self.to_k.forward(w, ctx);
        let value = self.to_v.forward(w, ctx);
        let query = head_to_batch_dim(query);
        let key = head_to_batch_dim(key);
        let value = head_to_batch_dim(value);
        let probs = self.attention_scores(&query, &key);
        // Each step consumes its input, as Python's rebinding of `hidden_states` frees it.
        let batch_to_head_dim = |t: Tensor| {
            let (bh, n, d) = t.size3().expect("[batch·heads, tokens, head_dim]");
            t.reshape([bh / heads, heads, n, d])
                .permute([0, 2, 1, 3])
                .reshape([bh / heads, n, heads * d])
        };
        let out = {
            let unfolded = batch_to_head_dim(probs.bmm(&value));
            self.to_out.forward(w, &unfolded)
        };
        // `hidden_states / attn.rescale_output_factor`: a new tensor even when dividing by 1.
        let out = out / 1.0;
        // CPython clears the frame's locals in order: query, key, value, then the probabilities.
        drop(query);
        drop(key);
        drop(value);
        drop(probs);
        out
    }

    /// diffusers' `Attention.get_attention_scores` without a mask.
    fn attention_scores(&self, query: &Tensor, key: &Tensor) -> Tensor {
        let dtype = query.kind();
        let (query, key) = if self.upcast {
            (query.to_kind(Kind::Float), key.to_kind(Kind::Float))
        } else {
            (query.shallow_clone(), key.shallow_clone())
        };
        let (bh, lq, d) = query.size3().expect("[batch·heads, tokens, head_dim]");
        let lk = key.size()[1];
        let input = Tensor::empty([bh, lq, lk], (query.kind(), query.device()));
        let scores = input.baddbmm(&query, &key.transpose(-1, -2), 0.0, 1.0 / (d as f64).sqrt());
        drop(input);
        let probs = {
            let probs = scores.softmax(-1, scores.kind());
            drop(scores);
            probs.to_kind(dtype)
        };
        // Python frees the upcast query, then the key, when the function returns.
        drop(query);
        drop(key);
        probs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qkv(seed: i64) -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(seed);
        let opts = (Kind::Float, tch::Device::Cpu);
        (
            Tensor::randn([2, 4, 33, 16], opts),
            Tensor::randn([2, 4, 47, 16], opts),
            Tensor::randn([2, 4, 47, 16], opts),
        )
    }

    #[test]
    fn math_and_sliced_equal_sdpa_in_fp32() {
        let (q, k, v) = qkv(1);
        let reference = attention(&q, &k, &v, AttentionImpl::Sdpa, false);
        for imp in [
            AttentionImpl::Math,
            AttentionImpl::Sliced(SliceSize::Auto),
            AttentionImpl::Sliced(SliceSize::Max),
            AttentionImpl::Sliced(SliceSize::Fixed(3)),
        ] {
            let out = attention(&q, &k, &v, imp, false);
            assert_eq!(out.size(), reference.size());
            let err = (&out - &reference).abs().max().double_value(&[]);
            assert!(err < 1e-5, "{imp}: max abs error {err}");
            let up = attention(&q, &k, &v, imp, true);
            assert!(
                (&up - &reference).abs().max().double_value(&[]) < 1e-5,
                "{imp} upcast"
            );
        }
    }

    #[test]
    fn causal_math_and_sliced_equal_sdpa() {
        let (q, k, v) = qkv(2);
        let k = k.narrow(2, 0, 33);
        let v = v.narrow(2, 0, 33);
        let reference = masked_attention(&q, &k, &v, AttentionImpl::Sdpa, false, Mask::Causal);
        // The first query sees the first key only.
        let first = v.narrow(2, 0, 1);
        assert!(
            (reference.narrow(2, 0, 1) - first)
                .abs()
                .max()
                .double_value(&[])
                < 1e-5
        );
        for imp in [
            AttentionImpl::Math,
            AttentionImpl::Sliced(SliceSize::Auto),
            AttentionImpl::Sliced(SliceSize::Fixed(3)),
        ] {
            let out = masked_attention(&q, &k, &v, imp, false, Mask::Causal);
            let err = (&out - &reference).abs().max().double_value(&[]);
            assert!(err < 1e-5, "{imp}: max abs error {err}");
        }
    }

    #[test]
    fn parses_manifest_spellings() {
        assert_eq!(
            AttentionImpl::parse("sliced"),
            Some(AttentionImpl::Sliced(SliceSize::Auto))
        );
        assert_eq!(
            AttentionImpl::parse("sliced:1"),
            Some(AttentionImpl::Sliced(SliceSize::Max))
        );
        assert_eq!(
            AttentionImpl::parse("sliced:4"),
            Some(AttentionImpl::Sliced(SliceSize::Fixed(4)))
        );
        assert_eq!(AttentionImpl::parse("sliced:0"), None);
        assert_eq!(AttentionImpl::parse("flash"), None);
        for s in ["sdpa", "math", "sliced:auto", "sliced:max", "sliced:3"] {
            assert_eq!(AttentionImpl::parse(s).unwrap().to_string(), s);
        }
    }
}
