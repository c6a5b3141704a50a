//! Leaf layers over [`Weights`]: each holds parameter handles and fetches them at forward time
//! (see `weights.rs` for why). Shapes and defaults follow PyTorch's modules of the same name.

use super::weights::{Builder, Init, Param, Weights};
use tch::{Kind, Tensor};

/// `nn.Linear`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Linear {
    pub fn new(b: &mut Builder, name: &str, in_dim: i64, out_dim: i64, bias: bool) -> Linear {
        let b = &mut b.scope(name);
        Linear {
            weight: b.layer_param("weight", &[out_dim, in_dim], Init::FanIn(in_dim)),
            bias: bias.then(|| b.layer_param("bias", &[out_dim], Init::Zeros)),
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let bias = self.bias.map(|b| w.get(b));
        x.linear(&w.get(self.weight), bias.as_ref())
    }
}

/// `nn.Conv2d` (`D` = 2) or `nn.Conv3d` (`D` = 3) with square or cubic kernels.
#[derive(Debug, Clone)]
pub struct Conv<const D: usize> {
    pub weight: Param,
    pub bias: Option<Param>,
    pub stride: i64,
    pub padding: i64,
}

/// `nn.Conv2d` with square kernels.
pub type Conv2d = Conv<2>;

/// `nn.Conv3d` with cubic kernels.
pub type Conv3d = Conv<3>;

impl<const D: usize> Conv<D> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &mut Builder,
        name: &str,
        in_ch: i64,
        out_ch: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
        bias: bool,
    ) -> Conv<D> {
        let b = &mut b.scope(name);
        let mut shape = vec![out_ch, in_ch];
        shape.extend([kernel; D]);
        Conv {
            weight: b.layer_param("weight", &shape, Init::FanIn(in_ch * kernel.pow(D as u32))),
            bias: bias.then(|| b.layer_param("bias", &[out_ch], Init::Zeros)),
            stride,
            padding,
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let bias = self.bias.map(|b| w.get(b));
        let (s, p) = (self.stride, self.padding);
        match D {
            2 => x.conv2d(
                &w.get(self.weight),
                bias.as_ref(),
                [s; 2],
                [p; 2],
                [1; 2],
                1,
            ),
            3 => x.conv3d(
                &w.get(self.weight),
                bias.as_ref(),
                [s; 3],
                [p; 3],
                [1; 3],
                1,
            ),
            _ => unreachable!("convolutions are 2-D or 3-D"),
        }
    }
}

/// `nn.GroupNorm` (affine).
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub groups: i64,
    pub weight: Param,
    pub bias: Param,
    pub eps: f64,
}

impl GroupNorm {
    pub fn new(b: &mut Builder, name: &str, groups: i64, channels: i64, eps: f64) -> GroupNorm {
        let b = &mut b.scope(name);
        GroupNorm {
            groups,
            weight: b.param("weight", &[channels], Init::Ones),
            bias: b.param("bias", &[channels], Init::Zeros),
            eps,
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        x.group_norm(
            self.groups,
            Some(&w.get(self.weight)),
            Some(&w.get(self.bias)),
            self.eps,
            true,
        )
    }

    /// The same in fp32, cast back to `x`'s dtype (TRELLIS' `GroupNorm32`).
    pub fn forward_f32(&self, w: &Weights, x: &Tensor) -> Tensor {
        x.to_kind(Kind::Float)
            .group_norm(
                self.groups,
                Some(&w.get(self.weight).to_kind(Kind::Float)),
                Some(&w.get(self.bias).to_kind(Kind::Float)),
                self.eps,
                true,
            )
            .to_kind(x.kind())
    }
}

/// `nn.LayerNorm` over the last dimension, optionally without affine parameters.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub dim: i64,
    pub weight: Option<Param>,
    pub bias: Option<Param>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(b: &mut Builder, name: &str, dim: i64, eps: f64, affine: bool) -> LayerNorm {
        let b = &mut b.scope(name);
        LayerNorm {
            dim,
            weight: affine.then(|| b.param("weight", &[dim], Init::Ones)),
            bias: affine.then(|| b.param("bias", &[dim], Init::Zeros)),
            eps,
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let weight = self.weight.map(|p| w.get(p));
        let bias = self.bias.map(|p| w.get(p));
        x.layer_norm([self.dim], weight.as_ref(), bias.as_ref(), self.eps, true)
    }
}

/// RMSNorm over the last dimension (as in Flux/Llama QK-norm and Z-Image), computed in fp32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Param,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(b: &mut Builder, name: &str, dim: i64, eps: f64) -> RmsNorm {
        let b = &mut b.scope(name);
        RmsNorm {
            weight: b.param("weight", &[dim], Init::Ones),
            eps,
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let rms = (xf.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        (xf * rms).to_kind(kind) * w.get(self.weight)
    }
}

/// TRELLIS' `MultiHeadRMSNorm`: `normalize(x) · γ · sqrt(head_dim)`, γ `[heads, head_dim]`.
#[derive(Debug, Clone)]
pub struct MultiHeadRmsNorm {
    pub gamma: Param,
    pub scale: f64,
}

impl MultiHeadRmsNorm {
    pub fn new(b: &mut Builder, name: &str, heads: i64, head_dim: i64) -> MultiHeadRmsNorm {
        let b = &mut b.scope(name);
        MultiHeadRmsNorm {
            gamma: b.param("gamma", &[heads, head_dim], Init::Ones),
            scale: (head_dim as f64).sqrt(),
        }
    }

    /// `x`: `[batch, heads, tokens, head_dim]`. The result has `x`'s dtype even when γ is
    /// stored in another (an fp16 torso keeps its norms fp32).
    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let norm = x
            .to_kind(Kind::Float)
            .square()
            .sum_dim_intlist(-1, true, Kind::Float)
            .sqrt()
            .clamp_min(1e-12)
            .to_kind(x.kind());
        (x / norm * w.get(self.gamma).unsqueeze(1) * self.scale).to_kind(x.kind())
    }
}

/// `nn.Embedding`.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub weight: Param,
}

impl Embedding {
    pub fn new(b: &mut Builder, name: &str, count: i64, dim: i64) -> Embedding {
        let b = &mut b.scope(name);
        Embedding {
            weight: b.param("weight", &[count, dim], Init::Normal(1.0)),
        }
    }

    pub fn forward(&self, w: &Weights, ids: &Tensor) -> Tensor {
        Tensor::embedding(&w.get(self.weight), ids, -1, false, false)
    }
}
