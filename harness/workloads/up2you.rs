//! UP2You as a workload, stage by stage as its low-memory inference script runs it: each
//! stage's models are loaded from host memory at the stage's start and freed at its end
//! (`del` + `empty_cache`), so no earlier stage's model is resident during the multiview
//! generation. Stages:
//! - `segmentation`: a convolutional stand-in for BiRefNet at 1024² on the reference photos
//!   (`load_segmenter` before, `unload_segmenter` after);
//! - `features`: DINOv2 ViT-L/14 at 518 px on the reference photos (`load_dino`,
//!   `unload_dino`);
//! - `load_rgb_pipeline`: the RGB pipeline's models — the SD 2.1 UNet with row-wise multiview
//!   and per-view reference attentions, its CLIP-H text encoder, the T2I-Adapter that encodes
//!   the pose renders, and the VAE;
//! - `reference_unet`: the prompt (and with CFG the empty negative prompt) through the text
//!   encoder, the reference photos through the VAE encoder, and those latents through the
//!   **same** UNet once at t = 0 without its multiview and reference branches, recording
//!   every block's tokens for the reference attentions (no second UNet exists);
//! - `rgb_multiview`: the T2I-Adapter on the pose renders (doubled with CFG), then `steps`
//!   steps of the UNet over all views with the adapter's features added at every level; the
//!   unconditional branch runs only on every `guidance_interval`-th step (THG; 1 = plain CFG),
//!   batched with the conditional one;
//! - `decode_rgb`: VAE decode of the views (slicing when asked), then `unload_rgb_pipeline`;
//! - `normal_multiview` / `decode_normal` (if `normal_stage`): the normal pipeline, a second
//!   load of the same architecture (`load_normal_pipeline` … `unload_normal_pipeline`),
//!   run like the RGB stage; it reuses the RGB stage's prompt embeddings and reference tokens
//!   (the real one encodes its own prompt and references the generated views);
//! - `reconstruction`: a GPU stand-in for normal-based remeshing (`reconstruction_iterations`
//!   renders at 1024² with a reduction each).
//!
//! Counters: `rgb_multiview_evals` and `normal_multiview_evals` count a stage's conditional and
//! unconditional UNet evaluations separately (50 steps at interval 3 = 50 + 17 = 67, the note's
//! figure for one stage); `unet_evals` and `guided_steps` (steps that ran both) sum the stages;
//! `ref_unet_evals` counts reference passes, `text_encoder_evals` prompt encodings and
//! `load_bytes` the parameter bytes loaded in the call.

use super::hunyuan3d::{attention_param, beyond_slicing};
use super::pipeline::{
    self, held, load_together, unload_together, with_model, Component, Held, Loading, Offload,
    Slot, WithWeights,
};
use super::{Setup, Workload};
use crate::measure::Stages;
use crate::models::clip::{ClipTextConfig, ClipTextModel};
use crate::models::layers::Conv2d;
use crate::models::t2i_adapter::T2iAdapter;
use crate::models::unet::{UNet2DConditionModel, UNetConfig, UNetInput};
use crate::models::unet_blocks::{
    per_view_token_indices, ExtraAttention, ReferenceSelect, ReferenceTokens,
};
use crate::models::vae::{AutoencoderKL, VaeOptions};
use crate::models::vit::{Vit, VitConfig};
use crate::models::AttentionImpl;
use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

const TEXT_TOKENS: i64 = 77;
/// Tokens of the prompt "Multi-view Human, Full Body, High Quality, HDR" with its start and
/// end tokens; the rest of the 77 is padding.
const PROMPT_TOKENS: i64 = 14;

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

/// The models of UP2You's RGB (and normal) multiview pipeline: `UP2YouI2MVSDPipeline` after
/// `.to(device, dtype)` and `cond_encoder.to(device, dtype)`.
struct MultiviewPipeline {
    unet: Slot<UNet2DConditionModel>,
    text_encoder: Held<ClipTextModel>,
    adapter: Held<T2iAdapter>,
    vae: Slot<AutoencoderKL>,
}

impl MultiviewPipeline {
    fn components(&mut self) -> [&mut dyn Component; 4] {
        [
            &mut self.unet,
            &mut self.text_encoder,
            &mut self.adapter,
            &mut self.vae,
        ]
    }
}

/// What the reference pass leaves for the denoising loop.
struct Conditioning {
    /// `[uncond, cond]` prompt embeddings, each repeated per view (`[2·views, 77, C]`), or the
    /// conditional half alone without CFG.
    context: Tensor,
    /// Per block, the tokens each view attends over (`[2·views, k, C]` with CFG, zeros for the
    /// unconditional half; `[views, k, C]` without).
    tokens: ReferenceTokens,
    /// What else UP2You keeps for the whole loop: the pipeline's dict of selected tokens, the
    /// entries of `attn2`'s inputs included (its processors record them; never read), and
    /// the copy of that dict handed to the UNet in `cross_attention_kwargs`. Held for their
    /// memory only.
    _kept: Vec<Tensor>,
}

pub struct Up2You {
    segmenter: Slot<WithWeights<Segmenter>>,
    dino: Slot<WithWeights<Vit>>,
    pipeline: MultiviewPipeline,
    attention: AttentionImpl,
    vae_options: VaeOptions,
    views: i64,
    resolution: i64,
    steps: i64,
    guidance: f64,
    interval: i64,
    reference_images: i64,
    normal_stage: bool,
    /// Only the RGB stage, its pipeline loaded at set-up and kept (`rgb_stage_only`).
    rgb_stage_only: bool,
    iterations: i64,
    photo_size: i64,
    dino_size: i64,
    render_size: i64,
    vocab: i64,
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
        let (vit_cfg, text_cfg) = if tiny {
            (
                VitConfig::tiny(),
                ClipTextConfig::tiny(base.cross_attention_dim),
            )
        } else {
            (VitConfig::vit_l14(), ClipTextConfig::open_clip_h())
        };
        let seg_width = if tiny { 8 } else { 64 };
        let widths = base.block_out_channels.clone();
        let res_blocks = base.layers_per_block;
        tch::manual_seed(p.int("seed")?);
        let on = (kind, device, Offload::None);
        let mut up = Up2You {
            segmenter: Slot::new("segmenter", kind, device, Offload::None, move |b| {
                WithWeights::build(b, |b| Segmenter::new(b, seg_width))
            }),
            dino: held("dino", on, vit_cfg, Vit::new),
            pipeline: MultiviewPipeline {
                unet: Slot::unet("unet", on, unet_cfg),
                text_encoder: held("text_encoder", on, text_cfg, ClipTextModel::new),
                adapter: Slot::new("t2i_adapter", kind, device, Offload::None, move |b| {
                    WithWeights::build(b, |b| {
                        T2iAdapter::new(b, "t2i_adapter", 3, &widths, res_blocks, 8)
                    })
                }),
                vae: Slot::vae("vae", on, vae_cfg),
            },
            attention: attention_param(p)?,
            vae_options: VaeOptions {
                slicing: p.bool("vae_slicing")?,
                ..VaeOptions::default()
            },
            views,
            resolution,
            steps: p.int("steps")?,
            guidance: p.float("guidance")?,
            interval: p.int("guidance_interval")?,
            reference_images: p.int("reference_images")?,
            normal_stage: p.bool("normal_stage")?,
            rgb_stage_only: p.bool("rgb_stage_only")?,
            iterations: p.int("reconstruction_iterations")?,
            photo_size: if tiny { 64 } else { 1024 },
            dino_size: if tiny { 8 * vit_cfg.patch_size } else { 518 },
            render_size: if tiny { 64 } else { 1024 },
            vocab: text_cfg.vocab,
            kind,
            device,
        };
        // Every model is read from host memory when its stage starts (the script's
        // `from_pretrained` per stage); none is loaded at set-up. With `rgb_stage_only` the RGB
        // pipeline is loaded at set-up and stays, as the real-code adapter builds it.
        let Up2You {
            segmenter,
            dino,
            pipeline,
            rgb_stage_only,
            ..
        } = &mut up;
        if *rgb_stage_only {
            pipeline.components().iter_mut().for_each(|c| c.load_now());
        } else {
            for c in [segmenter as &mut dyn Component, dino]
                .into_iter()
                .chain(pipeline.components())
            {
                c.keep_checkpoint_now();
            }
        }
        Ok(up)
    }

    fn randn(&self, shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (self.kind, self.device))
    }

    fn cfg(&self) -> bool {
        self.guidance > 1.0
    }

    /// Token ids `[1, 77]` of the prompt, or of the empty negative prompt: start, tokens, end,
    /// padding (0); start and end are the vocabulary's last two ids (49406, 49407).
    fn prompt_ids(&self, tokens: i64) -> Tensor {
        let mut ids = vec![0i64; TEXT_TOKENS as usize];
        ids[0] = self.vocab - 2;
        for (i, id) in ids.iter_mut().enumerate().take(tokens as usize - 1).skip(1) {
            *id = (1000 + i as i64) % (self.vocab - 2);
        }
        ids[tokens as usize - 1] = self.vocab - 1;
        Tensor::from_slice(&ids)
            .view([1, TEXT_TOKENS])
            .to_device(self.device)
    }

    /// Prompt encoding, VAE encoding of the reference photos and the reference pass through
    /// the pipeline's UNet at t = 0 (multiview and reference branches off), recording tokens.
    fn reference_pass(&self) -> (Conditioning, u64) {
        let p = &self.pipeline;
        let (unet, te, vae) = (model(&p.unet), model(&p.text_encoder), model(&p.vae));
        // Text encoders are not reached by attention slicing.
        let encode = |tokens| {
            te.model
                .forward(
                    &te.weights,
                    &self.prompt_ids(tokens),
                    beyond_slicing(self.attention),
                )
                .repeat([self.views, 1, 1])
        };
        let cond = encode(PROMPT_TOKENS);
        let (context, evals) = if self.cfg() {
            (Tensor::cat(&[encode(2), cond.shallow_clone()], 0), 2)
        } else {
            (cond.shallow_clone(), 1)
        };
        let side = self.resolution;
        let photos = self.randn(&[self.reference_images, 3, side, side]);
        let latents = vae.latents(&vae.encode(&photos, &self.vae_options));
        let images = self.reference_images;
        let zero = Tensor::zeros([1], (Kind::Int64, self.device));
        let prompt = cond.narrow(0, 0, 1).repeat([images, 1, 1]);
        let input = UNetInput {
            sample: &latents,
            timesteps: &zero,
            encoder_hidden_states: &prompt,
            class_labels: None,
            reference: None,
            down_residuals: None,
        };
        let recorded = unet
            .forward_recording(&input, self.attention, images, true)
            .1
            .layers;
        let ratio = match unet.config.extra.reference {
            Some(ReferenceSelect::PerView { ratio }) => ratio,
            other => panic!("UP2You's UNet selects reference tokens per view, not {other:?}"),
        };
        let entries = select_reference_tokens(recorded, ratio, self.views, images, self.cfg());
        // Blocks read their `attn1` entry: the first of each block's two.
        let tokens = ReferenceTokens {
            layers: entries
                .iter()
                .step_by(2)
                .map(Tensor::shallow_clone)
                .collect(),
            per_view: true,
        };
        let kept = kept_for_the_loop(entries);
        (
            Conditioning {
                context,
                tokens,
                _kept: kept,
            },
            evals,
        )
    }

    /// One multiview diffusion stage: the T2I-Adapter on the pose renders, then `steps` steps
    /// over all views with THG guidance.
    fn multiview(&self, stages: &mut Stages, stage: &str, cond: &Conditioning) -> Tensor {
        let (views, attention, guidance) = (self.views, self.attention, self.guidance);
        let p = &self.pipeline;
        let (unet, adapter) = (model(&p.unet), model(&p.adapter));
        let guided = pipeline::guided_steps(self.steps as usize, self.interval as usize);
        let guided: Vec<bool> = guided.into_iter().map(|g| g && self.cfg()).collect();
        let latent = self.resolution / 8;
        let n = guided.len() as f64;
        let latents = stages.stage(stage, || {
            let mut latents = self.randn(&[views, 4, latent, latent]);
            let renders = self.randn(&[views, 3, self.resolution, self.resolution]);
            let renders = if self.cfg() {
                Tensor::cat(&[&renders, &renders], 0)
            } else {
                renders
            };
            let state = adapter.model.forward(&adapter.weights, &renders);
            let halves = |t: &Tensor| {
                if self.cfg() {
                    t.narrow(0, views, views)
                } else {
                    t.shallow_clone()
                }
            };
            // Unguided steps read the conditional halves, sliced without copying.
            let conditional = ReferenceTokens {
                layers: cond.tokens.layers.iter().map(halves).collect(),
                per_view: true,
            };
            for (i, &guide) in guided.iter().enumerate() {
                let t = Tensor::from_slice(&[999 - (i as i64) * 1000 / n as i64])
                    .to_device(self.device);
                // The UNet consumes the adapter's features; the pipeline hands it copies.
                let (sample, ctx, reference, residuals): (_, _, _, Vec<Tensor>) = if guide {
                    (
                        Tensor::cat(&[&latents, &latents], 0),
                        cond.context.shallow_clone(),
                        &cond.tokens,
                        state.iter().map(Tensor::copy).collect(),
                    )
                } else {
                    (
                        latents.shallow_clone(),
                        halves(&cond.context),
                        &conditional,
                        state.iter().map(|s| halves(s).copy()).collect(),
                    )
                };
                let input = UNetInput {
                    sample: &sample,
                    timesteps: &t,
                    encoder_hidden_states: &ctx,
                    class_labels: None,
                    reference: Some(reference),
                    down_residuals: Some(&residuals),
                };
                let eps = unet.forward(&input, attention);
                let eps = if guide {
                    let parts = eps.chunk(2, 0);
                    &parts[0] + (&parts[1] - &parts[0]) * guidance
                } else {
                    eps
                };
                latents = &latents - eps / n;
            }
            latents
        });
        let guided_count = guided.iter().filter(|g| **g).count() as u64;
        let evals = self.steps as u64 + guided_count;
        stages.count(&format!("{stage}_evals"), evals);
        stages.count("unet_evals", evals);
        stages.count("guided_steps", guided_count);
        latents
    }

    /// The pipeline's denoising stage and its decode, with the pipeline loaded before and
    /// freed after (`load_<name>` … `unload_<name>`).
    fn generate(
        &mut self,
        stages: &mut Stages,
        name: &str,
        stages_of: (&str, &str),
        cond: Option<&Conditioning>,
    ) -> Result<Option<Conditioning>> {
        let resident = self.rgb_stage_only;
        if !resident {
            load_together(stages, name, &mut self.pipeline.components());
        }
        let fresh = match cond {
            Some(_) => None,
            None => {
                let (cond, evals) = stages.stage("reference_unet", || self.reference_pass());
                stages.count("ref_unet_evals", 1);
                stages.count("text_encoder_evals", evals);
                Some(cond)
            }
        };
        let cond = cond.or(fresh.as_ref()).expect("one of the two exists");
        let (diffusion, decode) = stages_of;
        let latents = self.multiview(stages, diffusion, cond);
        let vae = model(&self.pipeline.vae);
        let options = self.vae_options;
        stages.stage(decode, || drop(vae.decode(&latents, &options)));
        if !resident {
            unload_together(stages, name, &mut self.pipeline.components())?;
        }
        Ok(fresh)
    }
}

/// The model a slot holds; its pipeline was loaded before the stage that uses it.
fn model<M: pipeline::HasWeights>(slot: &Slot<M>) -> &M {
    slot.loaded()
        .unwrap_or_else(|| panic!("`{}` is used before it is loaded", slot.name))
}

/// UP2You's feature selector after the reference pass, entry by entry in recording order
/// (`recorded[name] = select(recorded[name])`: each recorded input is freed once its
/// selection replaces it). Per entry and view, `k = ratio·HW` of the `images·HW` recorded
/// tokens are gathered and multiplied by their weight (the gather freed after the product),
/// and the views are concatenated. With CFG, a new dict then doubles every entry with zeros
/// for the unconditional half (`cat([zeros_like(v), v])`), and the selected entries are freed
/// once all are doubled. Entries are `[2·views, k, C]` with CFG, `[views, k, C]` without.
pub fn select_reference_tokens(
    recorded: Vec<Tensor>,
    ratio: f64,
    views: i64,
    images: i64,
    cfg: bool,
) -> Vec<Tensor> {
    let selected: Vec<Tensor> = recorded
        .into_iter()
        .map(|layer| {
            let (_, t, _) = layer.size3().expect("[1, images·HW, C]");
            let indices = per_view_token_indices(ratio, t / images, t, views, layer.device());
            let k = indices.size()[1];
            let per_view: Vec<Tensor> = (0..views)
                .map(|view| {
                    let weight = Tensor::ones([1, k, 1], (layer.kind(), layer.device()));
                    layer.index_select(1, &indices.get(view)) * weight
                })
                .collect();
            Tensor::cat(&per_view, 0)
        })
        .collect();
    if !cfg {
        return selected;
    }
    let doubled = selected
        .iter()
        .map(|v| Tensor::cat(&[v.zeros_like(), v.shallow_clone()], 0))
        .collect();
    drop(selected);
    doubled
}

/// The dict of selected entries the pipeline keeps for the whole loop, and its copy handed to
/// the UNet in `cross_attention_kwargs` (`{k: v.clone()}`, one entry after the other).
pub fn kept_for_the_loop(entries: Vec<Tensor>) -> Vec<Tensor> {
    let copies: Vec<Tensor> = entries.iter().map(Tensor::copy).collect();
    entries.into_iter().chain(copies).collect()
}

impl Workload for Up2You {
    fn call(&mut self, stages: &mut Stages) -> Result<()> {
        if self.rgb_stage_only {
            self.generate(
                stages,
                "rgb_pipeline",
                ("rgb_multiview", "decode_rgb"),
                None,
            )?;
            return Ok(());
        }
        let (attention, kind, device) = (self.attention, self.kind, self.device);
        let photos = self.randn(&[self.reference_images, 3, self.photo_size, self.photo_size]);
        with_model(
            stages,
            &mut self.segmenter,
            Loading::Sequential,
            "segmentation",
            |m| drop(m.model.forward(&m.weights, &photos)),
        )?;
        let crops = photos.upsample_bilinear2d([self.dino_size, self.dino_size], false, None, None);
        with_model(
            stages,
            &mut self.dino,
            Loading::Sequential,
            "features",
            |m| drop(m.model.forward(&m.weights, &crops, attention)),
        )?;
        let cond = self
            .generate(
                stages,
                "rgb_pipeline",
                ("rgb_multiview", "decode_rgb"),
                None,
            )?
            .expect("the RGB stage runs its reference pass");
        if self.normal_stage {
            self.generate(
                stages,
                "normal_pipeline",
                ("normal_multiview", "decode_normal"),
                Some(&cond),
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
    use super::{kept_for_the_loop, select_reference_tokens, Up2You};
    use crate::models::clip::{ClipTextConfig, ClipTextModel};
    use crate::models::t2i_adapter::T2iAdapter;
    use crate::models::test_util::count;
    use crate::models::unet::{UNet2DConditionModel, UNetConfig};
    use crate::models::vae::{AutoencoderKL, VaeConfig};
    use crate::plan::ParamValue;
    use crate::workloads::pipeline::{Component, LOAD_BYTES};
    use tch::{Device, Kind, Tensor};

    fn tiny<'a>(overrides: &[(&'a str, ParamValue)]) -> Vec<(&'a str, ParamValue)> {
        let mut all = vec![
            ("preset", ParamValue::Str("tiny".into())),
            ("views", ParamValue::Int(2)),
            ("resolution", ParamValue::Int(32)),
            ("reference_images", ParamValue::Int(2)),
            ("reconstruction_iterations", ParamValue::Int(2)),
            ("normal_stage", ParamValue::Bool(false)),
        ];
        all.extend(overrides.iter().cloned());
        all
    }

    fn run(overrides: &[(&str, ParamValue)]) -> crate::measure::Measurement {
        crate::workloads::run_default_plan("up2you", &tiny(overrides))
    }

    /// What the real-code adapter runs: the RGB stage alone, its pipeline resident.
    #[test]
    fn rgb_stage_only_runs_the_rgb_stage_with_its_pipeline_resident() {
        let m = run(&[("rgb_stage_only", ParamValue::Bool(true))]);
        let names: Vec<&str> = m.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["reference_unet", "rgb_multiview", "decode_rgb"]);
        assert!(
            !m.counters.contains_key(LOAD_BYTES),
            "nothing is loaded in a call"
        );
        assert_eq!(m.counters["ref_unet_evals"], 1);
        let up = crate::workloads::build_default_plan(
            "up2you",
            &tiny(&[("rgb_stage_only", ParamValue::Bool(true))]),
            Up2You::new,
        );
        let mut pipeline = up.pipeline;
        assert!(pipeline
            .components()
            .iter()
            .all(|c| c.loaded_bytes().is_some()));
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
        let unguided = run(&[
            ("steps", ParamValue::Int(6)),
            ("guidance", ParamValue::Float(1.0)),
        ]);
        assert_eq!(unguided.counters["unet_evals"], 6, "no CFG at guidance 1");
        assert_eq!(unguided.counters["text_encoder_evals"], 1);
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

    #[test]
    fn reference_tokens_are_selected_per_entry_and_view_and_kept_twice() {
        let (views, images, hw, c) = (3, 2, 4, 5);
        // Two blocks: the inputs of attn1 and attn2 of each.
        let recorded: Vec<Tensor> = (0..4)
            .map(|_| Tensor::randn([1, images * hw, c], (Kind::Float, Device::Cpu)))
            .collect();
        let first = recorded[0].copy();
        let entries = select_reference_tokens(recorded, 1.0, views, images, true);
        assert_eq!(entries.len(), 4);
        for entry in &entries {
            assert_eq!(entry.size(), vec![2 * views, hw, c], "[2·views, HW, C]");
            let unconditional = entry.narrow(0, 0, views);
            assert_eq!(unconditional.abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
        // View v keeps tokens v·k .. (v+1)·k of the recorded images (mod their count): with
        // k = HW of 2·HW tokens, views 0 and 1 keep different halves.
        let k = hw;
        for view in 0..views {
            let index =
                (Tensor::arange(k, (Kind::Int64, Device::Cpu)) + view * k).remainder(images * hw);
            let expected = first.index_select(1, &index).squeeze_dim(0);
            assert!(entries[0]
                .get(views + view)
                .allclose(&expected, 0.0, 0.0, false));
        }
        assert!(!entries[0]
            .get(views)
            .allclose(&entries[0].get(views + 1), 0.0, 0.0, false));
        let without_cfg = select_reference_tokens(vec![first.copy()], 1.0, views, images, false);
        assert_eq!(without_cfg[0].size(), vec![views, k, c]);
        let kept = kept_for_the_loop(entries);
        assert_eq!(kept.len(), 8, "the pipeline's dict and its copy");
        assert_ne!(kept[0].data_ptr(), kept[4].data_ptr());
        assert!(kept[0].allclose(&kept[4], 0.0, 0.0, false));
    }

    #[test]
    fn the_reference_pass_runs_the_pipeline_unet_and_no_second_one_exists() {
        // Resident during the multiview stage at full size: the UNet with its extra
        // attentions, CLIP-H, the T2I-Adapter and the VAE (no reference UNet, no DINOv2).
        let unet = UNet2DConditionModel::parameter_count(&UNetConfig::up2you());
        let text = count(|b| ClipTextModel::new(b, "te", ClipTextConfig::open_clip_h()));
        let adapter = count(|b| T2iAdapter::new(b, "a", 3, &[320, 640, 1280, 1280], 2, 8));
        let vae = AutoencoderKL::parameter_count(&VaeConfig::sd());
        assert_eq!(
            (unet, text, adapter),
            (965_058_884, 340_387_840, 77_369_280)
        );
        assert_eq!(
            unet + text + adapter + vae.encoder + vae.decoder,
            1_466_469_867
        );

        let all = tiny(&[
            ("steps", ParamValue::Int(3)),
            ("normal_stage", ParamValue::Bool(true)),
        ]);
        let mut w = crate::workloads::build_default_plan("up2you", &all, Up2You::new);
        let m = crate::workloads::measure_once(&mut w);
        assert_eq!(
            m.counters["ref_unet_evals"], 1,
            "one reference pass per call"
        );
        assert_eq!(
            m.counters["text_encoder_evals"], 2,
            "prompt and negative prompt"
        );
        // Every byte loaded in the call: segmenter, DINOv2 and twice the pipeline (RGB, then
        // normal), which holds exactly one UNet.
        let mut bytes = |c: &mut dyn Component| {
            c.load_now();
            let n = c.loaded_bytes().unwrap();
            c.unload_now().unwrap();
            n
        };
        let seg = bytes(&mut w.segmenter);
        let dino = bytes(&mut w.dino);
        let pipeline: i64 = w.pipeline.components().into_iter().map(&mut bytes).sum();
        assert_eq!(m.counters[LOAD_BYTES], (seg + dino + 2 * pipeline) as u64);
    }

    #[test]
    fn each_stage_frees_its_models_before_the_next_loads() {
        let all = tiny(&[("normal_stage", ParamValue::Bool(true))]);
        let mut w = crate::workloads::build_default_plan("up2you", &all, Up2You::new);
        let m = crate::workloads::measure_once(&mut w);
        let names: Vec<&str> = m.stages.iter().map(|s| s.name.as_str()).collect();
        let at = |stage: &str| {
            names
                .iter()
                .position(|n| *n == stage)
                .unwrap_or_else(|| panic!("{stage} missing: {names:?}"))
        };
        assert!(at("unload_segmenter") < at("load_dino"));
        assert!(at("unload_dino") < at("load_rgb_pipeline"));
        assert!(at("load_rgb_pipeline") < at("reference_unet"));
        assert!(at("decode_rgb") < at("unload_rgb_pipeline"));
        assert!(at("unload_rgb_pipeline") < at("load_normal_pipeline"));
        assert!(at("unload_normal_pipeline") < at("reconstruction"));
        let resident = [&w.segmenter as &dyn Component, &w.dino]
            .into_iter()
            .chain(w.pipeline.components().map(|c| c as &dyn Component))
            .filter(|c| c.loaded_bytes().is_some())
            .count();
        assert_eq!(resident, 0, "nothing stays loaded after a call");
    }
}
