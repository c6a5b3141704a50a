//! SAM 3D Objects as a workload, following `InferencePipelinePointMap` (sam3d's vendored
//! `sam3d_objects`).
//!
//! **Models**, nine slots in the order the pipeline builds them: `moge` (hydra builds the
//! nested depth model first), then `InferencePipeline.__init__`'s `ss_generator`,
//! `slat_generator`, `ss_decoder`, `slat_decoder_gs`, `slat_decoder_gs_4`, `slat_decoder_mesh`
//! (with its dense FlexiCubes grid, ~5 GB at full size), and last the two condition embedders,
//! `ss_condition_embedder` (two DINOv2 ViT-L/14-reg at 770 px, the point-map embedder, their
//! projections) and `slat_condition_embedder` (two DINOv2 at 1036 px): four DINO copies.
//! Stored dtypes are the released ones: fp32, except the flows' and SLAT decoders' torsos
//! (fp16 linear and convolution layers, `use_fp16`). A call records each model it builds in
//! [`Sam3d::load_order`].
//!
//! **Precision.** The `dtype` knob is the pipeline's `dtype`: the autocast dtype of its
//! `torch.autocast` regions (`pipeline.yaml`: float16), not the weights'. Stages 1 and 2
//! (condition embedding, flow, structure decoder) run under it; `fp32` means an autocast region
//! with float32, which PyTorch turns into autocast *off* inside it. The depth stage runs under
//! MoGe's own fp16 autocast (`infer(use_fp16=True)`), whatever the pipeline's dtype. The SLAT
//! decoders run outside the pipeline's regions, so only an enclosing autocast (the `autocast`
//! knob, as the note's `torch.cuda.amp.autocast()` around the call) reaches them. Autocast is
//! applied on the device the workload runs on (a CPU run applies it to the CPU, so the CPU tests
//! exercise it; the reference names CUDA).
//!
//! **Stages**:
//! - `depth`: MoGe ViT-L on the `input_resolution`² image, resized inside to its token budget
//!   (2500 tokens) whatever the input size; the points come back at the input size;
//! - `preprocess`: both preprocessors' crop around the mask (box factor 1.2) and full view,
//!   padded and resized to 770 px (image, mask and, for stage 1, the point map);
//! - `condition_ss`: the stage-1 embedder: each DINO once per view (image, mask; cropped and
//!   full) at 770 px and the point-map embedder on both views: 14,152 context tokens;
//! - `ss_flow`: `ss_steps` Euler steps of the sparse-structure flow (time rescale r = 3),
//!   classifier-free guidance as a **second sequential call** (zero context) on the steps with
//!   1000·t ≤ 500 — 44 backbone passes at 25 steps;
//! - `ss_decode`: the conv3d structure decoder to 64³ occupancy logits;
//! - `condition_slat`: the stage-2 embedder, DINO at 1036 px: 21,924 context tokens;
//! - `slat_flow`: `slat_steps` steps of the stage-2 flow (r = 1, 38 passes at 25 steps) in its
//!   dense stand-in form: `slat_tokens` transformer tokens over 4× as many voxels;
//! - `decode_mesh` (the mesh decoder and its FlexiCubes extraction over the dense grids), then
//!   `decode_gaussians` (`slat_decoder_gs`; `slat_decoder_gs_4` is loaded but, as in the
//!   released `decode_formats`, not run), when enabled;
//! - `cleanup`: every model freed and the allocator cache emptied, when enabled.
//!
//! The input resolution therefore changes only the image MoGe reads, its output's size and the
//! crops' source size: no DINO, flow or decoder token count (the note's "518 → 384" has no
//! counterpart there).
//!
//! **Loading** (the note's patterns; the released pipeline only loads everything up front):
//! `all_at_once` creates every model at set-up in the order above (a budget OOM happens while
//! loading, as the note reports) and re-creates freed ones at the start of a call as timed
//! `load_*` stages; `lazy` creates each on first use (timed `load_*`); `sequential` creates each
//! just before its stage and frees it after (`unload_*`). Counters: `ss_flow_evals`,
//! `slat_flow_evals` (backbone passes), `ss_context_tokens`, `slat_context_tokens`, `voxels`
//! (active voxels entering stage 2) and `mesh_faces`.

use super::hunyuan3d::{attention_param, beyond_slicing};
use super::pipeline::{self, with_model, Held, Loading, Offload, Slot, WithWeights};
use super::{Setup, Workload};
use crate::ffi;
use crate::knobs::{Autocast, Dtype};
use crate::measure::Stages;
use crate::models::moge::{Moge, MogeConfig};
use crate::models::sam3d::{
    ConditionEmbedder, ConditionEmbedderConfig, ConditionView, DecoderOutput, SlatDecoder,
    SlatDecoderConfig, SlatFlow, SlatFlowConfig, SsDecoder, SsDecoderConfig, SsFlow, SsFlowConfig,
    SsLatents,
};
use crate::models::{AttentionImpl, Builder};
use anyhow::Result;
use std::cell::RefCell;
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

/// `ss_cfg_strength` and `slat_cfg_strength` of the released pipeline.
const SS_CFG: f64 = 7.0;
const SLAT_CFG: f64 = 2.0;
/// Time rescale factors `ss_rescale_t` / `slat_rescale_t`.
const SS_RESCALE: f64 = 3.0;
const SLAT_RESCALE: f64 = 1.0;
/// Guidance applies while model time `1000·t` is within `[0, 500]`.
const CFG_INTERVAL_END: f64 = 500.0;
/// Active voxels per stage-2 transformer token (the sparse 2× downsample keeps N/3..N/4).
const VOXELS_PER_TOKEN: i64 = 4;
/// The preprocessors' crop: the mask's bounding box (a centred disc of half the image's side
/// here) enlarged 1.2×.
const CROP_FRACTION: f64 = 0.5 * 1.2;

/// The order in which the released pipeline builds its models.
#[cfg(test)]
pub const REAL_ORDER: [&str; 9] = [
    "moge",
    "ss_generator",
    "slat_generator",
    "ss_decoder",
    "slat_decoder_gs",
    "slat_decoder_gs_4",
    "slat_decoder_mesh",
    "ss_condition_embedder",
    "slat_condition_embedder",
];

/// The Euler evaluation times `t_0..t_steps` of the sampler: `linspace(0, 1, steps + 1)`
/// rescaled by `t / (1 + (r − 1)(1 − t))`.
pub fn time_sequence(steps: i64, rescale: f64) -> Vec<f64> {
    (0..=steps)
        .map(|i| {
            let t = i as f64 / steps as f64;
            t / (1.0 + (rescale - 1.0) * (1.0 - t))
        })
        .collect()
}

/// Whether the step at time `t` runs the unconditional pass.
pub fn guided(t: f64) -> bool {
    (0.0..=CFG_INTERVAL_END).contains(&(1000.0 * t))
}

/// Backbone passes of a flow stage: one per step plus one per guided step.
#[cfg(test)]
pub fn flow_evals(steps: i64, rescale: f64) -> u64 {
    let ts = time_sequence(steps, rescale);
    ts[..steps as usize]
        .iter()
        .map(|&t| 1 + u64::from(guided(t)))
        .sum()
}

/// The pipeline's autocast dtype for the `dtype` knob.
fn pipeline_autocast(dtype: Dtype) -> Autocast {
    match dtype {
        Dtype::Fp32 => Autocast::Off,
        Dtype::Fp16 => Autocast::Fp16,
        Dtype::Bf16 => Autocast::Bf16,
    }
}

/// Runs `f` inside `torch.autocast(device, mode)` and restores the previous state after
/// (`Off`: autocast disabled inside, as a float32 region does on CUDA).
fn autocast<T>(device: Device, mode: Autocast, f: impl FnOnce() -> T) -> Result<T> {
    let before = ffi::backend_flags()?;
    let mut inside = before;
    if device == Device::Cpu {
        inside.autocast_cpu = mode;
    } else {
        inside.autocast_cuda = mode;
    }
    ffi::set_backend_flags(&inside)?;
    let out = f();
    ffi::set_backend_flags(&before)?;
    Ok(out)
}

#[derive(Clone)]
struct Models {
    moge: MogeConfig,
    ss: SsFlowConfig,
    slat: SlatFlowConfig,
    ss_decoder: SsDecoderConfig,
    gs: SlatDecoderConfig,
    gs4: SlatDecoderConfig,
    mesh: SlatDecoderConfig,
    ss_condition: ConditionEmbedderConfig,
    slat_condition: ConditionEmbedderConfig,
    /// Side the preprocessors resize to (770).
    preprocess_size: i64,
}

impl Models {
    fn for_preset(preset: &str) -> Models {
        match preset {
            "tiny" => {
                // The same precision as full size: fp16 torsos over fp32 weights.
                let ss_condition = ConditionEmbedderConfig::tiny(true);
                let slat_condition = ConditionEmbedderConfig {
                    input_size: 8,
                    ..ConditionEmbedderConfig::tiny(false)
                };
                let mut ss = SsFlowConfig::tiny();
                ss.block.cond_dim = ss_condition.out_dim;
                ss.use_fp16 = true;
                let mut slat = SlatFlowConfig::tiny();
                slat.block.cond_dim = slat_condition.out_dim;
                slat.use_fp16 = true;
                // An 8³ voxel grid (the tiny stage 2 has up to 128 voxels), meshed on 32³.
                let decoder = |output| SlatDecoderConfig {
                    use_fp16: true,
                    resolution: 8,
                    grid_resolution: 32,
                    ..SlatDecoderConfig::tiny(output)
                };
                Models {
                    moge: MogeConfig::tiny(),
                    ss,
                    slat,
                    ss_decoder: SsDecoderConfig::tiny(),
                    gs: decoder(DecoderOutput::Gaussians(32)),
                    gs4: decoder(DecoderOutput::Gaussians(4)),
                    mesh: decoder(DecoderOutput::Mesh { use_color: true }),
                    ss_condition,
                    slat_condition,
                    preprocess_size: 8,
                }
            }
            _ => Models {
                moge: MogeConfig::vitl(),
                ss: SsFlowConfig::sam3d(),
                slat: SlatFlowConfig::sam3d(),
                ss_decoder: SsDecoderConfig::sam3d(),
                gs: SlatDecoderConfig::gaussian(),
                gs4: SlatDecoderConfig::gaussian4(),
                mesh: SlatDecoderConfig::mesh(),
                ss_condition: ConditionEmbedderConfig::stage1(),
                slat_condition: ConditionEmbedderConfig::stage2(),
                preprocess_size: 770,
            },
        }
    }
}

/// Which models were built, in order.
type LoadLog = Rc<RefCell<Vec<&'static str>>>;

/// A slot of the model `new` builds from `config` with fp32 weights (each model converts its
/// own torso), recording each build in `log`.
fn slot<M: 'static, C: Clone + 'static>(
    name: &'static str,
    device: Device,
    log: &LoadLog,
    config: C,
    new: fn(&mut Builder, &str, C) -> M,
) -> Held<M> {
    let log = log.clone();
    Slot::new(name, Kind::Float, device, Offload::None, move |b| {
        log.borrow_mut().push(name);
        WithWeights::build(b, |b| new(b, name, config.clone()))
    })
}

/// The cropped and full views of one preprocessor.
struct Views {
    crop: ConditionView,
    full: ConditionView,
}

pub struct Sam3d {
    moge: Held<Moge>,
    ss_generator: Held<SsFlow>,
    slat_generator: Held<SlatFlow>,
    ss_decoder: Held<SsDecoder>,
    decoder_gs: Held<SlatDecoder>,
    decoder_gs4: Held<SlatDecoder>,
    decoder_mesh: Held<SlatDecoder>,
    ss_condition: Held<ConditionEmbedder>,
    slat_condition: Held<ConditionEmbedder>,
    /// Read by the tests (which model was built when).
    #[cfg_attr(not(test), allow(dead_code))]
    load_log: LoadLog,
    loading: Loading,
    attention: AttentionImpl,
    /// The pipeline's autocast dtype (the `dtype` knob).
    dtype: Autocast,
    ss_steps: i64,
    slat_steps: i64,
    slat_tokens: i64,
    decode_gaussians: bool,
    decode_mesh: bool,
    cleanup: bool,
    preprocess_size: i64,
    /// `[1, 3, R, R]` in [0, 1] (R = `input_resolution`).
    image: Tensor,
    /// `[1, 1, R, R]`: a centred disc.
    mask: Tensor,
    ss_config: SsFlowConfig,
    device: Device,
}

impl Sam3d {
    pub fn new(setup: &Setup) -> Result<Sam3d> {
        let p = setup.params;
        let preset = p.str("preset")?;
        let tiny = preset == "tiny";
        let m = Models::for_preset(preset);
        let device = setup.device();
        let loading = Loading::parse(p.str("load")?)?;
        tch::manual_seed(p.int("seed")?);
        let size = p.int("input_resolution")?;
        let slat_tokens = if tiny {
            p.int("slat_tokens")?.min(32)
        } else {
            p.int("slat_tokens")?
        };
        let log = LoadLog::default();
        let mask = {
            let lin = Tensor::linspace(-1.0, 1.0, size, (Kind::Float, device));
            let r2 = lin.square().view([1, size]) + lin.square().view([size, 1]);
            r2.le(0.25).to_kind(Kind::Float).view([1, 1, size, size])
        };
        let mut w = Sam3d {
            moge: slot("moge", device, &log, m.moge, Moge::new),
            ss_generator: slot("ss_generator", device, &log, m.ss.clone(), SsFlow::new),
            slat_generator: slot("slat_generator", device, &log, m.slat, SlatFlow::new),
            ss_decoder: slot("ss_decoder", device, &log, m.ss_decoder, SsDecoder::new),
            decoder_gs: slot("slat_decoder_gs", device, &log, m.gs, SlatDecoder::new),
            decoder_gs4: slot("slat_decoder_gs_4", device, &log, m.gs4, SlatDecoder::new),
            decoder_mesh: slot("slat_decoder_mesh", device, &log, m.mesh, SlatDecoder::new),
            ss_condition: slot(
                "ss_condition_embedder",
                device,
                &log,
                m.ss_condition,
                ConditionEmbedder::new,
            ),
            slat_condition: slot(
                "slat_condition_embedder",
                device,
                &log,
                m.slat_condition,
                ConditionEmbedder::new,
            ),
            load_log: log,
            loading,
            attention: attention_param(p)?,
            dtype: pipeline_autocast(setup.dtype),
            ss_steps: p.int("ss_steps")?,
            slat_steps: p.int("slat_steps")?,
            slat_tokens,
            decode_gaussians: p.bool("decode_gaussians")?,
            decode_mesh: p.bool("decode_mesh")?,
            cleanup: p.bool("cleanup")?,
            preprocess_size: m.preprocess_size,
            image: Tensor::rand([1, 3, size, size], (Kind::Float, device)),
            mask,
            ss_config: m.ss,
            device,
        };
        if loading == Loading::AllAtOnce {
            // In the real order: an OOM under a budget surfaces here, while loading.
            w.reload_all(None);
        }
        Ok(w)
    }

    /// The models built so far, in order (each time a model is created).
    #[cfg(test)]
    pub fn load_order(&self) -> Vec<&'static str> {
        self.load_log.borrow().clone()
    }

    /// Creates every model not loaded, in the real order; timed as `load_*` stages when
    /// `stages` is given.
    fn reload_all(&mut self, mut stages: Option<&mut Stages>) {
        macro_rules! reload {
            ($($slot:ident),*) => {$(
                if !self.$slot.is_loaded() {
                    let slot = &mut self.$slot;
                    match stages.as_deref_mut() {
                        Some(s) => s.stage(&format!("load_{}", slot.name), || slot.load()),
                        None => slot.load(),
                    }
                }
            )*};
        }
        reload!(
            moge,
            ss_generator,
            slat_generator,
            ss_decoder,
            decoder_gs,
            decoder_gs4,
            decoder_mesh,
            ss_condition,
            slat_condition
        );
    }

    /// Frees every model and empties the cache.
    fn unload_all(&mut self) -> Result<()> {
        self.moge.unload()?;
        self.ss_generator.unload()?;
        self.slat_generator.unload()?;
        self.ss_decoder.unload()?;
        self.decoder_gs.unload()?;
        self.decoder_gs4.unload()?;
        self.decoder_mesh.unload()?;
        self.ss_condition.unload()?;
        self.slat_condition.unload()
    }

    /// Names of the loaded models, in the real order.
    #[cfg(test)]
    pub fn loaded(&self) -> Vec<&'static str> {
        let slots = [
            (self.moge.name, self.moge.is_loaded()),
            (self.ss_generator.name, self.ss_generator.is_loaded()),
            (self.slat_generator.name, self.slat_generator.is_loaded()),
            (self.ss_decoder.name, self.ss_decoder.is_loaded()),
            (self.decoder_gs.name, self.decoder_gs.is_loaded()),
            (self.decoder_gs4.name, self.decoder_gs4.is_loaded()),
            (self.decoder_mesh.name, self.decoder_mesh.is_loaded()),
            (self.ss_condition.name, self.ss_condition.is_loaded()),
            (self.slat_condition.name, self.slat_condition.is_loaded()),
        ];
        slots.iter().filter(|(_, l)| *l).map(|(n, _)| *n).collect()
    }

    /// Both preprocessors: the crop around the mask and the full image, each padded to a
    /// square and resized to `preprocess_size` (bilinear for the image, nearest for the mask
    /// and the point map).
    fn preprocess(&self, pointmap: &Tensor) -> (Views, Views) {
        let size = self.preprocess_size;
        let r = self.image.size()[2];
        let c = ((r as f64 * CROP_FRACTION).round() as i64).max(1);
        let off = (r - c) / 2;
        let crop = |x: &Tensor| x.narrow(2, off, c).narrow(3, off, c);
        let bilinear = |x: &Tensor| x.upsample_bilinear2d([size, size], false, None, None);
        let nearest = |x: &Tensor| x.upsample_nearest2d([size, size], None, None);
        let view = |pick: &dyn Fn(&Tensor) -> Tensor, with_points: bool| ConditionView {
            image: bilinear(&pick(&self.image)),
            mask: nearest(&pick(&self.mask)),
            pointmap: with_points.then(|| nearest(&pick(pointmap))),
        };
        let whole = |x: &Tensor| x.shallow_clone();
        let ss = Views {
            crop: view(&crop, true),
            full: view(&whole, true),
        };
        let slat = Views {
            crop: view(&crop, false),
            full: view(&whole, false),
        };
        (ss, slat)
    }

    fn run(&mut self, stages: &mut Stages) -> Result<()> {
        if self.loading == Loading::AllAtOnce {
            self.reload_all(Some(stages));
        }
        // SAM 3D has no UNet: attention slicing reaches none of its networks.
        let imp = beyond_slicing(self.attention);
        let (loading, device, dtype) = (self.loading, self.device, self.dtype);
        let image = self.image.shallow_clone();
        // MoGe's `infer` autocasts to fp16 itself.
        let depth = with_model(stages, &mut self.moge, loading, "depth", |m| {
            autocast(device, Autocast::Fp16, || {
                m.model.forward(&m.weights, &image, imp)
            })
        })??;
        let pointmap = depth.points.permute([0, 3, 1, 2]);
        let (ss_views, slat_views) = stages.stage("preprocess", || self.preprocess(&pointmap));
        drop((depth, pointmap));

        // Stage 1: sparse structure, under the pipeline's autocast.
        let cond = with_model(
            stages,
            &mut self.ss_condition,
            loading,
            "condition_ss",
            |m| {
                autocast(device, dtype, || {
                    m.model
                        .forward(&m.weights, &ss_views.crop, &ss_views.full, imp)
                })
            },
        )??;
        drop(ss_views);
        stages.count("ss_context_tokens", cond.size()[1] as u64);
        let uncond = cond.zeros_like();
        let (steps, c) = (self.ss_steps, self.ss_config.clone());
        let (latents, ss_evals) =
            with_model(stages, &mut self.ss_generator, loading, "ss_flow", |m| {
                autocast(device, dtype, || {
                    let mut x = SsLatents {
                        shape: pipeline::noise(
                            &[1, c.shape_tokens(), c.shape_channels],
                            Kind::Float,
                            device,
                        ),
                        pose: c
                            .pose_channels
                            .iter()
                            .map(|&ch| pipeline::noise(&[1, 1, ch], Kind::Float, device))
                            .collect(),
                    };
                    let ts = time_sequence(steps, SS_RESCALE);
                    let mut evals = 0;
                    for i in 0..steps as usize {
                        let (t0, dt) = (ts[i], ts[i + 1] - ts[i]);
                        let t = Tensor::from_slice(&[t0 as f32]).to_device(device);
                        let d = Tensor::from_slice(&[dt as f32]).to_device(device);
                        let run =
                            |ctx: &Tensor| m.model.forward(&m.weights, &x, &t, Some(&d), ctx, imp);
                        let mut v = run(&cond);
                        evals += 1;
                        if guided(t0) {
                            // `(1 + s)·cond − s·uncond`, the uncond pass as its own call.
                            let u = run(&uncond);
                            evals += 1;
                            let mix = |c: &Tensor, u: &Tensor| c * (1.0 + SS_CFG) - u * SS_CFG;
                            v = SsLatents {
                                shape: mix(&v.shape, &u.shape),
                                pose: v.pose.iter().zip(&u.pose).map(|(c, u)| mix(c, u)).collect(),
                            };
                        }
                        x = SsLatents {
                            shape: &x.shape + v.shape * dt,
                            pose: x.pose.iter().zip(v.pose).map(|(x, v)| x + v * dt).collect(),
                        };
                    }
                    (x, evals)
                })
            })??;
        stages.count("ss_flow_evals", ss_evals);
        drop((cond, uncond));
        let r = c.resolution;
        let grid = latents
            .shape
            .transpose(1, 2)
            .reshape([1, c.shape_channels, r, r, r]);
        let occupancy = with_model(stages, &mut self.ss_decoder, loading, "ss_decode", |m| {
            autocast(device, dtype, || m.model.forward(&m.weights, &grid))
        })??;
        drop(occupancy);

        // Stage 2: structured latents over the active voxels (dense stand-in).
        let cond = with_model(
            stages,
            &mut self.slat_condition,
            loading,
            "condition_slat",
            |m| {
                autocast(device, dtype, || {
                    m.model
                        .forward(&m.weights, &slat_views.crop, &slat_views.full, imp)
                })
            },
        )??;
        drop(slat_views);
        stages.count("slat_context_tokens", cond.size()[1] as u64);
        let uncond = cond.zeros_like();
        let (steps, tokens) = (self.slat_steps, self.slat_tokens);
        let voxels = VOXELS_PER_TOKEN * tokens;
        stages.count("voxels", voxels as u64);
        let (slat, slat_evals) = with_model(
            stages,
            &mut self.slat_generator,
            loading,
            "slat_flow",
            |m| {
                autocast(device, dtype, || {
                    let channels = m.model.config.in_channels;
                    let mut x = pipeline::noise(&[1, voxels, channels], Kind::Float, device);
                    let ts = time_sequence(steps, SLAT_RESCALE);
                    let mut evals = 0;
                    for i in 0..steps as usize {
                        let (t0, dt) = (ts[i], ts[i + 1] - ts[i]);
                        let t = Tensor::from_slice(&[t0 as f32]).to_device(device);
                        let run =
                            |ctx: &Tensor| m.model.forward(&m.weights, &x, tokens, &t, ctx, imp);
                        let mut v = run(&cond);
                        evals += 1;
                        if guided(t0) {
                            v = &v * (1.0 + SLAT_CFG) - run(&uncond) * SLAT_CFG;
                            evals += 1;
                        }
                        x = &x + v * dt;
                    }
                    (x, evals)
                })
            },
        )??;
        stages.count("slat_flow_evals", slat_evals);
        drop((cond, uncond));

        // The decoders, outside the pipeline's autocast regions; mesh first, as
        // `decode_slat` does.
        if self.decode_mesh {
            let faces = with_model(
                stages,
                &mut self.decoder_mesh,
                loading,
                "decode_mesh",
                |m| {
                    let feats = m.model.forward(&m.weights, &slat, imp);
                    m.model.extract_mesh(&feats).faces.size()[0]
                },
            )?;
            stages.count("mesh_faces", faces as u64);
        }
        if self.decode_gaussians {
            let g = with_model(
                stages,
                &mut self.decoder_gs,
                loading,
                "decode_gaussians",
                |m| m.model.forward(&m.weights, &slat, imp),
            )?;
            drop(g);
        }
        drop(slat);
        if self.cleanup {
            stages.stage("cleanup", || self.unload_all())?;
        }
        Ok(())
    }
}

impl Workload for Sam3d {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        self.run(stages)
    }
}

#[cfg(test)]
mod tests;
