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
//!   voxel split into 8) use the same convolution stand-in; its surface extraction
//!   ([`flexicubes`]) keeps a dense 384³ index grid resident (~5 GB) and works on dense grids
//!   of that size in every call.
//!
//! Precision, as the released configs set it (`use_fp16: true`): the flows' and the SLAT
//! decoders' torsos (transformer blocks; the SLAT flow's and mesh decoder's sparse-conv blocks
//! too) store their linear and convolution layers in fp16 and run in fp16, casting their
//! inputs on the way in and back on the way out; their norms, embedders and input/output
//! layers stay fp32, as do the structure decoder, the condition embedders and MoGe (built with
//! an fp32 [`Builder`], converted by [`Builder::convert_torso`]). The pipeline's `dtype` is an
//! autocast dtype over these weights, applied by the workload around its stages.
//!
//! One file per network: [`condition`], [`ss_flow`], [`slat_flow`], [`ss_decoder`],
//! [`slat_decoder`] with its mesh extraction [`flexicubes`]; the transformer blocks both flows
//! share in [`blocks`], the sparse-conv stand-ins in [`sparse`], and here the TRELLIS helpers
//! they all use.
//!
//! [`Builder`]: crate::models::Builder
//! [`Builder::convert_torso`]: crate::models::weights::Builder::convert_torso

pub mod blocks;
pub mod condition;
pub mod flexicubes;
pub mod slat_decoder;
pub mod slat_flow;
pub mod sparse;
pub mod ss_decoder;
pub mod ss_flow;

pub use blocks::{CrossAttention, FlowBlockConfig, SelfAttention, StreamLayers};
pub use condition::{
    llama3_hidden, ConditionEmbedder, ConditionEmbedderConfig, ConditionView, PointPatchEmbed,
    PointPatchEmbedConfig, Projection,
};
pub use flexicubes::{DenseGrid, Mesh};
pub use slat_decoder::{DecoderOutput, SlatDecoder, SlatDecoderConfig, WindowBlock};
pub use slat_flow::{CrossBlock, SlatFlow, SlatFlowConfig};
pub use sparse::{Resample, SparseConvStandIn, SparseResBlock, SubdivideBlock};
pub use ss_decoder::{pixel_shuffle_3d, DecoderStep, ResBlock3d, SsDecoder, SsDecoderConfig};
pub use ss_flow::{LatentMapping, MotBlock, SsFlow, SsFlowConfig, SsLatents};

use super::dit::MlpEmbedder;
use super::embeddings::timestep_embedding;
use super::layers::LayerNorm;
use super::weights::Weights;
use tch::{Device, Kind, Tensor};

/// LayerNorm computed in fp32 (TRELLIS' `LayerNorm32`: norms stay fp32 in fp16 models).
fn layer_norm32(w: &Weights, ln: &LayerNorm, x: &Tensor) -> Tensor {
    let weight = ln.weight.map(|p| w.get(p).to_kind(Kind::Float));
    let bias = ln.bias.map(|p| w.get(p).to_kind(Kind::Float));
    x.to_kind(Kind::Float)
        .layer_norm([ln.dim], weight.as_ref(), bias.as_ref(), ln.eps, true)
        .to_kind(x.kind())
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

/// TRELLIS timestep embedding: sinusoid (`[cos, sin]`, max period 10⁴) of the model time,
/// then `Linear(256 → dim) → SiLU → Linear(dim → dim)`.
fn embed_time(w: &Weights, embedder: &MlpEmbedder, t: &Tensor) -> Tensor {
    embedder.forward(
        w,
        &timestep_embedding(t, 256, true, 0.0, 1.0, 10000.0).to_kind(w.kind()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{count, within};

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
}
