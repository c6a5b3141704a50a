//! Text-to-image with a Z-Image-style single-stream DiT (diffusers `ZImagePipeline` shape) as
//! a workload. Stages:
//! - `text_encoder`: the Qwen3-class encoder on `text_tokens` tokens (the negative prompt too,
//!   as a batch of 2, when CFG is on);
//! - `dit`: `steps` transformer calls on the 16-channel latent at 1/8 of `height`×`width`
//!   (2×2 patches: 4096 image tokens at 1024²) and the `prompt_tokens` unmasked caption tokens
//!   (the pipeline drops the padding before the DiT, which pads to a multiple of 32 itself);
//!   guidance 0 → batch 1, above → CFG batch 2 (`ZImagePipeline` guides whenever the scale is
//!   above 0);
//! - `vae_decode`: the Flux-16 VAE to pixels, with `vae_slicing` / `vae_tiling`.
//!
//! `offload` follows diffusers: `none` keeps every component on the GPU, `model` moves a
//! component to the GPU before its stage and back after, `sequential` keeps the weights on the
//! CPU and copies each parameter to the GPU at use. Counters: `dit_evals` (calls) and
//! `dit_samples` (calls × batch).
//!
//! `attention = "sliced:*"` is what `pipe.enable_attention_slicing` would ask for, but in
//! diffusers it only reaches components with `set_attention_slice` (UNets); none of Z-Image's
//! has one, so the replica keeps fused attention, as the real pipeline does.

use super::hunyuan3d::{attention_param, beyond_slicing};
use super::pipeline::{self, held, with_model, Held, Loading, Offload, Slot};
use super::{Setup, Workload};
use crate::measure::Stages;
use crate::models::vae::{AutoencoderKL, VaeConfig, VaeOptions};
use crate::models::zimage::{TextEncoder, TextEncoderConfig, ZImageConfig, ZImageTransformer};
use crate::models::AttentionImpl;
use anyhow::Result;
use tch::{Device, Kind, Tensor};

pub struct T2iDit {
    text_encoder: Held<TextEncoder>,
    transformer: Held<ZImageTransformer>,
    vae: Slot<AutoencoderKL>,
    attention: AttentionImpl,
    vae_options: VaeOptions,
    steps: i64,
    guidance: f64,
    text_tokens: i64,
    /// Caption tokens the DiT sees: the prompt's unmasked ones.
    prompt_tokens: i64,
    vocab: i64,
    /// Latent `[channels, h, w]`.
    latent: [i64; 3],
    scaling: (f64, f64),
    kind: Kind,
    device: Device,
}

impl T2iDit {
    pub fn new(setup: &Setup) -> Result<T2iDit> {
        let p = setup.params;
        let tiny = p.str("preset")? == "tiny";
        let (kind, device) = (setup.kind(), setup.device());
        let offload = Offload::parse(p.str("offload")?)?;
        let (te_cfg, vae_cfg) = if tiny {
            (TextEncoderConfig::tiny(), VaeConfig::tiny())
        } else {
            (TextEncoderConfig::qwen3_4b(), VaeConfig::flux16())
        };
        let dit_cfg = if tiny {
            ZImageConfig {
                cap_feat_dim: te_cfg.hidden,
                in_channels: vae_cfg.latent_channels,
                ..ZImageConfig::tiny()
            }
        } else {
            ZImageConfig::turbo()
        };
        // The tiny preset keeps the structure at 64 px and a dozen text tokens.
        let (height, width) = if tiny {
            (64, 64)
        } else {
            (p.int("height")?, p.int("width")?)
        };
        let text_tokens = if tiny {
            p.int("text_tokens")?.min(te_cfg.max_tokens)
        } else {
            p.int("text_tokens")?
        };
        let scale = vae_cfg.scale();
        let to_patch = scale * dit_cfg.patch_size;
        anyhow::ensure!(
            height % to_patch == 0 && width % to_patch == 0,
            "height and width must be multiples of {to_patch}"
        );
        tch::manual_seed(p.int("seed")?);
        let on = (kind, device, offload);
        let mut w = T2iDit {
            text_encoder: held("text_encoder", on, te_cfg, TextEncoder::new),
            transformer: held("transformer", on, dit_cfg, ZImageTransformer::new),
            vae: Slot::vae("vae", on, vae_cfg.clone()),
            // No Z-Image component takes diffusers' attention slicing.
            attention: beyond_slicing(attention_param(p)?),
            vae_options: VaeOptions {
                slicing: p.bool("vae_slicing")?,
                tiling: p.bool("vae_tiling")?,
                ..VaeOptions::default()
            },
            steps: p.int("steps")?,
            guidance: p.float("guidance")?,
            text_tokens,
            prompt_tokens: p.int("prompt_tokens")?.min(text_tokens),
            vocab: te_cfg.vocab,
            latent: [vae_cfg.latent_channels, height / scale, width / scale],
            scaling: (vae_cfg.scaling_factor, vae_cfg.shift_factor),
            kind,
            device,
        };
        w.text_encoder.load();
        w.transformer.load();
        w.vae.load();
        Ok(w)
    }

    fn cfg(&self) -> bool {
        self.guidance > 0.0
    }

    fn run(&mut self, stages: &mut Stages) -> Result<()> {
        let (imp, kind, device) = (self.attention, self.kind, self.device);
        let cfg = self.cfg();
        let batch = if cfg { 2 } else { 1 };
        // Prompt (and negative prompt) token ids.
        let ids = Tensor::randint(self.vocab, [batch, self.text_tokens], (Kind::Int64, device));
        let caption = with_model(
            stages,
            &mut self.text_encoder,
            Loading::AllAtOnce,
            "text_encoder",
            |m| m.model.forward(&m.weights, &ids, imp),
        )?
        .narrow(1, 0, self.prompt_tokens);
        let (steps, guidance, [c, h, w]) = (self.steps, self.guidance, self.latent);
        let latents = with_model(
            stages,
            &mut self.transformer,
            Loading::AllAtOnce,
            "dit",
            |m| {
                let mut x = pipeline::noise(&[1, c, h, w], kind, device);
                // Flow matching from noise (σ = 1) to data (σ = 0); model time is 1 − σ.
                for i in 0..steps {
                    let sigma = 1.0 - i as f64 / steps as f64;
                    let dt = -1.0 / steps as f64;
                    let input = if cfg {
                        Tensor::cat(&[&x, &x], 0)
                    } else {
                        x.shallow_clone()
                    };
                    let t = Tensor::full([batch], 1.0 - sigma, (kind, device));
                    let v = m.model.forward(&m.weights, &input, &t, &caption, imp);
                    let v = if cfg {
                        let parts = v.chunk(2, 0);
                        &parts[0] + (&parts[0] - &parts[1]) * guidance
                    } else {
                        v
                    };
                    x -= v * dt;
                }
                x
            },
        )?;
        stages.count("dit_evals", steps as u64);
        stages.count("dit_samples", (steps * batch) as u64);
        drop(caption);
        let (scaling, shift) = self.scaling;
        let z = latents / scaling + shift;
        let opts = self.vae_options;
        let image = with_model(
            stages,
            &mut self.vae,
            Loading::AllAtOnce,
            "vae_decode",
            |m| m.decode(&z, &opts),
        )?;
        drop(image);
        Ok(())
    }
}

impl Workload for T2iDit {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        self.run(stages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Measurement;
    use crate::models::Residency;
    use crate::plan::ParamValue;
    use crate::workloads::build_default_plan;
    use crate::workloads::pipeline::HasWeights;

    fn build(overrides: &[(&str, ParamValue)]) -> T2iDit {
        let mut all = vec![
            ("preset", ParamValue::Str("tiny".into())),
            ("steps", ParamValue::Int(2)),
        ];
        all.extend(overrides.iter().cloned());
        build_default_plan("t2i_dit", &all, T2iDit::new)
    }

    fn call(w: &mut T2iDit) -> Measurement {
        crate::workloads::measure_once(w)
    }

    /// (storage device, residency) of a slot's weights between stages.
    fn placement<M: HasWeights>(slot: &Slot<M>) -> (Device, Residency) {
        let w = slot.loaded().expect("loaded").weights();
        (w.storage_device(), w.residency())
    }

    #[test]
    fn stages_and_guidance_double_the_dit_batch() {
        let mut w = build(&[]);
        let m = call(&mut w);
        let names: Vec<&str> = m.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["text_encoder", "dit", "vae_decode"]);
        assert_eq!((m.counters["dit_evals"], m.counters["dit_samples"]), (2, 2));
        // ZImagePipeline guides whenever the scale is above 0, also at 1.
        for guidance in [0.5, 1.0, 4.0] {
            let mut w = build(&[("guidance", ParamValue::Float(guidance))]);
            let m = call(&mut w);
            assert_eq!(
                (m.counters["dit_evals"], m.counters["dit_samples"]),
                (2, 4),
                "guidance {guidance}"
            );
        }
    }

    #[test]
    fn the_dit_sees_the_unmasked_prompt_and_attention_slicing_does_not_reach_it() {
        let w = build(&[
            ("prompt_tokens", ParamValue::Int(5)),
            ("attention", ParamValue::Str("sliced:max".into())),
        ]);
        assert_eq!(w.prompt_tokens, 5);
        assert_eq!(
            w.attention,
            AttentionImpl::Sdpa,
            "slicing is a no-op on Z-Image"
        );
        // Never more caption than the encoder produced.
        let w = build(&[("prompt_tokens", ParamValue::Int(4000))]);
        assert_eq!(w.prompt_tokens, w.text_tokens);
        let w = build(&[("attention", ParamValue::Str("math".into()))]);
        assert_eq!(
            w.attention,
            AttentionImpl::Math,
            "an explicit kernel is kept"
        );
    }

    #[test]
    fn offload_modes_place_the_weights_as_diffusers_does() {
        // Sequential: the weights stay on the CPU and are fetched per parameter at use.
        let mut w = build(&[("offload", ParamValue::Str("sequential".into()))]);
        assert_eq!(
            placement(&w.transformer),
            (Device::Cpu, Residency::Sequential)
        );
        call(&mut w);
        for p in [
            placement(&w.text_encoder),
            placement(&w.transformer),
            placement(&w.vae),
        ] {
            assert_eq!(p, (Device::Cpu, Residency::Sequential));
        }
        // Model: whole components, back on the CPU (resident there) after the call.
        let mut w = build(&[("offload", ParamValue::Str("model".into()))]);
        call(&mut w);
        for p in [
            placement(&w.text_encoder),
            placement(&w.transformer),
            placement(&w.vae),
        ] {
            assert_eq!(p, (Device::Cpu, Residency::Resident));
        }
        let mut w = build(&[("offload", ParamValue::Str("none".into()))]);
        call(&mut w);
        assert_eq!(placement(&w.vae), (Device::Cpu, Residency::Resident));
    }
}
