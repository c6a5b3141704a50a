//! A convolution stack whose speed depends on cuDNN and dtype knobs: an input convolution, then
//! `blocks` × (3×3 conv → GroupNorm → SiLU), then optionally one single-head self-attention
//! block over the pixels (GroupNorm → fused QKV projection → SDPA → projection, residual), as in
//! the mid-block of a diffusion UNet.

use super::{Setup, Workload};
use crate::measure::Stages;
use anyhow::{ensure, Result};
use tch::nn::{self, Module};
use tch::Tensor;

pub struct ConvStack {
    _vs: nn::VarStore,
    conv_in: nn::Conv2D,
    blocks: Vec<(nn::Conv2D, nn::GroupNorm)>,
    attention: Option<Attention>,
    input: Tensor,
}

struct Attention {
    norm: nn::GroupNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
}

impl ConvStack {
    pub fn new(setup: &Setup) -> Result<Self> {
        let p = setup.params;
        let (batch, in_ch, ch) = (p.int("batch")?, p.int("in_channels")?, p.int("channels")?);
        let (res, groups) = (p.int("resolution")?, p.int("groups")?);
        ensure!(
            ch % groups == 0,
            "channels ({ch}) must be a multiple of groups ({groups})"
        );
        tch::manual_seed(p.int("seed")?);
        let mut vs = nn::VarStore::new(setup.device());
        let root = vs.root();
        let conv = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let conv_in = nn::conv2d(&root / "conv_in", in_ch, ch, 3, conv);
        let blocks = (0..p.int("blocks")?)
            .map(|i| {
                let b = &root / format!("block{i}");
                (
                    nn::conv2d(&b / "conv", ch, ch, 3, conv),
                    nn::group_norm(&b / "norm", groups, ch, Default::default()),
                )
            })
            .collect();
        let attention = p.bool("attention")?.then(|| {
            let a = &root / "attention";
            Attention {
                norm: nn::group_norm(&a / "norm", groups, ch, Default::default()),
                qkv: nn::linear(&a / "qkv", ch, 3 * ch, Default::default()),
                proj: nn::linear(&a / "proj", ch, ch, Default::default()),
            }
        });
        vs.set_kind(setup.kind());
        let input = Tensor::randn([batch, in_ch, res, res], (setup.kind(), setup.device()));
        Ok(ConvStack {
            _vs: vs,
            conv_in,
            blocks,
            attention,
            input,
        })
    }
}

impl Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("NCHW activations");
        let tokens = x.apply(&self.norm).view([b, c, h * w]).transpose(1, 2);
        let qkv = tokens
            .apply(&self.qkv)
            .view([b, h * w, 3, 1, c])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let out = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let out = out
            .squeeze_dim(1)
            .apply(&self.proj)
            .transpose(1, 2)
            .view([b, c, h, w]);
        x + out
    }
}

impl Workload for ConvStack {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        let x = stages.stage("convolutions", || {
            let mut x = self.conv_in.forward(&self.input);
            for (conv, norm) in &self.blocks {
                x = x.apply(conv).apply(norm).silu();
            }
            x
        });
        if let Some(attention) = &self.attention {
            stages.stage("attention", || drop(attention.forward(&x)));
        }
        Ok(())
    }
}
