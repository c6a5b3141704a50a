//! Timestep embeddings.

use tch::{Device, Kind, Tensor};

/// Sinusoidal timestep embedding as diffusers' `get_timestep_embedding` computes it:
/// `exponent = -ln(max_period) · i / (half − downscale_freq_shift)`, `emb = t · exp(exponent)`,
/// then `[sin, cos]` (or `[cos, sin]` with `flip_sin_to_cos`), scaled by `scale`. `timesteps` is
/// a 1-D tensor; the result is `[len, dim]` in fp32.
pub fn timestep_embedding(
    timesteps: &Tensor,
    dim: i64,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f64,
    scale: f64,
    max_period: f64,
) -> Tensor {
    let half = dim / 2;
    let device: Device = timesteps.device();
    let exponent = Tensor::arange(half, (Kind::Float, device)) * (-(max_period.ln()))
        / (half as f64 - downscale_freq_shift);
    let args = timesteps.to_kind(Kind::Float).unsqueeze(1) * exponent.exp().unsqueeze(0) * scale;
    let (sin, cos) = (args.sin(), args.cos());
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[cos, sin], -1)
    } else {
        Tensor::cat(&[sin, cos], -1)
    };
    if dim % 2 == 1 {
        emb.constant_pad_nd([0, 1])
    } else {
        emb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_closed_form() {
        let t = Tensor::from_slice(&[0.0f32, 10.0, 999.0]);
        let e = timestep_embedding(&t, 8, true, 0.0, 1.0, 10000.0);
        assert_eq!(e.size(), vec![3, 8]);
        // t = 0: cos(0) = 1 in the first half (flipped), sin(0) = 0 in the second.
        assert_eq!(
            e.get(0).narrow(0, 0, 4).sum(Kind::Float).double_value(&[]),
            4.0
        );
        assert_eq!(
            e.get(0)
                .narrow(0, 4, 4)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        // Frequency i = 1 of 4: exp(-ln(1e4)/4) = 0.1; t = 10 → cos(1.0).
        let got = e.get(1).get(1).double_value(&[]);
        assert!((got - 1.0f64.cos()).abs() < 1e-6, "{got}");
    }
}
