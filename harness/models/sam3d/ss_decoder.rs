//! The dense conv3d sparse-structure decoder: 8×16³ latents → 1×64³ occupancy logits (see
//! the module docs of [`super`]).

use super::layer_norm32;
use crate::models::layers::{Conv3d, LayerNorm};
use crate::models::weights::{Builder, Weights};
use tch::Tensor;

/// Channel LayerNorm of an `[b, C, D, H, W]` volume, in fp32 (`ChannelLayerNorm32`).
fn channel_layer_norm(w: &Weights, ln: &LayerNorm, x: &Tensor) -> Tensor {
    layer_norm32(w, ln, &x.permute([0, 2, 3, 4, 1])).permute([0, 4, 1, 2, 3])
}

/// `[b, C·8, D, H, W]` → `[b, C, 2D, 2H, 2W]`.
pub fn pixel_shuffle_3d(x: &Tensor) -> Tensor {
    let (b, c8, d, h, w) = x.size5().expect("[b, C, D, H, W]");
    let c = c8 / 8;
    x.reshape([b, c, 2, 2, 2, d, h, w])
        .permute([0, 1, 5, 2, 6, 3, 7, 4])
        .reshape([b, c, 2 * d, 2 * h, 2 * w])
}

/// `ResBlock3d` with channel LayerNorms.
#[derive(Debug, Clone)]
pub struct ResBlock3d {
    pub norm1: LayerNorm,
    pub conv1: Conv3d,
    pub norm2: LayerNorm,
    pub conv2: Conv3d,
}

impl ResBlock3d {
    fn new(b: &mut Builder, name: &str, ch: i64) -> ResBlock3d {
        let b = &mut b.scope(name);
        ResBlock3d {
            norm1: LayerNorm::new(b, "norm1", ch, 1e-5, true),
            conv1: Conv3d::new(b, "conv1", ch, ch, 3, 1, 1, true),
            norm2: LayerNorm::new(b, "norm2", ch, 1e-5, true),
            conv2: Conv3d::new(b, "conv2", ch, ch, 3, 1, 1, true),
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let h = self
            .conv1
            .forward(w, &channel_layer_norm(w, &self.norm1, x).silu());
        let h = self
            .conv2
            .forward(w, &channel_layer_norm(w, &self.norm2, &h).silu());
        h + x
    }
}

/// Shape of the structure decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct SsDecoderConfig {
    pub latent_channels: i64,
    pub out_channels: i64,
    pub channels: Vec<i64>,
    pub res_blocks: i64,
    pub middle_blocks: i64,
}

impl SsDecoderConfig {
    /// `ss_decoder`: 73.7 M.
    pub fn sam3d() -> SsDecoderConfig {
        SsDecoderConfig {
            latent_channels: 8,
            out_channels: 1,
            channels: vec![512, 128, 32],
            res_blocks: 2,
            middle_blocks: 2,
        }
    }

    pub fn tiny() -> SsDecoderConfig {
        SsDecoderConfig {
            channels: vec![16, 8, 4],
            res_blocks: 1,
            middle_blocks: 1,
            ..SsDecoderConfig::sam3d()
        }
    }
}

/// One stage of the structure decoder: residual blocks, then (except last) an upsampler.
#[derive(Debug, Clone)]
pub enum DecoderStep {
    Res(ResBlock3d),
    /// `Conv3d(ch → out·8, 3)` then [`pixel_shuffle_3d`].
    Upsample(Conv3d),
}

/// The dense conv3d sparse-structure decoder.
#[derive(Debug, Clone)]
pub struct SsDecoder {
    pub config: SsDecoderConfig,
    pub input_layer: Conv3d,
    pub middle: Vec<ResBlock3d>,
    pub steps: Vec<DecoderStep>,
    pub out_norm: LayerNorm,
    pub out_conv: Conv3d,
}

impl SsDecoder {
    pub fn new(b: &mut Builder, name: &str, config: SsDecoderConfig) -> SsDecoder {
        let b = &mut b.scope(name);
        let c = &config;
        let first = c.channels[0];
        let last = *c.channels.last().expect("channels");
        let input_layer = Conv3d::new(b, "input_layer", c.latent_channels, first, 3, 1, 1, true);
        let middle = (0..c.middle_blocks)
            .map(|i| ResBlock3d::new(b, &format!("middle_block.{i}"), first))
            .collect();
        let mut steps = Vec::new();
        for (i, &ch) in c.channels.iter().enumerate() {
            for _ in 0..c.res_blocks {
                let n = format!("blocks.{}", steps.len());
                steps.push(DecoderStep::Res(ResBlock3d::new(b, &n, ch)));
            }
            if let Some(&next) = c.channels.get(i + 1) {
                let n = format!("blocks.{}.conv", steps.len());
                steps.push(DecoderStep::Upsample(Conv3d::new(
                    b,
                    &n,
                    ch,
                    next * 8,
                    3,
                    1,
                    1,
                    true,
                )));
            }
        }
        SsDecoder {
            input_layer,
            middle,
            steps,
            out_norm: LayerNorm::new(b, "out_layer.0", last, 1e-5, true),
            out_conv: Conv3d::new(b, "out_layer.2", last, c.out_channels, 3, 1, 1, true),
            config,
        }
    }

    /// `[b, 8, 16, 16, 16]` → `[b, 1, 64, 64, 64]` logits.
    pub fn forward(&self, w: &Weights, z: &Tensor) -> Tensor {
        let mut h = self.input_layer.forward(w, z);
        for block in &self.middle {
            h = block.forward(w, &h);
        }
        for step in &self.steps {
            h = match step {
                DecoderStep::Res(r) => r.forward(w, &h),
                DecoderStep::Upsample(conv) => pixel_shuffle_3d(&conv.forward(w, &h)),
            };
        }
        self.out_conv
            .forward(w, &channel_layer_norm(w, &self.out_norm, &h).silu())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{finite, opts};
    use tch::{Device, Kind};

    #[test]
    fn ss_decoder_upsamples_to_four_times_the_grid() {
        tch::manual_seed(2);
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let m = SsDecoder::new(&mut b, "dec", SsDecoderConfig::tiny());
        let w = b.finish();
        let z = Tensor::randn([1, 8, 3, 3, 3], opts());
        let out = m.forward(&w, &z);
        assert_eq!(out.size(), vec![1, 1, 12, 12, 12]);
        assert!(finite(&out));
        // Pixel shuffle: channel group (i, j, k) lands at offset (i, j, k) of each 2×2×2 cell.
        let x = Tensor::arange(8, opts()).view([1, 8, 1, 1, 1]);
        let y = pixel_shuffle_3d(&x);
        assert_eq!(y.double_value(&[0, 0, 1, 0, 1]), 5.0);
    }
}
