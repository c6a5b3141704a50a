//! Parameter storage for the replica networks, built so that the same model code can
//! - run with random weights on CPU or CUDA, in any dtype;
//! - be *counted* without allocating (every parameter is a zero-stride view of one scalar), so
//!   full-size parameter counts are checked on a machine that could not hold the weights;
//! - be offloaded as diffusers/accelerate do it: whole-model (all weights moved to the GPU
//!   before a stage and back after), sequential (weights stay on the CPU and each one is copied
//!   to the GPU just before the operation that uses it, then dropped), or unloaded;
//! - be loaded from a host-side checkpoint ([`Builder::from_checkpoint`]): every parameter is
//!   read out of a store in host memory and copied to the device, the work a
//!   `from_pretrained(...).to("cuda")` does once the file is in the page cache.
//!
//! Layers hold [`Param`] handles, not tensors, and fetch them through [`Weights::get`] at
//! forward time; that indirection is what lets residency change without rebuilding the model.
//!
//! Parameters are created in the builder's dtype. A model can keep some of them in another one,
//! as TRELLIS-derived models do with `use_fp16` (`convert_module_to_f16`: the linear and
//! convolution layers of the transformer torso become fp16, norms and the input/output layers
//! stay fp32): layers created inside [`Builder::torso`] are converted by
//! [`Builder::convert_torso`], one tensor at a time as PyTorch's `p.data = p.data.half()` does.

use std::fmt::{Display, Write};
use std::ops::{Deref, DerefMut};
use tch::{Device, Kind, Tensor};

/// Handle to one parameter tensor in a [`Weights`] store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param(usize);

/// How parameters are initialised (random weights must keep activations finite through deep
/// stacks in fp16, hence fan-in scaling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with standard deviation `1/sqrt(fan_in)`.
    FanIn(i64),
    /// Normal with a fixed standard deviation.
    Normal(f64),
    Zeros,
    Ones,
}

/// Where weights live between uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// On the storage device; used in place.
    Resident,
    /// On the CPU; each parameter is copied to the compute device when used (accelerate's
    /// sequential CPU offload, one leaf module at a time).
    Sequential,
    /// Dropped; the model must be rebuilt or reloaded before use.
    Unloaded,
}

/// The parameters of one model.
pub struct Weights {
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    tensors: Vec<Tensor>,
    /// Each parameter's dtype (the builder's, or the torso's after a conversion).
    kinds: Vec<Kind>,
    /// The dtype parameters are created in.
    kind: Kind,
    storage: Device,
    compute: Device,
    residency: Residency,
    counting: bool,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("params", &self.names.len())
            .field("numel", &self.numel())
            .field("kind", &self.kind)
            .field("storage", &self.storage)
            .field("compute", &self.compute)
            .field("residency", &self.residency)
            .finish()
    }
}

impl Weights {
    /// The tensor for `p`, on the compute device. Resident weights are returned as shallow
    /// clones; sequential offload copies the weight to the compute device here, and the copy
    /// is freed when the caller drops it after the operation. Each copy is followed by a
    /// return of the allocator's cached blocks, as accelerate's `set_module_tensor_to_device`
    /// ends with `clear_device_cache()` for every tensor it places on the GPU: reserved memory
    /// never keeps the blocks freed by earlier modules.
    pub fn get(&self, p: Param) -> Tensor {
        assert!(!self.counting, "a counting model cannot run forward");
        match self.residency {
            Residency::Resident => self.tensors[p.0].shallow_clone(),
            Residency::Sequential => {
                let placed = self.tensors[p.0].to_device(self.compute);
                crate::ffi::return_cached_blocks(self.compute)
                    .unwrap_or_else(|e| panic!("returning cached blocks after an upload: {e}"));
                placed
            }
            Residency::Unloaded => panic!("weights were unloaded: reload the model before use"),
        }
    }

    /// Number of parameters (elements), counted from the shapes.
    pub fn numel(&self) -> i64 {
        self.shapes.iter().map(|s| s.iter().product::<i64>()).sum()
    }

    /// Bytes the parameters occupy, each in its own dtype.
    pub fn bytes(&self) -> i64 {
        self.shapes
            .iter()
            .zip(&self.kinds)
            .map(|(s, k)| s.iter().product::<i64>() * k.elt_size_in_bytes() as i64)
            .sum()
    }

    /// Number of parameters (elements) stored in `kind`.
    pub fn numel_of_kind(&self, kind: Kind) -> i64 {
        self.shapes
            .iter()
            .zip(&self.kinds)
            .filter(|(_, k)| **k == kind)
            .map(|(s, _)| s.iter().product::<i64>())
            .sum()
    }

    /// The dtype parameters were created in (a converted torso keeps its layers in another:
    /// see [`Weights::kind_of`]).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The dtype `p` is stored in.
    pub fn kind_of(&self, p: Param) -> Kind {
        self.kinds[p.0]
    }

    /// Device the forward pass runs on.
    pub fn compute_device(&self) -> Device {
        self.compute
    }

    /// Device the weights are stored on between uses.
    pub fn storage_device(&self) -> Device {
        self.storage
    }

    pub fn residency(&self) -> Residency {
        self.residency
    }

    /// Parameter names and shapes, in creation order.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, &[i64])> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.shapes.iter().map(Vec::as_slice))
    }

    /// Parameter names and dtypes, in creation order.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, Kind)> + '_ {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.kinds.iter().copied())
    }

    /// Moves every weight to `device` and computes there (whole-model offload moves a model
    /// to the GPU before its stage and back to the CPU after).
    pub fn move_to(&mut self, device: Device) {
        if self.storage != device && !self.counting {
            for t in &mut self.tensors {
                *t = t.to_device(device);
            }
        }
        self.storage = device;
        self.compute = device;
        self.residency = Residency::Resident;
    }

    /// Keeps the weights on the CPU and copies each to `compute` only while it is used.
    pub fn offload_sequential(&mut self, compute: Device) {
        self.move_to(Device::Cpu);
        self.compute = compute;
        self.residency = Residency::Sequential;
    }

    /// Drops every weight tensor (the caller empties the allocator cache if it wants the
    /// memory back at once).
    pub fn unload(&mut self) {
        for t in &mut self.tensors {
            *t = Tensor::new();
        }
        self.residency = Residency::Unloaded;
    }
}

/// Creates parameters for a model under construction.
pub struct Builder {
    weights: Weights,
    generator_device: Device,
    pool: NoisePool,
    /// What [`Builder::scope`] puts before every parameter name: `"a.b."`, or empty.
    prefix: String,
    /// Inside [`Builder::torso`]: layer parameters are marked for [`Builder::convert_torso`].
    in_torso: bool,
    /// Parameters marked for conversion and not converted yet, in creation order.
    torso: Vec<usize>,
    /// Where parameters come from instead of a random fill (see [`Builder::from_checkpoint`]).
    checkpoint: Option<Checkpoint>,
}

/// A [`Builder`] inside a model's torso (see [`Builder::torso`]); the torso ends when it is
/// dropped.
pub struct Torso<'a> {
    builder: &'a mut Builder,
    outer: bool,
}

impl Deref for Torso<'_> {
    type Target = Builder;

    fn deref(&self) -> &Builder {
        self.builder
    }
}

impl DerefMut for Torso<'_> {
    fn deref_mut(&mut self) -> &mut Builder {
        self.builder
    }
}

impl Drop for Torso<'_> {
    fn drop(&mut self) {
        self.builder.in_torso = self.outer;
    }
}

/// The parameters of a model as stored in host memory, handed out in creation order.
struct Checkpoint {
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    tensors: Vec<Tensor>,
    next: usize,
}

impl Checkpoint {
    /// The next stored parameter, which must be `name` of `shape`, materialised on `device`:
    /// copied out of the store into fresh host memory (reading the file into the tensors
    /// `from_pretrained` creates) and from there to the device (its `.to(device)`, a
    /// synchronous copy from pageable memory).
    fn take(&mut self, name: &str, shape: &[i64], device: Device) -> Tensor {
        let i = self.next;
        assert!(
            i < self.tensors.len(),
            "checkpoint has {} parameters; the model asks for more (`{name}`)",
            self.tensors.len()
        );
        assert!(
            self.names[i] == name && self.shapes[i] == shape,
            "checkpoint does not match the model: parameter {i} is `{}` {:?}, the model asks for `{name}` {shape:?}",
            self.names[i],
            self.shapes[i]
        );
        self.next += 1;
        let host = self.tensors[i].copy();
        if device == Device::Cpu {
            host
        } else {
            host.to_device(device)
        }
    }
}

/// A [`Builder`] whose parameter names are prefixed with a scope (see [`Builder::scope`]);
/// the prefix is removed again when the scope is dropped.
pub struct Scope<'a> {
    builder: &'a mut Builder,
    /// The prefix's length before this scope.
    outer: usize,
}

impl Deref for Scope<'_> {
    type Target = Builder;

    fn deref(&self) -> &Builder {
        self.builder
    }
}

impl DerefMut for Scope<'_> {
    fn deref_mut(&mut self) -> &mut Builder {
        self.builder
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        self.builder.prefix.truncate(self.outer);
    }
}

/// Standard-normal values for weights built on the CPU. Drawing billions of normals on the
/// CPU in every worker process would dominate set-up (a 6 B-parameter model takes tens of
/// seconds); instead one block of noise is drawn and copied into each tensor from a moving
/// offset, at memory-copy speed. Values only need a realistic scale and no zeros (zeros can
/// run faster than real data), not independence.
struct NoisePool {
    block: Option<Tensor>,
    offset: i64,
}

impl NoisePool {
    const LEN: i64 = 1 << 24;

    fn fill(&mut self, shape: &[i64], kind: Kind) -> Tensor {
        let block = self
            .block
            .get_or_insert_with(|| Tensor::randn([Self::LEN], (Kind::Float, Device::Cpu)));
        let numel: i64 = shape.iter().product();
        let out = Tensor::empty([numel], (kind, Device::Cpu));
        let mut done = 0;
        while done < numel {
            let start = self.offset % Self::LEN;
            let len = (Self::LEN - start).min(numel - done);
            out.narrow(0, done, len).copy_(&block.narrow(0, start, len));
            done += len;
            // An odd step keeps consecutive tensors from starting on the same values.
            self.offset = (self.offset + len + 7919) % Self::LEN;
        }
        out.view(shape)
    }
}

fn push(w: &mut Weights, name: &str, shape: &[i64], tensor: Tensor) -> Param {
    w.names.push(name.to_string());
    w.shapes.push(shape.to_vec());
    w.tensors.push(tensor);
    w.kinds.push(w.kind);
    Param(w.tensors.len() - 1)
}

impl Builder {
    /// Random weights of `kind` on `device`.
    pub fn new(kind: Kind, device: Device) -> Builder {
        Builder {
            weights: Weights {
                names: Vec::new(),
                shapes: Vec::new(),
                tensors: Vec::new(),
                kinds: Vec::new(),
                kind,
                storage: device,
                compute: device,
                residency: Residency::Resident,
                counting: false,
            },
            generator_device: device,
            pool: NoisePool {
                block: None,
                offset: 0,
            },
            prefix: String::new(),
            in_torso: false,
            torso: Vec::new(),
            checkpoint: None,
        }
    }

    /// A builder that takes every parameter from `checkpoint` (a model of the same
    /// construction, stored in host memory) instead of drawing it, copying each to `device`.
    /// The model's constructor must ask for the checkpoint's parameters in its order; it
    /// panics on the first one that differs.
    pub fn from_checkpoint(checkpoint: &Weights, device: Device) -> Builder {
        assert!(
            !checkpoint.counting && checkpoint.residency != Residency::Unloaded,
            "a checkpoint needs stored weights"
        );
        assert_eq!(
            checkpoint.storage,
            Device::Cpu,
            "a checkpoint lives in host memory"
        );
        let mut b = Builder::new(checkpoint.kind, device);
        b.checkpoint = Some(Checkpoint {
            names: checkpoint.names.clone(),
            shapes: checkpoint.shapes.clone(),
            tensors: checkpoint
                .tensors
                .iter()
                .map(Tensor::shallow_clone)
                .collect(),
            next: 0,
        });
        b
    }

    /// Shapes only: each parameter is a broadcast view of one element, so a full-size model
    /// costs a few bytes per parameter tensor.
    pub fn counting() -> Builder {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        b.weights.counting = true;
        b
    }

    pub fn is_counting(&self) -> bool {
        self.weights.counting
    }

    pub fn kind(&self) -> Kind {
        self.weights.kind
    }

    pub fn device(&self) -> Device {
        self.weights.compute
    }

    /// Parameters created through the returned builder are named `"{name}.…"` (inside this
    /// builder's own scope, if any), as candle's `vb.pp(name)` and diffusers-rs's `&vs / name`
    /// do: `let b = &mut b.scope("blocks.3");` then `Linear::new(b, "attn", …)` creates
    /// `blocks.3.attn.weight`. The name is pasted as is, so an empty one gives `".attn"`, like
    /// `format!("{name}.attn")`.
    pub fn scope(&mut self, name: impl Display) -> Scope<'_> {
        let outer = self.prefix.len();
        write!(self.prefix, "{name}.").expect("writing to a String");
        Scope {
            builder: self,
            outer,
        }
    }

    /// Adds a parameter called `name` (inside the current [`scope`](Builder::scope)) of
    /// `shape`.
    pub fn param(&mut self, name: &str, shape: &[i64], init: Init) -> Param {
        let scoped;
        let name = if self.prefix.is_empty() {
            name
        } else {
            scoped = format!("{}{name}", self.prefix);
            &scoped
        };
        let w = &mut self.weights;
        if let Some(checkpoint) = &mut self.checkpoint {
            let tensor = checkpoint.take(name, shape, w.storage);
            return push(w, name, shape, tensor);
        }
        let tensor = if w.counting {
            Tensor::zeros([1], (Kind::Float, Device::Cpu)).expand(shape, false)
        } else {
            let device = self.generator_device;
            let std = match init {
                Init::FanIn(fan_in) => 1.0 / (fan_in.max(1) as f64).sqrt(),
                Init::Normal(std) => std,
                Init::Zeros => return push(w, name, shape, Tensor::zeros(shape, (w.kind, device))),
                Init::Ones => return push(w, name, shape, Tensor::ones(shape, (w.kind, device))),
            };
            if device == Device::Cpu {
                self.pool.fill(shape, w.kind) * std
            } else {
                (Tensor::randn(shape, (Kind::Float, device)) * std).to_kind(w.kind)
            }
        };
        push(w, name, shape, tensor)
    }

    /// A parameter of a linear or convolution layer: as [`Builder::param`], and marked for
    /// [`Builder::convert_torso`] when created inside a [`Builder::torso`] (the layer types
    /// TRELLIS' `convert_module_to_f16` converts; norms and embeddings are not).
    pub fn layer_param(&mut self, name: &str, shape: &[i64], init: Init) -> Param {
        let p = self.param(name, shape, init);
        if self.in_torso {
            self.torso.push(p.0);
        }
        p
    }

    /// Layer parameters created through the returned builder belong to the model's torso:
    /// [`Builder::convert_torso`] converts them.
    pub fn torso(&mut self) -> Torso<'_> {
        let outer = std::mem::replace(&mut self.in_torso, true);
        Torso {
            builder: self,
            outer,
        }
    }

    /// Converts the torso's layer parameters to `kind`, one tensor at a time in creation order
    /// (each conversion allocates the new tensor before the old one is freed, as
    /// `p.data = p.data.to(kind)` does), as a TRELLIS model's constructor does last with
    /// `use_fp16`.
    pub fn convert_torso(&mut self, kind: Kind) {
        let w = &mut self.weights;
        for i in std::mem::take(&mut self.torso) {
            if !w.counting {
                w.tensors[i] = w.tensors[i].to_kind(kind);
            }
            w.kinds[i] = kind;
        }
    }

    pub fn finish(self) -> Weights {
        if let Some(checkpoint) = &self.checkpoint {
            assert_eq!(
                checkpoint.next,
                checkpoint.tensors.len(),
                "the model used fewer parameters than its checkpoint holds"
            );
        }
        self.weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_allocates_views_and_counts_exactly() {
        let mut b = Builder::counting();
        b.param("w", &[4096, 4096], Init::FanIn(4096));
        b.param("b", &[4096], Init::Zeros);
        let w = b.finish();
        assert_eq!(w.numel(), 4096 * 4096 + 4096);
        // The big "tensor" is a zero-stride view of one element.
        assert_eq!(w.tensors[0].stride(), vec![0, 0]);
    }

    #[test]
    fn scopes_prefix_names_and_end_when_dropped() {
        let mut b = Builder::counting();
        {
            let b = &mut b.scope("blocks.3");
            b.param("norm.weight", &[2], Init::Ones);
            let b = &mut b.scope(format_args!("attn"));
            b.param("qkv.weight", &[2], Init::Ones);
        }
        b.scope("").param("bias", &[1], Init::Zeros);
        b.param("top", &[1], Init::Zeros);
        let w = b.finish();
        let names: Vec<&str> = w.shapes().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "blocks.3.norm.weight",
                "blocks.3.attn.qkv.weight",
                ".bias",
                "top"
            ]
        );
    }

    fn two_params(b: &mut Builder) -> (Param, Param) {
        let w = b.param("w", &[3, 2], Init::Normal(1.0));
        let bias = b.param("b", &[2], Init::Zeros);
        (w, bias)
    }

    #[test]
    fn a_checkpoint_build_copies_the_stored_values_into_fresh_memory() {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let (p, _) = two_params(&mut b);
        let stored = b.finish();
        let mut b = Builder::from_checkpoint(&stored, Device::Cpu);
        let (q, _) = two_params(&mut b);
        let loaded = b.finish();
        assert!(loaded.get(q).equal(&stored.get(p)), "same values");
        assert_ne!(
            loaded.get(q).data_ptr(),
            stored.get(p).data_ptr(),
            "a copy, not a view of the stored tensor"
        );
        assert_eq!(loaded.storage_device(), Device::Cpu);
        assert_eq!(loaded.bytes(), stored.bytes());
    }

    #[test]
    #[should_panic(expected = "checkpoint does not match the model")]
    fn a_checkpoint_of_another_model_is_refused() {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        two_params(&mut b);
        let stored = b.finish();
        let mut b = Builder::from_checkpoint(&stored, Device::Cpu);
        b.param("w", &[2, 3], Init::Zeros);
    }

    #[test]
    fn torso_conversion_reaches_only_layer_parameters_inside_the_torso() {
        for counting in [false, true] {
            let mut b = if counting {
                Builder::counting()
            } else {
                Builder::new(Kind::Float, Device::Cpu)
            };
            let io = b.layer_param("input.weight", &[4, 2], Init::FanIn(2));
            let (layer, norm) = {
                let b = &mut b.torso();
                let layer = b.layer_param("blocks.0.weight", &[4, 4], Init::FanIn(4));
                (layer, b.param("blocks.0.norm.weight", &[4], Init::Ones))
            };
            let out = b.layer_param("out.weight", &[2, 4], Init::FanIn(4));
            b.convert_torso(Kind::Half);
            let w = b.finish();
            let kinds: Vec<Kind> = [io, layer, norm, out]
                .iter()
                .map(|&p| w.kind_of(p))
                .collect();
            assert_eq!(kinds, [Kind::Float, Kind::Half, Kind::Float, Kind::Float]);
            assert_eq!(w.kind(), Kind::Float, "the builder's dtype");
            assert_eq!(
                (w.numel_of_kind(Kind::Half), w.numel_of_kind(Kind::Float)),
                (16, 20)
            );
            assert_eq!(w.bytes(), 16 * 2 + 20 * 4);
            if !counting {
                assert_eq!(w.get(layer).kind(), Kind::Half);
                assert_eq!(w.get(norm).kind(), Kind::Float);
            }
        }
    }

    #[test]
    fn sequential_offload_fetches_copies_and_keeps_storage_on_cpu() {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let p = b.param("w", &[3, 2], Init::Normal(1.0));
        let mut w = b.finish();
        let resident = w.get(p);
        w.offload_sequential(Device::Cpu);
        assert_eq!(w.residency(), Residency::Sequential);
        assert_eq!(w.storage_device(), Device::Cpu);
        let returns = crate::ffi::cached_block_returns();
        let fetched = w.get(p);
        assert!(fetched.equal(&resident));
        assert_eq!(
            crate::ffi::cached_block_returns(),
            returns + 1,
            "every upload is followed by a return of the cached blocks (accelerate's clear_device_cache)"
        );
        let _ = w.get(p);
        assert_eq!(crate::ffi::cached_block_returns(), returns + 2);
        let std = resident.std(true).double_value(&[]);
        assert!(
            std > 0.1,
            "CPU weights drawn from the noise pool are random, std {std}"
        );
        w.unload();
        assert_eq!(w.residency(), Residency::Unloaded);
        assert_eq!(w.numel(), 6, "counts survive unloading");
    }
}
