"""Hunyuan3D-2's texture diffusion stages (``hy3dgen`` 2.0.2), real code with random weights.

What runs, unchanged, per measured call:

* ``delight``: diffusers' ``StableDiffusionInstructPix2PixPipeline`` (SD-2.x UNet with 8 input
  channels, CLIP-H text encoder, SD VAE, ``EulerAncestralDiscreteScheduler``), called as
  ``hy3dgen.texgen.utils.dehighlight_utils.Light_Shadow_Remover.__call__`` calls it (prompt
  ``""``, ``image_guidance_scale=1.5``, ``guidance_scale=1.0`` so no classifier-free guidance,
  a CPU generator seeded 42), followed by that wrapper's torch colour correction and compositing.
* ``multiview``: hy3dgen's ``HunyuanPaintPipeline`` with ``UNet2p5DConditionModel`` (12-channel
  ``conv_in``, learned prompt embeddings, camera embedding, multiview and reference attention in
  every transformer block, and ``unet_dual``, the reference UNet re-run at every step), called as
  ``hy3dgen.texgen.utils.multiview_utils.Multiview_Diffusion_Net.__call__`` calls it (the
  pipeline's guidance 2.0, camera indices from the fixed view list, a device generator seeded 0).

Step counts come from the parameters; the real wrappers hard-code 50 (delight) and 30
(multiview). Both pipelines, each with its own text encoder and VAE, are resident on the device
whatever ``stages`` runs, as in ``Hunyuan3DPaintPipeline``. The multiview pipeline holds a
tokenizer and text encoder that it never calls (its prompt embeddings are learned parameters).

Substitutions:

* Weights are random (``claimbench.build.fast_build``). The UNet, text-encoder and VAE
  geometries are SD-2.x's; the released checkpoints' configs are assumed to match.
* The normal and position maps the multiview stage is conditioned on are random tensors in
  [0, 1] of the real shape: the real renders need hy3dgen's compiled CUDA rasteriser, whose cost
  (and that of UV unwrapping, baking and inpainting) is not measured here. They are handed to the
  pipeline as tensors, so its PIL-to-tensor conversion (numpy, CPU) is replaced by a host-to-device
  copy of the same tensors in the run's dtype.
* The delight input is a synthetic RGB image (the real app passes the recentred user image).
  With ``stages="both"`` the multiview stage receives the delight output, as in the real app.
* The CLIP tokenizer is a ``tokenizers`` WordLevel stand-in (``<|startoftext|>`` 49406,
  ``<|endoftext|>`` 49407, pad ``!`` 0, 77 tokens): for the empty prompt it yields the same ids
  as the real one, so the text encoder does the same 77-token pass. Nothing is downloaded.
* Import: ``hy3dgen/texgen/__init__.py`` imports the whole texture app (opencv, trimesh, xatlas),
  none of which the diffusion stages use. The adapter imports ``hy3dgen.texgen.hunyuanpaint``
  under a bare placeholder for the ``hy3dgen.texgen`` package (its ``__init__`` not run) and
  removes the placeholder afterwards; nothing is stubbed. Needs ``hy3dgen==2.0.2`` (installed with
  ``--no-deps``) and ``einops``.

Parameters (all optional): ``preset`` ("full" or "tiny"), ``stages`` ("both", "delight",
"multiview"), ``views`` (1-6: the first N of the fixed views, azimuths 0/90/180/270 at the horizon, then
top and bottom; 6 is the real app, notes call 4 "fast" and 3 "minimal"; 1 view skips the
multiview attention, as the real block does), ``render_size`` (side of the multiview images and
their normal/position maps: the real wrapper's 512 view size, not the rasteriser's resolution),
``delight_size`` (512), ``delight_steps`` (50), ``multiview_steps`` (30), ``guidance`` (the
multiview pipeline's 2.0). The tiny preset keeps what ``UNet2p5DConditionModel`` hard-codes
(320 base channels, so a 1280 time embedding; 1024-wide cross attention) with 2 UNet levels and
1 layer each, a 1-layer text encoder and a narrow VAE; its default sizes are 64 px and 2 steps.

Counters per call: ``unet_evals`` (delight UNet and the multiview main UNet, one per denoising
step: CFG is batched), ``ref_unet_evals`` (``unet_dual``), ``text_encoder_evals``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional

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

# The fixed view set of Hunyuan3DTexGenConfig (2.0); fewer views take the first ones.
CAMERA_AZIMS = (0, 90, 180, 270, 0, 180)
CAMERA_ELEVS = (0, 0, 0, 0, 90, -90)

# Light_Shadow_Remover's guidance: text CFG off (1.0), so one UNet batch per step.
DELIGHT_IMAGE_GUIDANCE = 1.5
DELIGHT_TEXT_GUIDANCE = 1.0
DELIGHT_SEED = 42
MULTIVIEW_SEED = 0

STAGES = ("both", "delight", "multiview")

PRESETS: Dict[str, Dict[str, Any]] = {
    "full": {
        "unet": dict(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            attention_head_dim=(5, 10, 20, 20),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        ),
        "clip_layers": 23,
        "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2),
        "defaults": dict(render_size=512, delight_size=512, delight_steps=50, multiview_steps=30),
    },
    "tiny": {
        # 320 base channels and 1024-wide cross attention are hard-coded by UNet2p5DConditionModel.
        "unet": dict(
            block_out_channels=(320, 640),
            layers_per_block=1,
            attention_head_dim=(5, 10),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        ),
        "clip_layers": 1,
        # Four levels keep the VAE's 8x downsampling, so latent sizes follow the full model's.
        "vae": dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1),
        "defaults": dict(render_size=64, delight_size=64, delight_steps=2, multiview_steps=2),
    },
}

COMMON_DEFAULTS = dict(preset="full", stages="both", views=6, guidance=2.0)
PARAMS = ("preset", "stages", "views", "render_size", "delight_size", "delight_steps",
          "multiview_steps", "guidance")


# --- imports ---------------------------------------------------------------------------------

_LIBS: Optional[SimpleNamespace] = None


def _import_hunyuanpaint():
    """``hy3dgen.texgen.hunyuanpaint.pipeline`` without running ``hy3dgen/texgen/__init__.py``
    (which pulls in opencv, trimesh and xatlas for the rest of the texture app)."""
    try:
        import hy3dgen  # noqa: F401 - its __init__ is a licence header only
    except ImportError as e:
        raise ImportError("hunyuan_paint needs hy3dgen: pip install --no-deps hy3dgen==2.0.2") from e
    return import_without_package_init(
        "hy3dgen.texgen", lambda: importlib.import_module("hy3dgen.texgen.hunyuanpaint.pipeline"))


def _libs() -> SimpleNamespace:
    global _LIBS
    if _LIBS is None:
        from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler,
                               StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel)
        from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

        paint = _import_hunyuanpaint()
        _LIBS = SimpleNamespace(
            AutoencoderKL=AutoencoderKL,
            EulerAncestralDiscreteScheduler=EulerAncestralDiscreteScheduler,
            StableDiffusionInstructPix2PixPipeline=StableDiffusionInstructPix2PixPipeline,
            UNet2DConditionModel=UNet2DConditionModel,
            CLIPTextConfig=CLIPTextConfig,
            CLIPTextModel=CLIPTextModel,
            PreTrainedTokenizerFast=PreTrainedTokenizerFast,
            HunyuanPaintPipeline=paint.HunyuanPaintPipeline,
            UNet2p5DConditionModel=paint.UNet2p5DConditionModel,
        )
    return _LIBS


# --- model factories -------------------------------------------------------------------------


def sd2_unet(in_channels: int, preset: str = "full"):
    """SD-2.x ``UNet2DConditionModel`` (full: 865.9 M parameters with 4 input channels)."""
    cfg = PRESETS[preset]["unet"]
    return _libs().UNet2DConditionModel(
        sample_size=64,
        in_channels=in_channels,
        out_channels=4,
        cross_attention_dim=1024,
        use_linear_projection=True,
        upcast_attention=True,
        **cfg,
    )


def multiview_unet(preset: str = "full"):
    """hy3dgen's ``UNet2p5DConditionModel`` around a 4-channel SD-2.x UNet (it deep-copies the
    UNet into ``unet_dual`` before widening ``conv_in`` to 12 channels)."""
    return _libs().UNet2p5DConditionModel(sd2_unet(4, preset))


def clip_h_text_encoder(preset: str = "full"):
    """OpenCLIP-H text tower as transformers' ``CLIPTextModel`` (SD-2.x's text encoder)."""
    lib = _libs()
    return lib.CLIPTextModel(lib.CLIPTextConfig(
        vocab_size=49408,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=PRESETS[preset]["clip_layers"],
        num_attention_heads=16,
        max_position_embeddings=77,
        hidden_act="gelu",
    ))


def sd_vae(preset: str = "full"):
    """SD ``AutoencoderKL`` (full: 34.2 M encoder + 49.5 M decoder, 4 latent channels)."""
    cfg = PRESETS[preset]["vae"]
    return _libs().AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(cfg["block_out_channels"]),
        up_block_types=("UpDecoderBlock2D",) * len(cfg["block_out_channels"]),
        latent_channels=4,
        sample_size=768,
        scaling_factor=0.18215,
        **cfg,
    )


def clip_tokenizer():
    """CLIP tokenizer stand-in: WordLevel over the specials only; for the prompts the pipelines
    use ("") it returns the real ids, padded with ``!`` (0) to 77."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    tok = Tokenizer(models.WordLevel(vocab={"!": 0, bos: 49406, eos: 49407}, unk_token=eos))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, 49406), (eos, 49407)])
    return _libs().PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=eos, pad_token="!",
        model_max_length=77)


def _scheduler(**overrides):
    # SD's training schedule; the checkpoints' scheduler configs only change values, not cost.
    return _libs().EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
        beta_schedule="scaled_linear", steps_offset=1, **overrides)


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Silences one logger: diffusers warns on every ``ModelMixin.to(dtype)`` that an empty list
    of modules should stay fp32, which ``fast_build``'s cast triggers for nothing."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(preset: str = "full") -> Dict[str, int]:
    """Parameters of each component, built on the ``meta`` device (no memory)."""
    if preset not in PRESETS:
        raise ValueError(f"hunyuan_paint: parameter `preset` must be one of {sorted(PRESETS)}, got {preset!r}")
    with torch.device("meta"):
        mv = multiview_unet(preset)
        return {
            "delight_unet": _numel(sd2_unet(8, preset)),
            "multiview_unet": _numel(mv.unet),
            "multiview_unet_dual": _numel(mv.unet_dual),
            "text_encoder": _numel(clip_h_text_encoder(preset)),
            "vae": _numel(sd_vae(preset)),
        }


def camera_indices(views: int) -> List[int]:
    """Camera-embedding indices of the first ``views`` views, as Hunyuan3DPaintPipeline computes
    them (azimuth bucket of 30 deg, per-elevation offset)."""
    div = {-20: 1, 0: 1, 20: 1, -90: 3, 90: 3}
    off = {-20: 0, 0: 12, 20: 24, -90: 36, 90: 40}
    return [(((a // 30) + 9) % 12) // div[e] + off[e]
            for a, e in zip(CAMERA_AZIMS[:views], CAMERA_ELEVS[:views])]


# --- parameters ------------------------------------------------------------------------------


def _bad(name: str, want: str, got: Any) -> ValueError:
    return bad_param("hunyuan_paint", name, want, got)


def _int(params: Dict[str, Any], name: str, default: int, lo: int, hi: int, multiple: int = 1) -> int:
    return int_param("hunyuan_paint", params, name, default, lo, hi, multiple)


def parse_params(params: Dict[str, Any]) -> SimpleNamespace:
    """Validated parameters with defaults; raises ValueError naming the offending parameter."""
    reject_unknown("hunyuan_paint", params, PARAMS)
    preset = preset_param("hunyuan_paint", params, COMMON_DEFAULTS["preset"], PRESETS)
    stages = params.get("stages", COMMON_DEFAULTS["stages"])
    if stages not in STAGES:
        raise _bad("stages", f"one of {list(STAGES)}", stages)
    d = PRESETS[preset]["defaults"]
    guidance = params.get("guidance", COMMON_DEFAULTS["guidance"])
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
            or not math.isfinite(guidance) or guidance < 0:
        raise _bad("guidance", "a finite number >= 0", guidance)
    return SimpleNamespace(
        preset=preset,
        stages=stages,
        views=_int(params, "views", COMMON_DEFAULTS["views"], 1, len(CAMERA_AZIMS)),
        # Multiples of 8: the VAE's downsampling; the pipelines size latents as size // 8.
        render_size=_int(params, "render_size", d["render_size"], 64, 4096, 8),
        delight_size=_int(params, "delight_size", d["delight_size"], 64, 4096, 8),
        delight_steps=_int(params, "delight_steps", d["delight_steps"], 1, 1000),
        multiview_steps=_int(params, "multiview_steps", d["multiview_steps"], 1, 1000),
        guidance=float(guidance),
    )


# --- the pipeline ----------------------------------------------------------------------------


def _colour_match(src: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor,
                  scale: float = 0.95) -> torch.Tensor:
    """The delight wrapper's post-correction: per-channel mean/std transfer of the output onto
    the input over opaque pixels, kept only if it lowers the error; returns RGBA."""
    mask = (alpha > 0.5).reshape(-1)
    s = src.reshape(-1, src.shape[-1])[mask]
    t = target.reshape(-1, target.shape[-1])[mask]
    corrected = torch.zeros_like(src)
    for i in range(3):
        corrected[:, :, i] = torch.clamp(
            (src[:, :, i] - scale * s[:, i].mean()) * (t[:, i].std() / s[:, i].std())
            + scale * t[:, i].mean(), 0, 1)
    if torch.mean((src - target) ** 2) < torch.mean((corrected - target) ** 2):
        corrected = src
    return torch.cat([corrected, alpha], dim=-1)


def _synthetic_rgb(size: int, seed: int = 0) -> Image.Image:
    """A smooth colour field with noise: non-constant channels, so the colour match is defined."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / max(1, size - 1)
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6.0 * (x + y))], axis=-1)
    rgb = np.clip(rgb * 0.8 + 0.2 * rng.random((size, size, 3)), 0.0, 1.0)
    return Image.fromarray((rgb * 255).astype(np.uint8), "RGB")


class HunyuanPaint:
    """Delight and multiview stages of Hunyuan3D-2's texture pipeline (see the module doc)."""

    def __init__(self) -> None:
        self.cfg: Optional[SimpleNamespace] = None
        self.delight_pipe = None
        self.multiview_pipe = None
        self.last_delight: Optional[Image.Image] = None
        self.last_views: Optional[List[Image.Image]] = None
        self._ctx = None

    # setup ----------------------------------------------------------------------------------

    def setup(self, params: Dict[str, Any], ctx) -> None:
        cfg = self.cfg = parse_params(params)  # before any heavy import, so bad params fail fast
        lib = _libs()
        device, dtype, preset = ctx.device, ctx.dtype, cfg.preset

        def build(factory: Callable[[], torch.nn.Module], seed: int) -> torch.nn.Module:
            with _quiet("diffusers.models.modeling_utils"):
                return fast_build(factory, device, dtype, seed).requires_grad_(False)

        # Both pipelines resident, each with its own text encoder and VAE, as the real app loads them.
        self.delight_pipe = lib.StableDiffusionInstructPix2PixPipeline(
            vae=build(lambda: sd_vae(preset), 1),
            text_encoder=build(lambda: clip_h_text_encoder(preset), 2),
            tokenizer=clip_tokenizer(),
            unet=build(lambda: sd2_unet(8, preset), 3),
            scheduler=_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        self.multiview_pipe = lib.HunyuanPaintPipeline(
            vae=build(lambda: sd_vae(preset), 4),
            text_encoder=build(lambda: clip_h_text_encoder(preset), 5),
            tokenizer=clip_tokenizer(),
            unet=build(lambda: multiview_unet(preset), 6),
            scheduler=_scheduler(timestep_spacing="trailing"),
            feature_extractor=None,
            safety_checker=None,
        )
        for pipe in (self.delight_pipe, self.multiview_pipe):
            pipe.set_progress_bar_config(disable=True)

        mv_unet = self.multiview_pipe.unet
        self._hook(self.delight_pipe.unet, "unet_evals")
        self._hook(mv_unet.unet, "unet_evals")
        self._hook(mv_unet.unet_dual, "ref_unet_evals")
        self._hook(self.delight_pipe.text_encoder, "text_encoder_evals")
        self._hook(self.multiview_pipe.text_encoder, "text_encoder_evals")

        for name, module in (
            ("delight unet (8 in-ch)", self.delight_pipe.unet),
            ("delight text_encoder (CLIP-H)", self.delight_pipe.text_encoder),
            ("delight vae", self.delight_pipe.vae),
            ("multiview unet (2.5D, main)", mv_unet.unet),
            ("multiview unet_dual (reference)", mv_unet.unet_dual),
            ("multiview text_encoder (CLIP-H, unused)", self.multiview_pipe.text_encoder),
            ("multiview vae", self.multiview_pipe.vae),
        ):
            ctx.log(f"hunyuan_paint[{preset}] {name}: {_numel(module):,} parameters")

        # Inputs (untimed): the delight image, and the multiview conditioning maps on the host,
        # moved to the device per call as the real pipeline's conversion does.
        self.image = _synthetic_rgb(cfg.delight_size)
        g = torch.Generator("cpu").manual_seed(0)
        shape = (1, cfg.views, 3, cfg.render_size, cfg.render_size)
        self.normal_maps = torch.rand(shape, generator=g)
        self.position_maps = torch.rand(shape, generator=g)
        self.camera_info = camera_indices(cfg.views)
        ctx.log(f"hunyuan_paint: stages={cfg.stages} views={cfg.views} cameras={self.camera_info} "
                f"render_size={cfg.render_size} delight_size={cfg.delight_size} "
                f"steps={cfg.delight_steps}/{cfg.multiview_steps} guidance={cfg.guidance}")

    def _hook(self, module: torch.nn.Module, counter: str) -> None:
        def count(_module, _args, _output):
            if self._ctx is not None:
                self._ctx.count(counter, 1)
        module.register_forward_hook(count)

    # call -----------------------------------------------------------------------------------

    def call(self, ctx) -> None:
        cfg = self.cfg
        self._ctx = ctx
        try:
            with torch.no_grad():
                image = self.image
                if cfg.stages in ("both", "delight"):
                    with ctx.stage("delight"):
                        image = self.last_delight = self._delight(image, ctx.device)
                if cfg.stages in ("both", "multiview"):
                    with ctx.stage("multiview"):
                        self.last_views = self._multiview(image, ctx.device, ctx.dtype)
        finally:
            self._ctx = None

    def _delight(self, image: Image.Image, device: torch.device) -> Image.Image:
        """Light_Shadow_Remover.__call__ for an RGB input, with the step count from params."""
        size = self.cfg.delight_size
        image = image.resize((size, size))
        image_tensor = torch.tensor(np.array(image) / 255.0).to(device)
        alpha = torch.ones_like(image_tensor)[:, :, :1]
        rgb_target = image_tensor[:, :, :3]
        image = image.convert("RGB")
        out = self.delight_pipe(
            prompt="",
            image=image,
            # The wrapper passes torch.manual_seed(42), i.e. a CPU generator.
            generator=torch.Generator("cpu").manual_seed(DELIGHT_SEED),
            height=size,
            width=size,
            num_inference_steps=self.cfg.delight_steps,
            image_guidance_scale=DELIGHT_IMAGE_GUIDANCE,
            guidance_scale=DELIGHT_TEXT_GUIDANCE,
        ).images[0]
        rgb_src = torch.tensor(np.array(out) / 255.0).to(device)[:, :, :3]
        rgba = _colour_match(rgb_src, rgb_target, alpha)
        rgb = rgba[:, :, :3] * rgba[:, :, 3:] + torch.ones_like(rgba[:, :, :3]) * (1.0 - rgba[:, :, 3:])
        return Image.fromarray((rgb.cpu().numpy() * 255).astype(np.uint8))

    def _multiview(self, image: Image.Image, device: torch.device, dtype: torch.dtype) -> List[Image.Image]:
        """Multiview_Diffusion_Net.__call__ with tensors for the rendered maps (its global
        reseeding of random/numpy/torch is left out: it changes values, not work)."""
        cfg = self.cfg
        size = cfg.render_size
        image = image.resize((size, size))
        return self.multiview_pipe(
            image,
            num_inference_steps=cfg.multiview_steps,
            guidance_scale=cfg.guidance,
            generator=torch.Generator(device=device).manual_seed(MULTIVIEW_SEED),
            width=size,
            height=size,
            num_in_batch=cfg.views,
            camera_info_gen=[list(self.camera_info)],
            camera_info_ref=[[0]],
            normal_imgs=self.normal_maps.to(device=device, dtype=dtype),
            position_imgs=self.position_maps.to(device=device, dtype=dtype),
        ).images
