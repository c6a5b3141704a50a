//! `UNet2DConditionModel` as diffusers builds it, with the Stable Diffusion 2.1 configuration as
//! the reference point and the variants the documented pipelines use:
//!
//! - **SD 2.1** ([`UNetConfig::sd21`]): `block_out_channels [320, 640, 1280, 1280]`,
//!   `layers_per_block 2`, `attention_head_dim [5, 10, 20, 20]` (diffusers reads it as the
//!   *number of heads*, so head_dim is 64 everywhere), `cross_attention_dim 1024`,
//!   `use_linear_projection`, `upcast_attention`, CrossAttnDown ×3 + Down, a cross-attention
//!   mid block, Up + CrossAttnUp ×3, GroupNorm 32 / eps 1e-5, `flip_sin_to_cos`,
//!   `freq_shift 0`, time embedding 320 → 1280 → 1280, GEGLU feed-forwards of inner width 4·C.
//!   865,910,724 parameters, the published count (checked in the tests).
//! - **8-channel delight** ([`UNetConfig::delight`]): Hunyuan3D's delight model is an
//!   InstructPix2Pix pipeline (4 noisy + 4 image-latent channels); its UNet config is not
//!   published, the SD-2.x geometry is [inferred] from the folder's size.
//! - **Hunyuan3D-paint multiview** ([`UNetConfig::hunyuan_paint`]): `conv_in` of 12 channels
//!   (noisy latent + normal-map latent + position-map latent), a camera class embedding
//!   `Embedding(5 + 44, 1280)`, and in all 16 transformer blocks a full-sequence multiview
//!   attention over 6 views and a reference attention over all recorded reference tokens, plus
//!   the learned prompt embeddings its pipeline conditions on (965,302,340 parameters). The
//!   reference ("dual") UNet is a plain SD-2.x UNet run in recording mode
//!   ([`UNet2DConditionModel::forward_recording`]); the SD-2.x geometry of both is [inferred]
//!   (cross-attention 1024 and time embedding 1280 are hard-coded in that code).
//! - **UP2You** ([`UNetConfig::up2you`]): SD 2.1 with row-wise multiview attention over 6
//!   views and a reference attention over `2·HW` selected tokens per view; its reference pass
//!   is a recording run of the same model, and its T2I-Adapter's features enter through
//!   [`UNetInput::down_residuals`].
//! - **tiny** ([`UNetConfig::tiny`]): the same code at `block_out [32, 64]` for CPU tests.
//!
//! The attention implementation is chosen per forward call and applies to every attention
//! layer (self, cross, multiview, reference), as diffusers' `set_attn_processor` /
//! `set_attention_slice` do for the whole model.

use super::attention::AttentionImpl;
use super::embeddings::timestep_embedding;
use super::layers::{Conv2d, Embedding, GroupNorm, Linear};
use super::unet_blocks::{
    BlockState, Downsample2D, ExtraAttention, Multiview, Norm, ReferenceMode, ReferenceSelect,
    ReferenceTokens, ResnetBlock2D, Transformer2D, TransformerConfig, Upsample2D,
};
use super::weights::{Builder, Init, Param, Weights};
use tch::{Device, Kind, Tensor};

/// Configuration of a [`UNet2DConditionModel`] (field names follow diffusers' config keys).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub block_out_channels: Vec<i64>,
    /// Per level: whether the down block (and its mirrored up block) has cross-attention
    /// transformers. SD: `[true, true, true, false]`. The mid block always has one.
    pub cross_attention: Vec<bool>,
    pub layers_per_block: i64,
    /// Attention heads per level (diffusers' `attention_head_dim`); the mid block uses the
    /// last level's.
    pub heads: Vec<i64>,
    pub cross_attention_dim: i64,
    /// Transformer blocks per `Transformer2DModel`.
    pub transformer_layers: i64,
    pub linear_projection: bool,
    pub upcast_attention: bool,
    pub norm_groups: i64,
    pub norm_eps: f64,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    /// `num_class_embeds`: an `Embedding(n, time_embed_dim)` added to the time embedding.
    pub class_embeddings: Option<i64>,
    /// Extra attentions of every transformer block.
    pub extra: ExtraAttention,
    /// Hunyuan3D-paint's learned prompt embeddings (`learned_text_clip_gen` and
    /// `learned_text_clip_ref`, each `[1, 77, cross_attention_dim]`), which its pipeline uses
    /// instead of running its text encoder.
    pub learned_text: bool,
}

impl UNetConfig {
    /// Stable Diffusion 2.1 (also the 2.1-base geometry).
    pub fn sd21() -> UNetConfig {
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            cross_attention: vec![true, true, true, false],
            layers_per_block: 2,
            heads: vec![5, 10, 20, 20],
            cross_attention_dim: 1024,
            transformer_layers: 1,
            linear_projection: true,
            upcast_attention: true,
            norm_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            class_embeddings: None,
            extra: ExtraAttention::NONE,
            learned_text: false,
        }
    }

    /// The SD 2.x structure at toy width for CPU tests: two levels (one with
    /// cross-attention, one without, as SD's last level), two heads of 16 at the first level,
    /// cross-attention width 32.
    pub fn tiny() -> UNetConfig {
        UNetConfig {
            block_out_channels: vec![32, 64],
            cross_attention: vec![true, false],
            heads: vec![2, 4],
            cross_attention_dim: 32,
            ..UNetConfig::sd21()
        }
    }

    /// Same network with another `conv_in` width (8: InstructPix2Pix-style image
    /// conditioning; 12: Hunyuan3D-paint's normal and position latents).
    pub fn with_in_channels(self, in_channels: i64) -> UNetConfig {
        UNetConfig {
            in_channels,
            ..self
        }
    }

    /// Hunyuan3D's delight UNet: SD 2.x with 8 input channels [inferred].
    pub fn delight() -> UNetConfig {
        UNetConfig::sd21().with_in_channels(8)
    }

    /// Number of camera embeddings of Hunyuan3D-paint (`5 + 44`).
    pub const HUNYUAN_CAMERA_EMBEDDINGS: i64 = 5 + 44;

    /// Views Hunyuan3D-paint 2.0 and UP2You generate.
    pub const MULTIVIEW_VIEWS: i64 = 6;

    /// Hunyuan3D-paint's `UNet2p5DConditionModel` main UNet (without its reference copy).
    pub fn hunyuan_paint() -> UNetConfig {
        UNetConfig {
            class_embeddings: Some(Self::HUNYUAN_CAMERA_EMBEDDINGS),
            extra: ExtraAttention {
                multiview: Multiview::Full,
                views: Self::MULTIVIEW_VIEWS,
                reference: Some(ReferenceSelect::All),
            },
            learned_text: true,
            ..UNetConfig::sd21().with_in_channels(12)
        }
    }

    /// UP2You's UNet: SD 2.1 with MV-Adapter's row-wise multiview attention (computed as its
    /// processor does, keys and values repeated per view) and a reference
    /// attention over `max_select_ratio·HW = 2·HW` tokens per view (capped at `N_ref·HW`).
    pub fn up2you() -> UNetConfig {
        UNetConfig {
            extra: ExtraAttention {
                multiview: Multiview::RowWiseRepeat,
                views: Self::MULTIVIEW_VIEWS,
                reference: Some(ReferenceSelect::PerView { ratio: 2.0 }),
            },
            ..UNetConfig::sd21()
        }
    }

    /// Width of the time embedding (`4 × block_out_channels[0]`).
    pub fn time_embed_dim(&self) -> i64 {
        4 * self.block_out_channels[0]
    }

    fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    fn norm(&self) -> Norm {
        Norm {
            groups: self.norm_groups,
            eps: self.norm_eps,
        }
    }

    fn transformer(&self, channels: i64, heads: i64) -> TransformerConfig {
        TransformerConfig {
            channels,
            heads,
            cross_attention_dim: self.cross_attention_dim,
            upcast_attention: self.upcast_attention,
            layer_norm_eps: 1e-5,
            norm: Norm {
                groups: self.norm_groups,
                eps: 1e-6,
            },
            layers: self.transformer_layers,
            linear_projection: self.linear_projection,
            extra: self.extra,
        }
    }

    /// The resnets of a down or up block at `level`, one per input width (each to `out`
    /// channels), each followed at cross-attention levels by its transformer, whose blocks are
    /// added to `sites`.
    fn block_layers(
        &self,
        b: &mut Builder,
        name: &str,
        level: usize,
        inputs: impl Iterator<Item = i64>,
        out: i64,
        sites: &mut Vec<BlockSite>,
    ) -> (Vec<ResnetBlock2D>, Vec<Transformer2D>) {
        let b = &mut b.scope(name);
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for (j, res_in) in inputs.enumerate() {
            resnets.push(ResnetBlock2D::new(
                b,
                &format!("resnets.{j}"),
                res_in,
                out,
                Some(self.time_embed_dim()),
                self.norm(),
            ));
            if self.cross_attention[level] {
                attentions.push(Transformer2D::new(
                    b,
                    &format!("attentions.{j}"),
                    &self.transformer(out, self.heads[level]),
                ));
                sites.extend((0..self.transformer_layers).map(|_| BlockSite {
                    channels: out,
                    level: level as u32,
                }));
            }
        }
        (resnets, attentions)
    }

    /// Checks what the constructor would otherwise panic on.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.levels();
        if n == 0 || self.cross_attention.len() != n || self.heads.len() != n {
            return Err(
                "block_out_channels, cross_attention and heads need one entry per level".into(),
            );
        }
        for (&c, &h) in self.block_out_channels.iter().zip(&self.heads) {
            if h < 1 || c % h != 0 {
                return Err(format!("{c} channels do not split into {h} heads"));
            }
            if c % self.norm_groups != 0 {
                return Err(format!(
                    "{c} channels do not split into {} groups",
                    self.norm_groups
                ));
            }
        }
        if self.extra.views < 1 {
            return Err("views must be at least 1".into());
        }
        Ok(())
    }
}

/// A level on the way down: resnets, optional transformers, optional downsampler.
#[derive(Debug, Clone)]
struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsampler: Option<Downsample2D>,
}

/// A level on the way up: resnets over the concatenated skip connection, optional
/// transformers, optional upsampler.
#[derive(Debug, Clone)]
struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    upsampler: Option<Upsample2D>,
}

/// What one forward pass gets.
pub struct UNetInput<'a> {
    /// `[B, in_channels, H, W]` latents in the model's dtype.
    pub sample: &'a Tensor,
    /// 1-D: one timestep, or one per batch entry.
    pub timesteps: &'a Tensor,
    /// `[B, tokens, cross_attention_dim]` (77 × 1024 for SD 2.1).
    pub encoder_hidden_states: &'a Tensor,
    /// `[B]` int64 class (camera) ids; required when the model has a class embedding.
    pub class_labels: Option<&'a Tensor>,
    /// Tokens for the reference attentions; without them those attentions are skipped.
    pub reference: Option<&'a ReferenceTokens>,
    /// T2I-Adapter features, one per level (diffusers' `down_intrablock_additional_residuals`):
    /// each is added to its level's last output, before the downsampler, so the skip
    /// connection carries it too.
    pub down_residuals: Option<&'a [Tensor]>,
}

/// Shape of one transformer block's feature map, in module order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSite {
    pub channels: i64,
    /// Number of stride-2 downsamplings above the latent resolution.
    pub level: u32,
}

/// A randomly initialised `UNet2DConditionModel`.
pub struct UNet2DConditionModel {
    pub config: UNetConfig,
    pub weights: Weights,
    conv_in: Conv2d,
    time_linear_1: Linear,
    time_linear_2: Linear,
    class_embedding: Option<Embedding>,
    down: Vec<DownBlock>,
    mid_resnets: [ResnetBlock2D; 2],
    mid_attention: Transformer2D,
    up: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    learned_text: Option<[Param; 2]>,
    sites: Vec<BlockSite>,
}

impl std::fmt::Debug for UNet2DConditionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UNet2DConditionModel")
            .field("config", &self.config)
            .field("weights", &self.weights)
            .finish()
    }
}

impl UNet2DConditionModel {
    /// Builds the model with `b`'s weights (random, or counting). Panics on an invalid
    /// config (see [`UNetConfig::validate`]).
    pub fn new(config: &UNetConfig, mut builder: Builder) -> UNet2DConditionModel {
        if let Err(e) = config.validate() {
            panic!("invalid UNet config: {e}");
        }
        let b = &mut builder;
        let c = config;
        let ch = &c.block_out_channels;
        let n = c.levels();
        let temb = c.time_embed_dim();
        let norm = c.norm();
        let mut sites = Vec::new();

        let conv_in = Conv2d::new(b, "conv_in", c.in_channels, ch[0], 3, 1, 1, true);
        let time_linear_1 = Linear::new(b, "time_embedding.linear_1", ch[0], temb, true);
        let time_linear_2 = Linear::new(b, "time_embedding.linear_2", temb, temb, true);
        let class_embedding = c
            .class_embeddings
            .map(|count| Embedding::new(b, "class_embedding", count, temb));

        let mut down = Vec::with_capacity(n);
        let mut in_ch = ch[0];
        for (level, &out) in ch.iter().enumerate() {
            let name = format!("down_blocks.{level}");
            let inputs = (0..c.layers_per_block).map(|j| if j == 0 { in_ch } else { out });
            let (resnets, attentions) = c.block_layers(b, &name, level, inputs, out, &mut sites);
            let downsampler = (level + 1 < n)
                .then(|| Downsample2D::new(b, &format!("{name}.downsamplers.0"), out, false));
            down.push(DownBlock {
                resnets,
                attentions,
                downsampler,
            });
            in_ch = out;
        }

        let mid_ch = ch[n - 1];
        let mid_resnets = [
            ResnetBlock2D::new(b, "mid_block.resnets.0", mid_ch, mid_ch, Some(temb), norm),
            ResnetBlock2D::new(b, "mid_block.resnets.1", mid_ch, mid_ch, Some(temb), norm),
        ];
        let mid_attention = Transformer2D::new(
            b,
            "mid_block.attentions.0",
            &c.transformer(mid_ch, c.heads[n - 1]),
        );
        sites.extend((0..c.transformer_layers).map(|_| BlockSite {
            channels: mid_ch,
            level: (n - 1) as u32,
        }));

        let mut up = Vec::with_capacity(n);
        let reversed: Vec<i64> = ch.iter().rev().copied().collect();
        let mut prev_out = reversed[0];
        for i in 0..n {
            let level = n - 1 - i;
            let out = reversed[i];
            let skip_in = reversed[(i + 1).min(n - 1)];
            let name = format!("up_blocks.{i}");
            let inputs = (0..=c.layers_per_block).map(|j| {
                let skip = if j == c.layers_per_block {
                    skip_in
                } else {
                    out
                };
                let res_in = if j == 0 { prev_out } else { out };
                res_in + skip
            });
            let (resnets, attentions) = c.block_layers(b, &name, level, inputs, out, &mut sites);
            let upsampler =
                (i + 1 < n).then(|| Upsample2D::new(b, &format!("{name}.upsamplers.0"), out));
            up.push(UpBlock {
                resnets,
                attentions,
                upsampler,
            });
            prev_out = out;
        }

        let conv_norm_out = GroupNorm::new(b, "conv_norm_out", c.norm_groups, ch[0], c.norm_eps);
        let conv_out = Conv2d::new(b, "conv_out", ch[0], c.out_channels, 3, 1, 1, true);
        let learned_text = c.learned_text.then(|| {
            ["learned_text_clip_gen", "learned_text_clip_ref"]
                .map(|n| b.param(n, &[1, 77, c.cross_attention_dim], Init::Normal(1.0)))
        });
        let weights = builder.finish();
        UNet2DConditionModel {
            config: c.clone(),
            weights,
            conv_in,
            time_linear_1,
            time_linear_2,
            class_embedding,
            down,
            mid_resnets,
            mid_attention,
            up,
            conv_norm_out,
            conv_out,
            learned_text,
            sites,
        }
    }

    /// The learned prompt embeddings `[1, 77, cross_attention_dim]` of the generated views and
    /// of the reference pass, if the config has them ([`UNetConfig::learned_text`]).
    pub fn learned_text(&self) -> Option<(Tensor, Tensor)> {
        self.learned_text
            .map(|[gen, reference]| (self.weights.get(gen), self.weights.get(reference)))
    }

    /// Number of parameters of `config`, counted without allocating.
    pub fn parameter_count(config: &UNetConfig) -> i64 {
        UNet2DConditionModel::new(config, Builder::counting())
            .weights
            .numel()
    }

    /// The transformer blocks in module order (down, mid, up), with their feature maps.
    pub fn block_sites(&self) -> &[BlockSite] {
        &self.sites
    }

    /// Random stand-ins for the tokens a reference pass over `images` images per group would
    /// record at a `height × width` latent: block `i` gets `[groups, images·H_i·W_i, C_i]`.
    /// For measuring the main UNet without running its reference copy.
    pub fn synthetic_reference(
        &self,
        groups: i64,
        images: i64,
        height: i64,
        width: i64,
        kind: Kind,
        device: Device,
    ) -> ReferenceTokens {
        ReferenceTokens {
            layers: self
                .sites
                .iter()
                .map(|s| {
                    let (h, w) = level_size(height, width, s.level);
                    Tensor::randn([groups, images * h * w, s.channels], (kind, device))
                })
                .collect(),
            per_view: false,
        }
    }

    /// One forward pass: `[B, in_channels, H, W]` → `[B, out_channels, H, W]`.
    ///
    /// Panics (as tch does) on inconsistent inputs: a batch that is not a multiple of the
    /// views, missing class labels, reference tokens of the wrong shape.
    pub fn forward(&self, input: &UNetInput<'_>, imp: AttentionImpl) -> Tensor {
        let mode = match input.reference {
            Some(r) => ReferenceMode::Read(r),
            None => ReferenceMode::Off,
        };
        self.run(input, imp, mode).0
    }

    /// A forward pass that records every transformer block's `norm1` output for another
    /// model's reference attentions (Hunyuan3D's reference UNet in `w` mode):
    /// `images_per_group` consecutive batch entries form one group's reference images. With
    /// `every_attention`, copies of every `attn1` and `attn2` input instead, two per block
    /// (UP2You's `cache_hidden_states`; see [`ReferenceMode::Record`]).
    pub fn forward_recording(
        &self,
        input: &UNetInput<'_>,
        imp: AttentionImpl,
        images_per_group: i64,
        every_attention: bool,
    ) -> (Tensor, ReferenceTokens) {
        let mode = ReferenceMode::Record {
            images_per_group,
            tokens: Vec::new(),
            every_attention,
        };
        let (out, mode) = self.run(input, imp, mode);
        let layers = match mode {
            ReferenceMode::Record { tokens, .. } => tokens,
            _ => unreachable!("the mode is returned as given"),
        };
        (
            out,
            ReferenceTokens {
                layers,
                per_view: false,
            },
        )
    }

    fn run<'a>(
        &self,
        input: &UNetInput<'a>,
        imp: AttentionImpl,
        mode: ReferenceMode<'a>,
    ) -> (Tensor, ReferenceMode<'a>) {
        let w = &self.weights;
        let c = &self.config;
        let sample = input.sample;
        let (batch, _, _, _) = sample.size4().expect("sample is [B, C, H, W]");
        let kind = sample.kind();

        // Time (and class) embedding: sinusoid in fp32, cast to the model dtype.
        let t = input.timesteps.flatten(0, -1).to_device(sample.device());
        let t = if t.size()[0] == 1 {
            t.expand([batch], false)
        } else {
            t
        };
        let t_emb = timestep_embedding(
            &t,
            c.block_out_channels[0],
            c.flip_sin_to_cos,
            c.freq_shift,
            1.0,
            10000.0,
        )
        .to_kind(kind);
        let mut emb = self
            .time_linear_2
            .forward(w, &self.time_linear_1.forward(w, &t_emb).silu());
        if let Some(embedding) = &self.class_embedding {
            let labels = input
                .class_labels
                .expect("this UNet has a class embedding: class labels are required");
            // Out of place, as diffusers adds it.
            emb = &emb + embedding.forward(w, labels).to_kind(kind);
        }

        let mut st = BlockState {
            context: input.encoder_hidden_states,
            imp,
            reference: mode,
            next_block: 0,
        };
        let mut h = self.conv_in.forward(w, sample);
        let mut skips = vec![h.shallow_clone()];
        for (level, block) in self.down.iter().enumerate() {
            for (j, resnet) in block.resnets.iter().enumerate() {
                h = resnet.forward(w, &h, Some(&emb));
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward(w, &h, &mut st);
                }
                skips.push(h.shallow_clone());
            }
            if let Some(residual) = input.down_residuals.and_then(|r| r.get(level)) {
                h = &h + residual;
                *skips.last_mut().expect("a level records its outputs") = h.shallow_clone();
            }
            if let Some(down) = &block.downsampler {
                h = down.forward(w, &h);
                skips.push(h.shallow_clone());
            }
        }

        h = self.mid_resnets[0].forward(w, &h, Some(&emb));
        h = self.mid_attention.forward(w, &h, &mut st);
        h = self.mid_resnets[1].forward(w, &h, Some(&emb));

        for block in &self.up {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip connection per up resnet");
                h = resnet.forward(w, &Tensor::cat(&[&h, &skip], 1), Some(&emb));
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward(w, &h, &mut st);
                }
            }
            if let Some(upsampler) = &block.upsampler {
                // diffusers' `upsample_size`: match the next skip connection exactly, which
                // is ×2 unless the latent size is not a multiple of the total downsampling.
                let next = skips
                    .last()
                    .expect("skips remain below the top level")
                    .size();
                h = upsampler.forward(w, &h, Some((next[2], next[3])));
            }
        }
        debug_assert!(skips.is_empty());
        let out = self
            .conv_out
            .forward(w, &self.conv_norm_out.forward(w, &h).silu());
        (out, st.reference)
    }
}

/// Feature-map size after `level` stride-2, padding-1 convolutions (`ceil(s / 2)` each).
pub fn level_size(height: i64, width: i64, level: u32) -> (i64, i64) {
    (0..level).fold((height, width), |(h, w), _| ((h + 1) / 2, (w + 1) / 2))
}

#[cfg(test)]
mod tests;
