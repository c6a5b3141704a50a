//! Structural replicas of the networks behind the documented pipelines: randomly initialised,
//! with the real architectures' shapes, so compute, memory traffic and peak VRAM behave like the
//! real models without their weights.
//!
//! Every model is built through a [`weights::Builder`]: with random weights on a device, or in
//! counting mode, which checks full-size parameter counts without allocating them. Layers fetch
//! their weights at forward time, which is what makes whole-model and sequential offload
//! possible (see [`weights`]).

pub mod attention;
pub mod clip;
pub mod dit;
pub mod embeddings;
pub mod feed_forward;
pub mod hunyuan3d;
pub mod layers;
pub mod moge;
pub mod sam3d;
pub mod t2i_adapter;
#[cfg(test)]
pub(crate) mod test_util;
pub mod unet;
pub mod unet_blocks;
pub mod vae;
pub mod vit;
pub mod weights;
pub mod zimage;

pub use attention::{attention, AttentionImpl, SliceSize};
pub use weights::{Builder, Init, Param, Residency, Weights};
