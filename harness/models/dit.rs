//! Building blocks of Flux-style diffusion transformers (Flux, Hunyuan3D-DiT):
//! - [`Modulation`]: adaLN parameters `Linear(dim → k·dim)` applied to `SiLU(vec)`, split into
//!   (shift, scale, gate) triples;
//! - [`DoubleStreamBlock`]: image and text streams with their own modulation, fused qkv,
//!   per-head QK RMSNorm, output projection and MLP, attending jointly over
//!   `concat(txt, img)`;
//! - [`SingleStreamBlock`]: one stream; `linear1` yields qkv and the MLP input at once,
//!   `linear2` maps `concat(attention, GELU(mlp))` back; modulation `3·dim`;
//! - [`MlpEmbedder`] (`in → hidden → SiLU → hidden`) and [`FinalLayer`] (adaLN shift/scale and
//!   a linear projection).
//!
//! Norms inside the blocks are LayerNorms without affine parameters (eps 1e-6); the MLPs use
//! the tanh GELU; QK RMSNorms have a learned scale per head channel.

use super::attention::{attention, AttentionImpl, QkNorm, QkNormKind};
use super::feed_forward::{Activation, FeedForward};
use super::layers::{LayerNorm, Linear};
use super::vit::{apply_qk_norm, merge_heads, qk_norm, FusedAttention};
use super::weights::{Builder, Weights};
use tch::Tensor;

/// `x · (1 + scale) + shift`, with `shift`/`scale` broadcast over tokens.
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Tensor {
    x * (scale + 1.0) + shift
}

/// One (shift, scale, gate) triple, each `[batch, 1, dim]`.
#[derive(Debug)]
pub struct ModulationOut {
    pub shift: Tensor,
    pub scale: Tensor,
    pub gate: Tensor,
}

/// adaLN modulation: `Linear(dim → 3·triples·dim)` on `SiLU(vec)`.
#[derive(Debug, Clone)]
pub struct Modulation {
    pub lin: Linear,
    pub triples: i64,
}

impl Modulation {
    pub fn new(b: &mut Builder, name: &str, dim: i64, triples: i64) -> Modulation {
        let b = &mut b.scope(name);
        Modulation {
            lin: Linear::new(b, "lin", dim, 3 * triples * dim, true),
            triples,
        }
    }

    /// `vec`: `[batch, dim]`.
    pub fn forward(&self, w: &Weights, vec: &Tensor) -> Vec<ModulationOut> {
        let out = self.lin.forward(w, &vec.silu()).unsqueeze(1);
        let parts = out.chunk(3 * self.triples, -1);
        parts
            .chunks(3)
            .map(|p| ModulationOut {
                shift: p[0].shallow_clone(),
                scale: p[1].shallow_clone(),
                gate: p[2].shallow_clone(),
            })
            .collect()
    }
}

/// `in_layer → SiLU → out_layer` (time, guidance and vector embedders).
#[derive(Debug, Clone)]
pub struct MlpEmbedder {
    pub in_layer: Linear,
    pub out_layer: Linear,
}

impl MlpEmbedder {
    pub fn new(b: &mut Builder, name: &str, in_dim: i64, hidden: i64) -> MlpEmbedder {
        let b = &mut b.scope(name);
        MlpEmbedder {
            in_layer: Linear::new(b, "in_layer", in_dim, hidden, true),
            out_layer: Linear::new(b, "out_layer", hidden, hidden, true),
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        self.out_layer
            .forward(w, &self.in_layer.forward(w, x).silu())
    }
}

/// Shape shared by the double- and single-stream blocks.
#[derive(Debug, Clone, Copy)]
pub struct DitBlockConfig {
    pub dim: i64,
    pub heads: i64,
    pub mlp_ratio: f64,
    pub qkv_bias: bool,
}

impl DitBlockConfig {
    pub fn mlp_hidden(&self) -> i64 {
        (self.dim as f64 * self.mlp_ratio) as i64
    }
}

/// One stream of a [`DoubleStreamBlock`].
#[derive(Debug, Clone)]
pub struct Stream {
    pub modulation: Modulation,
    pub norm1: LayerNorm,
    pub attn: FusedAttention,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
}

impl Stream {
    fn new(b: &mut Builder, name: &str, c: &DitBlockConfig) -> Stream {
        Stream {
            modulation: Modulation::new(b, &format!("{name}_mod"), c.dim, 2),
            norm1: LayerNorm::new(b, &format!("{name}_norm1"), c.dim, 1e-6, false),
            attn: FusedAttention::new(
                b,
                &format!("{name}_attn"),
                c.dim,
                c.heads,
                c.qkv_bias,
                QkNormKind::Rms,
                1e-6,
            ),
            norm2: LayerNorm::new(b, &format!("{name}_norm2"), c.dim, 1e-6, false),
            mlp: FeedForward::new(
                b,
                &format!("{name}_mlp"),
                c.dim,
                c.mlp_hidden(),
                Activation::GeluTanh,
                true,
            ),
        }
    }

    /// Modulation and QK-normed `q, k, v` for this stream's tokens.
    fn pre_attention(
        &self,
        w: &Weights,
        x: &Tensor,
        vec: &Tensor,
    ) -> (Vec<ModulationOut>, (Tensor, Tensor, Tensor)) {
        let m = self.modulation.forward(w, vec);
        let h = modulate(&self.norm1.forward(w, x), &m[0].shift, &m[0].scale);
        let qkv = self.attn.qkv(w, &h);
        (m, qkv)
    }

    fn post_attention(
        &self,
        w: &Weights,
        x: &Tensor,
        m: &[ModulationOut],
        attn: &Tensor,
    ) -> Tensor {
        let x = x + &m[0].gate * self.attn.project(w, attn);
        let h = modulate(&self.norm2.forward(w, &x), &m[1].shift, &m[1].scale);
        &x + &m[1].gate * self.mlp.forward(w, &h)
    }
}

/// Flux/Hunyuan3D double-stream (MMDiT) block.
#[derive(Debug, Clone)]
pub struct DoubleStreamBlock {
    pub img: Stream,
    pub txt: Stream,
}

impl DoubleStreamBlock {
    pub fn new(b: &mut Builder, name: &str, c: &DitBlockConfig) -> DoubleStreamBlock {
        let b = &mut b.scope(name);
        DoubleStreamBlock {
            img: Stream::new(b, "img", c),
            txt: Stream::new(b, "txt", c),
        }
    }

    /// `img`: `[batch, n_img, dim]`, `txt`: `[batch, n_txt, dim]`, `vec`: `[batch, dim]`.
    pub fn forward(
        &self,
        w: &Weights,
        img: &Tensor,
        txt: &Tensor,
        vec: &Tensor,
        imp: AttentionImpl,
    ) -> (Tensor, Tensor) {
        let (img_m, (iq, ik, iv)) = self.img.pre_attention(w, img, vec);
        let (txt_m, (tq, tk, tv)) = self.txt.pre_attention(w, txt, vec);
        let q = Tensor::cat(&[tq, iq], 2);
        let k = Tensor::cat(&[tk, ik], 2);
        let v = Tensor::cat(&[tv, iv], 2);
        let out = attention(&q, &k, &v, imp, false);
        let n_txt = txt.size()[1];
        let n_img = img.size()[1];
        let txt_out = out.narrow(2, 0, n_txt);
        let img_out = out.narrow(2, n_txt, n_img);
        (
            self.img.post_attention(w, img, &img_m, &img_out),
            self.txt.post_attention(w, txt, &txt_m, &txt_out),
        )
    }
}

/// Flux/Hunyuan3D single-stream block.
#[derive(Debug, Clone)]
pub struct SingleStreamBlock {
    pub dim: i64,
    pub heads: i64,
    pub mlp_hidden: i64,
    pub linear1: Linear,
    pub linear2: Linear,
    pub qk_norm: QkNorm,
    pub pre_norm: LayerNorm,
    pub modulation: Modulation,
}

impl SingleStreamBlock {
    pub fn new(b: &mut Builder, name: &str, c: &DitBlockConfig) -> SingleStreamBlock {
        let b = &mut b.scope(name);
        let hidden = c.mlp_hidden();
        SingleStreamBlock {
            dim: c.dim,
            heads: c.heads,
            mlp_hidden: hidden,
            linear1: Linear::new(b, "linear1", c.dim, 3 * c.dim + hidden, true),
            linear2: Linear::new(b, "linear2", c.dim + hidden, c.dim, true),
            qk_norm: qk_norm(b, "norm", QkNormKind::Rms, c.dim / c.heads, 1e-6)
                .expect("RMS QK-norm"),
            pre_norm: LayerNorm::new(b, "pre_norm", c.dim, 1e-6, false),
            modulation: Modulation::new(b, "modulation", c.dim, 1),
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor, vec: &Tensor, imp: AttentionImpl) -> Tensor {
        let (b, n, _) = x.size3().expect("[batch, tokens, dim]");
        let m = &self.modulation.forward(w, vec)[0];
        let h = modulate(&self.pre_norm.forward(w, x), &m.shift, &m.scale);
        let h = self.linear1.forward(w, &h);
        let qkv = h
            .narrow(2, 0, 3 * self.dim)
            .view([b, n, 3, self.heads, self.dim / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let mlp = h.narrow(2, 3 * self.dim, self.mlp_hidden);
        let (q, k) = apply_qk_norm(Some(&self.qk_norm), w, qkv.get(0), qkv.get(1));
        let out = merge_heads(&attention(&q, &k, &qkv.get(2), imp, false));
        let out = self
            .linear2
            .forward(w, &Tensor::cat(&[out, mlp.gelu("tanh")], 2));
        x + &m.gate * out
    }
}

/// Final adaLN (`Linear(dim → 2·dim)` on `SiLU(vec)`: shift, scale) and output projection.
#[derive(Debug, Clone)]
pub struct FinalLayer {
    pub norm_final: LayerNorm,
    pub linear: Linear,
    pub ada_ln: Linear,
}

impl FinalLayer {
    pub fn new(b: &mut Builder, name: &str, dim: i64, out: i64) -> FinalLayer {
        let b = &mut b.scope(name);
        FinalLayer {
            norm_final: LayerNorm::new(b, "norm_final", dim, 1e-6, false),
            linear: Linear::new(b, "linear", dim, out, true),
            ada_ln: Linear::new(b, "adaLN_modulation", dim, 2 * dim, true),
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor, vec: &Tensor) -> Tensor {
        let m = self
            .ada_ln
            .forward(w, &vec.silu())
            .unsqueeze(1)
            .chunk(2, -1);
        let h = modulate(&self.norm_final.forward(w, x), &m[0], &m[1]);
        self.linear.forward(w, &h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::count;
    use tch::{Device, Kind};

    #[test]
    fn block_parameter_counts_follow_the_layout() {
        let c = DitBlockConfig {
            dim: 1024,
            heads: 16,
            mlp_ratio: 4.0,
            qkv_bias: true,
        };
        // Per stream: modulation 1024→6144, qkv 1024→3072, QK scales 2×64, proj, MLP 1024→4096→1024.
        let stream = (1024 * 6144 + 6144)
            + (1024 * 3072 + 3072)
            + 128
            + (1024 * 1024 + 1024)
            + (1024 * 4096 + 4096)
            + (4096 * 1024 + 1024);
        assert_eq!(count(|b| DoubleStreamBlock::new(b, "d", &c)), 2 * stream);
        let single = (1024 * 7168 + 7168) + (5120 * 1024 + 1024) + 128 + (1024 * 3072 + 3072);
        assert_eq!(count(|b| SingleStreamBlock::new(b, "s", &c)), single);
    }

    #[test]
    fn blocks_keep_shapes() {
        tch::manual_seed(0);
        let c = DitBlockConfig {
            dim: 32,
            heads: 4,
            mlp_ratio: 4.0,
            qkv_bias: true,
        };
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let double = DoubleStreamBlock::new(&mut b, "d", &c);
        let single = SingleStreamBlock::new(&mut b, "s", &c);
        let last = FinalLayer::new(&mut b, "f", 32, 8);
        let w = b.finish();
        let opts = (Kind::Float, Device::Cpu);
        let (img, txt, vec) = (
            Tensor::randn([2, 7, 32], opts),
            Tensor::randn([2, 3, 32], opts),
            Tensor::randn([2, 32], opts),
        );
        let (img, txt) = double.forward(&w, &img, &txt, &vec, AttentionImpl::Sdpa);
        assert_eq!((img.size(), txt.size()), (vec![2, 7, 32], vec![2, 3, 32]));
        let x = single.forward(&w, &Tensor::cat(&[txt, img], 1), &vec, AttentionImpl::Sdpa);
        assert_eq!(x.size(), vec![2, 10, 32]);
        assert_eq!(last.forward(&w, &x, &vec).size(), vec![2, 10, 8]);
    }
}
