//! Hunyuan3D-2 as workloads. Shape: DINOv2-g conditioning → flow-matching DiT steps with CFG
//! (cond and uncond in one batch of 2; uncond context = zeros, as the pipeline does) →
//! ShapeVAE latent decode → volume decode over `(octree_resolution + 1)³` query points in chunks
//! → surface extraction on the CPU. Every stage is timed; `dit_evals` counts DiT calls.
//!
//! The pipeline holds fp16 weights as hy3dgen loads it (`dtype=torch.float16`; `dtype` sets
//! it). With `load = "lazy" | "sequential"`, a model loaded inside a call is read out of a
//! copy kept in host memory and copied to the device (see `Slot::keep_checkpoint`).

use super::pipeline::{self, with_model, Component, Loading, Offload, Slot, WithWeights};
use super::{Params, Setup, Workload};
use crate::measure::Stages;
use crate::models::hunyuan3d::{DitConfig, Hunyuan3dDit, ShapeVae, ShapeVaeConfig};
use crate::models::vit::{Vit, VitConfig};
use crate::models::AttentionImpl;
use anyhow::{anyhow, Result};
use tch::{Device, Kind, Tensor};

/// Parses the `attention` parameter.
pub fn attention_param(p: Params) -> Result<AttentionImpl> {
    let text = p.str("attention")?;
    AttentionImpl::parse(text).ok_or_else(|| anyhow!("unknown attention implementation `{text}`"))
}

/// The attention a component runs when the manifest asks for `attention`: diffusers'
/// `enable_attention_slicing` reaches only components with `set_attention_slice` (UNets), so
/// DiTs, ViT encoders, VAEs and SAM 3D's networks keep fused attention under `sliced:*`, as
/// in the real pipelines; an explicit kernel (`math`, `sdpa`) applies everywhere.
pub fn beyond_slicing(attention: AttentionImpl) -> AttentionImpl {
    match attention {
        AttentionImpl::Sliced(_) => AttentionImpl::Sdpa,
        other => other,
    }
}

/// The model shapes of the shape pipeline for a preset.
struct ShapeModels {
    vit: VitConfig,
    dit: DitConfig,
    vae: ShapeVaeConfig,
}

impl ShapeModels {
    fn for_preset(preset: &str) -> ShapeModels {
        match preset {
            "tiny" => {
                let vit = VitConfig::tiny();
                let vae = ShapeVaeConfig::tiny();
                ShapeModels {
                    dit: DitConfig {
                        context_dim: vit.dim,
                        in_channels: vae.embed_dim,
                        latent_tokens: vae.num_latents,
                        guidance_embed: false,
                        ..DitConfig::tiny()
                    },
                    vit,
                    vae,
                }
            }
            _ => ShapeModels {
                vit: VitConfig::vit_g14(),
                dit: DitConfig::v2_0(),
                vae: ShapeVaeConfig::v2_0(),
            },
        }
    }
}

/// The shape pipeline, reusable by the end-to-end texture workload.
pub struct ShapePipeline {
    conditioner: Slot<WithWeights<Vit>>,
    dit: Slot<WithWeights<Hunyuan3dDit>>,
    vae: Slot<WithWeights<ShapeVae>>,
    loading: Loading,
    attention: AttentionImpl,
    steps: i64,
    guidance: f64,
    octree_resolution: i64,
    num_chunks: i64,
    image: Tensor,
    latent_shape: [i64; 3],
    kind: Kind,
    device: Device,
}

impl ShapePipeline {
    pub fn new(setup: &Setup, loading: Loading) -> Result<ShapePipeline> {
        let p = setup.params;
        let models = ShapeModels::for_preset(p.str("preset")?);
        let (kind, device) = (setup.kind(), setup.device());
        tch::manual_seed(p.int("seed")?);
        // The conditioning image: 518 px (37×37 patches) for DINOv2-g/14; `tiny` keeps the
        // patch grid small (8×8) so CPU tests stay fast.
        let image_size = if p.str("preset")? == "tiny" {
            8 * models.vit.patch_size
        } else {
            p.int("image_size").unwrap_or(518)
        };
        let (vit, dit, vae) = (models.vit, models.dit, models.vae);
        let mut pipeline = ShapePipeline {
            conditioner: Slot::new("conditioner", kind, device, Offload::None, move |b| {
                WithWeights::build(b, |b| Vit::new(b, "conditioner", vit))
            }),
            dit: Slot::new("dit", kind, device, Offload::None, move |b| {
                WithWeights::build(b, |b| Hunyuan3dDit::new(b, "dit", dit))
            }),
            vae: Slot::new("shape_vae", kind, device, Offload::None, move |b| {
                WithWeights::build(b, |b| ShapeVae::new(b, "vae", vae))
            }),
            loading,
            attention: attention_param(p)?,
            steps: p.int("shape_steps")?,
            guidance: p.float("shape_guidance")?,
            octree_resolution: p.int("octree_resolution")?,
            num_chunks: p.int("num_chunks")?,
            image: Tensor::randn([1, 3, image_size, image_size], (kind, device)),
            latent_shape: [1, models.vae.num_latents, models.vae.embed_dim],
            kind,
            device,
        };
        // All at once: the models are loaded at set-up. Otherwise each load in a call reads
        // the weights out of a copy in host memory, as from a checkpoint file.
        for slot in [
            &mut pipeline.conditioner as &mut dyn Component,
            &mut pipeline.dit,
            &mut pipeline.vae,
        ] {
            if loading == Loading::AllAtOnce {
                slot.load_now();
            } else {
                slot.keep_checkpoint_now();
            }
        }
        Ok(pipeline)
    }

    /// Whether all three models (conditioner, DiT, ShapeVAE) are loaded.
    pub fn is_resident(&self) -> bool {
        self.conditioner.is_loaded() && self.dit.is_loaded() && self.vae.is_loaded()
    }

    /// One image → occupancy grid → surface; returns the surface-crossing edge count.
    pub fn run(&mut self, stages: &mut Stages) -> Result<i64> {
        // No component of the shape pipeline is a UNet: slicing does not reach any of them.
        let (attention, loading) = (beyond_slicing(self.attention), self.loading);
        let image = self.image.shallow_clone();
        let cond = with_model(
            stages,
            &mut self.conditioner,
            loading,
            "conditioning",
            |m| m.model.forward(&m.weights, &image, attention),
        )?;
        // CFG is on for any non-negative scale (v2-0 has no guidance embedding): cond and
        // uncond (zero context) run as one batch of 2.
        let cfg = self.guidance >= 0.0;
        let context = if cfg {
            Tensor::cat(&[cond.shallow_clone(), cond.zeros_like()], 0)
        } else {
            cond
        };
        let (steps, guidance, shape) = (self.steps, self.guidance, self.latent_shape);
        let (kind, device) = (self.kind, self.device);
        let latents = with_model(stages, &mut self.dit, loading, "dit", |m| {
            let (dit, w) = (&m.model, &m.weights);
            let mut x = pipeline::noise(&shape, kind, device);
            let sigmas = Tensor::linspace(0.0, 1.0, steps + 1, (Kind::Float, device));
            for i in 0..steps {
                let t0 = sigmas.get(i);
                let dt = (sigmas.get(i + 1) - &t0).to_kind(kind);
                let batch = if cfg { 2 } else { 1 };
                let input = if cfg {
                    Tensor::cat(&[&x, &x], 0)
                } else {
                    x.shallow_clone()
                };
                let t = t0.expand([batch], false).to_kind(kind);
                let v = dit.forward(w, &input, &t, &context, None, attention);
                let v = if cfg {
                    let parts = v.chunk(2, 0);
                    &parts[1] + (&parts[0] - &parts[1]) * guidance
                } else {
                    v
                };
                x += v * dt;
            }
            x
        })?;
        stages.count("dit_evals", self.steps as u64);
        let (octree, chunks) = (self.octree_resolution, self.num_chunks);
        // The ShapeVAE serves two stages: a sequential strategy frees it after the second.
        let decoded = with_model(stages, &mut self.vae, Loading::Lazy, "vae_decode", |m| {
            m.model.decode_latents(&m.weights, &latents, attention)
        })?;
        let grid = with_model(stages, &mut self.vae, loading, "volume_decode", |m| {
            m.model
                .decode_grid(&m.weights, &decoded, octree, chunks, attention)
        })?;
        stages.count("query_points", (octree + 1).pow(3) as u64);
        Ok(stages.stage("surface_extraction", || pipeline::surface_cells(&grid)))
    }
}

/// The `hunyuan3d_shape` workload.
pub struct Hunyuan3dShape {
    pipeline: ShapePipeline,
}

impl Hunyuan3dShape {
    pub fn new(setup: &Setup) -> Result<Self> {
        let loading = Loading::parse(setup.params.str("load")?)?;
        Ok(Hunyuan3dShape {
            pipeline: ShapePipeline::new(setup, loading)?,
        })
    }
}

impl Workload for Hunyuan3dShape {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        self.pipeline.run(stages).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::beyond_slicing;
    use crate::models::AttentionImpl;

    #[test]
    fn slicing_does_not_reach_components_without_set_attention_slice() {
        for text in ["sliced:auto", "sliced:max", "sliced:4"] {
            let sliced = AttentionImpl::parse(text).unwrap();
            assert_eq!(beyond_slicing(sliced), AttentionImpl::Sdpa, "{text}");
        }
        assert_eq!(beyond_slicing(AttentionImpl::Math), AttentionImpl::Math);
        assert_eq!(beyond_slicing(AttentionImpl::Sdpa), AttentionImpl::Sdpa);
    }
}
