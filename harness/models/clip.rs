//! The CLIP text encoder of Stable Diffusion 2.x pipelines, as transformers' `CLIPTextModel`
//! holds OpenCLIP ViT-H/14's text tower: token (49,408 × 1024) and position (77 × 1024)
//! embeddings, 23 pre-LayerNorm transformer layers (16 heads, q/k/v/out projections with bias,
//! GELU MLP 1024 → 4096 → 1024) under a causal mask, and a final LayerNorm: 340,387,840
//! parameters (the SD 2.x `text_encoder` config; OpenCLIP's 24th layer is not part of it, as SD
//! 2.x conditions on the penultimate layer). Hunyuan3D-2's delight and multiview pipelines and
//! UP2You's RGB and normal pipelines each hold one.

use super::attention::{masked_attention, AttentionImpl, Mask, QkNormKind};
use super::feed_forward::Activation;
use super::layers::{Embedding, LayerNorm};
use super::vit::{Block, BlockConfig};
use super::weights::{Builder, Param, Weights};
use tch::Tensor;

/// Shape of a [`ClipTextModel`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipTextConfig {
    pub vocab: i64,
    pub positions: i64,
    pub dim: i64,
    pub layers: i64,
    pub heads: i64,
    pub mlp_hidden: i64,
}

impl ClipTextConfig {
    /// SD 2.x's `text_encoder` (OpenCLIP ViT-H/14 text tower without its last layer).
    pub fn open_clip_h() -> ClipTextConfig {
        ClipTextConfig {
            vocab: 49_408,
            positions: 77,
            dim: 1024,
            layers: 23,
            heads: 16,
            mlp_hidden: 4096,
        }
    }

    /// The same code at toy width for CPU tests; `dim` is the cross-attention width of the
    /// models it conditions.
    pub fn tiny(dim: i64) -> ClipTextConfig {
        ClipTextConfig {
            vocab: 1000,
            positions: 77,
            dim,
            layers: 1,
            heads: 2,
            mlp_hidden: 2 * dim,
        }
    }
}

/// A randomly initialised CLIP text encoder.
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    pub config: ClipTextConfig,
    token_embedding: Embedding,
    position_embedding: Param,
    layers: Vec<Block>,
    final_layer_norm: LayerNorm,
}

impl ClipTextModel {
    pub fn new(b: &mut Builder, name: &str, config: ClipTextConfig) -> ClipTextModel {
        let b = &mut b.scope(name);
        let c = config;
        let block = BlockConfig {
            dim: c.dim,
            heads: c.heads,
            mlp_hidden: c.mlp_hidden,
            activation: Activation::Gelu,
            qkv_bias: true,
            qk_norm: QkNormKind::None,
            layer_scale: false,
            eps: 1e-5,
        };
        ClipTextModel {
            config,
            token_embedding: Embedding::new(b, "embeddings.token_embedding", c.vocab, c.dim),
            position_embedding: b.param(
                "embeddings.position_embedding.weight",
                &[c.positions, c.dim],
                super::Init::Normal(0.02),
            ),
            layers: (0..c.layers)
                .map(|i| Block::new(b, &format!("encoder.layers.{i}"), &block))
                .collect(),
            final_layer_norm: LayerNorm::new(b, "final_layer_norm", c.dim, 1e-5, true),
        }
    }

    /// `last_hidden_state` for token ids `[batch, tokens]` (at most `positions` tokens):
    /// `[batch, tokens, dim]`, what SD 2.x pipelines pass to the UNet as the prompt embedding.
    pub fn forward(&self, w: &Weights, ids: &Tensor, imp: AttentionImpl) -> Tensor {
        let tokens = ids.size()[1];
        let positions = w.get(self.position_embedding).narrow(0, 0, tokens);
        let mut x = self.token_embedding.forward(w, ids) + positions.unsqueeze(0);
        for layer in &self.layers {
            let (q, k, v) = layer.attn.qkv(w, &layer.norm1.forward(w, &x));
            let h = masked_attention(&q, &k, &v, imp, false, Mask::Causal);
            x = &x + layer.attn.project(w, &h);
            x = &x + layer.mlp.forward(w, &layer.norm2.forward(w, &x));
        }
        self.final_layer_norm.forward(w, &x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{count, finite};
    use tch::{Device, Kind};

    #[test]
    fn open_clip_h_has_the_sd2_text_encoder_parameter_count() {
        // transformers' CLIPTextModel(vocab 49408, hidden 1024, 4096, 23 layers, 16 heads,
        // 77 positions), counted on the meta device: 340,387,840.
        let n = count(|b| ClipTextModel::new(b, "text_encoder", ClipTextConfig::open_clip_h()));
        assert_eq!(n, 340_387_840);
    }

    #[test]
    fn encodes_77_tokens_causally() {
        tch::manual_seed(0);
        let c = ClipTextConfig::tiny(32);
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let model = ClipTextModel::new(&mut b, "te", c);
        let w = b.finish();
        let ids = Tensor::randint(c.vocab, [2, 77], (Kind::Int64, Device::Cpu));
        let out = model.forward(&w, &ids, AttentionImpl::Sdpa);
        assert_eq!(out.size(), vec![2, 77, 32]);
        assert!(finite(&out));
        // Causal: changing the last token leaves every earlier position unchanged.
        let changed = ids.copy();
        let _ = changed
            .get(0)
            .get(76)
            .fill_((ids.int64_value(&[0, 76]) + 1) % c.vocab);
        let again = model.forward(&w, &changed, AttentionImpl::Math);
        let early = |t: &Tensor| t.get(0).narrow(0, 0, 76);
        assert!(early(&again).allclose(&early(&out), 1e-4, 1e-5, false));
        assert!(!again
            .get(0)
            .get(76)
            .allclose(&out.get(0).get(76), 1e-4, 1e-5, false));
    }
}
