//! Noise models of GPU timings, for the seeded simulations of the decision rules.
//!
//! Both are calibrated on repeated processes of one configuration measured on an H200:
//! * **nested**: every process has its own lognormal speed factor (between-process CV 0–20 %;
//!   the SD 2.1 UNet showed 10–18 %, the conv stack 2 %, the VAE 0.1 %), each call a 5 %
//!   lognormal jitter, and 2 % of calls spike ×3;
//! * **two-regime**: a process runs in a slow regime (×1.45) with probability 0.3, else fast,
//!   plus 3 % lognormal between processes, 3 % within, and 2 % of calls spiking ×1.2 (overall
//!   between-process CV ≈ 16 %, the shape the UNet showed).
//!
//! An optional run-level factor (lognormal, CV `run_cv`) is shared by every process of one
//! run: drift between the night a baseline was recorded and the night it is compared.

use crate::stats::NestedSample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How processes and calls vary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    Nested { between_cv: f64 },
    TwoRegime,
}

impl Model {
    pub fn name(self) -> String {
        match self {
            Model::Nested { between_cv } => format!("nested, {:.0} % between", 100.0 * between_cv),
            Model::TwoRegime => "two-regime (30 % of processes ×1.45)".into(),
        }
    }
}

/// Standard normal draw (Box–Muller).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A lognormal factor with coefficient of variation about `cv`.
pub fn lognormal(rng: &mut ChaCha8Rng, cv: f64) -> f64 {
    (cv * normal(rng)).exp()
}

/// One process's calls of a workload whose true scale is `scale` (ms), under `model`, with a
/// run-level factor `run_factor`.
pub fn process(
    rng: &mut ChaCha8Rng,
    model: Model,
    calls: usize,
    scale: f64,
    run_factor: f64,
) -> Vec<f64> {
    let (process_factor, within_cv, spike) = match model {
        Model::Nested { between_cv } => (lognormal(rng, between_cv), 0.05, 3.0),
        Model::TwoRegime => {
            let slow = if rng.random::<f64>() < 0.3 { 1.45 } else { 1.0 };
            (slow * lognormal(rng, 0.03), 0.03, 1.2)
        }
    };
    (0..calls)
        .map(|_| {
            let spiked = if rng.random::<f64>() < 0.02 {
                spike
            } else {
                1.0
            };
            scale * run_factor * process_factor * lognormal(rng, within_cv) * spiked
        })
        .collect()
}

/// A run's processes of one variant.
pub fn variant(
    rng: &mut ChaCha8Rng,
    model: Model,
    processes: usize,
    calls: usize,
    scale: f64,
    run_factor: f64,
) -> NestedSample {
    NestedSample::new(
        (0..processes)
            .map(|_| process(rng, model, calls, scale, run_factor))
            .collect(),
    )
    .expect("simulated samples are positive and finite")
}
