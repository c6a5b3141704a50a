//! The `vae_decode` workload: an `AutoencoderKL` (encoder and decoder resident, as a pipeline
//! holds it) decodes a batch of random latents per call, with diffusers' slicing and tiling
//! options. The latents are unscaled first (`z / scaling_factor + shift_factor`), as pipelines
//! do before `vae.decode`.
//!
//! Stage: `vae_decode`; counter: `vae_decoder_calls` (decoder invocations: tiles × slices).

use super::{Setup, Workload};
use crate::measure::Stages;
use crate::models::vae::{AutoencoderKL, VaeConfig, VaeOptions};
use crate::models::Builder;
use anyhow::{anyhow, ensure, Result};
use tch::Tensor;

pub struct VaeDecode {
    vae: AutoencoderKL,
    latents: Tensor,
    opts: VaeOptions,
    decoder_calls: u64,
}

impl VaeDecode {
    pub fn new(setup: &Setup) -> Result<Self> {
        let p = setup.params;
        let config = match p.str("preset")? {
            "sd" => VaeConfig::sd(),
            "flux16" => VaeConfig::flux16(),
            "tiny" => VaeConfig::tiny(),
            other => return Err(anyhow!("unknown VAE preset `{other}`")),
        };
        let (batch, res) = (p.int("batch")?, p.int("resolution")?);
        let scale = config.scale();
        ensure!(
            res % scale == 0,
            "resolution {res} is not a multiple of the VAE's scale {scale}"
        );
        let tile = p.int("tile_size")?;
        let opts = VaeOptions {
            slicing: p.bool("slicing")?,
            tiling: p.bool("tiling")?,
            tile_sample_size: (tile > 0).then_some(tile),
            ..Default::default()
        };
        tch::manual_seed(p.int("seed")?);
        let vae = AutoencoderKL::new(&config, Builder::new(setup.kind(), setup.device()));
        vae.validate_options(&opts).map_err(|e| anyhow!(e))?;
        let latent = res / scale;
        let latents = Tensor::randn(
            [batch, config.latent_channels, latent, latent],
            (setup.kind(), setup.device()),
        );
        let decoder_calls = vae.decoder_calls(batch, latent, latent, &opts) as u64;
        Ok(VaeDecode {
            vae,
            latents,
            opts,
            decoder_calls,
        })
    }
}

impl Workload for VaeDecode {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        let c = &self.vae.config;
        stages.stage("vae_decode", || {
            let z = &self.latents / c.scaling_factor + c.shift_factor;
            drop(self.vae.decode(&z, &self.opts))
        });
        stages.count("vae_decoder_calls", self.decoder_calls);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::measure::{Meter, Target};
    use crate::plan::ParamValue;
    use crate::workloads::{build, default_plan};

    #[test]
    fn counts_decoder_calls_for_tiles_and_slices() {
        let meter = Meter::cpu();
        // The tiny VAE's 64-px tiles are 8 latent pixels with stride 6: a 16 × 16 latent
        // (128 px) is 3 × 3 tiles.
        for (slicing, tiling, calls) in [
            (false, false, 1),
            (true, false, 2),
            (false, true, 9),
            (true, true, 18),
        ] {
            let plan = default_plan(
                "vae_decode",
                &[
                    ("preset", ParamValue::Str("tiny".into())),
                    ("resolution", ParamValue::Int(128)),
                    ("batch", ParamValue::Int(2)),
                    ("slicing", ParamValue::Bool(slicing)),
                    ("tiling", ParamValue::Bool(tiling)),
                ],
            )
            .unwrap();
            let mut w = build(&plan, Target::Cpu).unwrap();
            let m = meter.measure(|s| w.call(s)).unwrap();
            assert_eq!(m.counters["vae_decoder_calls"], calls);
            assert_eq!(m.stages[0].name, "vae_decode");
        }
    }

    #[test]
    fn rejects_unusable_sizes() {
        let plan = |overrides: &[(&str, ParamValue)]| {
            let mut all = vec![("preset", ParamValue::Str("tiny".into()))];
            all.extend(overrides.iter().cloned());
            build(&default_plan("vae_decode", &all).unwrap(), Target::Cpu)
        };
        let err = plan(&[("resolution", ParamValue::Int(100))]).err().unwrap();
        assert!(err.to_string().contains("multiple of"), "{err}");
        let err = plan(&[
            ("tiling", ParamValue::Bool(true)),
            ("tile_size", ParamValue::Int(8)),
        ])
        .err()
        .unwrap();
        assert!(err.to_string().contains("too small"), "{err}");
    }
}
