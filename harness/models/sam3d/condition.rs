//! The condition embedders (`EmbedderFuser`): DINOv2 on the image and the mask, the
//! pointmap patch embedder of stage 1, and their SwiGLU projections (see the module docs of
//! [`super`]).

use crate::models::attention::{AttentionImpl, QkNormKind};
use crate::models::feed_forward::Activation;
use crate::models::layers::{LayerNorm, Linear};
use crate::models::vit::{Block, BlockConfig, Vit, VitConfig};
use crate::models::weights::{Builder, Init, Param, Weights};
use tch::{Kind, Tensor};

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
        let b = &mut b.scope(name);
        let hidden = llama3_hidden((multiplier * output as f64) as i64);
        Projection {
            norm: LayerNorm::new(b, "0", input, 1e-5, true),
            w1: Linear::new(b, "1.w1", input, hidden, false),
            w3: Linear::new(b, "1.w3", input, hidden, false),
            w2: Linear::new(b, "1.w2", hidden, output, false),
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
        let b = &mut b.scope(name);
        let c = config;
        let grid = c.input_size / c.patch_size;
        let window = 1 + c.patch_size * c.patch_size;
        PointPatchEmbed {
            config,
            point_proj: Linear::new(b, "point_proj", 3, c.dim, true),
            invalid_xyz_token: b.param("invalid_xyz_token", &[c.dim], Init::Normal(0.02)),
            pos_embed: b.param("pos_embed", &[1, c.dim, grid, grid], Init::Normal(0.02)),
            pos_embed_window: b.param("pos_embed_window", &[1, window, c.dim], Init::Normal(0.02)),
            cls_token: b.param("cls_token", &[1, 1, c.dim], Init::Normal(0.02)),
            block: Block::new(
                b,
                "blocks.0",
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
        let b = &mut b.scope(name);
        let c = config;
        let dinos: Vec<Vit> = (0..2)
            .map(|i| Vit::new(b, &format!("embedder_list.{i}.backbone"), c.vit))
            .collect();
        let point = c
            .point
            .map(|p| PointPatchEmbed::new(b, "embedder_list.2", p));
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
                    &format!("projection_nets.{i}"),
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
            idx_emb: b.param("idx_emb", &[3, c.out_dim], Init::Normal(0.03)),
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

    /// One DINO call; the tokens come back in the input's dtype (`tokens.to(x.dtype)`).
    fn dino(&self, w: &Weights, vit: &Vit, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let kind = x.kind();
        let x = self.preprocess(x);
        let tokens = if self.config.prenorm_features {
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
        };
        tokens.to_kind(kind)
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
                // In place, as the reference adds it (`cond_token += idx_emb[…]`): the tokens
                // keep the projection's dtype (fp16 under autocast).
                let mut t = proj.forward(w, &t);
                t += idx;
                tokens.push(t);
            }
        }
        Tensor::cat(&tokens, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{finite, opts};
    use tch::Device;

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
