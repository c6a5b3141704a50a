//! `AutoencoderKL` as diffusers builds it: the Stable Diffusion VAE and the 16-channel
//! Flux-style VAE, with diffusers' memory options for decoding and encoding.
//!
//! Architecture (SD config: `block_out_channels [128, 256, 512, 512]`, `layers_per_block 2`,
//! `latent_channels 4`, GroupNorm 32, eps 1e-6):
//! - encoder: `conv_in` 3 → 128, four down levels of `layers_per_block` resnets (a
//!   stride-2 conv with right/bottom padding after all but the last), a mid block (resnet,
//!   single-head self-attention over all pixels with its own GroupNorm, resnet), GroupNorm →
//!   SiLU → `conv_out` to `2 × latent` channels (mean and log-variance), then the 1×1
//!   `quant_conv`;
//! - decoder: the 1×1 `post_quant_conv`, `conv_in` latent → 512, the mid block, four up levels
//!   of `layers_per_block + 1` resnets (nearest ×2 + 3×3 conv after all but the last),
//!   GroupNorm → SiLU → `conv_out` 128 → 3.
//!
//! Decoder 49,490,199 and encoder 34,163,664 parameters (each with its 1×1 conv), the
//! published counts (checked in the tests). The Flux-style VAE has the same layout with 16
//! latent channels and no quant convs.
//!
//! Memory options ([`VaeOptions`]), as `AutoencoderKL.decode`/`encode` implement them:
//! - **slicing** (`use_slicing`): a batch of more than one is processed one image at a time
//!   and concatenated;
//! - **tiling** (`use_tiling`): an input larger than one tile (`tile_latent_min_size =
//!   sample_size / 2^(levels−1)` latent pixels for decode, `sample_size` pixels for encode) is
//!   cut into tiles with a stride of 75 % of a tile, each tile decoded (or encoded)
//!   separately, then every tile is blended linearly with the tile above and the tile to its
//!   left over `blend_extent = 25 %` of an output tile and cropped to `row_limit = tile −
//!   blend_extent` before the tiles are concatenated. Blending happens in place in diffusers,
//!   so a tile's blended version is what its right and lower neighbours blend with; this
//!   implementation keeps that order.

use super::attention::{AttentionConfig, AttentionImpl, MultiHeadAttention, QkNormKind};
use super::layers::{Conv2d, GroupNorm};
use super::unet_blocks::{
    block_holding_input, BlockStep, Downsample2D, Norm, ResnetBlock2D, Upsample2D,
};
use super::weights::{Builder, Weights};
use tch::{Kind, Tensor};

/// Configuration of an [`AutoencoderKL`] (diffusers' config keys).
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: i64,
    pub latent_channels: i64,
    pub norm_groups: i64,
    pub norm_eps: f64,
    /// `use_quant_conv` / `use_post_quant_conv` (both true for SD, false for Flux).
    pub quant_conv: bool,
    /// `mid_block_add_attention`.
    pub mid_attention: bool,
    /// `sample_size`: the output tile size of tiled decoding, the input tile size of tiled
    /// encoding.
    pub sample_size: i64,
    /// `tile_overlap_factor` (0.25 in diffusers, not a config key).
    pub tile_overlap: f64,
    /// Latents are `(z − shift) · scale` for the denoiser; the decode path divides again.
    pub scaling_factor: f64,
    pub shift_factor: f64,
}

impl VaeConfig {
    /// The SD 2.x VAE (`sample_size 768`, as in the SD 2.1 repository; 2.1-base uses 512).
    pub fn sd() -> VaeConfig {
        VaeConfig {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            norm_groups: 32,
            norm_eps: 1e-6,
            quant_conv: true,
            mid_attention: true,
            sample_size: 768,
            tile_overlap: 0.25,
            scaling_factor: 0.18215,
            shift_factor: 0.0,
        }
    }

    /// The 16-channel Flux-style VAE (SD3 layout, no quant convs, scaling 0.3611, shift
    /// 0.1159). `sample_size` 1024 is [inferred] from the Flux VAE configs; it only matters
    /// for tiling, where it is a parameter.
    pub fn flux16() -> VaeConfig {
        VaeConfig {
            latent_channels: 16,
            quant_conv: false,
            sample_size: 1024,
            scaling_factor: 0.3611,
            shift_factor: 0.1159,
            ..VaeConfig::sd()
        }
    }

    /// The SD layout at toy width for CPU tests: four levels (×8 scale, as the real VAE),
    /// 32/64 channels, one resnet per level, 64-pixel tiles.
    pub fn tiny() -> VaeConfig {
        VaeConfig {
            block_out_channels: vec![32, 32, 64, 64],
            layers_per_block: 1,
            sample_size: 64,
            ..VaeConfig::sd()
        }
    }

    /// Pixels per latent pixel (`2^(levels−1)`).
    pub fn scale(&self) -> i64 {
        1 << (self.block_out_channels.len() - 1)
    }

    fn norm(&self) -> Norm {
        Norm {
            groups: self.norm_groups,
            eps: self.norm_eps,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.block_out_channels.is_empty() {
            return Err("block_out_channels is empty".into());
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|&&c| c % self.norm_groups != 0)
        {
            return Err(format!(
                "{c} channels do not split into {} groups",
                self.norm_groups
            ));
        }
        Ok(())
    }
}

/// How to run [`AutoencoderKL::decode`] and [`AutoencoderKL::encode`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeOptions {
    pub slicing: bool,
    pub tiling: bool,
    /// Overrides the config's `sample_size` as the tile size in pixels.
    pub tile_sample_size: Option<i64>,
    /// For the mid-block attention (diffusers leaves the VAE on SDPA).
    pub attention: AttentionImpl,
}

impl Default for VaeOptions {
    fn default() -> Self {
        VaeOptions {
            slicing: false,
            tiling: false,
            tile_sample_size: None,
            attention: AttentionImpl::Sdpa,
        }
    }
}

/// The single-head mid-block self-attention (diffusers' `Attention` with `group_norm`,
/// residual connection, biases on q/k/v/out). Softmax is upcast to fp32 in the explicit
/// paths (`upcast_softmax=True`).
#[derive(Debug, Clone)]
struct VaeAttention {
    group_norm: GroupNorm,
    attn: MultiHeadAttention,
}

impl VaeAttention {
    fn new(b: &mut Builder, name: &str, ch: i64, norm: Norm) -> VaeAttention {
        VaeAttention {
            group_norm: GroupNorm::new(b, &format!("{name}.group_norm"), norm.groups, ch, norm.eps),
            attn: MultiHeadAttention::new(
                b,
                name,
                AttentionConfig {
                    query_dim: ch,
                    context_dim: ch,
                    heads: 1,
                    head_dim: ch,
                    qkv_bias: true,
                    out_bias: true,
                    qk_norm: QkNormKind::None,
                    upcast: true,
                },
            ),
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let (b, c, h, wd) = x.size4().expect("[B, C, H, W]");
        let tokens = self
            .group_norm
            .forward(w, x)
            .view([b, c, h * wd])
            .transpose(1, 2);
        let out = self.attn.forward(w, &tokens, None, imp);
        out.transpose(1, 2).reshape([b, c, h, wd]) + x
    }
}

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
#[derive(Debug, Clone)]
struct MidBlock {
    resnets: [ResnetBlock2D; 2],
    attention: Option<VaeAttention>,
}

impl MidBlock {
    fn new(b: &mut Builder, name: &str, ch: i64, c: &VaeConfig) -> MidBlock {
        let b = &mut b.scope(name);
        let norm = c.norm();
        let r0 = ResnetBlock2D::new(b, "resnets.0", ch, ch, None, norm);
        let attention = c
            .mid_attention
            .then(|| VaeAttention::new(b, "attentions.0", ch, norm));
        let r1 = ResnetBlock2D::new(b, "resnets.1", ch, ch, None, norm);
        MidBlock {
            resnets: [r0, r1],
            attention,
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let mut h = self.resnets[0].forward(w, x, None);
        if let Some(a) = &self.attention {
            h = a.forward(w, &h, imp);
        }
        self.resnets[1].forward(w, &h, None)
    }
}

#[derive(Debug, Clone)]
struct Level {
    resnets: Vec<ResnetBlock2D>,
    down: Option<Downsample2D>,
    up: Option<Upsample2D>,
}

impl Level {
    /// The block's resnets, then its resampler, as `DownEncoderBlock2D` / `UpDecoderBlock2D`
    /// run them.
    fn steps<'a>(&'a self, w: &'a Weights) -> impl Iterator<Item = BlockStep<'a>> {
        let resnets = self
            .resnets
            .iter()
            .map(move |r| -> BlockStep { Box::new(move |x: &Tensor| r.forward(w, x, None)) });
        let down = self
            .down
            .iter()
            .map(move |d| -> BlockStep { Box::new(move |x: &Tensor| d.forward(w, x)) });
        let up = self
            .up
            .iter()
            .map(move |u| -> BlockStep { Box::new(move |x: &Tensor| u.forward(w, x, None)) });
        resnets.chain(down).chain(up)
    }
}

/// The encoder half, with `quant_conv`.
#[derive(Debug, Clone)]
struct Encoder {
    conv_in: Conv2d,
    levels: Vec<Level>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl Encoder {
    fn new(b: &mut Builder, c: &VaeConfig) -> Encoder {
        let ch = &c.block_out_channels;
        let n = ch.len();
        let conv_in = Conv2d::new(b, "encoder.conv_in", c.in_channels, ch[0], 3, 1, 1, true);
        let mut in_ch = ch[0];
        let levels = (0..n)
            .map(|i| {
                let out = ch[i];
                let name = format!("encoder.down_blocks.{i}");
                let resnets = (0..c.layers_per_block)
                    .map(|j| {
                        let res_in = if j == 0 { in_ch } else { out };
                        let r = format!("{name}.resnets.{j}");
                        ResnetBlock2D::new(b, &r, res_in, out, None, c.norm())
                    })
                    .collect();
                in_ch = out;
                let down = (i + 1 < n)
                    .then(|| Downsample2D::new(b, &format!("{name}.downsamplers.0"), out, true));
                Level {
                    resnets,
                    down,
                    up: None,
                }
            })
            .collect();
        let top = ch[n - 1];
        let mid = MidBlock::new(b, "encoder.mid_block", top, c);
        let norm_out = GroupNorm::new(b, "encoder.conv_norm_out", c.norm_groups, top, c.norm_eps);
        let moments = 2 * c.latent_channels;
        let conv_out = Conv2d::new(b, "encoder.conv_out", top, moments, 3, 1, 1, true);
        let quant_conv = c
            .quant_conv
            .then(|| Conv2d::new(b, "quant_conv", moments, moments, 1, 1, 0, true));
        Encoder {
            conv_in,
            levels,
            mid,
            norm_out,
            conv_out,
            quant_conv,
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let mut h = self.conv_in.forward(w, x);
        for level in &self.levels {
            h = block_holding_input(h, level.steps(w));
        }
        h = self.mid.forward(w, &h, imp);
        h = self
            .conv_out
            .forward(w, &self.norm_out.forward(w, &h).silu());
        match &self.quant_conv {
            Some(q) => q.forward(w, &h),
            None => h,
        }
    }
}

/// The decoder half, with `post_quant_conv`.
#[derive(Debug, Clone)]
struct Decoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid: MidBlock,
    levels: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(b: &mut Builder, c: &VaeConfig) -> Decoder {
        let lat = c.latent_channels;
        let post_quant_conv = c
            .quant_conv
            .then(|| Conv2d::new(b, "post_quant_conv", lat, lat, 1, 1, 0, true));
        let reversed: Vec<i64> = c.block_out_channels.iter().rev().copied().collect();
        let n = reversed.len();
        let conv_in = Conv2d::new(b, "decoder.conv_in", lat, reversed[0], 3, 1, 1, true);
        let mid = MidBlock::new(b, "decoder.mid_block", reversed[0], c);
        let mut prev = reversed[0];
        let levels = (0..n)
            .map(|i| {
                let out = reversed[i];
                let name = format!("decoder.up_blocks.{i}");
                let resnets = (0..=c.layers_per_block)
                    .map(|j| {
                        let res_in = if j == 0 { prev } else { out };
                        let r = format!("{name}.resnets.{j}");
                        ResnetBlock2D::new(b, &r, res_in, out, None, c.norm())
                    })
                    .collect();
                prev = out;
                let up =
                    (i + 1 < n).then(|| Upsample2D::new(b, &format!("{name}.upsamplers.0"), out));
                Level {
                    resnets,
                    down: None,
                    up,
                }
            })
            .collect();
        let last = reversed[n - 1];
        let norm_out = GroupNorm::new(b, "decoder.conv_norm_out", c.norm_groups, last, c.norm_eps);
        let conv_out = Conv2d::new(b, "decoder.conv_out", last, c.out_channels, 3, 1, 1, true);
        Decoder {
            post_quant_conv,
            conv_in,
            mid,
            levels,
            norm_out,
            conv_out,
        }
    }

    fn forward(&self, w: &Weights, z: &Tensor, imp: AttentionImpl) -> Tensor {
        let z = match &self.post_quant_conv {
            Some(p) => p.forward(w, z),
            None => z.shallow_clone(),
        };
        let mut h = self.conv_in.forward(w, &z);
        h = self.mid.forward(w, &h, imp);
        for level in &self.levels {
            h = block_holding_input(h, level.steps(w));
        }
        // `conv_norm_out`, `conv_act`, `conv_out`, each result replacing the last.
        h = self.norm_out.forward(w, &h);
        h = h.silu();
        self.conv_out.forward(w, &h)
    }
}

/// Tile geometry of one tiled pass (diffusers' `overlap_size`, `blend_extent`, `row_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGeometry {
    /// Input tile size.
    pub tile: i64,
    /// Distance between tile origins in the input.
    pub stride: i64,
    /// Output rows/columns blended with the previous tile.
    pub blend: i64,
    /// Output rows/columns kept per tile.
    pub row_limit: i64,
}

impl TileGeometry {
    /// Tiles for an input of `size` along one axis.
    pub fn count(&self, size: i64) -> i64 {
        (size + self.stride - 1) / self.stride
    }
}

/// A randomly initialised `AutoencoderKL`.
pub struct AutoencoderKL {
    pub config: VaeConfig,
    pub weights: Weights,
    encoder: Encoder,
    decoder: Decoder,
}

impl std::fmt::Debug for AutoencoderKL {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoencoderKL")
            .field("config", &self.config)
            .field("weights", &self.weights)
            .finish()
    }
}

/// Parameter counts of the two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaeParameterCount {
    /// Encoder with `quant_conv`.
    pub encoder: i64,
    /// Decoder with `post_quant_conv`.
    pub decoder: i64,
}

impl AutoencoderKL {
    /// Builds encoder and decoder with `builder`'s weights. Panics on an invalid config.
    pub fn new(config: &VaeConfig, mut builder: Builder) -> AutoencoderKL {
        if let Err(e) = config.validate() {
            panic!("invalid VAE config: {e}");
        }
        let encoder = Encoder::new(&mut builder, config);
        let decoder = Decoder::new(&mut builder, config);
        AutoencoderKL {
            config: config.clone(),
            weights: builder.finish(),
            encoder,
            decoder,
        }
    }

    /// Parameter counts of `config`, counted without allocating.
    pub fn parameter_count(config: &VaeConfig) -> VaeParameterCount {
        let model = AutoencoderKL::new(config, Builder::counting());
        let mut count = VaeParameterCount {
            encoder: 0,
            decoder: 0,
        };
        for (name, shape) in model.weights.shapes() {
            let n: i64 = shape.iter().product();
            if name.starts_with("encoder.") || name.starts_with("quant_conv.") {
                count.encoder += n;
            } else {
                count.decoder += n;
            }
        }
        count
    }

    fn tile_sample_size(&self, opts: &VaeOptions) -> i64 {
        opts.tile_sample_size.unwrap_or(self.config.sample_size)
    }

    /// `tile_latent_min_size = int(sample_size / 2^(levels−1))`.
    fn tile_latent_size(&self, opts: &VaeOptions) -> i64 {
        self.tile_sample_size(opts) / self.config.scale()
    }

    /// Geometry of tiled decoding (latent tiles in, pixel rows out).
    pub fn decode_tiles(&self, opts: &VaeOptions) -> TileGeometry {
        let (sample, latent, f) = (
            self.tile_sample_size(opts),
            self.tile_latent_size(opts),
            self.config.tile_overlap,
        );
        let blend = (sample as f64 * f) as i64;
        TileGeometry {
            tile: latent,
            stride: (latent as f64 * (1.0 - f)) as i64,
            blend,
            row_limit: sample - blend,
        }
    }

    /// Geometry of tiled encoding (pixel tiles in, latent rows out).
    pub fn encode_tiles(&self, opts: &VaeOptions) -> TileGeometry {
        let (sample, latent, f) = (
            self.tile_sample_size(opts),
            self.tile_latent_size(opts),
            self.config.tile_overlap,
        );
        let blend = (latent as f64 * f) as i64;
        TileGeometry {
            tile: sample,
            stride: (sample as f64 * (1.0 - f)) as i64,
            blend,
            row_limit: latent - blend,
        }
    }

    /// Checks that `opts` gives a usable tile geometry.
    pub fn validate_options(&self, opts: &VaeOptions) -> Result<(), String> {
        if opts.tiling {
            for g in [self.decode_tiles(opts), self.encode_tiles(opts)] {
                if g.stride < 1 || g.tile < 1 {
                    return Err(format!(
                        "tile size {} px is too small for tiling at scale {}",
                        self.tile_sample_size(opts),
                        self.config.scale()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Decoder invocations `decode` makes for a `[batch, C, h, w]` latent.
    pub fn decoder_calls(&self, batch: i64, h: i64, w: i64, opts: &VaeOptions) -> i64 {
        let per_pass = if self.decode_tiled(h, w, opts) {
            let g = self.decode_tiles(opts);
            g.count(h) * g.count(w)
        } else {
            1
        };
        let passes = if opts.slicing && batch > 1 { batch } else { 1 };
        per_pass * passes
    }

    fn decode_tiled(&self, h: i64, w: i64, opts: &VaeOptions) -> bool {
        let t = self.tile_latent_size(opts);
        opts.tiling && (h > t || w > t)
    }

    /// Latents `[B, latent, h, w]` → images `[B, 3, scale·h, scale·w]`.
    pub fn decode(&self, z: &Tensor, opts: &VaeOptions) -> Tensor {
        let batch = z.size()[0];
        if opts.slicing && batch > 1 {
            let parts: Vec<Tensor> = z
                .split(1, 0)
                .iter()
                .map(|s| self.decode_one(s, opts))
                .collect();
            Tensor::cat(&parts, 0)
        } else {
            self.decode_one(z, opts)
        }
    }

    fn decode_one(&self, z: &Tensor, opts: &VaeOptions) -> Tensor {
        let (_, _, h, w) = z.size4().expect("latents are [B, C, H, W]");
        let run = |t: &Tensor| self.decoder.forward(&self.weights, t, opts.attention);
        if self.decode_tiled(h, w, opts) {
            tiled(z, self.decode_tiles(opts), run)
        } else {
            run(z)
        }
    }

    /// Images `[B, 3, H, W]` → moments `[B, 2·latent, H/scale, W/scale]` (mean, log-variance).
    pub fn encode(&self, x: &Tensor, opts: &VaeOptions) -> Tensor {
        let batch = x.size()[0];
        if opts.slicing && batch > 1 {
            let parts: Vec<Tensor> = x
                .split(1, 0)
                .iter()
                .map(|s| self.encode_one(s, opts))
                .collect();
            Tensor::cat(&parts, 0)
        } else {
            self.encode_one(x, opts)
        }
    }

    fn encode_one(&self, x: &Tensor, opts: &VaeOptions) -> Tensor {
        let (_, _, h, w) = x.size4().expect("images are [B, C, H, W]");
        let run = |t: &Tensor| self.encoder.forward(&self.weights, t, opts.attention);
        let t = self.tile_sample_size(opts);
        if opts.tiling && (h > t || w > t) {
            tiled(x, self.encode_tiles(opts), run)
        } else {
            run(x)
        }
    }

    /// The posterior's mode (its mean) from `encode`'s moments, in denoiser latent units
    /// (`(mean − shift) · scale`).
    pub fn latents(&self, moments: &Tensor) -> Tensor {
        (moments.narrow(1, 0, self.config.latent_channels) - self.config.shift_factor)
            * self.config.scaling_factor
    }
}

/// Runs `f` on overlapping tiles of `x` and blends the results as diffusers'
/// `tiled_decode`/`_tiled_encode` do.
pub fn tiled(x: &Tensor, g: TileGeometry, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let (_, _, h, w) = x.size4().expect("[B, C, H, W]");
    let step = usize::try_from(g.stride).expect("tile stride");
    assert!(step > 0, "tile stride must be positive");
    let mut rows: Vec<Vec<Tensor>> = (0..h)
        .step_by(step)
        .map(|i| {
            (0..w)
                .step_by(step)
                .map(|j| {
                    f(&x.narrow(2, i, g.tile.min(h - i))
                        .narrow(3, j, g.tile.min(w - j)))
                })
                .collect()
        })
        .collect();
    let mut out_rows = Vec::with_capacity(rows.len());
    for i in 0..rows.len() {
        let mut out_row = Vec::with_capacity(rows[i].len());
        for j in 0..rows[i].len() {
            let mut tile = rows[i][j].shallow_clone();
            if i > 0 {
                tile = blend(&rows[i - 1][j], &tile, g.blend, 2);
            }
            if j > 0 {
                tile = blend(&rows[i][j - 1], &tile, g.blend, 3);
            }
            let (th, tw) = (tile.size()[2], tile.size()[3]);
            out_row.push(
                tile.narrow(2, 0, g.row_limit.min(th))
                    .narrow(3, 0, g.row_limit.min(tw)),
            );
            rows[i][j] = tile;
        }
        out_rows.push(Tensor::cat(&out_row, 3));
    }
    Tensor::cat(&out_rows, 2)
}

/// diffusers' `blend_v` (`dim` 2) / `blend_h` (`dim` 3): the first `e` rows (columns) of `b`
/// become `a_last[k]·(1 − k/e) + b[k]·(k/e)`, `e = min(extent, len(a), len(b))`. Computed in
/// the tiles' dtype for all rows at once instead of row by row.
fn blend(a: &Tensor, b: &Tensor, extent: i64, dim: i64) -> Tensor {
    let (la, lb) = (a.size()[dim as usize], b.size()[dim as usize]);
    let e = extent.min(la).min(lb);
    if e <= 0 {
        return b.shallow_clone();
    }
    let mut shape = [1i64; 4];
    shape[dim as usize] = e;
    let ramp = (Tensor::arange(e, (Kind::Double, b.device())) / e as f64).view(shape);
    let (wb, wa) = (ramp.to_kind(b.kind()), (-&ramp + 1.0).to_kind(b.kind()));
    let head = a.narrow(dim, la - e, e) * wa + b.narrow(dim, 0, e) * wb;
    Tensor::cat(&[head, b.narrow(dim, e, lb - e)], dim)
}

#[cfg(test)]
mod tests;
