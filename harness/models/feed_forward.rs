//! Transformer feed-forward blocks: GELU MLP (ViT, DiT), GEGLU (diffusers' `FeedForward` with
//! `activation_fn="geglu"`, SD UNets) and SwiGLU (DINOv2-g, Llama/Qwen, Z-Image).

use super::layers::Linear;
use super::weights::{Builder, Weights};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `fc1 → GELU → fc2` (exact erf GELU).
    Gelu,
    /// As `Gelu` with the tanh approximation (Flux-style DiTs).
    GeluTanh,
    /// `proj(x) = [h, gate]` (2·hidden wide), `h · GELU(gate)`, then out.
    Geglu,
    /// `w1(x)`, `w3(x)` (gate and up), `SiLU(w1) · w3`, then `w2`.
    Swiglu,
}

#[derive(Debug, Clone)]
pub struct FeedForward {
    pub activation: Activation,
    /// fc1 / GEGLU proj / SwiGLU w1 (gate).
    pub input: Linear,
    /// SwiGLU w3 (up) only.
    pub up: Option<Linear>,
    pub output: Linear,
}

impl FeedForward {
    pub fn new(
        b: &mut Builder,
        name: &str,
        dim: i64,
        hidden: i64,
        activation: Activation,
        bias: bool,
    ) -> FeedForward {
        let b = &mut b.scope(name);
        let (input, up) = match activation {
            Activation::Geglu => (Linear::new(b, "proj_in", dim, 2 * hidden, bias), None),
            Activation::Swiglu => (
                Linear::new(b, "w1", dim, hidden, bias),
                Some(Linear::new(b, "w3", dim, hidden, bias)),
            ),
            Activation::Gelu | Activation::GeluTanh => {
                (Linear::new(b, "fc1", dim, hidden, bias), None)
            }
        };
        FeedForward {
            activation,
            input,
            up,
            output: Linear::new(b, "out", hidden, dim, bias),
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        let h = self.input.forward(w, x);
        let h = match self.activation {
            Activation::Gelu => h.gelu("none"),
            Activation::GeluTanh => h.gelu("tanh"),
            Activation::Geglu => {
                let parts = h.chunk(2, -1);
                &parts[0] * parts[1].gelu("none")
            }
            Activation::Swiglu => {
                let up = self
                    .up
                    .as_ref()
                    .expect("SwiGLU has an up projection")
                    .forward(w, x);
                h.silu() * up
            }
        };
        self.output.forward(w, &h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn shapes_and_parameter_counts() {
        for (act, params) in [
            (Activation::Gelu, 2 * 8 * 32 + 32 + 8),
            (Activation::Geglu, 8 * 64 + 64 + 32 * 8 + 8),
            (Activation::Swiglu, 3 * 8 * 32),
        ] {
            let mut b = Builder::new(Kind::Float, Device::Cpu);
            let ff = FeedForward::new(&mut b, "ff", 8, 32, act, act != Activation::Swiglu);
            let w = b.finish();
            assert_eq!(w.numel(), params, "{act:?}");
            let y = ff.forward(&w, &Tensor::randn([2, 5, 8], (Kind::Float, Device::Cpu)));
            assert_eq!(y.size(), vec![2, 5, 8]);
        }
    }
}
