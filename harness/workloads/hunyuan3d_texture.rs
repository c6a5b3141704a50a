//! Hunyuan3D-2 texture generation as a workload (optionally after the shape pipeline, as the
//! notes' end-to-end scenarios run it). Stages:
//! - `delight`: the InstructPix2Pix-style UNet (8 input channels) on the 512-px prompt image,
//!   `delight_steps` steps without CFG (diffusers disables it at guidance 1.0);
//! - `uv_unwrap`: the CPU stand-in for xatlas on a `faces`-triangle mesh;
//! - `render`: normal and position maps of every view at `render_size`;
//! - `encode`: VAE encoding of the normal and position maps and the reference image at 512;
//! - `multiview` / `reference_unet`: `multiview_steps` steps of the 12-channel multiview UNet
//!   (full-sequence multiview and reference attentions, camera embedding) over all views, CFG
//!   doubling the batch above guidance 1; the reference UNet is re-run every step, as the
//!   pipeline re-creates its cached condition each call;
//! - `decode_views`: VAE decode of the views (slicing/tiling as configured);
//! - `bake`: back-projection of every view, upsampled to `render_size`, into a
//!   `texture_size`² atlas; `inpaint`: the CPU stand-in for filling unpainted texels.
//!
//! With `sequential_load`, the delight and multiview models are created just before their
//! stage and freed after it (the note's scenario 3); so are the shape models, since the note's
//! scenario keeps only what the current stage needs on the card.

use super::hunyuan3d::{attention_param, beyond_slicing, ShapePipeline};
use super::pipeline::{self, with_model, Loading, Offload, Slot};
use super::{Setup, Workload};
use crate::measure::Stages;
use crate::models::unet::{UNet2DConditionModel, UNetConfig, UNetInput};
use crate::models::unet_blocks::ExtraAttention;
use crate::models::vae::{AutoencoderKL, VaeOptions};
use crate::models::AttentionImpl;
use anyhow::{anyhow, Result};
use tch::{Device, Kind, Tensor};

/// Azimuths of Hunyuan3D-paint 2.0's candidate cameras, in view order.
const AZIMUTHS: [f64; 6] = [0.0, 90.0, 180.0, 270.0, 0.0, 180.0];
const VIEW_SIZE: i64 = 512;
const TEXT_TOKENS: i64 = 77;
const INPAINT_ITERATIONS: i64 = 8;

/// `minimal`/`fast`/`standard` → 3/4/6 views.
pub fn view_count(name: &str) -> Result<i64> {
    match name {
        "minimal" => Ok(3),
        "fast" => Ok(4),
        "standard" => Ok(6),
        other => Err(anyhow!("unknown camera view preset `{other}`")),
    }
}

pub struct Hunyuan3dTexture {
    shape: Option<ShapePipeline>,
    delight: Slot<UNet2DConditionModel>,
    multiview: Slot<UNet2DConditionModel>,
    reference: Slot<UNet2DConditionModel>,
    vae: Slot<AutoencoderKL>,
    loading: Loading,
    attention: AttentionImpl,
    vae_options: VaeOptions,
    views: i64,
    delight_steps: i64,
    multiview_steps: i64,
    guidance: f64,
    reference_unet: bool,
    render_size: i64,
    texture_size: i64,
    faces: usize,
    view_size: i64,
    seed: u64,
    kind: Kind,
    device: Device,
}

impl Hunyuan3dTexture {
    pub fn new(setup: &Setup) -> Result<Self> {
        let p = setup.params;
        let (kind, device) = (setup.kind(), setup.device());
        let tiny = p.str("preset")? == "tiny";
        let views = view_count(p.str("views")?)?;
        let loading = if p.bool("sequential_load")? {
            Loading::Sequential
        } else {
            Loading::AllAtOnce
        };
        let (base, vae_cfg) = pipeline::sd_configs(tiny);
        let delight_cfg = base.clone().with_in_channels(8);
        let multiview_cfg = UNetConfig {
            class_embeddings: Some(UNetConfig::HUNYUAN_CAMERA_EMBEDDINGS),
            extra: ExtraAttention {
                views,
                ..UNetConfig::hunyuan_paint().extra
            },
            ..base.clone().with_in_channels(12)
        };
        let reference_cfg = base;
        let shape = if p.bool("with_shape")? {
            Some(ShapePipeline::new(setup, loading)?)
        } else {
            None
        };
        tch::manual_seed(p.int("seed")?);
        let on = (kind, device, Offload::None);
        let mut texture = Hunyuan3dTexture {
            shape,
            delight: Slot::unet("delight", on, delight_cfg),
            multiview: Slot::unet("multiview", on, multiview_cfg),
            reference: Slot::unet("reference", on, reference_cfg),
            vae: Slot::vae("vae", on, vae_cfg),
            loading,
            attention: attention_param(p)?,
            vae_options: VaeOptions {
                slicing: p.bool("vae_slicing")?,
                tiling: p.bool("vae_tiling")?,
                ..VaeOptions::default()
            },
            views,
            delight_steps: p.int("delight_steps")?,
            multiview_steps: p.int("multiview_steps")?,
            guidance: p.float("multiview_guidance")?,
            reference_unet: p.bool("reference_unet")?,
            render_size: p.int("render_size")?,
            texture_size: p.int("texture_size")?,
            faces: p.int("faces")? as usize,
            // The tiny preset keeps the same structure at 64-px views (8×8 latents).
            view_size: if tiny { 64 } else { VIEW_SIZE },
            seed: p.int("seed")? as u64,
            kind,
            device,
        };
        texture.vae.load();
        texture.reference.load();
        if loading == Loading::AllAtOnce {
            texture.delight.load();
            texture.multiview.load();
        }
        Ok(texture)
    }

    fn randn(&self, shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (self.kind, self.device))
    }
}

/// `steps` evenly spaced timesteps from 999 down.
fn timesteps(steps: i64, device: Device) -> Vec<Tensor> {
    (0..steps)
        .map(|s| Tensor::from_slice(&[999 - s * 1000 / steps.max(1)]).to_device(device))
        .collect()
}

impl Workload for Hunyuan3dTexture {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        if let Some(shape) = &mut self.shape {
            shape.run(stages)?;
        }
        let (attention, loading, kind, device) =
            (self.attention, self.loading, self.kind, self.device);
        let latent = self.view_size / 8;
        let cross_dim = if self.view_size == VIEW_SIZE {
            1024
        } else {
            UNetConfig::tiny().cross_attention_dim
        };

        // Delight: batch 1, image latents concatenated to the noisy latents, no CFG.
        let image_latents = self.randn(&[1, 4, latent, latent]);
        let context = self.randn(&[1, TEXT_TOKENS, cross_dim]);
        let steps = timesteps(self.delight_steps, device);
        let mut x = self.randn(&[1, 4, latent, latent]);
        x = with_model(stages, &mut self.delight, loading, "delight", |unet| {
            for t in &steps {
                let sample = Tensor::cat(&[&x, &image_latents], 1);
                let input = UNetInput {
                    sample: &sample,
                    timesteps: t,
                    encoder_hidden_states: &context,
                    class_labels: None,
                    reference: None,
                    down_residuals: None,
                };
                x = &x - unet.forward(&input, attention) / steps.len() as f64;
            }
            x
        })?;
        stages.count("delight_evals", self.delight_steps as u64);
        drop(x);

        let (faces, seed) = (self.faces, self.seed);
        stages.stage("uv_unwrap", || pipeline::uv_unwrap(faces, seed));

        let (views, render_size, view_size) = (self.views, self.render_size, self.view_size);
        let maps: Vec<Tensor> = stages.stage("render", || {
            (0..views)
                .map(|v| pipeline::render_view(render_size, AZIMUTHS[v as usize % 6], kind, device))
                .collect()
        });

        // VAE-encode normal and position maps (resized to the view size) and the reference.
        let vae_options = self.vae_options;
        let condition = with_model(stages, &mut self.vae, Loading::AllAtOnce, "encode", |vae| {
            let small: Vec<Tensor> = maps
                .iter()
                .map(|m| {
                    m.unsqueeze(0)
                        .upsample_bilinear2d([view_size, view_size], false, None, None)
                })
                .collect();
            let stacked = Tensor::cat(&small, 0); // [views, 6, S, S]
            let normals = vae.latents(&vae.encode(&stacked.narrow(1, 0, 3), &vae_options));
            let positions = vae.latents(&vae.encode(&stacked.narrow(1, 3, 3), &vae_options));
            Tensor::cat(&[normals, positions], 1)
        })?;
        let reference_image = self.randn(&[1, 3, view_size, view_size]);
        let reference_latent =
            with_model(stages, &mut self.vae, Loading::AllAtOnce, "encode", |vae| {
                vae.latents(&vae.encode(&reference_image, &vae_options))
            })?;

        // Multiview diffusion over all views, CFG doubling the batch above guidance 1.
        let cfg = self.guidance > 1.0;
        let batch = if cfg { 2 * views } else { views };
        let groups = batch / views;
        let condition = if cfg {
            Tensor::cat(&[&condition, &condition], 0)
        } else {
            condition
        };
        let labels = Tensor::arange(batch, (Kind::Int64, device)).remainder(views);
        let mv_context = self.randn(&[batch, TEXT_TOKENS, cross_dim]);
        let ref_context = self.randn(&[groups, TEXT_TOKENS, cross_dim]);
        let ref_sample = reference_latent.repeat([groups, 1, 1, 1]);
        let zero_t = Tensor::zeros([1], (Kind::Int64, device));
        let steps = timesteps(self.multiview_steps, device);
        let mut latents = self.randn(&[views, 4, latent, latent]);
        let run_reference = self.reference_unet;
        let guidance = self.guidance;
        if loading == Loading::Sequential {
            stages.stage("load_multiview", || {
                self.multiview.load();
                self.reference.load();
            });
        }
        for t in &steps {
            let tokens = if run_reference {
                let tokens = with_model(
                    stages,
                    &mut self.reference,
                    Loading::AllAtOnce,
                    "reference_unet",
                    |unet| {
                        let input = UNetInput {
                            sample: &ref_sample,
                            timesteps: &zero_t,
                            encoder_hidden_states: &ref_context,
                            class_labels: None,
                            reference: None,
                            down_residuals: None,
                        };
                        // `unet_dual` keeps its processors when the pipeline is sliced.
                        unet.forward_recording(&input, beyond_slicing(attention), 1)
                            .1
                    },
                )?;
                stages.count("reference_unet_evals", 1);
                Some(tokens)
            } else {
                None
            };
            latents = with_model(
                stages,
                &mut self.multiview,
                Loading::AllAtOnce,
                "multiview",
                |unet| {
                    let noisy = if cfg {
                        Tensor::cat(&[&latents, &latents], 0)
                    } else {
                        latents.shallow_clone()
                    };
                    let sample = Tensor::cat(&[&noisy, &condition], 1);
                    let input = UNetInput {
                        sample: &sample,
                        timesteps: t,
                        encoder_hidden_states: &mv_context,
                        class_labels: Some(&labels),
                        reference: tokens.as_ref(),
                        down_residuals: None,
                    };
                    let eps = unet.forward(&input, attention);
                    let eps = if cfg {
                        let parts = eps.chunk(2, 0);
                        &parts[1] + (&parts[0] - &parts[1]) * guidance
                    } else {
                        eps
                    };
                    &latents - eps / steps.len() as f64
                },
            )?;
            stages.count("unet_evals", 1);
        }
        if loading == Loading::Sequential {
            stages.stage("unload_multiview", || -> Result<()> {
                self.multiview.unload()?;
                self.reference.unload()
            })?;
        }

        let images = with_model(
            stages,
            &mut self.vae,
            Loading::AllAtOnce,
            "decode_views",
            |vae| vae.decode(&latents, &vae_options),
        )?;
        let texture_size = self.texture_size;
        let atlas = stages.stage("bake", || {
            let mut atlas = Tensor::zeros([4, texture_size, texture_size], (Kind::Float, device));
            for (v, m) in maps.iter().enumerate() {
                pipeline::bake_view(&mut atlas, &images.get(v as i64), m, texture_size);
            }
            atlas
        });
        stages.stage("inpaint", || {
            drop(pipeline::inpaint(
                &atlas.narrow(0, 0, 3),
                &atlas.get(3),
                INPAINT_ITERATIONS,
            ))
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::ParamValue;

    fn run(workload: &str, overrides: &[(&str, ParamValue)]) -> crate::measure::Measurement {
        let mut all = vec![
            ("preset", ParamValue::Str("tiny".into())),
            ("shape_steps", ParamValue::Int(2)),
            ("octree_resolution", ParamValue::Int(16)),
        ];
        if workload == "hunyuan3d_texture" {
            all.extend([
                ("delight_steps", ParamValue::Int(2)),
                ("multiview_steps", ParamValue::Int(2)),
                ("render_size", ParamValue::Int(64)),
                ("texture_size", ParamValue::Int(64)),
                ("faces", ParamValue::Int(200)),
            ]);
        }
        all.extend(overrides.iter().cloned());
        crate::workloads::run_default_plan(workload, &all)
    }

    fn stage_names(m: &crate::measure::Measurement) -> Vec<String> {
        m.stages.iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn shape_counts_dit_calls_and_query_points() {
        let m = run("hunyuan3d_shape", &[("shape_steps", ParamValue::Int(3))]);
        assert_eq!(m.counters["dit_evals"], 3);
        assert_eq!(
            m.counters["query_points"],
            17 * 17 * 17,
            "(octree_resolution + 1)³"
        );
        let lazy = run(
            "hunyuan3d_shape",
            &[("load", ParamValue::Str("sequential".into()))],
        );
        let names = stage_names(&lazy);
        for s in [
            "load_dit",
            "unload_dit",
            "load_shape_vae",
            "unload_shape_vae",
        ] {
            assert!(names.contains(&s.to_string()), "{s} missing: {names:?}");
        }
    }

    #[test]
    fn texture_stages_views_and_sequential_loading() {
        let m = run("hunyuan3d_texture", &[]);
        let names = stage_names(&m);
        for s in [
            "delight",
            "uv_unwrap",
            "render",
            "encode",
            "reference_unet",
            "multiview",
            "decode_views",
            "bake",
            "inpaint",
        ] {
            assert!(names.contains(&s.to_string()), "{s} missing: {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.starts_with("load_")),
            "all-at-once loads nothing in a call: {names:?}"
        );
        assert_eq!(m.counters["unet_evals"], 2);
        assert_eq!(m.counters["delight_evals"], 2);
        let seq = run(
            "hunyuan3d_texture",
            &[
                ("sequential_load", ParamValue::Bool(true)),
                ("with_shape", ParamValue::Bool(true)),
            ],
        );
        let names = stage_names(&seq);
        for s in [
            "load_delight",
            "unload_delight",
            "load_multiview",
            "unload_multiview",
            "dit",
            "load_conditioner",
            "unload_conditioner",
            "unload_dit",
            "unload_shape_vae",
        ] {
            assert!(names.contains(&s.to_string()), "{s} missing: {names:?}");
        }
        assert_eq!(super::view_count("minimal").unwrap(), 3);
        assert_eq!(super::view_count("standard").unwrap(), 6);
    }
}
