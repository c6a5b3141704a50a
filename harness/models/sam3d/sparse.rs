//! Dense stand-ins of TRELLIS' sparse-convolution modules over token sequences: the 3×3×3
//! convolution as 27 shifted GEMMs, token resampling, and the residual and subdivision
//! blocks built from them (see the module docs of [`super`]).

use super::layer_norm32;
use crate::models::layers::{GroupNorm, LayerNorm, Linear};
use crate::models::weights::{Builder, Init, Param, Weights};
use tch::{Kind, Tensor};

/// Dense stand-in of a sparse 3×3×3 convolution over a token sequence: one GEMM per kernel
/// offset, offset `o` reading the sequence shifted by `o − 13` tokens (zeros past the ends).
/// Weight `[out, 3, 3, 3, in]` as spconv stores it.
#[derive(Debug, Clone)]
pub struct SparseConvStandIn {
    pub weight: Param,
    pub bias: Param,
    pub in_channels: i64,
    pub out_channels: i64,
}

impl SparseConvStandIn {
    fn new(b: &mut Builder, name: &str, in_channels: i64, out_channels: i64) -> SparseConvStandIn {
        let b = &mut b.scope(name);
        SparseConvStandIn {
            weight: b.layer_param(
                "weight",
                &[out_channels, 3, 3, 3, in_channels],
                Init::FanIn(27 * in_channels),
            ),
            bias: b.layer_param("bias", &[out_channels], Init::Zeros),
            in_channels,
            out_channels,
        }
    }

    /// `x`: `[b, n, in]` → `[b, n, out]`.
    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let n = x.size()[1];
        let weight = w
            .get(self.weight)
            .reshape([self.out_channels, 27, self.in_channels]);
        let padded = x.constant_pad_nd([0, 0, 13, 13]);
        let mut acc = x.linear(&weight.select(1, 13), Some(&w.get(self.bias)));
        for o in (0..27).filter(|&o| o != 13) {
            acc += padded
                .narrow(1, o, n)
                .linear(&weight.select(1, o), None::<Tensor>);
        }
        acc
    }
}

/// Token-count change of a sparse resampling block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    None,
    /// Sparse 2× downsample: voxels → occupied coarse cells (mean of each group of tokens).
    Down,
    /// Sparse 2× upsample: coarse cells → their voxels (each voxel repeats its cell's token).
    Up,
}

/// Resamples `x` (`[b, n, c]`) to `tokens` tokens.
fn resample_tokens(x: &Tensor, mode: Resample, tokens: i64) -> Tensor {
    let n = x.size()[1];
    match mode {
        Resample::None => x.shallow_clone(),
        Resample::Down => x
            .transpose(1, 2)
            .adaptive_avg_pool1d([tokens])
            .transpose(1, 2),
        Resample::Up => {
            let idx = (Tensor::arange(tokens, (Kind::Int64, x.device())) * n)
                .divide_scalar_mode(tokens, "floor");
            x.index_select(1, &idx)
        }
    }
}

/// Stand-in of `SparseResBlock3d`: LN → SiLU → conv → LN (no affine) · (1 + scale) + shift
/// (from the time embedding) → SiLU → conv, plus a linear skip when the width changes.
#[derive(Debug, Clone)]
pub struct SparseResBlock {
    pub norm1: LayerNorm,
    pub conv1: SparseConvStandIn,
    pub norm2: LayerNorm,
    pub conv2: SparseConvStandIn,
    pub emb_layers: Linear,
    pub skip: Option<Linear>,
    pub resample: Resample,
}

impl SparseResBlock {
    pub(super) fn new(
        b: &mut Builder,
        name: &str,
        channels: i64,
        emb: i64,
        out: i64,
        resample: Resample,
    ) -> SparseResBlock {
        let b = &mut b.scope(name);
        SparseResBlock {
            norm1: LayerNorm::new(b, "norm1", channels, 1e-6, true),
            conv1: SparseConvStandIn::new(b, "conv1", channels, out),
            norm2: LayerNorm::new(b, "norm2", out, 1e-6, false),
            conv2: SparseConvStandIn::new(b, "conv2", out, out),
            emb_layers: Linear::new(b, "emb_layers", emb, 2 * out, true),
            skip: (channels != out).then(|| Linear::new(b, "skip_connection", channels, out, true)),
            resample,
        }
    }

    /// `tokens`: the token count after resampling.
    pub(super) fn forward(&self, w: &Weights, x: &Tensor, t_emb: &Tensor, tokens: i64) -> Tensor {
        let e = self
            .emb_layers
            .forward(w, &t_emb.silu())
            .unsqueeze(1)
            .chunk(2, -1);
        let x = resample_tokens(x, self.resample, tokens);
        let h = self
            .conv1
            .forward(w, &layer_norm32(w, &self.norm1, &x).silu());
        let h = layer_norm32(w, &self.norm2, &h) * (&e[0] + 1.0) + &e[1];
        let h = self.conv2.forward(w, &h.silu());
        match &self.skip {
            Some(s) => h + s.forward(w, &x),
            None => h + x,
        }
    }
}

/// GroupNorm over the channels of a token sequence `[b, n, C]`, in fp32.
fn group_norm_tokens(w: &Weights, gn: &GroupNorm, x: &Tensor) -> Tensor {
    gn.forward_f32(w, &x.transpose(1, 2)).transpose(1, 2)
}

/// Stand-in of `SparseSubdivideBlock3d`: GroupNorm → SiLU → split every voxel into 8 → conv →
/// GroupNorm → SiLU → conv, plus a 1×1×1 conv skip of the split input.
#[derive(Debug, Clone)]
pub struct SubdivideBlock {
    pub norm1: GroupNorm,
    pub conv1: SparseConvStandIn,
    pub norm2: GroupNorm,
    pub conv2: SparseConvStandIn,
    pub skip: Linear,
}

impl SubdivideBlock {
    pub(super) fn new(b: &mut Builder, name: &str, ch: i64, out: i64) -> SubdivideBlock {
        let b = &mut b.scope(name);
        let groups = 32.min(out);
        SubdivideBlock {
            norm1: GroupNorm::new(b, "act_layers.0", groups, ch, 1e-5),
            conv1: SparseConvStandIn::new(b, "out_layers.0", ch, out),
            norm2: GroupNorm::new(b, "out_layers.1", groups, out, 1e-5),
            conv2: SparseConvStandIn::new(b, "out_layers.3", out, out),
            skip: Linear::new(b, "skip_connection", ch, out, true),
        }
    }

    pub(super) fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let split = |t: &Tensor| t.repeat_interleave_self_int(8, 1, None);
        let h = split(&group_norm_tokens(w, &self.norm1, x).silu());
        let h = self.conv1.forward(w, &h);
        let h = self
            .conv2
            .forward(w, &group_norm_tokens(w, &self.norm2, &h).silu());
        h + self.skip.forward(w, &split(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{max_diff, opts};
    use tch::Device;

    #[test]
    fn sparse_conv_stand_in_is_a_shifted_sum() {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let conv = SparseConvStandIn::new(&mut b, "c", 2, 3);
        let w = b.finish();
        let x = Tensor::randn([1, 30, 2], opts());
        let y = conv.forward(&w, &x);
        // Token 15 sees tokens 2..=28 through the 27 offsets.
        let weight = w.get(conv.weight).reshape([3, 27, 2]);
        let expected = (0..27)
            .map(|o| {
                x.get(0)
                    .get(2 + o)
                    .matmul(&weight.select(1, o).transpose(0, 1))
            })
            .fold(Tensor::zeros([3], opts()), |a, t| a + t);
        assert!(max_diff(&y.get(0).get(15), &expected) < 1e-5);
    }
}
