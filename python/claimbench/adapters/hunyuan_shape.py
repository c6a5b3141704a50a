"""Hunyuan3D-2's shape stage (``hy3dgen`` 2.0.2), real code with random weights.

What runs, unchanged, per measured call: ``Hunyuan3DDiTFlowMatchingPipeline.__call__``
(``hy3dgen/shapegen/pipelines.py``) on one RGBA image, with the arguments hy3dgen's gradio app
passes (a CPU generator seeded with ``seed``; ``num_inference_steps``, ``guidance_scale``,
``octree_resolution`` and ``num_chunks`` from the parameters) and progress bars off. The app asks
for ``output_type="mesh"`` and calls ``export_to_trimesh`` itself; the adapter keeps the default
``"trimesh"``, which makes ``_export`` do the same export. That is:

* ``ImageProcessorV2(size=512, border_ratio=0.15)``: recentring and resizing with OpenCV on the
  host, then the tensor conversion;
* the ``SingleImageEncoder`` conditioner around transformers' ``Dinov2Model`` (DINOv2-g/14 at
  518 px: 1370 tokens of width 1536) and, with classifier-free guidance, its zero unconditional
  embedding concatenated into a batch of 2;
* ``steps`` forwards of ``Hunyuan3DDiT`` (16 double-stream and 32 single-stream blocks, width
  1024, over the 3072 latent tokens) with hy3dgen's ``FlowMatchEulerDiscreteScheduler``
  (sigmas ``linspace(0, 1, steps)``). v2-0 has no guidance embedding, so CFG is on for any
  ``guidance >= 0`` and doubles the DiT *batch* (latents ``cat``-ed twice), not the number of
  forwards; a negative ``guidance`` turns it off, as in the package;
* ``_export``: the ``ShapeVAE`` latent transformer (``post_kl`` + 16 layers), then
  ``latents2mesh``: ``VanillaVolumeDecoder`` builds the ``(octree_resolution + 1)**3`` query grid
  on the host (numpy fp32), moves it to the device in the run's dtype and calls the
  cross-attention geo-decoder on ``num_chunks`` points at a time (a chunk *size*; every chunk
  re-projects the latents' keys and values), concatenates the logits on the device and casts
  them to fp32; then the surface extractor (skimage's Lewiner marching cubes on the host) and
  ``export_to_trimesh``.

Substitutions:

* Weights are random (``claimbench.build.fast_build``); the modules are the package's own
  classes, built by its ``instantiate_from_config`` from the v2-0 config values (DINOv2-g from a
  ``Dinov2Config`` dict: nothing is downloaded). Random weights change no shape or kernel, but
  they make the decoded occupancy field noise.
* Marching cubes on a noise field would return a huge, meaningless surface (every cell crosses
  zero: ~2e5 faces at octree 64, tens of millions at 384), and that would dominate time and host
  memory. The adapter keeps the real volume decoding and the real device-to-host copy of the
  decoded ``(octree+1)**3`` fp32 grid, then hands marching cubes an analytic field of the same
  shape and dtype instead of the copied values: an ellipsoid, ``0.6 - sqrt(x^2 + (y/1.3)^2 +
  z^2)`` on ``[-1, 1]^3``, positive inside like occupancy logits (about 0.6 M faces at 384, the
  order of a real v2-0 mesh). This is a subclass of the package's ``MCSurfaceExtractor`` that only
  overrides ``run`` and then calls the real one; the field is precomputed in ``setup`` and held on
  the host. It is logged with ``ctx.log``.
* The input is a synthetic RGBA image (a shaded ellipse, off-centre, on a transparent
  background), so the image processor's recentring has an object to crop; background removal is
  not run (the app skips it for RGBA input).
* Import: ``hy3dgen/shapegen/__init__.py`` imports ``postprocessors``, which imports the compiled
  ``pymeshlab`` for mesh post-processing that the shape call never runs. The adapter imports the
  submodules it needs under a bare placeholder for the ``hy3dgen.shapegen`` package (its
  ``__init__`` not run) and removes the placeholder afterwards; ``pymeshlab`` is neither imported
  nor stubbed. The real code path needs, besides ``hy3dgen==2.0.2`` and ``einops``:
  ``trimesh`` (imported by ``pipelines.py``, used by the export), ``scikit-image`` with
  ``lazy-loader`` (marching cubes), ``opencv-python-headless`` (image processor) and
  ``torchvision`` matching torch (the conditioner's transforms).

Stages (boundaries are placed from hooks on the pipeline's own methods; the harness synchronises
at each boundary and nowhere else): ``conditioning`` (image processor + DINOv2 + unconditional
embedding, i.e. ``prepare_image`` and ``encode_cond``), ``dit`` (timesteps, latent noise and all
DiT steps with their scheduler updates, up to the call of ``_export``), ``vae_decode`` (the
ShapeVAE latent transformer), ``volume_decode`` (``VanillaVolumeDecoder``: the chunked geo-decoder
over the grid), ``surface_extraction`` (device-to-host copy, marching cubes, ``export_to_trimesh``).

Counters per call: ``dit_evals`` (DiT forwards: ``steps``), ``query_points`` (geo-decoder query
points, ``(octree_resolution + 1)**3``), ``volume_decoder_chunks`` (geo-decoder calls,
``ceil(query_points / num_chunks)``), ``mesh_faces``.

Parameters (all optional): ``preset`` ("full": the v2-0 models; "tiny": the same classes with one
or two layers and narrow widths), ``steps`` (50; tiny 2), ``guidance`` (5.0), ``octree_resolution``
(384; tiny 16), ``num_chunks`` (8000; tiny 1000), ``seed`` (0), ``offload`` ("none"; "model" calls
``pipe.enable_model_cpu_offload``, which raises ``AttributeError`` in hy3dgen 2.0.2 because the
class defines no ``components``: recorded as not applicable, models moved back, run without
offload; "sequential": the class has no such method, recorded likewise), ``flashvdm`` (false;
true calls ``pipe.enable_flashvdm()``, which needs ``from_pretrained`` kwargs and raises
``KeyError`` on a pipeline built from parts: recorded as not applicable, the vanilla decoder runs).
"""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from claimbench.adapters.common import (
    bad_param,
    import_without_package_init,
    int_param,
    preset_param,
    reject_unknown,
)
from claimbench.build import fast_build

# hy3dgen's v2-0 scale factor of the ShapeVAE latents.
VAE_SCALE_FACTOR = 0.9990943042622529

PRESETS: Dict[str, Dict[str, Any]] = {
    "full": {
        # hunyuan3d-dit-v2-0/config.yaml.
        "dit": dict(in_channels=64, context_in_dim=1536, hidden_size=1024, mlp_ratio=4.0,
                    num_heads=16, depth=16, depth_single_blocks=32, axes_dim=[64], theta=10000,
                    qkv_bias=True),
        "vae": dict(num_latents=3072, embed_dim=64, num_freqs=8, include_pi=False, heads=16,
                    width=1024, num_decoder_layers=16, qkv_bias=False, qk_norm=True,
                    scale_factor=VAE_SCALE_FACTOR),
        # DINOv2-g/14 (facebook/dinov2-giant) at 518 px.
        "dino": dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24),
        "dino_image_size": 518,
        "processor_size": 512,
        "defaults": dict(steps=50, octree_resolution=384, num_chunks=8000),
    },
    "tiny": {
        # Same classes and flags; DiT in_channels = VAE embed_dim, context = DINO width.
        "dit": dict(in_channels=8, context_in_dim=64, hidden_size=64, mlp_ratio=4.0,
                    num_heads=2, depth=1, depth_single_blocks=1, axes_dim=[32], theta=10000,
                    qkv_bias=True),
        "vae": dict(num_latents=32, embed_dim=8, num_freqs=8, include_pi=False, heads=2,
                    width=64, num_decoder_layers=1, qkv_bias=False, qk_norm=True,
                    scale_factor=VAE_SCALE_FACTOR),
        "dino": dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2),
        "dino_image_size": 56,  # 4x4 patches + CLS
        "processor_size": 64,
        "defaults": dict(steps=2, octree_resolution=16, num_chunks=1000),
    },
}

COMMON_DEFAULTS = dict(preset="full", guidance=5.0, seed=0, offload="none", flashvdm=False)
OFFLOADS = ("none", "model", "sequential")
PARAMS = ("preset", "steps", "guidance", "octree_resolution", "num_chunks", "seed", "offload",
          "flashvdm")

# The analytic field handed to marching cubes: an ellipsoid with semi-axes 0.6, 0.78, 0.6.
FIELD_RADIUS = 0.6
FIELD_Y_STRETCH = 1.3


# --- imports ---------------------------------------------------------------------------------

_LIBS: Optional[SimpleNamespace] = None

_SUBMODULES = ("utils", "schedulers", "preprocessors", "models", "models.autoencoders",
               "pipelines")


def _import_shapegen() -> Dict[str, Any]:
    """The ``hy3dgen.shapegen`` submodules the shape call uses, without running
    ``hy3dgen/shapegen/__init__.py`` (its ``postprocessors`` import needs the compiled
    ``pymeshlab``, which the call never uses)."""
    parent = "hy3dgen.shapegen"
    try:
        import hy3dgen  # noqa: F401 - its __init__ is a licence header only
    except ImportError as e:
        raise ImportError("hunyuan_shape needs hy3dgen: pip install --no-deps hy3dgen==2.0.2") from e

    def load() -> Dict[str, Any]:
        try:
            return {name: importlib.import_module(f"{parent}.{name}") for name in _SUBMODULES}
        except ImportError as e:
            raise ImportError(
                f"hunyuan_shape: {e}. hy3dgen's shape code needs trimesh, scikit-image (with "
                "lazy-loader), opencv-python-headless and a torchvision matching torch") from e

    # instantiate_from_config's import_module finds the submodules in the module cache.
    return import_without_package_init(parent, load)


def _libs() -> SimpleNamespace:
    global _LIBS
    if _LIBS is None:
        m = _import_shapegen()
        _LIBS = SimpleNamespace(
            Pipeline=m["pipelines"].Hunyuan3DDiTFlowMatchingPipeline,
            instantiate_from_config=m["pipelines"].instantiate_from_config,
            MCSurfaceExtractor=m["models.autoencoders"].MCSurfaceExtractor,
            VanillaVolumeDecoder=m["models.autoencoders"].VanillaVolumeDecoder,
        )
        _LIBS.AnalyticFieldExtractor = _analytic_extractor_class(_LIBS.MCSurfaceExtractor)
    return _LIBS


# --- configuration and model factories -------------------------------------------------------


def pipeline_config(preset: str = "full") -> Dict[str, Dict[str, Any]]:
    """The pipeline's parts in hy3dgen's config format (``target`` + ``params``), as
    ``from_single_file`` reads them from ``config.yaml``."""
    if preset not in PRESETS:
        raise _bad("preset", f"one of {sorted(PRESETS)}", preset)
    p = PRESETS[preset]
    dino = dict(model_type="dinov2", mlp_ratio=4, patch_size=14, image_size=p["dino_image_size"],
                use_swiglu_ffn=True, layerscale_value=1.0, layer_norm_eps=1e-6, qkv_bias=True,
                **p["dino"])
    return {
        "model": {"target": "hy3dgen.shapegen.models.Hunyuan3DDiT", "params": dict(p["dit"])},
        "vae": {"target": "hy3dgen.shapegen.models.ShapeVAE", "params": dict(p["vae"])},
        "conditioner": {
            "target": "hy3dgen.shapegen.models.SingleImageEncoder",
            "params": {"main_image_encoder": {
                "type": "DinoImageEncoder",
                "kwargs": {"image_size": p["dino_image_size"], "config": dino}}},
        },
        "scheduler": {"target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
                      "params": {"num_train_timesteps": 1000}},
        "image_processor": {"target": "hy3dgen.shapegen.preprocessors.ImageProcessorV2",
                            "params": {"size": p["processor_size"], "border_ratio": 0.15}},
    }


def factory(part: str, preset: str = "full") -> Callable[[], Any]:
    """A zero-argument constructor of one part via hy3dgen's ``instantiate_from_config``."""
    cfg = pipeline_config(preset)[part]
    return lambda: _libs().instantiate_from_config(cfg)


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(preset: str = "full") -> Dict[str, int]:
    """Parameters of the three networks, built on the ``meta`` device (no memory)."""
    pipeline_config(preset)  # validates the preset
    with torch.device("meta"):
        vae = factory("vae", preset)()
        return {
            "dit": _numel(factory("model", preset)()),
            "shape_vae": _numel(vae),
            "shape_vae_geo_decoder": _numel(vae.geo_decoder),
            "conditioner": _numel(factory("conditioner", preset)()),
        }


# --- the analytic field ----------------------------------------------------------------------


def analytic_field(n: int) -> np.ndarray:
    """``0.6 - sqrt(x^2 + (y/1.3)^2 + z^2)`` on an ``n**3`` grid over ``[-1, 1]^3`` (fp32, ij
    indexing like the decoder's grid): positive inside an ellipsoid, like occupancy logits."""
    a = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    f = (a * a)[:, None, None] + ((a / FIELD_Y_STRETCH) ** 2)[None, :, None]
    f = f + (a * a)[None, None, :]
    np.sqrt(f, out=f)
    np.subtract(np.float32(FIELD_RADIUS), f, out=f)
    return f


def _analytic_extractor_class(base: type) -> type:
    class AnalyticFieldMCSurfaceExtractor(base):
        """hy3dgen's ``MCSurfaceExtractor`` fed an analytic field of the decoded grid's shape.

        The decoded grid is copied to the host as the real ``run`` does (``.cpu().numpy()``);
        marching cubes then runs, through the real ``run``, on the analytic field instead of
        the copied values (random weights make those noise)."""

        def __init__(self) -> None:
            super().__init__()
            self._fields: Dict[Tuple[int, ...], np.ndarray] = {}
            self.decoded: Optional[Dict[str, Any]] = None

        def field(self, shape: Tuple[int, ...]) -> np.ndarray:
            shape = tuple(shape)
            if shape not in self._fields:
                if len(shape) != 3 or len(set(shape)) != 1:
                    raise ValueError(f"hunyuan_shape: expected a cubic grid, got {shape}")
                self._fields = {shape: analytic_field(shape[0])}  # keep one field only
            return self._fields[shape]

        def run(self, grid_logit, *, mc_level, bounds, octree_resolution, **kwargs):
            decoded = grid_logit.cpu().numpy()  # the real device-to-host copy
            self.decoded = {"shape": decoded.shape, "dtype": str(decoded.dtype)}
            field = self.field(decoded.shape).astype(decoded.dtype, copy=False)
            del decoded
            return super().run(torch.from_numpy(field), mc_level=mc_level, bounds=bounds,
                               octree_resolution=octree_resolution, **kwargs)

    return AnalyticFieldMCSurfaceExtractor


# --- parameters ------------------------------------------------------------------------------


def _bad(name: str, want: str, got: Any) -> ValueError:
    return bad_param("hunyuan_shape", name, want, got)


def _int(params: Dict[str, Any], name: str, default: int, lo: int, hi: int, multiple: int = 1) -> int:
    return int_param("hunyuan_shape", params, name, default, lo, hi, multiple)


def parse_params(params: Dict[str, Any]) -> SimpleNamespace:
    """Validated parameters with defaults; raises ValueError naming the offending parameter."""
    reject_unknown("hunyuan_shape", params, PARAMS)
    preset = preset_param("hunyuan_shape", params, COMMON_DEFAULTS["preset"], PRESETS)
    d = PRESETS[preset]["defaults"]
    guidance = params.get("guidance", COMMON_DEFAULTS["guidance"])
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
            or not math.isfinite(guidance):
        raise _bad("guidance", "a finite number (< 0 turns classifier-free guidance off)", guidance)
    offload = params.get("offload", COMMON_DEFAULTS["offload"])
    if offload not in OFFLOADS:
        raise _bad("offload", f"one of {list(OFFLOADS)}", offload)
    flashvdm = params.get("flashvdm", COMMON_DEFAULTS["flashvdm"])
    if not isinstance(flashvdm, bool):
        raise _bad("flashvdm", "true or false", flashvdm)
    return SimpleNamespace(
        preset=preset,
        steps=_int(params, "steps", d["steps"], 1, 1000),
        guidance=float(guidance),
        octree_resolution=_int(params, "octree_resolution", d["octree_resolution"], 2, 1024),
        num_chunks=_int(params, "num_chunks", d["num_chunks"], 1, 1 << 30),
        seed=_int(params, "seed", COMMON_DEFAULTS["seed"], 0, (1 << 63) - 1),
        offload=offload,
        flashvdm=flashvdm,
    )


# --- input -----------------------------------------------------------------------------------


def synthetic_rgba(size: int, seed: int = 0) -> Image.Image:
    """A shaded, slightly noisy ellipse off the image centre on a transparent background."""
    rng = np.random.default_rng(seed)
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    u, v = (x - 0.42) / 0.26, (y - 0.55) / 0.34
    inside = u * u + v * v <= 1.0
    shade = np.clip(1.0 - 0.5 * (u + v + 1.0) / 2.0, 0.0, 1.0)
    rgb = np.stack([0.9 * shade, 0.5 + 0.4 * x, 0.3 + 0.5 * y], axis=-1)
    rgb = np.clip(rgb + 0.05 * rng.standard_normal((size, size, 3)), 0.0, 1.0)
    rgba = np.concatenate([rgb * 255, inside[..., None] * 255.0], axis=-1)
    return Image.fromarray(rgba.astype(np.uint8), "RGBA")


# --- the pipeline ----------------------------------------------------------------------------


class _EndsStage:
    """Calls ``inner`` and then marks a stage boundary (the pipeline's volume decoder)."""

    def __init__(self, inner: Callable, mark: Callable[[], None]) -> None:
        self.inner = inner
        self.mark = mark

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        self.mark()
        return out


class HunyuanShape:
    """``Hunyuan3DDiTFlowMatchingPipeline`` with random weights (see the module doc)."""

    def __init__(self) -> None:
        self.cfg: Optional[SimpleNamespace] = None
        self.pipe = None
        self.image: Optional[Image.Image] = None
        self.extractor = None
        self.last_mesh = None
        self._ctx = None

    # setup ----------------------------------------------------------------------------------

    def setup(self, params: Dict[str, Any], ctx) -> None:
        cfg = self.cfg = parse_params(params)  # before any heavy import, so bad params fail fast
        lib = _libs()
        device, dtype, preset = ctx.device, ctx.dtype, cfg.preset
        config = pipeline_config(preset)

        def build(part: str, seed: int) -> torch.nn.Module:
            return fast_build(factory(part, preset), device, dtype, seed).requires_grad_(False)

        pipe = lib.Pipeline(
            vae=build("vae", 1),
            model=build("model", 2),
            scheduler=lib.instantiate_from_config(config["scheduler"]),
            conditioner=build("conditioner", 3),
            image_processor=lib.instantiate_from_config(config["image_processor"]),
            device=device,
            dtype=dtype,
        )
        self.pipe = pipe
        for name, module in (("conditioner (DINOv2 SingleImageEncoder)", pipe.conditioner),
                             ("dit (Hunyuan3DDiT)", pipe.model),
                             ("vae (ShapeVAE)", pipe.vae),
                             ("vae.geo_decoder (volume decoder)", pipe.vae.geo_decoder)):
            ctx.log(f"hunyuan_shape[{preset}] {name}: {_numel(module):,} parameters")

        self._memory_options(pipe, cfg, ctx)

        # Marching cubes gets an analytic field of the decoded grid's shape (see the module doc).
        self.extractor = pipe.vae.surface_extractor = lib.AnalyticFieldExtractor()
        n = cfg.octree_resolution + 1
        self.extractor.field((n, n, n))  # precomputed here, untimed
        ctx.log(f"hunyuan_shape: marching cubes runs on an analytic ellipsoid field of the decoded "
                f"grid's shape ({n}^3 fp32), not on the random-weight occupancy logits; volume "
                f"decoding and the grid's device-to-host copy are real")
        self._install_hooks(pipe)

        self.image = synthetic_rgba(PRESETS[preset]["processor_size"], cfg.seed)
        ctx.log(f"hunyuan_shape: steps={cfg.steps} guidance={cfg.guidance} "
                f"octree_resolution={cfg.octree_resolution} num_chunks={cfg.num_chunks} "
                f"seed={cfg.seed} query_points={n ** 3}")
        if device.type == "cuda":
            # The random fill's temporaries must not stay reserved into the measured calls.
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()

    def _memory_options(self, pipe, cfg: SimpleNamespace, ctx) -> None:
        """The package's own memory switches, applied if asked for; failures are recorded."""
        device, dtype = ctx.device, ctx.dtype
        if cfg.offload == "model":
            try:
                pipe.enable_model_cpu_offload(device=device)
                ctx.log("hunyuan_shape: model CPU offload enabled")
            except Exception as e:  # noqa: BLE001 - the package's failure is the finding
                # It moves every model to the CPU before it fails: put them back.
                pipe.to(device, dtype)
                ctx.not_applicable(
                    "offload", "Hunyuan3DDiTFlowMatchingPipeline.enable_model_cpu_offload raised "
                    f"{type(e).__name__}: {e} (the class defines no `components`); ran without offload")
        elif cfg.offload == "sequential":
            if hasattr(pipe, "enable_sequential_cpu_offload"):
                pipe.enable_sequential_cpu_offload(device=device)
                ctx.log("hunyuan_shape: sequential CPU offload enabled")
            else:
                ctx.not_applicable("offload", "Hunyuan3DDiTFlowMatchingPipeline has no "
                                   "enable_sequential_cpu_offload; ran without offload")
        if cfg.flashvdm:
            try:
                pipe.enable_flashvdm()
                ctx.log("hunyuan_shape: FlashVDM enabled")
            except Exception as e:  # noqa: BLE001
                ctx.not_applicable(
                    "flashvdm", f"Hunyuan3DDiTFlowMatchingPipeline.enable_flashvdm raised "
                    f"{type(e).__name__}: {e} (it needs from_pretrained's model path to swap in "
                    "the turbo VAE); ran the vanilla volume decoder")

    def _mark(self, stage: str) -> None:
        """A stage boundary: the time since the previous one is ``stage``'s."""
        if self._ctx is not None:
            self._ctx.mark(stage)

    def _count(self, name: str, n: int = 1) -> None:
        if self._ctx is not None:
            self._ctx.count(name, n)

    def _install_hooks(self, pipe) -> None:
        encode_cond, export = pipe.encode_cond, pipe._export

        def staged_encode_cond(*args, **kwargs):
            out = encode_cond(*args, **kwargs)
            self._mark("conditioning")  # prepare_image + conditioner + unconditional embedding
            return out

        def staged_export(*args, **kwargs):
            self._mark("dit")  # __call__ calls _export right after the last scheduler step
            out = export(*args, **kwargs)
            self._mark("surface_extraction")  # marching cubes + export_to_trimesh
            return out

        pipe.encode_cond = staged_encode_cond
        pipe._export = staged_export
        pipe.model.register_forward_hook(lambda m, a, o: self._count("dit_evals"))
        pipe.vae.register_forward_hook(lambda m, a, o: self._mark("vae_decode"))

        def count_queries(_module, args, kwargs):
            queries = kwargs["queries"] if "queries" in kwargs else args[0]
            self._count("query_points", queries.shape[:-1].numel())
            self._count("volume_decoder_chunks")

        pipe.vae.geo_decoder.register_forward_pre_hook(count_queries, with_kwargs=True)
        pipe.vae.volume_decoder = _EndsStage(pipe.vae.volume_decoder,
                                             lambda: self._mark("volume_decode"))

    # call -----------------------------------------------------------------------------------

    def call(self, ctx) -> None:
        cfg = self.cfg
        self._ctx = ctx
        try:
            meshes = self.pipe(
                image=self.image,
                num_inference_steps=cfg.steps,
                guidance_scale=cfg.guidance,
                # The gradio app passes a CPU generator: noise is drawn on the host, then moved.
                generator=torch.Generator().manual_seed(cfg.seed),
                octree_resolution=cfg.octree_resolution,
                num_chunks=cfg.num_chunks,
                enable_pbar=False,
            )
        finally:
            self._ctx = None
        if not meshes or any(m is None for m in meshes):
            # SurfaceExtractor.__call__ catches the error, prints its traceback to stderr and
            # returns None for that mesh.
            raise RuntimeError("hunyuan_shape: surface extraction failed (traceback on stderr)")
        self.last_mesh = meshes[0]
        ctx.count("mesh_faces", sum(len(m.faces) for m in meshes))
