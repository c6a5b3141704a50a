//! UP2You as a workload. Stages:
//! - `segmentation`: a convolutional stand-in for BiRefNet at 1024² on the reference photos;
//! - `features`: DINOv2 ViT-L/14 at 518 px on the reference photos;
//! - `reference_unet`: the reference photos through the UNet once at t = 0, recording every
//!   block's tokens for the reference attentions;
//! - `rgb_multiview`: `steps` steps of the SD 2.1 UNet with row-wise multiview and per-view
//!   reference attentions over all views; the unconditional branch runs only on every
//!   `guidance_interval`-th step (THG; 1 = plain CFG), batched with the conditional one;
//! - `decode_rgb`: VAE decode of the views (slicing when asked);
//! - `normal_multiview` / `decode_normal`: the same for the normal maps (if `normal_stage`);
//! - `reconstruction`: a GPU stand-in for normal-based remeshing (`reconstruction_iterations`
//!   renders at 1024² with a reduction each).
//!
//! Counters: `rgb_multiview_evals` and `normal_multiview_evals` count a stage's conditional and
//! unconditional UNet evaluations separately (50 steps at interval 3 = 50 + 17 = 67, the note's
//! figure for one stage); `unet_evals` and `guided_steps` (steps that ran both) sum the stages.

use super::hunyuan3d::attention_param;
use super::pipeline::{self, held, with_model, Loading, Offload, Slot, WithWeights};
use super::{Setup, Workload};
use crate::measure::Stages;
use crate::models::layers::Conv2d;
use crate::models::unet::{UNet2DConditionModel, UNetConfig, UNetInput};
use crate::models::unet_blocks::{ExtraAttention, ReferenceTokens};
use crate::models::vae::{AutoencoderKL, VaeOptions};
use crate::models::vit::{Vit, VitConfig};
use crate::models::AttentionImpl;
use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

const TEXT_TOKENS: i64 = 77;

/// BiRefNet stand-in: strided convolutions from 3 to 64 channels and back to a mask.
pub struct Segmenter {
    convs: Vec<Conv2d>,
}

impl Segmenter {
    fn new(b: &mut crate::models::Builder, width: i64) -> Segmenter {
        let chans = [3, width, width, width, 1];
        let convs = chans
            .windows(2)
            .enumerate()
            .map(|(i, c)| {
                Conv2d::new(
                    b,
                    &format!("seg.{i}"),
                    c[0],
                    c[1],
                    3,
                    if i < 2 { 2 } else { 1 },
                    1,
                    true,
                )
            })
            .collect();
        Segmenter { convs }
    }

    fn forward(&self, w: &crate::models::Weights, x: &Tensor) -> Tensor {
        self.convs
            .iter()
            .fold(x.shallow_clone(), |h, c| c.forward(w, &h).silu())
    }
}

pub struct Up2You {
    segmenter: Slot<WithWeights<Segmenter>>,
    dino: Slot<WithWeights<Vit>>,
    unet: Slot<UNet2DConditionModel>,
    reference: Slot<UNet2DConditionModel>,
    vae: Slot<AutoencoderKL>,
    attention: AttentionImpl,
    vae_options: VaeOptions,
    views: i64,
    latent: i64,
    steps: i64,
    guidance: f64,
    interval: i64,
    reference_images: i64,
    normal_stage: bool,
    iterations: i64,
    photo_size: i64,
    dino_size: i64,
    render_size: i64,
    cross_dim: i64,
    kind: Kind,
    device: Device,
}

impl Up2You {
    pub fn new(setup: &Setup) -> Result<Self> {
        let p = setup.params;
        let (kind, device) = (setup.kind(), setup.device());
        let tiny = p.str("preset")? == "tiny";
        let resolution = p.int("resolution")?;
        ensure!(
            resolution % 8 == 0,
            "resolution {resolution} is not a multiple of 8"
        );
        let views = p.int("views")?;
        let (base, vae_cfg) = pipeline::sd_configs(tiny);
        let unet_cfg = UNetConfig {
            extra: ExtraAttention {
                views,
                ..UNetConfig::up2you().extra
            },
            ..base.clone()
        };
        let vit_cfg = if tiny {
            VitConfig::tiny()
        } else {
            VitConfig::vit_l14()
        };
        let seg_width = if tiny { 8 } else { 64 };
        tch::manual_seed(p.int("seed")?);
        let on = (kind, device, Offload::None);
        let mut up = Up2You {
            segmenter: Slot::new("segmenter", kind, device, Offload::None, move |b| {
                WithWeights::build(b, |b| Segmenter::new(b, seg_width))
            }),
            dino: held("dino", on, vit_cfg, Vit::new),
            unet: Slot::unet("unet", on, unet_cfg),
            reference: Slot::unet("reference_unet", on, base.clone()),
            vae: Slot::vae("vae", on, vae_cfg),
            attention: attention_param(p)?,
            vae_options: VaeOptions {
                slicing: p.bool("vae_slicing")?,
                ..VaeOptions::default()
            },
            views,
            latent: resolution / 8,
            steps: p.int("steps")?,
            guidance: p.float("guidance")?,
            interval: p.int("guidance_interval")?,
            reference_images: p.int("reference_images")?,
            normal_stage: p.bool("normal_stage")?,
            iterations: p.int("reconstruction_iterations")?,
            photo_size: if tiny { 64 } else { 1024 },
            dino_size: if tiny { 8 * vit_cfg.patch_size } else { 518 },
            render_size: if tiny { 64 } else { 1024 },
            cross_dim: base.cross_attention_dim,
            kind,
            device,
        };
        for loaded in [
            &mut up.segmenter as &mut dyn Loadable,
            &mut up.dino,
            &mut up.unet,
            &mut up.reference,
            &mut up.vae,
        ] {
            loaded.load_now();
        }
        Ok(up)
    }

    fn randn(&self, shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (self.kind, self.device))
    }

    /// One multiview diffusion stage: `steps` steps over all views with THG guidance.
    fn multiview(
        &mut self,
        stages: &mut Stages,
        stage: &str,
        tokens: &ReferenceTokens,
    ) -> Result<Tensor> {
        let (views, latent, attention, guidance) =
            (self.views, self.latent, self.attention, self.guidance);
        let guided = pipeline::guided_steps(self.steps as usize, self.interval as usize);
        let context = self.randn(&[2 * views, TEXT_TOKENS, self.cross_dim]);
        let doubled = ReferenceTokens {
            layers: tokens.layers.iter().map(|t| t.repeat([2, 1, 1])).collect(),
        };
        let mut latents = self.randn(&[views, 4, latent, latent]);
        let device = self.device;
        let n = guided.len() as f64;
        for (i, &guide) in guided.iter().enumerate() {
            let t = Tensor::from_slice(&[999 - (i as i64) * 1000 / n as i64]).to_device(device);
            latents = with_model(stages, &mut self.unet, Loading::AllAtOnce, stage, |unet| {
                let (sample, ctx, reference) = if guide {
                    (
                        Tensor::cat(&[&latents, &latents], 0),
                        context.shallow_clone(),
                        &doubled,
                    )
                } else {
                    (latents.shallow_clone(), context.narrow(0, 0, views), tokens)
                };
                let input = UNetInput {
                    sample: &sample,
                    timesteps: &t,
                    encoder_hidden_states: &ctx,
                    class_labels: None,
                    reference: Some(reference),
                    down_residuals: None,
                };
                let eps = unet.forward(&input, attention);
                let eps = if guide {
                    let parts = eps.chunk(2, 0);
                    &parts[1] + (&parts[0] - &parts[1]) * guidance
                } else {
                    eps
                };
                &latents - eps / n
            })?;
            let evals = if guide { 2 } else { 1 };
            stages.count(&format!("{stage}_evals"), evals);
            stages.count("unet_evals", evals);
            stages.count("guided_steps", u64::from(guide));
        }
        Ok(latents)
    }
}

/// Loads a slot of any model type (set-up creates every model, as UP2You's script does).
trait Loadable {
    fn load_now(&mut self);
}

impl<M: pipeline::HasWeights> Loadable for Slot<M> {
    fn load_now(&mut self) {
        self.load();
    }
}

impl Workload for Up2You {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        let (attention, kind, device) = (self.attention, self.kind, self.device);
        let photos = self.randn(&[self.reference_images, 3, self.photo_size, self.photo_size]);
        with_model(
            stages,
            &mut self.segmenter,
            Loading::AllAtOnce,
            "segmentation",
            |m| drop(m.model.forward(&m.weights, &photos)),
        )?;
        let crops = photos.upsample_bilinear2d([self.dino_size, self.dino_size], false, None, None);
        with_model(
            stages,
            &mut self.dino,
            Loading::AllAtOnce,
            "features",
            |m| drop(m.model.forward(&m.weights, &crops, attention)),
        )?;
        // Reference pass: the photos' latents through the UNet at t = 0, recording tokens.
        let ref_latents = self.randn(&[self.reference_images, 4, self.latent, self.latent]);
        let ref_context = self.randn(&[self.reference_images, TEXT_TOKENS, self.cross_dim]);
        let zero = Tensor::zeros([1], (Kind::Int64, device));
        let images = self.reference_images;
        let tokens = with_model(
            stages,
            &mut self.reference,
            Loading::AllAtOnce,
            "reference_unet",
            |unet| {
                let input = UNetInput {
                    sample: &ref_latents,
                    timesteps: &zero,
                    encoder_hidden_states: &ref_context,
                    class_labels: None,
                    reference: None,
                    down_residuals: None,
                };
                unet.forward_recording(&input, attention, images).1
            },
        )?;
        let rgb = self.multiview(stages, "rgb_multiview", &tokens)?;
        let options = self.vae_options;
        with_model(
            stages,
            &mut self.vae,
            Loading::AllAtOnce,
            "decode_rgb",
            |vae| drop(vae.decode(&rgb, &options)),
        )?;
        if self.normal_stage {
            let normals = self.multiview(stages, "normal_multiview", &tokens)?;
            with_model(
                stages,
                &mut self.vae,
                Loading::AllAtOnce,
                "decode_normal",
                |vae| drop(vae.decode(&normals, &options)),
            )?;
        }
        let (iterations, size) = (self.iterations, self.render_size);
        let _residual = stages.stage("reconstruction", || {
            let mut energy = Tensor::zeros([1], (Kind::Float, device));
            for i in 0..iterations {
                let maps = pipeline::render_view(size, (i % 360) as f64, kind, device);
                energy += maps.to_kind(Kind::Float).square().mean(Kind::Float);
            }
            energy
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::ParamValue;

    fn run(overrides: &[(&str, ParamValue)]) -> crate::measure::Measurement {
        let mut all = vec![
            ("preset", ParamValue::Str("tiny".into())),
            ("views", ParamValue::Int(2)),
            ("resolution", ParamValue::Int(32)),
            ("reference_images", ParamValue::Int(2)),
            ("reconstruction_iterations", ParamValue::Int(2)),
            ("normal_stage", ParamValue::Bool(false)),
        ];
        all.extend(overrides.iter().cloned());
        crate::workloads::run_default_plan("up2you", &all)
    }

    #[test]
    fn guidance_interval_3_runs_67_unet_evaluations_over_50_steps() {
        let m = run(&[
            ("steps", ParamValue::Int(50)),
            ("guidance_interval", ParamValue::Int(3)),
        ]);
        assert_eq!(m.counters["rgb_multiview_evals"], 67);
        assert_eq!(m.counters["unet_evals"], 67);
        assert_eq!(m.counters["guided_steps"], 17);
        let plain = run(&[
            ("steps", ParamValue::Int(6)),
            ("guidance_interval", ParamValue::Int(1)),
        ]);
        assert_eq!(
            plain.counters["unet_evals"], 12,
            "plain CFG evaluates both branches every step"
        );
        let names: Vec<_> = plain.stages.iter().map(|s| s.name.as_str()).collect();
        for stage in [
            "segmentation",
            "features",
            "reference_unet",
            "rgb_multiview",
            "decode_rgb",
            "reconstruction",
        ] {
            assert!(names.contains(&stage), "missing stage {stage}: {names:?}");
        }
    }

    #[test]
    fn each_multiview_stage_counts_its_own_evaluations() {
        let m = run(&[
            ("steps", ParamValue::Int(6)),
            ("guidance_interval", ParamValue::Int(3)),
            ("normal_stage", ParamValue::Bool(true)),
        ]);
        assert_eq!(m.counters["rgb_multiview_evals"], 8, "6 steps + 2 guided");
        assert_eq!(m.counters["normal_multiview_evals"], 8);
        assert_eq!(m.counters["unet_evals"], 16);
        assert!(m.stages.iter().any(|s| s.name == "decode_normal"));
    }
}
