//! Shared machinery of the pipeline workloads: how models are held between stages (loading
//! strategies and diffusers' CPU offload), how guidance multiplies model evaluations, and the
//! CPU/GPU stand-ins for the non-network stages (UV unwrap, rasterisation, baking, inpainting,
//! surface extraction).

use crate::ffi;
use crate::measure::Stages;
use crate::models::unet::{UNet2DConditionModel, UNetConfig};
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::models::{Builder, Weights};
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// When a pipeline's models are created (the notes' loading patterns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loading {
    /// Every model at set-up, before the first call (not timed).
    AllAtOnce,
    /// Each model on its first use, inside the first call (timed as a `load_*` stage).
    Lazy,
    /// Each model just before its stage and freed after it, in every call.
    Sequential,
}

impl Loading {
    pub fn parse(text: &str) -> Result<Loading> {
        Ok(match text {
            "all_at_once" => Loading::AllAtOnce,
            "lazy" => Loading::Lazy,
            "sequential" => Loading::Sequential,
            other => bail!("unknown loading strategy `{other}`"),
        })
    }
}

/// diffusers' CPU offload modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// `pipe.to("cuda")`: everything resident on the GPU.
    None,
    /// `enable_model_cpu_offload()`: a component moves to the GPU whole before its stage and
    /// back to the CPU after it.
    Model,
    /// `enable_sequential_cpu_offload()`: weights stay on the CPU; each is copied to the GPU
    /// just before the operation that uses it, every time.
    Sequential,
}

impl Offload {
    pub fn parse(text: &str) -> Result<Offload> {
        Ok(match text {
            "none" => Offload::None,
            "model" => Offload::Model,
            "sequential" => Offload::Sequential,
            other => bail!("unknown offload mode `{other}`"),
        })
    }
}

/// A model whose parameters live in a [`Weights`] store it can hand out.
pub trait HasWeights {
    fn weights(&self) -> &Weights;
    fn weights_mut(&mut self) -> &mut Weights;
}

/// A model built with a borrowed [`Builder`], together with the weights the builder produced.
pub struct WithWeights<M> {
    pub model: M,
    pub weights: Weights,
}

impl<M> WithWeights<M> {
    /// Builds `model` and finishes the builder.
    pub fn build(mut b: Builder, model: impl FnOnce(&mut Builder) -> M) -> Self {
        let model = model(&mut b);
        WithWeights {
            model,
            weights: b.finish(),
        }
    }
}

impl<M> HasWeights for WithWeights<M> {
    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn weights_mut(&mut self) -> &mut Weights {
        &mut self.weights
    }
}

/// A model of a pipeline, created when the loading strategy says so and placed where the
/// offload mode says.
pub struct Slot<M> {
    pub name: &'static str,
    build: Box<dyn Fn(Builder) -> M>,
    loaded: Option<M>,
    /// The model's weights in host memory, which every load copies from (see
    /// [`Slot::keep_checkpoint`]).
    checkpoint: Option<M>,
    kind: Kind,
    compute: Device,
    offload: Offload,
}

impl<M: HasWeights> Slot<M> {
    pub fn new(
        name: &'static str,
        kind: Kind,
        compute: Device,
        offload: Offload,
        build: impl Fn(Builder) -> M + 'static,
    ) -> Slot<M> {
        Slot {
            name,
            build: Box::new(build),
            loaded: None,
            checkpoint: None,
            kind,
            compute,
            offload,
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.is_some()
    }

    /// Makes every later load read the weights out of host memory: the model is built once
    /// in host memory now (the checkpoint, untimed, as a file already on disk), and each
    /// [`Slot::load`] copies every parameter out of it into fresh host memory and from there
    /// to the device, as `from_pretrained(...).to(device)` does once the file is in the page
    /// cache. Without a checkpoint a load draws random weights where they live (on the GPU in
    /// milliseconds, far less than a real load of the same bytes).
    pub fn keep_checkpoint(&mut self) {
        if self.checkpoint.is_none() {
            self.checkpoint = Some((self.build)(Builder::new(self.kind, Device::Cpu)));
        }
    }

    /// The host-memory copy loads read from, if [`Slot::keep_checkpoint`] made one.
    pub fn checkpoint(&self) -> Option<&M> {
        self.checkpoint.as_ref()
    }

    /// Creates the model's weights: on the compute device, or on the CPU when offloaded (as
    /// diffusers keeps offloaded components in host memory); from the checkpoint if there is
    /// one, else randomly.
    pub fn load(&mut self) {
        if self.loaded.is_some() {
            return;
        }
        let storage = match self.offload {
            Offload::None => self.compute,
            Offload::Model | Offload::Sequential => Device::Cpu,
        };
        let builder = match &self.checkpoint {
            Some(stored) => Builder::from_checkpoint(stored.weights(), storage),
            None => Builder::new(self.kind, storage),
        };
        let mut model = (self.build)(builder);
        if self.offload == Offload::Sequential {
            model.weights_mut().offload_sequential(self.compute);
        }
        self.loaded = Some(model);
    }

    /// Frees the weights and returns the cached blocks to the device.
    pub fn unload(&mut self) -> Result<()> {
        self.loaded = None;
        ffi::return_cached_blocks(self.compute)?;
        Ok(())
    }

    /// The model, loading it first if needed; with model offload, its weights are moved to
    /// the compute device (call [`Slot::release`] after the stage).
    pub fn acquire(&mut self) -> &M {
        self.load();
        let model = self.loaded.as_mut().expect("loaded above");
        if self.offload == Offload::Model {
            model.weights_mut().move_to(self.compute);
        }
        model
    }

    /// Ends a stage's use: model offload moves the weights back to the CPU and returns the
    /// freed blocks to the device, as accelerate's offload hooks do at every hand-over
    /// (`CpuOffload.pre_forward` offloads the previous model, then `clear_device_cache`) and
    /// at the end of a pipeline call (`maybe_free_model_hooks`): the next component's stage
    /// does not reuse the previous one's cached blocks.
    pub fn release(&mut self) -> Result<()> {
        if let (Offload::Model, Some(model)) = (self.offload, self.loaded.as_mut()) {
            model.weights_mut().move_to(Device::Cpu);
            ffi::return_cached_blocks(self.compute)?;
        }
        Ok(())
    }

    /// The model as it rests between stages, if loaded (no placement change).
    pub fn loaded(&self) -> Option<&M> {
        self.loaded.as_ref()
    }

    /// Parameter bytes, if loaded.
    pub fn bytes(&self) -> Option<i64> {
        self.loaded.as_ref().map(|m| m.weights().bytes())
    }
}

/// A slot holding a model built with `&mut Builder`.
pub type Held<M> = Slot<WithWeights<M>>;

/// A slot of the model `new` builds from `config`, its weights named after the slot.
pub fn held<M: 'static, C: Clone + 'static>(
    name: &'static str,
    on: (Kind, Device, Offload),
    config: C,
    new: fn(&mut Builder, &str, C) -> M,
) -> Held<M> {
    Slot::new(name, on.0, on.1, on.2, move |b| {
        WithWeights::build(b, |b| new(b, name, config.clone()))
    })
}

/// The SD 2.1 UNet and VAE the texture pipelines start from: full size, or the `tiny` presets.
pub fn sd_configs(tiny: bool) -> (UNetConfig, VaeConfig) {
    if tiny {
        (UNetConfig::tiny(), VaeConfig::tiny())
    } else {
        (UNetConfig::sd21(), VaeConfig::sd())
    }
}

impl Slot<UNet2DConditionModel> {
    /// A UNet of `config`.
    pub fn unet(name: &'static str, on: (Kind, Device, Offload), config: UNetConfig) -> Self {
        Slot::new(name, on.0, on.1, on.2, move |b| {
            UNet2DConditionModel::new(&config, b)
        })
    }
}

impl Slot<AutoencoderKL> {
    /// A VAE of `config`.
    pub fn vae(name: &'static str, on: (Kind, Device, Offload), config: VaeConfig) -> Self {
        Slot::new(name, on.0, on.1, on.2, move |b| {
            AutoencoderKL::new(&config, b)
        })
    }
}

/// One model of a pipeline whatever its type, for loading and freeing a pipeline's models
/// together (a diffusers pipeline's components come and go with it).
pub trait Component {
    fn load_now(&mut self);
    fn unload_now(&mut self) -> Result<()>;
    /// Parameter bytes, if loaded.
    fn loaded_bytes(&self) -> Option<i64>;
    /// See [`Slot::keep_checkpoint`].
    fn keep_checkpoint_now(&mut self);
}

impl<M: HasWeights> Component for Slot<M> {
    fn load_now(&mut self) {
        self.load();
    }

    fn unload_now(&mut self) -> Result<()> {
        self.unload()
    }

    fn loaded_bytes(&self) -> Option<i64> {
        self.bytes()
    }

    fn keep_checkpoint_now(&mut self) {
        self.keep_checkpoint();
    }
}

/// Counter of the parameter bytes loaded inside a call.
pub const LOAD_BYTES: &str = "load_bytes";

/// Loads `components` (one pipeline's models) as one timed `load_<name>` stage and counts the
/// bytes of those it loaded (`load_bytes`).
pub fn load_together(stages: &mut Stages, name: &str, components: &mut [&mut dyn Component]) {
    let absent: Vec<bool> = components
        .iter()
        .map(|c| c.loaded_bytes().is_none())
        .collect();
    stages.stage(&format!("load_{name}"), || {
        for c in components.iter_mut() {
            c.load_now();
        }
    });
    let bytes: i64 = components
        .iter()
        .zip(absent)
        .filter_map(|(c, absent)| c.loaded_bytes().filter(|_| absent))
        .sum();
    stages.count(LOAD_BYTES, bytes as u64);
}

/// Frees `components` as one timed `unload_<name>` stage (weights dropped, cache emptied).
pub fn unload_together(
    stages: &mut Stages,
    name: &str,
    components: &mut [&mut dyn Component],
) -> Result<()> {
    stages.stage(&format!("unload_{name}"), || {
        components.iter_mut().try_for_each(|c| c.unload_now())
    })
}

/// Runs `stage` with the model in `slot`, loading and freeing it as `loading` says: lazily on
/// first use, or (sequential) just before the stage and again after it, each as its own timed
/// `load_<model>` / `unload_<model>` stage; a load counts its bytes (`load_bytes`).
pub fn with_model<M: HasWeights, T>(
    stages: &mut Stages,
    slot: &mut Slot<M>,
    loading: Loading,
    stage: &str,
    f: impl FnOnce(&M) -> T,
) -> Result<T> {
    if !slot.is_loaded() {
        let name = slot.name;
        load_together(stages, name, &mut [slot as &mut dyn Component]);
    }
    let out = stages.stage(stage, || f(slot.acquire()));
    slot.release()?;
    if loading == Loading::Sequential {
        let name = format!("unload_{}", slot.name);
        stages.stage(&name, || slot.unload())?;
    }
    Ok(out)
}

/// Which of `steps` denoising steps evaluate the unconditional branch when guidance is on and
/// only every `interval`-th step guides (UP2You's "THG"; interval 1 = plain CFG on every step).
/// Steps `0, interval, 2·interval, …` guide: 50 steps at interval 3 guide 17 times.
pub fn guided_steps(steps: usize, interval: usize) -> Vec<bool> {
    (0..steps).map(|i| i % interval.max(1) == 0).collect()
}

/// A random latent or image batch in the model dtype.
pub fn noise(shape: &[i64], kind: Kind, device: Device) -> Tensor {
    Tensor::randn(shape, (kind, device))
}

/// UV-unwrap stand-in (xatlas runs on the CPU, single-threaded, with cost growing with the
/// face count): generates `faces` triangles, computes their normals and areas, groups them into
/// charts by dominant normal direction, sorts each chart by area and packs the charts into rows
/// of a square atlas. Returns the atlas's used fraction.
pub fn uv_unwrap(faces: usize, seed: u64) -> f64 {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut charts: Vec<Vec<f64>> = vec![Vec::new(); 6];
    for _ in 0..faces {
        let v: [[f64; 3]; 3] =
            std::array::from_fn(|_| std::array::from_fn(|_| rng.random_range(-1.0..1.0)));
        let e1 = [v[1][0] - v[0][0], v[1][1] - v[0][1], v[1][2] - v[0][2]];
        let e2 = [v[2][0] - v[0][0], v[2][1] - v[0][1], v[2][2] - v[0][2]];
        let n = [
            e1[1] * e2[2] - e1[2] * e2[1],
            e1[2] * e2[0] - e1[0] * e2[2],
            e1[0] * e2[1] - e1[1] * e2[0],
        ];
        let area = 0.5 * (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        let axis = (0..3)
            .max_by(|&a, &b| n[a].abs().total_cmp(&n[b].abs()))
            .unwrap_or(0);
        charts[axis * 2 + usize::from(n[axis] < 0.0)].push(area);
    }
    let total: f64 = charts.iter().flatten().sum();
    let side = total.sqrt() * 1.2;
    let (mut x, mut y, mut row, mut used) = (0.0, 0.0, 0.0f64, 0.0);
    for chart in &mut charts {
        chart.sort_by(|a, b| b.total_cmp(a));
        for &area in chart.iter() {
            let s = area.sqrt();
            if x + s > side {
                x = 0.0;
                y += row;
                row = 0.0;
            }
            x += s;
            row = row.max(s);
            used += area;
        }
    }
    used / (side * (y + row).max(side))
}

/// Normal and position maps of one view at `size`² on `device`: the rasteriser's output,
/// stood in by analytic ray–sphere intersection per pixel (same per-pixel memory and a similar
/// amount of arithmetic). Returns `[6, size, size]` (normal xyz, position xyz).
pub fn render_view(size: i64, azimuth_deg: f64, kind: Kind, device: Device) -> Tensor {
    let lin = Tensor::linspace(-1.2, 1.2, size, (Kind::Float, device));
    let ys = lin.view([size, 1]).expand([size, size], false);
    let xs = lin.view([1, size]).expand([size, size], false);
    let r2 = &xs * &xs + &ys * &ys;
    let z = (-&r2 + 1.0).clamp_min(0.0).sqrt();
    let (s, c) = azimuth_deg.to_radians().sin_cos();
    let nx = &xs * c + &z * s;
    let nz = &z * c - &xs * s;
    let normal = Tensor::stack(&[nx, ys.shallow_clone(), nz], 0);
    let position = &normal * 0.5;
    Tensor::cat(&[normal, position], 0).to_kind(kind)
}

/// Back-projection of one view's colours into a `texture_size`² UV atlas (scatter-add of every
/// pixel into the texel its position maps to, weighted by cos⁴ of the view angle, as
/// Hunyuan3D's baking does). `atlas` is `[4, T, T]`: RGB accumulators and weights.
pub fn bake_view(atlas: &mut Tensor, colours: &Tensor, maps: &Tensor, texture_size: i64) {
    let size = maps.size()[1];
    let pos = maps.narrow(0, 3, 3).to_kind(Kind::Float);
    let u = ((pos.get(0) + 0.6) / 1.2 * (texture_size - 1) as f64)
        .clamp(0.0, (texture_size - 1) as f64);
    let v = ((pos.get(1) + 0.6) / 1.2 * (texture_size - 1) as f64)
        .clamp(0.0, (texture_size - 1) as f64);
    let index = (v.to_kind(Kind::Int64) * texture_size + u.to_kind(Kind::Int64)).view([-1]);
    let cos = maps
        .get(2)
        .to_kind(Kind::Float)
        .clamp_min(0.0)
        .pow_tensor_scalar(4)
        .view([-1]);
    let colours = tch::Tensor::upsample_bilinear2d(
        &colours.to_kind(Kind::Float).unsqueeze(0),
        [size, size],
        false,
        None,
        None,
    )
    .squeeze_dim(0)
    .view([3, -1]);
    let flat = atlas.view([4, -1]);
    for ch in 0..3 {
        let _ = flat
            .get(ch)
            .index_add_(0, &index, &(colours.get(ch) * &cos));
    }
    let _ = flat.get(3).index_add_(0, &index, &cos);
}

/// Inpainting stand-in for `cv2.inpaint` on the CPU: texels with no weight are filled by
/// `iterations` rounds of 4-neighbour averaging over the `[3, T, T]` atlas.
pub fn inpaint(texture: &Tensor, weights: &Tensor, iterations: i64) -> Tensor {
    let texture = texture.to_device(Device::Cpu).to_kind(Kind::Float);
    let hole = weights.to_device(Device::Cpu).le(0.0).to_kind(Kind::Float);
    let mut out = texture;
    let kernel = Tensor::from_slice(&[0.0f32, 0.25, 0.0, 0.25, 0.0, 0.25, 0.0, 0.25, 0.0])
        .view([1, 1, 3, 3])
        .repeat([3, 1, 1, 1]);
    for _ in 0..iterations {
        let blurred = out
            .unsqueeze(0)
            .conv2d(&kernel, None::<Tensor>, [1, 1], [1, 1], [1, 1], 3)
            .squeeze_dim(0);
        out = &out * (-&hole + 1.0) + blurred * &hole;
    }
    out
}

/// Surface extraction stand-in for marching cubes (CPU, skimage): the occupancy grid comes
/// back to the host as fp32 and every cell edge is tested for a sign change along each axis.
/// Returns the number of surface-crossing edges.
pub fn surface_cells(grid: &Tensor) -> i64 {
    let g = grid.to_device(Device::Cpu).to_kind(Kind::Float).gt(0.0);
    let mut crossings = 0;
    for dim in 0..3 {
        let n = g.size()[dim as usize];
        let a = g.narrow(dim, 0, n - 1);
        let b = g.narrow(dim, 1, n - 1);
        crossings += a.ne_tensor(&b).sum(Kind::Int64).int64_value(&[]);
    }
    crossings
}

impl HasWeights for UNet2DConditionModel {
    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn weights_mut(&mut self) -> &mut Weights {
        &mut self.weights
    }
}

impl HasWeights for AutoencoderKL {
    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn weights_mut(&mut self) -> &mut Weights {
        &mut self.weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_interval_counts_guided_steps_as_the_note_does() {
        let guided = guided_steps(50, 3).iter().filter(|g| **g).count();
        assert_eq!(guided, 17, "THG interval 3 over 50 steps");
        assert_eq!(
            50 + guided,
            67,
            "UNet evaluations: 50 conditional + 17 unconditional"
        );
        assert!(guided_steps(30, 1).iter().all(|g| *g));
        assert_eq!(guided_steps(30, 4).iter().filter(|g| **g).count(), 8);
    }

    /// A slot of one 4×4 parameter.
    fn one_param_slot() -> Slot<WithWeights<crate::models::Param>> {
        one_param_slot_with(Offload::None)
    }

    fn one_param_slot_with(offload: Offload) -> Slot<WithWeights<crate::models::Param>> {
        Slot::new("m", Kind::Float, Device::Cpu, offload, |b| {
            WithWeights::build(b, |b| {
                b.param("w", &[4, 4], crate::models::Init::Normal(1.0))
            })
        })
    }

    /// accelerate returns the cached blocks at every model-offload hand-over and when a model
    /// is freed; a resident model's stage end returns nothing.
    #[test]
    fn model_offload_returns_cached_blocks_at_each_hand_over_and_unload() {
        let returns = crate::ffi::cached_block_returns;
        let mut offloaded = one_param_slot_with(Offload::Model);
        let before = returns();
        offloaded.acquire();
        assert_eq!(returns(), before, "acquiring returns nothing");
        offloaded.release().unwrap();
        assert_eq!(
            returns(),
            before + 1,
            "the hand-over returns the cached blocks"
        );
        offloaded.unload().unwrap();
        assert_eq!(returns(), before + 2, "so does freeing the model");
        let mut resident = one_param_slot();
        resident.acquire();
        resident.release().unwrap();
        assert_eq!(returns(), before + 2, "a resident model keeps its cache");
    }

    #[test]
    fn a_load_from_a_checkpoint_copies_host_memory_every_time() {
        let value = |slot: &Slot<WithWeights<crate::models::Param>>| {
            let m = slot.loaded().expect("loaded");
            m.weights.get(m.model)
        };
        let mut random = one_param_slot();
        random.load();
        let first = value(&random);
        random.unload().unwrap();
        random.load();
        assert!(
            !value(&random).equal(&first),
            "without a checkpoint, fresh weights"
        );

        let mut slot = one_param_slot();
        slot.keep_checkpoint();
        assert!(!slot.is_loaded(), "keeping a checkpoint loads nothing");
        let stored = {
            let c = slot.checkpoint().unwrap();
            c.weights.get(c.model)
        };
        for _ in 0..2 {
            slot.load();
            let loaded = value(&slot);
            assert!(loaded.equal(&stored), "the checkpoint's values");
            assert_ne!(loaded.data_ptr(), stored.data_ptr(), "in memory of its own");
            slot.unload().unwrap();
        }
    }

    #[test]
    fn loading_together_times_one_stage_and_counts_the_bytes() {
        let (mut a, mut b) = (one_param_slot(), one_param_slot());
        b.load();
        let m = crate::measure::Meter::cpu()
            .measure(|s| {
                load_together(s, "pair", &mut [&mut a, &mut b]);
                unload_together(s, "pair", &mut [&mut a, &mut b])
            })
            .unwrap();
        let names: Vec<&str> = m.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["load_pair", "unload_pair"]);
        assert_eq!(
            m.counters[LOAD_BYTES],
            16 * 4,
            "only what was not loaded yet"
        );
        assert!(!a.is_loaded() && !b.is_loaded());
    }

    #[test]
    fn cpu_stand_ins_scale_and_stay_finite() {
        let f = uv_unwrap(2000, 1);
        assert!(f > 0.0 && f <= 1.0, "{f}");
        let maps = render_view(32, 90.0, Kind::Float, Device::Cpu);
        assert_eq!(maps.size(), vec![6, 32, 32]);
        let mut atlas = Tensor::zeros([4, 16, 16], (Kind::Float, Device::Cpu));
        bake_view(
            &mut atlas,
            &Tensor::ones([3, 8, 8], (Kind::Float, Device::Cpu)),
            &maps,
            16,
        );
        let painted = atlas.get(3).gt(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(painted > 0, "baking painted no texel");
        let filled = inpaint(&atlas.narrow(0, 0, 3), &atlas.get(3), 4);
        assert_eq!(filled.size(), vec![3, 16, 16]);
        assert!(bool::try_from(filled.isfinite().all()).unwrap());
        let grid = Tensor::linspace(-1.0, 1.0, 9, (Kind::Float, Device::Cpu))
            .view([9, 1, 1])
            .expand([9, 9, 9], false);
        assert_eq!(
            surface_cells(&grid),
            81,
            "one crossing per column of a planar surface"
        );
    }
}
