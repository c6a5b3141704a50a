"""Stable Diffusion 2.1's UNet and VAE decode through the real diffusers classes (diffusers 0.42.1),
with random weights, doing per call exactly what the built-in replica workloads ``unet``
(``harness/workloads/unet.rs``) and ``vae_decode`` (``harness/workloads/vae_decode.rs``) do, so
that a real-code suite naming the replica suite (``[suite] replica``) measures the same work and
the report's "Replica vs real code" table shows how far the replicas drift.

Models (``fast_build``: built on ``meta``, ``to_empty`` on the device, initialised in place):

* :class:`Sd21Unet`: ``UNet2DConditionModel`` with the ``stabilityai/stable-diffusion-2-1``
  ``unet/config.json`` keys that shape the network (:data:`SD21_UNET_CONFIG`; the same values as
  ``UNetConfig::sd21()`` and ``tests/reference/unet_diffusers.py``), 865,910,724 parameters.
  ``upcast_attention`` is **true** there (the 768-v model's config; 2.1-base's is not known to
  differ in geometry), so the explicit attention paths compute scores and softmax in fp32; the
  fused SDPA path ignores the flag, as diffusers' ``AttnProcessor2_0`` does.
* :class:`Sd21VaeDecode`: ``AutoencoderKL`` with the SD 2.1 VAE config (:data:`SD_VAE_CONFIG`,
  ``sample_size`` 768, scaling 0.18215): decoder 49,490,199 and encoder 34,163,664 parameters, both
  resident as in a pipeline (the replica holds both too).

``preset = "tiny"`` builds the same classes at the replica's ``tiny`` widths (``UNetConfig::tiny``,
``VaeConfig::tiny``) so a call runs on a CPU in well under a second.

Per call, as the replica:

* UNet: latents ``[batch, 4, res/8, res/8]`` (plus fixed conditioning latents concatenated when
  ``in_channels > 4``), text context ``[batch, 77, 1024]`` (``batch = 2`` is one image with
  classifier-free guidance: both halves in one forward, no guidance arithmetic, as in the
  replica), ``steps`` forwards with int64 timesteps ``999 - s * 1000 // steps``, each followed by
  the stand-in scheduler step ``x <- x - eps / steps``. Stage ``unet`` (one per forward, summed),
  counter ``unet_evals``.
* VAE: latents ``[batch, 4, res/8, res/8]`` made at set-up; each call unscales them
  (``z / scaling_factor + shift_factor``, shift 0 for SD) and runs ``vae.decode``; the image is
  dropped. Stage ``vae_decode``, counter ``vae_decoder_calls`` (forwards of ``vae.decoder``,
  counted by a hook: tiles x slices, the number the replica computes).

Parameters use the replica's names and defaults. UNet: ``preset`` (sd21 | tiny), ``in_channels``
(4), ``resolution`` (512), ``batch`` (2), ``steps`` (1), ``attention`` (``sdpa`` -> every
attention module gets ``AttnProcessor2_0``, fused ``scaled_dot_product_attention``; ``math`` ->
``AttnProcessor``, the explicit ``baddbmm`` -> softmax -> ``bmm`` path; ``sliced:auto`` /
``sliced:max`` / ``sliced:N`` -> ``unet.set_attention_slice``, ``SlicedAttnProcessor``), ``seed``
(0). VAE: ``preset`` (sd | tiny), ``resolution`` (512), ``batch`` (1), ``slicing``
(``vae.enable_slicing()``), ``tiling`` (``vae.enable_tiling()``), ``tile_size`` (0 = the config's
``sample_size``; otherwise the tile in pixels, set as diffusers' ``tile_sample_min_size`` /
``tile_latent_min_size``), ``seed`` (0). The VAE's mid-block attention stays on diffusers'
default ``AttnProcessor2_0``, as the replica's stays on SDPA.

Where a knob changes nothing in diffusers the adapter says so through ``ctx.not_applicable``:
slicing with a batch of 1, and tiling when the latents fit in one tile (at 768 px the SD 2.1 VAE's
768-px tile covers the whole image, so ``tiling`` alone decodes in one piece, in diffusers and
in the replica alike).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Dict, Iterator, Optional, Union

# Nothing here downloads; a hub call by accident must fail rather than hang.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from claimbench.adapters.common import bad_param, int_param, preset_param, reject_unknown  # noqa: E402
from claimbench.build import fast_build  # noqa: E402

TEXT_TOKENS = 77  # CLIP / OpenCLIP context length (the replica's TEXT_TOKENS)
LATENT_CHANNELS = 4

SD21_UNET_PARAMETERS = 865_910_724
SD_VAE_DECODER_PARAMETERS = 49_490_199  # decoder + post_quant_conv
SD_VAE_ENCODER_PARAMETERS = 34_163_664  # encoder + quant_conv

# stabilityai/stable-diffusion-2-1 unet/config.json: the keys that shape the network.
SD21_UNET_CONFIG: Dict[str, Any] = dict(
    sample_size=96,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),  # diffusers reads these as head counts (head_dim 64)
    use_linear_projection=True,
    upcast_attention=True,
    dual_cross_attention=False,
    class_embed_type=None,
    num_class_embeds=None,
)

# UNetConfig::tiny(): two levels (one with cross-attention, one without), heads (2, 4).
TINY_UNET_CONFIG: Dict[str, Any] = dict(
    SD21_UNET_CONFIG,
    sample_size=8,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64),
    attention_head_dim=(2, 4),
    cross_attention_dim=32,
)

UNET_PRESETS: Dict[str, Dict[str, Any]] = {"sd21": SD21_UNET_CONFIG, "tiny": TINY_UNET_CONFIG}

# stabilityai/stable-diffusion-2-1 vae/config.json.
SD_VAE_CONFIG: Dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=768,
    scaling_factor=0.18215,
)

# VaeConfig::tiny(): four levels (x8, as the real VAE), one resnet per level, 64-px tiles.
TINY_VAE_CONFIG: Dict[str, Any] = dict(
    SD_VAE_CONFIG,
    block_out_channels=(32, 32, 64, 64),
    layers_per_block=1,
    sample_size=64,
)

VAE_PRESETS: Dict[str, Dict[str, Any]] = {"sd": SD_VAE_CONFIG, "tiny": TINY_VAE_CONFIG}

UNET_DEFAULTS: Dict[str, Any] = dict(preset="sd21", in_channels=4, resolution=512, batch=2, steps=1,
                                     attention="sdpa", seed=0)
VAE_DEFAULTS: Dict[str, Any] = dict(preset="sd", resolution=512, batch=1, slicing=False, tiling=False,
                                    tile_size=0, seed=0)

# An attention setting: "sdpa", "math", or a slice size for set_attention_slice.
Attention = Union[str, int]


# --------------------------------------------------------------------------------------------
# Models


def unet_factory(preset: str = "sd21", in_channels: int = 4) -> Callable[[], nn.Module]:
    from diffusers import UNet2DConditionModel

    config = dict(UNET_PRESETS[preset], in_channels=in_channels)
    return lambda: UNet2DConditionModel(**config)


def vae_factory(preset: str = "sd") -> Callable[[], nn.Module]:
    from diffusers import AutoencoderKL

    config = dict(VAE_PRESETS[preset])
    return lambda: AutoencoderKL(**config)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_unet(preset: str = "sd21", in_channels: int = 4) -> nn.Module:
    """The UNet on the ``meta`` device: shapes and parameter counts, no memory."""
    with _quiet_diffusers(), torch.device("meta"):
        return unet_factory(preset, in_channels)()


def meta_vae(preset: str = "sd") -> nn.Module:
    """The VAE on the ``meta`` device."""
    with _quiet_diffusers(), torch.device("meta"):
        return vae_factory(preset)()


def attention_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """Every diffusers ``Attention`` module of ``model``, by name."""
    from diffusers.models.attention_processor import Attention

    return {name: m for name, m in model.named_modules() if isinstance(m, Attention)}


def set_attention(unet: nn.Module, attention: Attention) -> None:
    """Applies the attention setting to every attention module of ``unet`` (``attn1`` and
    ``attn2`` of every transformer block, mid block included)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if attention == "sdpa":
        unet.set_attn_processor(AttnProcessor2_0())
    elif attention == "math":
        unet.set_attn_processor(AttnProcessor())
    else:
        unet.set_attention_slice(attention)


# --------------------------------------------------------------------------------------------
# Parameters


def parse_attention(adapter: str, value: Any) -> Attention:
    """``sdpa`` | ``math`` | ``sliced`` / ``sliced:auto`` -> "auto" | ``sliced:max`` / ``sliced:1``
    -> "max" | ``sliced:N`` -> N, as the replica's ``AttentionImpl::parse`` reads them."""
    if isinstance(value, str):
        if value in ("sdpa", "math"):
            return value
        if value in ("sliced", "sliced:auto"):
            return "auto"
        if value in ("sliced:max", "sliced:1"):
            return "max"
        arg = value[len("sliced:"):] if value.startswith("sliced:") else ""
        if arg.isdigit() and int(arg) >= 1:
            return int(arg)
    raise bad_param(adapter, "attention", "sdpa, math, sliced:auto, sliced:max or sliced:N (N >= 1)", value)


def bool_param(adapter: str, params: Dict[str, Any], name: str, default: bool) -> bool:
    v = params.get(name, default)
    if not isinstance(v, bool):
        raise bad_param(adapter, name, "true or false", v)
    return v


def parse_unet_params(params: Dict[str, Any]) -> Dict[str, Any]:
    a = "sd21 UNet"
    reject_unknown(a, params, UNET_DEFAULTS)
    d = UNET_DEFAULTS
    return {
        "preset": preset_param(a, params, d["preset"], UNET_PRESETS),
        "in_channels": int_param(a, params, "in_channels", d["in_channels"], 4, 64),
        "resolution": int_param(a, params, "resolution", d["resolution"], 8, 8192, multiple=8),
        "batch": int_param(a, params, "batch", d["batch"], 1, 4096),
        "steps": int_param(a, params, "steps", d["steps"], 1, 10_000),
        "attention": parse_attention(a, params.get("attention", d["attention"])),
        "seed": int_param(a, params, "seed", d["seed"], 0, 2**63 - 1),
    }


def parse_vae_params(params: Dict[str, Any]) -> Dict[str, Any]:
    a = "sd21 VAE decode"
    reject_unknown(a, params, VAE_DEFAULTS)
    d = VAE_DEFAULTS
    out = {
        "preset": preset_param(a, params, d["preset"], VAE_PRESETS),
        "batch": int_param(a, params, "batch", d["batch"], 1, 4096),
        "slicing": bool_param(a, params, "slicing", d["slicing"]),
        "tiling": bool_param(a, params, "tiling", d["tiling"]),
        "tile_size": int_param(a, params, "tile_size", d["tile_size"], 0, 16384),
        "seed": int_param(a, params, "seed", d["seed"], 0, 2**63 - 1),
    }
    scale = 2 ** (len(VAE_PRESETS[out["preset"]]["block_out_channels"]) - 1)
    out["resolution"] = int_param(a, params, "resolution", d["resolution"], scale, 16384, multiple=scale)
    return out


# --------------------------------------------------------------------------------------------
# The workloads


def _free_setup_memory(device: torch.device) -> None:
    """The random fill's temporaries must not stay reserved into the measured calls."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


class Sd21Unet:
    """The replica ``unet`` workload (plain SD 2.1, no multiview or reference attention) on
    diffusers' ``UNet2DConditionModel``; see the module docstring."""

    def __init__(self) -> None:
        self.p: Dict[str, Any] = {}
        self.unet: Optional[nn.Module] = None
        self.noise: Optional[torch.Tensor] = None
        self.conditioning: Optional[torch.Tensor] = None
        self.context: Optional[torch.Tensor] = None
        self.timesteps: Optional[torch.Tensor] = None
        self.latents: Optional[torch.Tensor] = None

    def setup(self, params: Dict[str, Any], ctx) -> None:
        p = parse_unet_params(params)
        self.p = p
        device, dtype = ctx.device, ctx.dtype
        with _quiet_diffusers():
            unet = fast_build(unet_factory(p["preset"], p["in_channels"]), device, dtype, p["seed"])
        set_attention(unet, p["attention"])
        self.unet = unet
        processors = sorted({type(m.processor).__name__ for m in attention_modules(unet).values()})
        ctx.log(f"sd21 unet {p['preset']}: {parameter_count(unet):,} parameters, "
                f"upcast_attention={unet.config.upcast_attention}, processors {', '.join(processors)}")

        batch, latent = p["batch"], p["resolution"] // 8
        g = torch.Generator(device=device).manual_seed(p["seed"])

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=g, device=device, dtype=dtype)

        self.noise = randn(batch, LATENT_CHANNELS, latent, latent)
        extra = p["in_channels"] - LATENT_CHANNELS
        self.conditioning = randn(batch, extra, latent, latent) if extra > 0 else None
        self.context = randn(batch, TEXT_TOKENS, unet.config.cross_attention_dim)
        steps = p["steps"]
        self.timesteps = torch.tensor([999 - s * 1000 // steps for s in range(steps)],
                                      dtype=torch.int64, device=device)
        _free_setup_memory(device)

    def call(self, ctx) -> None:
        steps = self.p["steps"]
        latents = self.noise
        for step in range(steps):
            t = self.timesteps[step:step + 1]
            with ctx.stage("unet"):
                sample = latents if self.conditioning is None else torch.cat([latents, self.conditioning], 1)
                eps = self.unet(sample, t, encoder_hidden_states=self.context, return_dict=False)[0]
                latents = latents - eps / steps
                del eps, sample
            ctx.count("unet_evals")
        self.latents = latents


class Sd21VaeDecode:
    """The replica ``vae_decode`` workload on diffusers' ``AutoencoderKL``; see the module
    docstring."""

    def __init__(self) -> None:
        self.p: Dict[str, Any] = {}
        self.vae: Optional[nn.Module] = None
        self.latents: Optional[torch.Tensor] = None
        self.shape: Optional[tuple] = None
        self._decoder_calls = 0

    def setup(self, params: Dict[str, Any], ctx) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        p = self.p = parse_vae_params(params)
        device, dtype = ctx.device, ctx.dtype
        with _quiet_diffusers():
            vae = fast_build(vae_factory(p["preset"]), device, dtype, p["seed"])
        vae.set_attn_processor(AttnProcessor2_0())
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        if p["tile_size"]:
            if int(p["tile_size"] // scale * (1 - vae.tile_overlap_factor)) < 1:
                raise bad_param("sd21 VAE decode", "tile_size",
                                f"0 or large enough for a latent stride of 1 at scale {scale}", p["tile_size"])
            vae.tile_sample_min_size = p["tile_size"]
            vae.tile_latent_min_size = p["tile_size"] // scale
        batch, latent = p["batch"], p["resolution"] // scale
        if p["slicing"]:
            vae.enable_slicing()
            if batch == 1:
                ctx.not_applicable("slicing", "a batch of 1: AutoencoderKL slices only batches > 1")
        if p["tiling"]:
            vae.enable_tiling()
            if latent <= vae.tile_latent_min_size:
                ctx.not_applicable("tiling", f"{latent}x{latent} latents fit in one "
                                   f"{vae.tile_latent_min_size}-latent ({vae.tile_sample_min_size}-px) tile; "
                                   "decoded whole")
        vae.decoder.register_forward_pre_hook(self._count_decoder)
        self.vae = vae
        ctx.log(f"sd21 vae {p['preset']}: decoder {parameter_count(vae.decoder) + parameter_count(vae.post_quant_conv):,}"
                f" / encoder {parameter_count(vae.encoder) + parameter_count(vae.quant_conv):,} parameters, "
                f"tile {vae.tile_sample_min_size} px")
        g = torch.Generator(device=device).manual_seed(p["seed"])
        self.latents = torch.randn((batch, vae.config.latent_channels, latent, latent), generator=g,
                                   device=device, dtype=dtype)
        _free_setup_memory(device)

    def _count_decoder(self, _module, _args) -> None:
        self._decoder_calls += 1

    def call(self, ctx) -> None:
        c = self.vae.config
        shift = c.get("shift_factor") or 0.0
        self._decoder_calls = 0
        with ctx.stage("vae_decode"):
            z = self.latents / c.scaling_factor + shift
            image = self.vae.decode(z, return_dict=False)[0]
            self.shape = tuple(image.shape)
            del image, z
        ctx.count("vae_decoder_calls", self._decoder_calls)


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """Silences diffusers' warnings about building and casting models outside ``from_pretrained``."""
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        yield
    finally:
        dlogging.set_verbosity(level)
