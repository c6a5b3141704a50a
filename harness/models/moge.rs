//! MoGe (v1, `Ruicheng/moge-vitl`): monocular geometry from a DINOv2 ViT-L/14 backbone (no
//! registers) and a convolutional head.
//!
//! `forward` follows `MoGeModel.forward`: the image is resized (bicubic, antialiased) to an
//! area of `num_tokens · 14²` pixels keeping its aspect ratio, normalised, resized
//! (bilinear, antialiased) down to multiples of 14 for the backbone, whose last 4 blocks'
//! normed patch tokens feed the head. Head (training-config values: the released
//! `config.json` was not read, so these are parameters): 4 × `Conv1x1(1024 → 512)` summed;
//! 3 upsampling stages to [256, 128, 64] channels, each `ConvTranspose2d(k2, s2)` + `Conv3x3`
//! over the input concatenated with a 2-channel UV map, then 2 residual conv blocks (hidden
//! 2× the width, GroupNorm, ReLU, replicate padding); bilinear resize to the resized image's
//! size, UV concatenated again, and per output (points 3, mask 1) `Conv3x3(66 → 32)` → ReLU →
//! `Conv1x1(32 → n)`. Outputs are resized back to the input size in fp32 and the points
//! remapped with `exp` (`xy · e^z, e^z`).

use super::attention::AttentionImpl;
use super::layers::{Conv2d, GroupNorm};
use super::vit::{Vit, VitConfig};
use super::weights::{Builder, Init, Param, Weights};
use tch::{Device, Kind, Tensor};

/// Shape of MoGe.
#[derive(Debug, Clone, PartialEq)]
pub struct MogeConfig {
    pub vit: VitConfig,
    pub intermediate_layers: i64,
    pub dim_proj: i64,
    pub dim_upsample: Vec<i64>,
    pub res_blocks: i64,
    /// Residual blocks' hidden width as a multiple of their width.
    pub res_hidden_multiplier: i64,
    pub last_conv_channels: i64,
    pub last_conv_size: i64,
    /// Channels of each output head (points, mask).
    pub outputs: Vec<i64>,
    /// `infer()`'s default `resolution_level 9` maps to 2500 tokens.
    pub num_tokens: i64,
}

impl MogeConfig {
    pub fn vitl() -> MogeConfig {
        MogeConfig {
            vit: VitConfig::vit_l14(),
            intermediate_layers: 4,
            dim_proj: 512,
            dim_upsample: vec![256, 128, 64],
            res_blocks: 2,
            res_hidden_multiplier: 2,
            last_conv_channels: 32,
            last_conv_size: 1,
            outputs: vec![3, 1],
            num_tokens: 2500,
        }
    }

    pub fn tiny() -> MogeConfig {
        MogeConfig {
            vit: VitConfig {
                registers: 0,
                ..VitConfig::tiny()
            },
            intermediate_layers: 2,
            dim_proj: 16,
            dim_upsample: vec![64, 32, 32],
            res_blocks: 1,
            last_conv_channels: 8,
            num_tokens: 12,
            ..MogeConfig::vitl()
        }
    }
}

/// A stride-1 convolution with replicate padding (`padding_mode='replicate'`).
#[derive(Debug, Clone)]
pub struct ReplicateConv {
    pub conv: Conv2d,
    pub pad: i64,
}

impl ReplicateConv {
    fn new(b: &mut Builder, name: &str, input: i64, output: i64, kernel: i64) -> ReplicateConv {
        ReplicateConv {
            conv: Conv2d::new(b, name, input, output, kernel, 1, 0, true),
            pad: kernel / 2,
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let p = self.pad;
        let x = if p > 0 {
            x.pad([p, p, p, p], "replicate", None)
        } else {
            x.shallow_clone()
        };
        self.conv.forward(w, &x)
    }
}

/// `GN(1) → ReLU → Conv3x3 → GN(hidden/32) → ReLU → Conv3x3`, plus the input.
#[derive(Debug, Clone)]
pub struct ResidualConvBlock {
    pub norm1: GroupNorm,
    pub conv1: ReplicateConv,
    pub norm2: GroupNorm,
    pub conv2: ReplicateConv,
}

impl ResidualConvBlock {
    fn new(b: &mut Builder, name: &str, ch: i64, hidden: i64) -> ResidualConvBlock {
        let b = &mut b.scope(name);
        ResidualConvBlock {
            norm1: GroupNorm::new(b, "layers.0", 1, ch, 1e-5),
            conv1: ReplicateConv::new(b, "layers.2", ch, hidden, 3),
            norm2: GroupNorm::new(b, "layers.3", (hidden / 32).max(1), hidden, 1e-5),
            conv2: ReplicateConv::new(b, "layers.5", hidden, ch, 3),
        }
    }

    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let h = self.conv1.forward(w, &self.norm1.forward(w, x).relu());
        let h = self.conv2.forward(w, &self.norm2.forward(w, &h).relu());
        h + x
    }
}

/// `ConvTranspose2d(k=2, s=2)` then a replicate-padded `Conv3x3`, then residual blocks.
#[derive(Debug, Clone)]
pub struct UpsampleStage {
    pub deconv_weight: Param,
    pub deconv_bias: Param,
    pub conv: ReplicateConv,
    pub blocks: Vec<ResidualConvBlock>,
}

impl UpsampleStage {
    fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let h = x.conv_transpose2d(
            &w.get(self.deconv_weight),
            Some(&w.get(self.deconv_bias)),
            [2, 2],
            [0, 0],
            [0, 0],
            1,
            [1, 1],
        );
        let mut h = self.conv.forward(w, &h);
        for block in &self.blocks {
            h = block.forward(w, &h);
        }
        h
    }
}

/// One output head: `Conv3x3(in → last)` → ReLU → `Conv(last → n)`.
#[derive(Debug, Clone)]
pub struct OutputBlock {
    pub conv1: ReplicateConv,
    pub conv2: ReplicateConv,
}

/// MoGe's view-plane UV map: `[1, 2, height, width]`, spanning
/// `±(ar, 1)/sqrt(1 + ar²) · (n − 1)/n` with `ar = aspect_ratio`.
pub fn view_plane_uv(
    width: i64,
    height: i64,
    aspect_ratio: f64,
    kind: Kind,
    device: Device,
) -> Tensor {
    let span_x = aspect_ratio / (1.0 + aspect_ratio * aspect_ratio).sqrt();
    let span_y = 1.0 / (1.0 + aspect_ratio * aspect_ratio).sqrt();
    let ex = span_x * (width - 1) as f64 / width as f64;
    let ey = span_y * (height - 1) as f64 / height as f64;
    let opts = (Kind::Float, device);
    let u = Tensor::linspace(-ex, ex, width, opts);
    let v = Tensor::linspace(-ey, ey, height, opts);
    Tensor::stack(
        &[
            u.unsqueeze(0).expand([height, width], false),
            v.unsqueeze(1).expand([height, width], false),
        ],
        0,
    )
    .unsqueeze(0)
    .to_kind(kind)
}

/// MoGe v1.
#[derive(Debug, Clone)]
pub struct Moge {
    pub config: MogeConfig,
    pub backbone: Vit,
    pub projects: Vec<Conv2d>,
    pub upsample: Vec<UpsampleStage>,
    pub output_blocks: Vec<OutputBlock>,
}

/// What MoGe returns.
#[derive(Debug)]
pub struct MogeOutput {
    /// `[b, H, W, 3]`, after the `exp` remap.
    pub points: Tensor,
    /// `[b, H, W]` logits.
    pub mask: Tensor,
}

impl Moge {
    pub fn new(b: &mut Builder, name: &str, config: MogeConfig) -> Moge {
        let b = &mut b.scope(name);
        let c = &config;
        let backbone = Vit::new(b, "backbone", c.vit);
        let projects = (0..c.intermediate_layers)
            .map(|i| {
                Conv2d::new(
                    b,
                    &format!("head.projects.{i}"),
                    c.vit.dim,
                    c.dim_proj,
                    1,
                    1,
                    0,
                    true,
                )
            })
            .collect();
        let inputs = std::iter::once(c.dim_proj).chain(c.dim_upsample.iter().copied());
        let upsample = inputs
            .zip(c.dim_upsample.iter().copied())
            .enumerate()
            .map(|(i, (input, out))| {
                let n = format!("head.upsample_blocks.{i}");
                UpsampleStage {
                    deconv_weight: b.param(
                        &format!("{n}.0.0.weight"),
                        &[input + 2, out, 2, 2],
                        Init::FanIn(input + 2),
                    ),
                    deconv_bias: b.param(&format!("{n}.0.0.bias"), &[out], Init::Zeros),
                    conv: ReplicateConv::new(b, &format!("{n}.0.1"), out, out, 3),
                    blocks: (0..c.res_blocks)
                        .map(|j| {
                            ResidualConvBlock::new(
                                b,
                                &format!("{n}.{}", j + 1),
                                out,
                                c.res_hidden_multiplier * out,
                            )
                        })
                        .collect(),
                }
            })
            .collect();
        let last_in = c.dim_upsample.last().expect("upsampling stages") + 2;
        let output_blocks = c
            .outputs
            .iter()
            .enumerate()
            .map(|(i, &n_out)| OutputBlock {
                conv1: ReplicateConv::new(
                    b,
                    &format!("head.output_block.{i}.0"),
                    last_in,
                    c.last_conv_channels,
                    3,
                ),
                conv2: ReplicateConv::new(
                    b,
                    &format!("head.output_block.{i}.2"),
                    c.last_conv_channels,
                    n_out,
                    c.last_conv_size,
                ),
            })
            .collect();
        Moge {
            backbone,
            projects,
            upsample,
            output_blocks,
            config,
        }
    }

    /// The backbone's input size for a `height`×`width` image: area `num_tokens · 14²`, aspect
    /// kept (before and after rounding down to multiples of the patch size).
    pub fn resized(&self, height: i64, width: i64) -> ((i64, i64), (i64, i64)) {
        let p = self.config.vit.patch_size;
        let f = ((self.config.num_tokens * p * p) as f64 / (height * width) as f64).sqrt();
        let (h, w) = ((height as f64 * f) as i64, (width as f64 * f) as i64);
        ((h, w), (h / p * p, w / p * p))
    }

    /// The head on the backbone features, at the resized image's `height`×`width`.
    fn head(
        &self,
        w: &Weights,
        features: &[(Tensor, Tensor)],
        height: i64,
        width: i64,
    ) -> Vec<Tensor> {
        let p = self.config.vit.patch_size;
        let (ph, pw) = (height / p, width / p);
        let aspect = width as f64 / height as f64;
        let mut x: Option<Tensor> = None;
        for (proj, (patches, _cls)) in self.projects.iter().zip(features) {
            let (b, _, c) = patches.size3().expect("[batch, patches, dim]");
            let grid = patches.transpose(1, 2).reshape([b, c, ph, pw]);
            let y = proj.forward(w, &grid);
            x = Some(match x {
                Some(acc) => acc + y,
                None => y,
            });
        }
        let mut x = x.expect("at least one feature level");
        let with_uv = |x: &Tensor| {
            let (b, _, h, wd) = x.size4().expect("NCHW");
            let uv =
                view_plane_uv(wd, h, aspect, x.kind(), x.device()).expand([b, 2, h, wd], false);
            Tensor::cat(&[x.shallow_clone(), uv], 1)
        };
        for stage in &self.upsample {
            x = stage.forward(w, &with_uv(&x));
        }
        let x = with_uv(&x.upsample_bilinear2d([height, width], false, None, None));
        self.output_blocks
            .iter()
            .map(|o| o.conv2.forward(w, &o.conv1.forward(w, &x).relu()))
            .collect()
    }

    /// `image`: `[b, 3, H, W]` in [0, 1].
    pub fn forward(&self, w: &Weights, image: &Tensor, imp: AttentionImpl) -> MogeOutput {
        let (_, _, height, width) = image.size4().expect("[batch, 3, height, width]");
        let ((rh, rw), (h14, w14)) = self.resized(height, width);
        // Pre-processing in fp32 (the antialiased resizes have no half-precision CPU kernels).
        let x =
            image
                .to_kind(Kind::Float)
                .internal_upsample_bicubic2d_aa([rh, rw], false, None, None);
        let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406]).to_device(x.device());
        let std = Tensor::from_slice(&[0.229f32, 0.224, 0.225]).to_device(x.device());
        let x = (x - mean.view([1, 3, 1, 1])) / std.view([1, 3, 1, 1]);
        let x14 = x
            .internal_upsample_bilinear2d_aa([h14, w14], false, None, None)
            .to_kind(w.kind());
        let features = self.backbone.intermediate_layers(
            w,
            &x14,
            self.config.intermediate_layers as usize,
            imp,
        );
        let outs = self.head(w, &features, rh, rw);
        let back = |t: &Tensor| {
            t.to_kind(Kind::Float)
                .upsample_bilinear2d([height, width], false, None, None)
        };
        let points = back(&outs[0]).permute([0, 2, 3, 1]);
        let xy = points.narrow(3, 0, 2);
        let z = points.narrow(3, 2, 1).exp();
        MogeOutput {
            points: Tensor::cat(&[xy * &z, z], 3),
            mask: back(&outs[1]).squeeze_dim(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_size_parameter_counts() {
        let mut b = Builder::counting();
        let _ = Moge::new(&mut b, "moge", MogeConfig::vitl());
        let w = b.finish();
        let backbone: i64 = w
            .shapes()
            .filter(|(n, _)| n.starts_with("moge.backbone."))
            .map(|(_, s)| s.iter().product::<i64>())
            .sum();
        let head = w.numel() - backbone;
        // The backbone is dinov2_vitl14 (~304 M); the head adds 9.8 M: 314 M in all, which
        // the notes round to ~0.31 B.
        assert!(
            (backbone as f64 - 304e6).abs() < 0.01 * 304e6,
            "backbone {backbone}"
        );
        assert!((head as f64 - 9.8e6).abs() < 0.01 * 9.8e6, "head {head}");
        assert!(
            (w.numel() as f64 - 0.31e9).abs() < 0.015 * 0.31e9,
            "total {}",
            w.numel()
        );
    }

    #[test]
    fn shapes_attention_and_offload() {
        tch::manual_seed(0);
        let c = MogeConfig::tiny();
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let m = Moge::new(&mut b, "moge", c);
        let mut w = b.finish();
        // 12 tokens of 2 px: 10×8 → 7×6 (area ≈ 12·2²) → backbone 6×6 (3×3 patches).
        assert_eq!(m.resized(10, 8), ((7, 6), (6, 6)));
        let image = Tensor::rand([1, 3, 10, 8], (Kind::Float, Device::Cpu));
        let out = m.forward(&w, &image, AttentionImpl::Sdpa);
        assert_eq!(out.points.size(), vec![1, 10, 8, 3]);
        assert_eq!(out.mask.size(), vec![1, 10, 8]);
        assert!(out.points.isfinite().all().int64_value(&[]) == 1);
        let z = out.points.narrow(3, 2, 1);
        assert!(z.min().double_value(&[]) > 0.0, "depth is exp-remapped");
        let math = m.forward(&w, &image, AttentionImpl::Math);
        assert!((&math.mask - &out.mask).abs().max().double_value(&[]) < 1e-4);
        w.offload_sequential(Device::Cpu);
        assert!(m
            .forward(&w, &image, AttentionImpl::Sdpa)
            .mask
            .equal(&out.mask));
    }

    #[test]
    fn uv_map_spans_the_view_plane() {
        let uv = view_plane_uv(4, 2, 2.0, Kind::Float, Device::Cpu);
        assert_eq!(uv.size(), vec![1, 2, 2, 4]);
        let span_x = 2.0 / 5f64.sqrt() * 3.0 / 4.0;
        assert!((uv.double_value(&[0, 0, 0, 3]) - span_x).abs() < 1e-6);
        assert!((uv.double_value(&[0, 1, 0, 0]) + 1.0 / 5f64.sqrt() / 2.0).abs() < 1e-6);
    }
}
