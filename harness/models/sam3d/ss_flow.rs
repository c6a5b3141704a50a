//! Stage 1, the sparse-structure flow (`SparseStructureFlowTdfyWrapper`): a
//! mixture-of-transformers over a shape stream and a pose stream (see the module docs of
//! [`super`]).

use super::blocks::{ada_ln, FlowBlockConfig, StreamLayers};
use super::{embed_time, grid_coords, sincos_position_embedding};
use crate::models::attention::{attention, AttentionImpl};
use crate::models::dit::MlpEmbedder;
use crate::models::layers::Linear;
use crate::models::weights::{Builder, Init, Param, Weights};
use tch::{Kind, Tensor};

/// A mixture-of-transformers block (`MOTModulatedTransformerCrossBlock`) with the shape and
/// pose streams.
#[derive(Debug, Clone)]
pub struct MotBlock {
    pub ada_ln: Linear,
    pub shape: StreamLayers,
    pub pose: StreamLayers,
}

impl MotBlock {
    fn new(b: &mut Builder, name: &str, c: &FlowBlockConfig) -> MotBlock {
        let b = &mut b.scope(name);
        let ada_ln = Linear::new(b, "adaLN_modulation", c.dim, 6 * c.dim, true);
        let shape = StreamLayers::new(&mut b.scope("shape"), c);
        let pose = StreamLayers::new(&mut b.scope("pose"), c);
        MotBlock {
            ada_ln,
            shape,
            pose,
        }
    }

    fn forward(
        &self,
        w: &Weights,
        shape: &Tensor,
        pose: &Tensor,
        t_emb: &Tensor,
        ctx: &Tensor,
        imp: AttentionImpl,
    ) -> (Tensor, Tensor) {
        let m = ada_ln(w, &self.ada_ln, t_emb);
        let (sq, sk, sv) = self.shape.pre_attention(w, shape, &m);
        let (pq, pk, pv) = self.pose.pre_attention(w, pose, &m);
        // The shape stream is protected: it attends to itself only. Pose queries see the
        // pose keys followed by the shape keys.
        let shape_attn = attention(&sq, &sk, &sv, imp, false);
        let pose_attn = attention(
            &pq,
            &Tensor::cat(&[&pk, &sk], 2),
            &Tensor::cat(&[&pv, &sv], 2),
            imp,
            false,
        );
        (
            self.shape
                .post_attention(w, shape, &shape_attn, &m, ctx, imp),
            self.pose.post_attention(w, pose, &pose_attn, &m, ctx, imp),
        )
    }
}

/// One modality's input/output projections (`Latent`): `Linear(c → dim)` + position
/// embedding in; `LayerNorm` (no affine) + `Linear(dim → c)` out.
#[derive(Debug, Clone)]
pub struct LatentMapping {
    pub channels: i64,
    pub input_layer: Linear,
    pub out_layer: Linear,
    /// Learned for the one-token pose latents; the shape latent's is a fixed sinusoid.
    pub pos_emb: Option<Param>,
}

impl LatentMapping {
    fn new(
        b: &mut Builder,
        name: &str,
        channels: i64,
        dim: i64,
        learned_pos: bool,
    ) -> LatentMapping {
        let b = &mut b.scope(name);
        LatentMapping {
            channels,
            input_layer: Linear::new(b, "input_layer", channels, dim, true),
            out_layer: Linear::new(b, "out_layer", dim, channels, true),
            pos_emb: learned_pos.then(|| b.param("pos_emb", &[1, dim], Init::Normal(1.0))),
        }
    }

    fn to_output(&self, w: &Weights, h: &Tensor) -> Tensor {
        let dim = *h.size().last().expect("channels");
        let h = h
            .to_kind(Kind::Float)
            .layer_norm([dim], None::<Tensor>, None::<Tensor>, 1e-5, true)
            .to_kind(h.kind());
        self.out_layer.forward(w, &h)
    }
}

/// Shape of the stage-1 (sparse structure) flow.
#[derive(Debug, Clone, PartialEq)]
pub struct SsFlowConfig {
    /// Side of the shape latent grid (16 → 4096 tokens).
    pub resolution: i64,
    pub shape_channels: i64,
    /// Channels of the one-token pose latents: 6-D rotation, translation, scale, translation
    /// scale (they share one stream).
    pub pose_channels: Vec<i64>,
    pub block: FlowBlockConfig,
    pub blocks: i64,
    /// The shortcut model embeds the step size too.
    pub shortcut: bool,
    /// Model time = `time_scale · t`.
    pub time_scale: f64,
    /// `use_fp16`: the blocks' linear layers are stored in fp16 and the blocks run in fp16
    /// (inputs, time embedding and context cast on the way in, back after).
    pub use_fp16: bool,
}

impl SsFlowConfig {
    /// `ss_generator`: 0.96 B.
    pub fn sam3d() -> SsFlowConfig {
        SsFlowConfig {
            resolution: 16,
            shape_channels: 8,
            pose_channels: vec![6, 3, 3, 1],
            block: FlowBlockConfig {
                dim: 1024,
                cond_dim: 1024,
                heads: 16,
                mlp_ratio: 4,
                qk_rms_norm: true,
            },
            blocks: 24,
            shortcut: true,
            time_scale: 1000.0,
            use_fp16: true,
        }
    }

    /// A tiny version of the same code (CPU tests), all fp32.
    pub fn tiny() -> SsFlowConfig {
        SsFlowConfig {
            resolution: 3,
            block: FlowBlockConfig {
                dim: 32,
                cond_dim: 16,
                heads: 4,
                mlp_ratio: 4,
                qk_rms_norm: true,
            },
            blocks: 2,
            use_fp16: false,
            ..SsFlowConfig::sam3d()
        }
    }

    pub fn shape_tokens(&self) -> i64 {
        self.resolution.pow(3)
    }
}

/// Stage-1 latents (or velocities).
#[derive(Debug)]
pub struct SsLatents {
    /// `[b, 4096, 8]`.
    pub shape: Tensor,
    /// One `[b, 1, c_i]` per pose latent.
    pub pose: Vec<Tensor>,
}

/// Stage-1 flow: shape (16³ × 8) and pose (4 tokens) streams.
#[derive(Debug, Clone)]
pub struct SsFlow {
    pub config: SsFlowConfig,
    pub t_embedder: MlpEmbedder,
    pub d_embedder: Option<MlpEmbedder>,
    pub shape: LatentMapping,
    pub pose: Vec<LatentMapping>,
    pub blocks: Vec<MotBlock>,
}

impl SsFlow {
    pub fn new(b: &mut Builder, name: &str, config: SsFlowConfig) -> SsFlow {
        let b = &mut b.scope(name);
        let c = &config;
        let dim = c.block.dim;
        // In the reference's order: hydra builds the latent mappings (nested config nodes)
        // before the model, whose constructor converts its blocks last.
        let shape = LatentMapping::new(b, "latent_mapping.shape", c.shape_channels, dim, false);
        let pose = c
            .pose_channels
            .iter()
            .enumerate()
            .map(|(i, &ch)| {
                LatentMapping::new(b, &format!("latent_mapping.pose{i}"), ch, dim, true)
            })
            .collect();
        let t_embedder = MlpEmbedder::new(b, "t_embedder", 256, dim);
        let d_embedder = c
            .shortcut
            .then(|| MlpEmbedder::new(b, "d_embedder", 256, dim));
        let blocks = {
            let b = &mut b.torso();
            (0..c.blocks)
                .map(|i| MotBlock::new(b, &format!("blocks.{i}"), &c.block))
                .collect()
        };
        if c.use_fp16 {
            b.convert_torso(Kind::Half);
        }
        SsFlow {
            t_embedder,
            d_embedder,
            shape,
            pose,
            blocks,
            config,
        }
    }

    /// The dtype the blocks run in: fp16 with `use_fp16`, else the weights' own.
    pub fn torso_kind(&self, w: &Weights) -> Kind {
        if self.config.use_fp16 {
            Kind::Half
        } else {
            w.kind()
        }
    }

    /// One backbone pass. `t` (and the shortcut step `d`): `[b]` in [0, 1]; `cond`:
    /// `[b, tokens, cond_dim]`. Returns the velocities in the latents' layout.
    pub fn forward(
        &self,
        w: &Weights,
        latents: &SsLatents,
        t: &Tensor,
        d: Option<&Tensor>,
        cond: &Tensor,
        imp: AttentionImpl,
    ) -> SsLatents {
        let (shape, pose) = (&latents.shape, &latents.pose);
        let c = &self.config;
        assert_eq!(pose.len(), self.pose.len(), "one tensor per pose latent");
        let mut t_emb = embed_time(w, &self.t_embedder, &(t * c.time_scale));
        if let (Some(e), Some(d)) = (&self.d_embedder, d) {
            t_emb += embed_time(w, e, &(d * c.time_scale));
        }
        let coords = grid_coords(c.shape_tokens(), c.resolution, shape.device());
        let pos = sincos_position_embedding(&coords, c.block.dim).to_kind(w.kind());
        let hs = self.shape.input_layer.forward(w, shape) + pos;
        let pose_in: Vec<Tensor> = self
            .pose
            .iter()
            .zip(pose)
            .map(|(m, x)| m.input_layer.forward(w, x) + w.get(m.pos_emb.expect("learned")))
            .collect();
        let hp = Tensor::cat(&pose_in, 1);
        // The torso's dtype on the way in, the inputs' on the way out.
        let (torso, input) = (self.torso_kind(w), hs.kind());
        let (mut hs, mut hp) = (hs.to_kind(torso), hp.to_kind(torso));
        let (t_emb, cond) = (t_emb.to_kind(torso), cond.to_kind(torso));
        for block in &self.blocks {
            (hs, hp) = block.forward(w, &hs, &hp, &t_emb, &cond, imp);
        }
        let (hs, hp) = (hs.to_kind(input), hp.to_kind(input));
        let pose_out = self
            .pose
            .iter()
            .enumerate()
            .map(|(i, m)| m.to_output(w, &hp.narrow(1, i as i64, 1)))
            .collect();
        SsLatents {
            shape: self.shape.to_output(w, &hs),
            pose: pose_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{finite, max_diff, opts};
    use tch::Device;

    #[test]
    fn ss_flow_shapes_attention_and_offload() {
        tch::manual_seed(0);
        let c = SsFlowConfig::tiny();
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let m = SsFlow::new(&mut b, "ss", c.clone());
        let mut w = b.finish();
        let x = SsLatents {
            shape: Tensor::randn([1, c.shape_tokens(), c.shape_channels], opts()),
            pose: c
                .pose_channels
                .iter()
                .map(|&ch| Tensor::randn([1, 1, ch], opts()))
                .collect(),
        };
        let cond = Tensor::randn([1, 10, c.block.cond_dim], opts());
        let (t, d) = (
            Tensor::from_slice(&[0.3f32]),
            Tensor::from_slice(&[0.04f32]),
        );
        let run = |w: &Weights, x: &SsLatents, imp| m.forward(w, x, &t, Some(&d), &cond, imp);
        let out = run(&w, &x, AttentionImpl::Sdpa);
        assert_eq!(out.shape.size(), x.shape.size());
        assert!(finite(&out.shape));
        for (o, i) in out.pose.iter().zip(&x.pose) {
            assert_eq!(o.size(), i.size());
        }
        let math = run(&w, &x, AttentionImpl::Math);
        assert!(max_diff(&math.shape, &out.shape) < 1e-4);
        assert!(max_diff(&math.pose[0], &out.pose[0]) < 1e-4);
        // The shape stream never sees the pose tokens; the pose stream sees both.
        let moved = SsLatents {
            shape: x.shape.shallow_clone(),
            pose: x.pose.iter().map(|p| p + 1.0).collect(),
        };
        let out2 = run(&w, &moved, AttentionImpl::Sdpa);
        assert!(
            max_diff(&out2.shape, &out.shape) < 1e-6,
            "shape depends on pose"
        );
        assert!(
            max_diff(&out2.pose[1], &out.pose[1]) > 1e-4,
            "pose ignores pose"
        );
        w.offload_sequential(Device::Cpu);
        let offloaded = run(&w, &x, AttentionImpl::Sdpa);
        assert!(offloaded.shape.equal(&out.shape), "sequential offload");
    }
}
