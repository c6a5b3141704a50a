//! The `unet` workload: a Stable Diffusion UNet (SD 2.1 geometry, random weights) called
//! `steps` times per sample, as a denoising loop calls it.
//!
//! Per step: the UNet input is the current latents (4 channels) concatenated with fixed
//! conditioning latents when `in_channels > 4`; the output updates the latents with a
//! stand-in scheduler step `x ← x − ε/steps` (one element-wise op, as a real scheduler costs,
//! and it keeps values bounded since the output is O(1)). Timesteps run from 999 down to 0.
//! The text context is `[batch, 77, cross_attention_dim]`, the CLIP/OpenCLIP length SD uses.
//!
//! Multiview options reproduce the two multiview pipelines: `views` consecutive batch entries
//! form one object; `multiview` adds a full-sequence (Hunyuan3D-paint) or row-wise (UP2You)
//! attention per transformer block; `reference` adds a reference attention whose tokens come
//! from a plain UNet of the same preset run in recording mode over `reference_images` images
//! per object at t = 0, every step (Hunyuan3D-paint re-runs it every step) or once per sample
//! (UP2You caches it), or from random stand-ins made at setup (`synthetic`).
//!
//! Stages: `unet` (and `reference_unet`); counters: `unet_evals`, `reference_unet_evals`.

use super::{Setup, Workload};
use crate::measure::Stages;
use crate::models::unet::{UNet2DConditionModel, UNetConfig, UNetInput};
use crate::models::unet_blocks::{ExtraAttention, Multiview, ReferenceSelect, ReferenceTokens};
use crate::models::{AttentionImpl, Builder};
use anyhow::{anyhow, ensure, Result};
use tch::{Kind, Tensor};

/// Text tokens of the SD text encoders.
pub const TEXT_TOKENS: i64 = 77;

/// Latent channels of the SD VAE (the UNet's output).
const LATENT_CHANNELS: i64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReferencePass {
    EveryStep,
    Once,
    Synthetic,
}

struct Reference {
    model: Option<UNet2DConditionModel>,
    pass: ReferencePass,
    images: i64,
    sample: Tensor,
    context: Tensor,
    /// The reference images are recorded at t = 0.
    timestep: Tensor,
    synthetic: Option<ReferenceTokens>,
}

pub struct Unet {
    model: UNet2DConditionModel,
    reference: Option<Reference>,
    noise: Tensor,
    conditioning: Option<Tensor>,
    context: Tensor,
    labels: Option<Tensor>,
    /// `[steps]` int64 on the device (999 → 0), made at setup as a scheduler's are.
    timesteps: Tensor,
    steps: i64,
    imp: AttentionImpl,
}

/// The model config a preset and the multiview parameters describe.
fn config(setup: &Setup) -> Result<UNetConfig> {
    let p = setup.params;
    let base = match p.str("preset")? {
        "sd21" => UNetConfig::sd21(),
        "tiny" => UNetConfig::tiny(),
        other => return Err(anyhow!("unknown UNet preset `{other}`")),
    };
    let views = p.int("views")?;
    let multiview = match p.str("multiview")? {
        "none" => Multiview::None,
        "full" => Multiview::Full,
        "row" => Multiview::RowWise,
        other => return Err(anyhow!("unknown multiview mode `{other}`")),
    };
    let reference = match p.str("reference")? {
        "none" => None,
        "all" => Some(ReferenceSelect::All),
        "selected" => Some(ReferenceSelect::PerView {
            ratio: p.float("reference_ratio")?,
        }),
        other => return Err(anyhow!("unknown reference mode `{other}`")),
    };
    Ok(UNetConfig {
        class_embeddings: p
            .bool("camera_embedding")?
            .then_some(UNetConfig::HUNYUAN_CAMERA_EMBEDDINGS),
        extra: ExtraAttention {
            multiview,
            views,
            reference,
        },
        ..base.with_in_channels(p.int("in_channels")?)
    })
}

impl Unet {
    pub fn new(setup: &Setup) -> Result<Self> {
        let p = setup.params;
        let (batch, res, steps) = (p.int("batch")?, p.int("resolution")?, p.int("steps")?);
        let attention = p.str("attention")?;
        let imp = AttentionImpl::parse(attention)
            .ok_or_else(|| anyhow!("unknown attention implementation `{attention}`"))?;
        ensure!(res % 8 == 0, "resolution {res} is not a multiple of 8");
        let config = config(setup)?;
        config.validate().map_err(|e| anyhow!(e))?;
        let views = config.extra.views;
        let grouped = config.extra.multiview != Multiview::None || config.extra.reference.is_some();
        ensure!(
            !grouped || batch % views == 0,
            "batch {batch} is not a multiple of {views} views"
        );
        let (kind, device) = (setup.kind(), setup.device());
        let latent = res / 8;
        tch::manual_seed(p.int("seed")?);
        let model = UNet2DConditionModel::new(&config, Builder::new(kind, device));
        let randn = |shape: &[i64]| Tensor::randn(shape, (kind, device));
        let noise = randn(&[batch, LATENT_CHANNELS, latent, latent]);
        let extra_channels = config.in_channels - LATENT_CHANNELS;
        let conditioning =
            (extra_channels > 0).then(|| randn(&[batch, extra_channels, latent, latent]));
        let context = randn(&[batch, TEXT_TOKENS, config.cross_attention_dim]);
        // Camera ids: view index of each batch entry.
        let labels = config.class_embeddings.map(|count| {
            Tensor::arange(batch, (Kind::Int64, device))
                .remainder(views)
                .remainder(count)
        });

        let reference = match config.extra.reference {
            None => None,
            Some(_) => {
                let pass = match p.str("reference_pass")? {
                    "every_step" => ReferencePass::EveryStep,
                    "once" => ReferencePass::Once,
                    "synthetic" => ReferencePass::Synthetic,
                    other => return Err(anyhow!("unknown reference pass `{other}`")),
                };
                let images = p.int("reference_images")?;
                let groups = batch / views;
                let plain = UNetConfig {
                    in_channels: LATENT_CHANNELS,
                    class_embeddings: None,
                    extra: ExtraAttention::NONE,
                    ..config.clone()
                };
                let (model_ref, synthetic) = if pass == ReferencePass::Synthetic {
                    let tokens =
                        model.synthetic_reference(groups, images, latent, latent, kind, device);
                    (None, Some(tokens))
                } else {
                    (
                        Some(UNet2DConditionModel::new(
                            &plain,
                            Builder::new(kind, device),
                        )),
                        None,
                    )
                };
                Some(Reference {
                    model: model_ref,
                    pass,
                    images,
                    sample: randn(&[groups * images, LATENT_CHANNELS, latent, latent]),
                    context: randn(&[groups * images, TEXT_TOKENS, config.cross_attention_dim]),
                    timestep: Tensor::zeros([1], (Kind::Int64, device)),
                    synthetic,
                })
            }
        };
        let timesteps: Vec<i64> = (0..steps).map(|s| 999 - s * 1000 / steps).collect();
        Ok(Unet {
            model,
            reference,
            noise,
            conditioning,
            context,
            labels,
            timesteps: Tensor::from_slice(&timesteps).to_device(device),
            steps,
            imp,
        })
    }
}

impl Reference {
    /// Runs the reference UNet in recording mode, if this step needs it.
    fn tokens(
        &self,
        step: i64,
        imp: AttentionImpl,
        current: Option<ReferenceTokens>,
        stages: &mut Stages,
    ) -> Option<ReferenceTokens> {
        let run = match self.pass {
            ReferencePass::EveryStep => true,
            ReferencePass::Once => step == 0,
            ReferencePass::Synthetic => false,
        };
        match (&self.model, run) {
            (Some(model), true) => {
                let tokens = stages.stage("reference_unet", || {
                    let input = UNetInput {
                        sample: &self.sample,
                        timesteps: &self.timestep,
                        encoder_hidden_states: &self.context,
                        class_labels: None,
                        reference: None,
                        down_residuals: None,
                    };
                    model.forward_recording(&input, imp, self.images, false).1
                });
                stages.count("reference_unet_evals", 1);
                Some(tokens)
            }
            _ => current,
        }
    }
}

impl Workload for Unet {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        let mut latents = self.noise.shallow_clone();
        let mut recorded: Option<ReferenceTokens> = None;
        for step in 0..self.steps {
            if let Some(r) = &self.reference {
                recorded = r.tokens(step, self.imp, recorded.take(), stages);
            }
            let reference = match &self.reference {
                Some(Reference {
                    synthetic: Some(s), ..
                }) => Some(s),
                _ => recorded.as_ref(),
            };
            let t = self.timesteps.narrow(0, step, 1);
            latents = stages.stage("unet", || {
                let sample = match &self.conditioning {
                    Some(c) => Tensor::cat(&[&latents, c], 1),
                    None => latents.shallow_clone(),
                };
                let eps = self.model.forward(
                    &UNetInput {
                        sample: &sample,
                        timesteps: &t,
                        encoder_hidden_states: &self.context,
                        class_labels: self.labels.as_ref(),
                        reference,
                        down_residuals: None,
                    },
                    self.imp,
                );
                &latents - eps / self.steps as f64
            });
            stages.count("unet_evals", 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{build_plan, Manifest, ProfileChoice};
    use crate::measure::{Measurement, Target};
    use crate::plan::ParamValue;
    use crate::workloads::catalog::{DefaultValue, ParamKind};
    use crate::workloads::{build, default_plan};
    use std::path::Path;

    fn run(overrides: &[(&str, ParamValue)]) -> anyhow::Result<Measurement> {
        let mut all = vec![("preset", ParamValue::Str("tiny".into()))];
        all.extend(overrides.iter().cloned());
        let plan = default_plan("unet", &all)?;
        let mut w = build(&plan, Target::Cpu)?;
        Ok(crate::workloads::measure_once(w.as_mut()))
    }

    fn s(v: &str) -> ParamValue {
        ParamValue::Str(v.into())
    }

    #[test]
    fn counts_main_and_reference_passes() {
        let base = [
            ("resolution", ParamValue::Int(64)),
            ("batch", ParamValue::Int(4)),
            ("views", ParamValue::Int(2)),
            ("steps", ParamValue::Int(3)),
            ("in_channels", ParamValue::Int(12)),
            ("camera_embedding", ParamValue::Bool(true)),
            ("multiview", s("row")),
            ("reference", s("selected")),
            ("reference_images", ParamValue::Int(2)),
            ("attention", s("sliced:3")),
        ];
        for (pass, reference_evals) in [
            ("every_step", Some(3)),
            ("once", Some(1)),
            ("synthetic", None),
        ] {
            let mut params = base.to_vec();
            params.push(("reference_pass", s(pass)));
            let m = run(&params).unwrap();
            assert_eq!(m.counters["unet_evals"], 3, "{pass}");
            assert_eq!(
                m.counters.get("reference_unet_evals").copied(),
                reference_evals,
                "{pass}"
            );
            let stages: Vec<&str> = m.stages.iter().map(|s| s.name.as_str()).collect();
            let expected: &[&str] = if reference_evals.is_some() {
                &["reference_unet", "unet"]
            } else {
                &["unet"]
            };
            assert_eq!(stages, expected, "{pass}");
        }
    }

    #[test]
    fn rejects_inconsistent_settings() {
        let bad_views = [
            ("batch", ParamValue::Int(3)),
            ("views", ParamValue::Int(2)),
            ("multiview", s("full")),
        ];
        let err = run(&bad_views).unwrap_err().to_string();
        assert!(err.contains("multiple of 2 views"), "{err}");
        let err = run(&[("resolution", ParamValue::Int(60))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("multiple of 8"), "{err}");
    }

    #[test]
    fn manifests_validate_the_attention_spelling() {
        let text = std::fs::read_to_string("tests/manifests/gpu-unet.toml").unwrap();
        let manifest = Manifest::from_str(Path::new("gpu-unet.toml"), &text).unwrap();
        let plan = build_plan(&manifest, ProfileChoice::Named("base")).unwrap();
        let resolutions: Vec<_> = plan
            .variants
            .iter()
            .map(|v| {
                (
                    v.params["resolution"].clone(),
                    v.params["attention"].clone(),
                )
            })
            .collect();
        assert_eq!(
            resolutions,
            vec![
                (ParamValue::Int(512), s("sdpa")),
                (ParamValue::Int(768), s("sdpa"))
            ]
        );
        let with = |attention: &str| {
            let t = text.replace(
                "attention = \"sdpa\"",
                &format!("attention = \"{attention}\""),
            );
            let manifest =
                Manifest::from_str(Path::new("gpu-unet.toml"), &t).map_err(|e| e.to_string())?;
            build_plan(&manifest, ProfileChoice::Named("base")).map_err(|e| e.to_string())
        };
        assert!(with("sliced:4").is_ok());
        assert!(with("sliced:max").is_ok());
        // Every text parameter's default passes its own check (the Python entry has none: the
        // manifest must name one).
        for spec in crate::workloads::catalog::WORKLOADS
            .iter()
            .filter(|w| !w.is_python())
        {
            for param in spec.params {
                if let (ParamKind::Text(check), DefaultValue::Str(default)) =
                    (param.kind, param.default)
                {
                    assert!((check.check)(default).is_ok(), "{}.{}", spec.id, param.name);
                }
            }
        }
        let err = with("sliced:0").unwrap_err();
        assert!(err.contains("invalid value `sliced:0`"), "{err}");
        assert!(err.contains("sliced:N"), "{err}");
    }
}
