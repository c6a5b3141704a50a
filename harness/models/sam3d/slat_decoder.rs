//! Stand-ins of the structured-latent decoders (Gaussians, mesh): windowed-attention
//! transformers over the active voxels (see the module docs of [`super`]).

use super::blocks::{mlp, SelfAttention};
use super::flexicubes::{self, DenseGrid, Mesh};
use super::sparse::SubdivideBlock;
use super::{grid_coords, layer_norm32, sincos_position_embedding};
use crate::models::attention::AttentionImpl;
use crate::models::feed_forward::FeedForward;
use crate::models::layers::{LayerNorm, Linear};
use crate::models::weights::{Builder, Weights};
use tch::{Kind, Tensor};

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
            DecoderOutput::Mesh { use_color } => flexicubes::feature_channels(use_color),
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
    /// `use_fp16`: the blocks (and the mesh decoder's subdivision blocks) store their linear
    /// and convolution layers in fp16 and run in fp16.
    pub use_fp16: bool,
    /// Cubes per side of the mesh decoder's dense FlexiCubes grid: 4 × its configured
    /// resolution (4 · 96 = 384), built with the model and resident while it is loaded.
    pub grid_resolution: i64,
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
            use_fp16: true,
            grid_resolution: 4 * 96,
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

    /// Tiny versions of the above (CPU tests), all fp32.
    pub fn tiny(output: DecoderOutput) -> SlatDecoderConfig {
        SlatDecoderConfig {
            dim: 32,
            blocks: 2,
            heads: 4,
            window_tokens: 4,
            resolution: 4,
            output,
            use_fp16: false,
            grid_resolution: 4 * 4,
            ..SlatDecoderConfig::gaussian()
        }
    }
}

impl SelfAttention {
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

/// A transformer block of the decoders: LN (no affine) → windowed self-attention → LN → MLP.
#[derive(Debug, Clone)]
pub struct WindowBlock {
    pub norm1: LayerNorm,
    pub attn: SelfAttention,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
}

impl WindowBlock {
    fn new(b: &mut Builder, name: &str, c: &SlatDecoderConfig) -> WindowBlock {
        let b = &mut b.scope(name);
        WindowBlock {
            norm1: LayerNorm::new(b, "norm1", c.dim, 1e-6, false),
            attn: SelfAttention::new(b, "attn", c.dim, c.heads, false),
            norm2: LayerNorm::new(b, "norm2", c.dim, 1e-6, false),
            mlp: mlp(b, "mlp", c.dim, c.mlp_ratio),
        }
    }
}

/// Gaussian or mesh decoder stand-in (see the module docs).
#[derive(Debug, Clone)]
pub struct SlatDecoder {
    pub config: SlatDecoderConfig,
    pub input_layer: Linear,
    pub blocks: Vec<WindowBlock>,
    pub subdivide: Vec<SubdivideBlock>,
    pub out_layer: Linear,
    /// The mesh decoder's dense FlexiCubes grid (not built by a counting builder).
    pub grid: Option<DenseGrid>,
}

impl SlatDecoder {
    /// In the reference's order: input layer, blocks, (mesh: the dense grid, then the
    /// subdivision blocks), output layer, then the torso's conversion to fp16.
    pub fn new(b: &mut Builder, name: &str, config: SlatDecoderConfig) -> SlatDecoder {
        let b = &mut b.scope(name);
        let c = config;
        let input_layer = Linear::new(b, "input_layer", c.latent_channels, c.dim, true);
        let blocks = (0..c.blocks)
            .map(|i| WindowBlock::new(&mut b.torso(), &format!("blocks.{i}"), &c))
            .collect();
        let mesh = matches!(c.output, DecoderOutput::Mesh { .. });
        let grid =
            (mesh && !b.is_counting()).then(|| DenseGrid::new(c.grid_resolution, b.device()));
        let (subdivide, last) = if mesh {
            let b = &mut b.torso();
            (
                vec![
                    SubdivideBlock::new(b, "upsample.0", c.dim, c.dim / 4),
                    SubdivideBlock::new(b, "upsample.1", c.dim / 4, c.dim / 8),
                ],
                c.dim / 8,
            )
        } else {
            (Vec::new(), c.dim)
        };
        let out_layer = Linear::new(b, "out_layer", last, c.output.channels(), true);
        if c.use_fp16 {
            b.convert_torso(Kind::Half);
        }
        SlatDecoder {
            config,
            input_layer,
            blocks,
            subdivide,
            out_layer,
            grid,
        }
    }

    /// `x`: `[b, voxels, latent_channels]` → `[b, voxels, channels]` (Gaussians) or
    /// `[b, 64·voxels, channels]` (mesh), in `x`'s dtype (the torso runs in fp16 with
    /// `use_fp16`; an enclosing autocast decides the output layer's dtype).
    pub fn forward(&self, w: &Weights, x: &Tensor, imp: AttentionImpl) -> Tensor {
        let c = &self.config;
        let n = x.size()[1];
        let coords = grid_coords(n, c.resolution, x.device());
        let torso = if c.use_fp16 { Kind::Half } else { w.kind() };
        let h = self.input_layer.forward(w, x)
            + sincos_position_embedding(&coords, c.dim).to_kind(w.kind());
        let mut h = h.to_kind(torso);
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
        let h = h.to_kind(x.kind());
        match c.output {
            // The Gaussian decoder normalises (no affine) before its output layer.
            DecoderOutput::Gaussians(_) => {
                let dim = h.size()[2];
                self.out_layer.forward(
                    w,
                    &h.layer_norm([dim], None::<Tensor>, None::<Tensor>, 1e-5, true),
                )
            }
            DecoderOutput::Mesh { .. } => self.out_layer.forward(w, &h),
        }
    }

    /// Coordinates in the FlexiCubes grid of the `64·voxels` cubes the mesh decoder's two
    /// subdivisions make of `voxels` active voxels (the voxels in raster order of the
    /// `resolution`³ grid, each split into 4×4×4 cubes): `[64·voxels, 3]` int32.
    pub fn cube_coords(&self, voxels: i64, device: tch::Device) -> Tensor {
        let side = self.config.resolution;
        assert!(
            voxels <= side.pow(3) && 4 * side <= self.config.grid_resolution,
            "{voxels} active voxels do not fit the {side}³ voxel grid inside the mesh grid"
        );
        let v = grid_coords(voxels, side, device) * 4;
        let children = grid_coords(64, 4, device);
        (v.unsqueeze(1) + children.unsqueeze(0))
            .reshape([-1, 3])
            .to_kind(Kind::Int)
    }

    /// The mesh decoder's surface extraction over its output `feats` (`[1, 64·voxels, C]`).
    pub fn extract_mesh(&self, feats: &Tensor) -> Mesh {
        let grid = self
            .grid
            .as_ref()
            .expect("a mesh decoder built with its grid");
        let DecoderOutput::Mesh { use_color } = self.config.output else {
            panic!("only the mesh decoder extracts meshes")
        };
        let cubes = feats.size()[1];
        let coords = self.cube_coords(cubes / 64, feats.device());
        flexicubes::extract(grid, &coords, &extraction_input(feats), use_color)
    }
}

/// The batch item the extraction reads: a copy, as the reference's `x[i]` concatenates the
/// item's features into a new tensor while the decoder's output stays alive in `forward`, so
/// the features are held twice through the extraction (0.48 GiB at full size).
pub fn extraction_input(feats: &Tensor) -> Tensor {
    feats.squeeze_dim(0).copy()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{finite, max_diff, opts};
    use tch::{Device, Kind};

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
        // The extraction reads its own copy of the features, as `x[i]` makes one.
        let feats = Tensor::randn([1, 64, 8], opts());
        let item = extraction_input(&feats);
        assert_eq!(item.size(), [64, 8]);
        assert_ne!(item.data_ptr(), feats.data_ptr());
        assert!(item.equal(&feats.squeeze_dim(0)));
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
}
