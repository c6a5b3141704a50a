//! diffusers' `T2IAdapter` with the `full_adapter` type (`FullAdapter`), the condition encoder
//! UP2You puts in front of its SD 2.1 UNet (`T2IAdapter(in_channels=3,
//! channels=block_out_channels, num_res_blocks=layers_per_block, downscale_factor=8)`):
//! `PixelUnshuffle(8)` (3 → 192 channels), a 3×3 `conv_in` to the first width, then one block
//! per UNet level, each (after the first) average-pooling ×2 and, where the width changes, a
//! 1×1 `in_conv`, followed by `num_res_blocks` residual blocks (3×3 conv, ReLU, 1×1 conv, skip).
//! Each block's output is one feature map, at the resolution and width of the UNet level it is
//! added to (`down_intrablock_additional_residuals`). SD 2.1's widths give 77,369,280
//! parameters.

use super::layers::Conv2d;
use super::weights::{Builder, Weights};
use tch::Tensor;

#[derive(Debug, Clone)]
struct AdapterBlock {
    down: bool,
    in_conv: Option<Conv2d>,
    /// (3×3 `block1`, 1×1 `block2`) per residual block.
    resnets: Vec<(Conv2d, Conv2d)>,
}

/// A randomly initialised full T2I-Adapter.
#[derive(Debug, Clone)]
pub struct T2iAdapter {
    downscale: i64,
    conv_in: Conv2d,
    body: Vec<AdapterBlock>,
}

impl T2iAdapter {
    /// An adapter for a UNet of `channels` (its `block_out_channels`) and `res_blocks`
    /// (its `layers_per_block`), on `in_channels`-channel images downscaled by `downscale`
    /// (the VAE's factor).
    pub fn new(
        b: &mut Builder,
        name: &str,
        in_channels: i64,
        channels: &[i64],
        res_blocks: i64,
        downscale: i64,
    ) -> T2iAdapter {
        let b = &mut b.scope(name);
        let unshuffled = in_channels * downscale * downscale;
        let conv_in = Conv2d::new(b, "conv_in", unshuffled, channels[0], 3, 1, 1, true);
        let body = channels
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let input = if i == 0 { out } else { channels[i - 1] };
                let b = &mut b.scope(format_args!("body.{i}"));
                AdapterBlock {
                    down: i > 0,
                    in_conv: (input != out)
                        .then(|| Conv2d::new(b, "in_conv", input, out, 1, 1, 0, true)),
                    resnets: (0..res_blocks)
                        .map(|j| {
                            let b = &mut b.scope(format_args!("resnets.{j}"));
                            (
                                Conv2d::new(b, "block1", out, out, 3, 1, 1, true),
                                Conv2d::new(b, "block2", out, out, 1, 1, 0, true),
                            )
                        })
                        .collect(),
                }
            })
            .collect();
        T2iAdapter {
            downscale,
            conv_in,
            body,
        }
    }

    /// One feature map per UNet level for condition images `[batch, in_channels, H, W]`.
    pub fn forward(&self, w: &Weights, image: &Tensor) -> Vec<Tensor> {
        let mut x = self
            .conv_in
            .forward(w, &image.pixel_unshuffle(self.downscale));
        self.body
            .iter()
            .map(|block| {
                if block.down {
                    x = x.avg_pool2d([2, 2], [2, 2], [0, 0], true, true, None::<i64>);
                }
                if let Some(conv) = &block.in_conv {
                    x = conv.forward(w, &x);
                }
                for (block1, block2) in &block.resnets {
                    x = &x + block2.forward(w, &block1.forward(w, &x).relu());
                }
                x.shallow_clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::count;
    use tch::{Device, Kind};

    #[test]
    fn sd21_widths_give_diffusers_parameter_count() {
        // diffusers' T2IAdapter(3, [320, 640, 1280, 1280], 2, 8) on the meta device.
        let n = count(|b| T2iAdapter::new(b, "adapter", 3, &[320, 640, 1280, 1280], 2, 8));
        assert_eq!(n, 77_369_280);
    }

    #[test]
    fn one_feature_map_per_unet_level() {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let adapter = T2iAdapter::new(&mut b, "adapter", 3, &[32, 64], 1, 8);
        let w = b.finish();
        let maps = adapter.forward(
            &w,
            &Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu)),
        );
        let shapes: Vec<Vec<i64>> = maps.iter().map(Tensor::size).collect();
        assert_eq!(shapes, [vec![2, 32, 8, 8], vec![2, 64, 4, 4]]);
    }
}
