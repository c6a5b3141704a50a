//! Stage 2, the structured-latent flow (`SLatFlowModel`), as a dense approximation of the
//! sparse transformer (see the module docs of [`super`]).

use super::blocks::{ada_ln, FlowBlockConfig, StreamLayers};
use super::sparse::{Resample, SparseResBlock};
use super::ss_flow::SsFlowConfig;
use super::{embed_time, grid_coords, sincos_position_embedding};
use crate::models::attention::{attention, AttentionImpl};
use crate::models::dit::MlpEmbedder;
use crate::models::layers::Linear;
use crate::models::weights::{Builder, Weights};
use tch::{Kind, Tensor};

/// A modulated transformer cross block (`ModulatedTransformerCrossBlock`).
#[derive(Debug, Clone)]
pub struct CrossBlock {
    pub ada_ln: Linear,
    pub layers: StreamLayers,
}

impl CrossBlock {
    fn new(b: &mut Builder, name: &str, c: &FlowBlockConfig) -> CrossBlock {
        let b = &mut b.scope(name);
        CrossBlock {
            ada_ln: Linear::new(b, "adaLN_modulation", c.dim, 6 * c.dim, true),
            layers: StreamLayers::new(b, c),
        }
    }

    fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        t_emb: &Tensor,
        ctx: &Tensor,
        imp: AttentionImpl,
    ) -> Tensor {
        let m = ada_ln(w, &self.ada_ln, t_emb);
        let (q, k, v) = self.layers.pre_attention(w, x, &m);
        let attn = attention(&q, &k, &v, imp, false);
        self.layers.post_attention(w, x, &attn, &m, ctx, imp)
    }
}

/// Shape of the stage-2 (structured latent) flow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlatFlowConfig {
    pub in_channels: i64,
    pub block: FlowBlockConfig,
    pub blocks: i64,
    /// Width of the sparse-conv residual blocks around the transformer (`io_block_channels`).
    pub io_channels: i64,
    pub io_res_blocks: i64,
    /// Side of the coarse grid the transformer tokens live on (64 / patch size 2).
    pub token_grid: i64,
    pub time_scale: f64,
    /// `use_fp16`: the input blocks, blocks and output blocks store their linear and
    /// convolution layers in fp16 and run in fp16.
    pub use_fp16: bool,
}

impl SlatFlowConfig {
    /// `slat_generator`.
    pub fn sam3d() -> SlatFlowConfig {
        SlatFlowConfig {
            in_channels: 8,
            block: SsFlowConfig::sam3d().block,
            blocks: 24,
            io_channels: 128,
            io_res_blocks: 2,
            token_grid: 32,
            time_scale: 1000.0,
            use_fp16: true,
        }
    }

    /// A tiny version of the same code (CPU tests), all fp32.
    pub fn tiny() -> SlatFlowConfig {
        SlatFlowConfig {
            block: SsFlowConfig::tiny().block,
            blocks: 2,
            io_channels: 8,
            token_grid: 4,
            use_fp16: false,
            ..SlatFlowConfig::sam3d()
        }
    }
}

/// Stage-2 flow (dense approximation; see the module docs).
#[derive(Debug, Clone)]
pub struct SlatFlow {
    pub config: SlatFlowConfig,
    pub t_embedder: MlpEmbedder,
    pub input_layer: Linear,
    pub input_blocks: Vec<SparseResBlock>,
    pub blocks: Vec<CrossBlock>,
    pub out_blocks: Vec<SparseResBlock>,
    pub out_layer: Linear,
}

impl SlatFlow {
    pub fn new(b: &mut Builder, name: &str, config: SlatFlowConfig) -> SlatFlow {
        let b = &mut b.scope(name);
        let c = config;
        let (io, dim, last) = (c.io_channels, c.block.dim, c.io_res_blocks - 1);
        let res = |b: &mut Builder, n: &str, ch, out, r| SparseResBlock::new(b, n, ch, dim, out, r);
        // In the reference's order; the input, transformer and output blocks form the torso.
        let t_embedder = MlpEmbedder::new(b, "t_embedder", 256, dim);
        let input_layer = Linear::new(b, "input_layer", c.in_channels, io, true);
        let (input_blocks, blocks, out_blocks) = {
            let b = &mut b.torso();
            let mut input_blocks: Vec<SparseResBlock> = (0..last)
                .map(|i| res(b, &format!("input_blocks.{i}"), io, io, Resample::None))
                .collect();
            input_blocks.push(res(
                b,
                &format!("input_blocks.{last}"),
                io,
                dim,
                Resample::Down,
            ));
            let blocks: Vec<CrossBlock> = (0..c.blocks)
                .map(|i| CrossBlock::new(b, &format!("blocks.{i}"), &c.block))
                .collect();
            // Each output block sees its input concatenated with the matching input block's
            // output.
            let mut out_blocks = vec![res(b, "out_blocks.0", 2 * dim, io, Resample::Up)];
            out_blocks.extend(
                (1..c.io_res_blocks)
                    .map(|i| res(b, &format!("out_blocks.{i}"), 2 * io, io, Resample::None)),
            );
            (input_blocks, blocks, out_blocks)
        };
        let out_layer = Linear::new(b, "out_layer", io, c.in_channels, true);
        if c.use_fp16 {
            b.convert_torso(Kind::Half);
        }
        SlatFlow {
            config,
            t_embedder,
            input_layer,
            input_blocks,
            blocks,
            out_blocks,
            out_layer,
        }
    }

    /// The dtype the torso runs in: fp16 with `use_fp16`, else the weights' own.
    pub fn torso_kind(&self, w: &Weights) -> Kind {
        if self.config.use_fp16 {
            Kind::Half
        } else {
            w.kind()
        }
    }

    /// One backbone pass over `x` (`[b, voxels, in_channels]`: the active voxels) with the
    /// transformer on `tokens` coarse cells; `t` `[b]` in [0, 1]; `cond` `[b, ctx, cond_dim]`.
    pub fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        tokens: i64,
        t: &Tensor,
        cond: &Tensor,
        imp: AttentionImpl,
    ) -> Tensor {
        let c = &self.config;
        let voxels = x.size()[1];
        let torso = self.torso_kind(w);
        let t_emb = embed_time(w, &self.t_embedder, &(t * c.time_scale)).to_kind(torso);
        let cond = &cond.to_kind(torso);
        let mut h = self.input_layer.forward(w, x).to_kind(torso);
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        for block in &self.input_blocks {
            let n = if block.resample == Resample::Down {
                tokens
            } else {
                voxels
            };
            h = block.forward(w, &h, &t_emb, n);
            skips.push(h.shallow_clone());
        }
        let coords = grid_coords(tokens, c.token_grid, x.device());
        h += sincos_position_embedding(&coords, c.block.dim).to_kind(torso);
        for block in &self.blocks {
            h = block.forward(w, &h, &t_emb, cond, imp);
        }
        for (block, skip) in self.out_blocks.iter().zip(skips.iter().rev()) {
            let n = if block.resample == Resample::Up {
                voxels
            } else {
                skip.size()[1]
            };
            h = block.forward(w, &Tensor::cat(&[&h, skip], -1), &t_emb, n);
        }
        let io = c.io_channels;
        let h = h
            .to_kind(Kind::Float)
            .layer_norm([io], None::<Tensor>, None::<Tensor>, 1e-5, true)
            .to_kind(h.kind());
        self.out_layer.forward(w, &h.to_kind(x.kind()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{finite, opts};
    use tch::Device;

    #[test]
    fn slat_flow_shapes_and_offload() {
        tch::manual_seed(1);
        let c = SlatFlowConfig::tiny();
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let m = SlatFlow::new(&mut b, "slat", c);
        let mut w = b.finish();
        let x = Tensor::randn([1, 40, c.in_channels], opts());
        let cond = Tensor::randn([1, 7, c.block.cond_dim], opts());
        let t = Tensor::from_slice(&[0.5f32]);
        let out = m.forward(&w, &x, 11, &t, &cond, AttentionImpl::Sdpa);
        assert_eq!(out.size(), x.size());
        assert!(finite(&out));
        w.move_to(Device::Cpu);
        assert!(m
            .forward(&w, &x, 11, &t, &cond, AttentionImpl::Sdpa)
            .equal(&out));
        w.offload_sequential(Device::Cpu);
        assert!(m
            .forward(&w, &x, 11, &t, &cond, AttentionImpl::Sdpa)
            .equal(&out));
    }
}
