"""UP2You's multiview RGB generation stage, **reconstructed** from diffusers 0.42.1 components with
random weights. UP2You (zcai0612/UP2You) is not on PyPI, and none of its code is imported or
copied here: the pipeline loop, the attention processor and the reference-token selector below are
written for this harness after the repository's ``UP2YouI2MVSDPipeline.__call__``
(``up2you/pipelines/pipeline_mvpuzzle_i2mv_sd21.py``), ``DecoupledMVRowSelfAttnProcessor2_0``
(``up2you/models/attention_processor.py``), ``FeatureSelector`` (``up2you/models/feature_selector.py``)
and the ``stage4_rgb_generation`` driver of ``inference_low_gpu.py``.

What is real (diffusers / transformers classes, unchanged, random weights via
``claimbench.build.fast_build``):

* ``UNet2DConditionModel`` with the SD 2.1(-base) geometry: 4 levels (320, 640, 1280, 1280), 2
  layers per block, heads (5, 10, 20, 20) of width 64, 1024-wide cross attention, linear
  projections; 865,910,724 parameters before UP2You's extra attentions.
* ``AutoencoderKL`` (SD VAE, 4 latent channels, scaling 0.18215), ``enable_slicing`` when
  ``vae_slicing``; slicing applies to the reference encode as well as to the decode, as in diffusers.
* transformers ``CLIPTextModel`` with the OpenCLIP-H text tower SD 2.x uses (23 layers, width 1024;
  340,479,840 parameters), resident and run on every call (prompt + empty negative prompt).
* diffusers ``T2IAdapter(in_channels=3, channels=block_out_channels, num_res_blocks=2,
  downscale_factor=8)`` (77,369,280 parameters), UP2You's condition encoder for the SMPL-X pose
  renders: run once per call on the (CFG-doubled) renders, its four feature maps added to the UNet
  as ``down_intrablock_additional_residuals`` on every step (``control_conditioning_factor`` 1).
* ``diffusers.models.attention_processor.Attention`` modules of the UNet, with every processor
  (``attn1`` and ``attn2``) replaced by :class:`RowMultiviewReferenceProcessor`, an ``nn.Module``
  registered inside the UNet as UP2You's is.
* Scheduler: ``DDPMScheduler`` with SNR-shifted betas. UP2You replaces SD 2.1-base's scheduler by
  ``ShiftSNRScheduler.from_scheduler(..., shift_mode="interpolated", shift_scale=8.0,
  scheduler_class=DDPMScheduler)``: the training SNR (scaled-linear betas 0.00085..0.012, 1000
  steps) is divided by ``8**(t/999)`` (log-space interpolation between no shift at t=0 and /8 at
  t=999) and turned back into betas for a ``DDPMScheduler`` (epsilon prediction, "leading"
  spacing, ``steps_offset`` 1). :func:`make_scheduler` computes that here. Its cost per step is
  negligible; what matters is that it is a stochastic one-evaluation-per-step sampler (no
  second-order steps), so UNet work is exactly ``steps`` calls.

What is reconstructed (written here after the repository's code):

* Row-wise multiview attention: in every self-attention (``attn1``), besides the layer's own
  attention, a decoupled branch with its own ``to_{q,k,v,out}_mv`` projections: a query in row ``r``
  of view ``i`` attends over row ``r`` of all ``views`` views (``views * W`` keys); its output is
  added to the layer's output (``mv_scale`` 1). ``row_attention = "repeat"`` (default) computes it
  as the repository does: queries grouped per (view, row), the row's keys and values over all views
  materialised once per view with ``repeat_interleave`` (memory grows with ``views**2``);
  ``"grouped"`` is the same mathematics without the copy (all views' queries of a row together),
  a lighter variant; the Rust replica computes the repeat form too.
* Reference attention: a third branch in every ``attn1`` (``to_{q,k,v,out}_ref``) attending over
  tokens selected from a reference pass. The reference pass is the **same UNet** (no second UNet
  is resident), run once per call at t=0 on the VAE-encoded reference photos with the
  conditional prompt, its multiview and reference branches off; every processor (``attn1`` and
  ``attn2``, 32 in all) records its input, as the repository's ``cache_hidden_states`` does. Per
  layer and per target view, the selector keeps the top ``int(min(2, reference_images) * H * W)``
  recorded tokens by the view's weight map (bilinearly resized to the layer's grid), in index
  order, multiplied by their weight. With CFG the unconditional half gets zeros
  (``cat([zeros, selected])``), and the dict is cloned into the UNet's ``cross_attention_kwargs``
  — both copies stay alive during the loop, as in the repository.
* The denoising loop of ``UP2YouI2MVSDPipeline.__call__`` (CFG as a doubled batch
  ``[uncond, cond]``, guidance ``uncond + s * (cond - uncond)``, ``guidance_rescale`` 0), with the
  notes' **guidance interval** ("THG"): with ``guidance > 1``, step ``i`` runs both branches in one
  batch of ``2 * views`` iff ``i % guidance_interval == 0``; other steps run the conditional branch
  only (batch ``views``: the conditional halves of the prompt embeddings, adapter residuals and
  reference tokens, sliced without copying) and use its prediction unguided. 50 steps at interval 3
  guide steps 0, 3, ..., 48: 17 steps, 67 UNet evaluations instead of 100 (the note's figures).
  ``guidance_interval = 1`` is the released code (CFG every step). ``guidance <= 1`` disables CFG
  entirely, as diffusers' ``do_classifier_free_guidance`` does.

Not modelled / substituted:

* The released code has neither a guidance interval nor 20 views: it hard-codes 6 views (the
  processor and ``num_images_per_prompt``), 768², 50 steps, guidance 3.0, fp16 and VAE slicing.
  Views, resolution and the interval are parameters here so that the note's setting can run.
* Earlier stages (BiRefNet segmentation, DINOv2-L features, ``ShapePredictor``, SMPL-X A-pose
  rendering, ``FeatureAggregator``), the normal-map stage (``UP2YouMV2NormalPipeline``), the
  mesh reconstruction and the video rendering are not run. Their outputs that this stage consumes
  are random tensors of the real shapes, made on the device at set-up (untimed): the reference
  photos (``reference_images`` x 3 x resolution², in [0, 1]), the pose renders (``views`` x 3 x
  resolution²) and the weight maps (per view, 1 x ``reference_images`` x 37 x 37 x 1: DINOv2's
  518/14 grid; random positive values, so the top-k picks data-dependent but equally many tokens).
  The real script frees each earlier stage's models before this one, so the resident set here
  (UNet with the extra attentions, VAE, CLIP-H text encoder, T2I-Adapter) is the real one.
* Tokenizer: none; fixed token ids stand in for the prompt ("Multi-view Human, Full Body, High
  Quality, HDR", taken as 12 BPE tokens) and the empty negative prompt, padded to 77 with id 0 as
  SD 2.x's tokenizer pads. The text encoder always runs on 77 tokens, so its cost is the real one.
* Weights are random (``fast_build``), not the checkpoints; the ``_mv``/``_ref`` projections are
  not initialised from the layer's own weights (UP2You copies them, which changes values only).
  ``upcast_attention`` is left off (2.1-base, [inferred]); it changes nothing here because every
  processor is replaced by the SDPA-based one. No safety checker (SD 2.x has none).
* ``ref_img_masks`` is not passed by the inference script and is not modelled; the selector's
  second (unused) interpolation of the unmasked weight maps is left out (a 37² resize).
* Output: the decode stage runs ``vae.decode`` and diffusers' ``VaeImageProcessor.postprocess`` to
  PIL images, as the pipeline's ``output_type="pil"`` does; the PIL images are kept on the adapter.

Stages per call: ``reference_unet`` (prompt encoding, VAE encode of the reference photos, the
reference UNet pass, token selection, CFG doubling), ``rgb_multiview`` (pose-render preprocessing,
T2I-Adapter, the denoising loop), ``decode_rgb`` (VAE decode of all views, sliced when ``vae_slicing``,
and post-processing).

Counters per call: ``unet_evals`` (multiview UNet evaluations counted per branch, the note's
"NFE": 2 on a guided step, 1 otherwise), ``cfg_steps`` (steps that ran both branches),
``unet_calls`` (multiview UNet forwards, one per step), ``ref_unet_evals`` (reference passes of
the same UNet, 1), ``text_encoder_evals`` (2 with CFG, else 1).

Parameters (all optional): ``preset`` ("full" | "tiny"), ``views`` (20, the note; the released code
uses 6), ``resolution`` (768; a multiple of 64: square views, the processor takes ``H = W``),
``steps`` (50), ``guidance`` (3.0), ``guidance_interval`` (3; 1 = CFG on every step),
``vae_slicing`` (true), ``reference_images`` (4: reference photos, as in the Rust replica),
``row_attention`` ("repeat" | "grouped", above), ``seed`` (0: weights and inputs). The Rust
replica's ``normal_stage``, ``reconstruction_iterations`` and ``attention`` are accepted and
reported through ``ctx.not_applicable``. The tiny preset keeps every class and the block
structure at widths that run on a CPU in seconds (2 UNet levels of 32/64 channels, 1 text-encoder
layer of width 32, a narrow 4-level VAE so latents are still resolution / 8); its default
resolution is 64 and steps 6.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

# Nothing here downloads; a hub call by accident must fail rather than hang.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from claimbench.adapters.common import (  # noqa: E402
    bad_param,
    int_param,
    preset_param,
    reject_unknown,
)
from claimbench.build import fast_build  # noqa: E402

# UP2You's fixed settings (inference_low_gpu.py stage 4 and the pipeline's defaults).
MAX_SELECT_RATIO = 2.0  # FeatureSelector: top `ratio * H * W` tokens per view, ratio capped at N_ref
SHIFT_SCALE = 8.0  # ShiftSNRScheduler, shift_mode="interpolated"
MV_SCALE = 1.0
REF_SCALE = 1.0
CONTROL_SCALE = 1.0
WEIGHT_MAP_SIDE = 37  # FeatureAggregator's maps live on DINOv2-L/14's grid at 518 px
TEXT_TOKENS = 77
PROMPT_TOKENS = 12  # "Multi-view Human, Full Body, High Quality, HDR" [inferred BPE length]
BOS, EOS, PAD = 49406, 49407, 0
SIZE_MULTIPLE = 64  # 8 (VAE) x 8 (three UNet downsamplings at full size)

PRESETS: Dict[str, Dict[str, Any]] = {
    "full": {
        "unet": dict(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            attention_head_dim=(5, 10, 20, 20),  # diffusers' name; these are head counts
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=1024,
        ),
        "text": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                     num_attention_heads=16),
        "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2),
        "defaults": dict(resolution=768, steps=50),
    },
    "tiny": {
        "unet": dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            attention_head_dim=(2, 4),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
        ),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                     num_attention_heads=2),
        "vae": dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1),
        "defaults": dict(resolution=64, steps=6),
    },
}

COMMON_DEFAULTS: Dict[str, Any] = dict(
    preset="full", views=20, guidance=3.0, guidance_interval=3, vae_slicing=True,
    reference_images=4, row_attention="repeat", seed=0)
PARAMS = ("preset", "views", "resolution", "steps", "guidance", "guidance_interval",
          "vae_slicing", "reference_images", "row_attention", "seed")
ROW_ATTENTION = ("repeat", "grouped")
# The Rust replica's parameters that this stage does not model.
REPLICA_ONLY = {
    "normal_stage": "the normal-map diffusion stage is not modelled (RGB multiview stage only)",
    "reconstruction_iterations": "mesh reconstruction is not modelled",
    "attention": "every attention processor is UP2You's SDPA-based one; diffusers' attention "
                 "slicing would replace them (and drop the multiview/reference branches)",
}


# --- schedule ---------------------------------------------------------------------------------


def make_scheduler():
    """SD 2.1-base's training schedule with UP2You's interpolated SNR shift, as a
    ``DDPMScheduler`` (see the module docstring)."""
    from diffusers import DDPMScheduler

    sd = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
              beta_schedule="scaled_linear", prediction_type="epsilon", steps_offset=1,
              timestep_spacing="leading")
    base = DDPMScheduler(**sd)
    cumprod = base.alphas_cumprod.to(torch.float64)
    t = torch.arange(cumprod.numel(), dtype=torch.float64)
    log_snr = torch.log(cumprod / (1.0 - cumprod)) - (t / (cumprod.numel() - 1)) * math.log(SHIFT_SCALE)
    shifted = torch.sigmoid(log_snr)  # snr / (1 + snr)
    previous = torch.cat([torch.ones(1, dtype=shifted.dtype), shifted[:-1]])
    betas = (1.0 - shifted / previous).to(torch.float32)
    return DDPMScheduler(**sd, trained_betas=betas.numpy())


# --- the reconstructed attention --------------------------------------------------------------


def row_multiview_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                            views: int, height: int, width: int, mode: str = "repeat") -> torch.Tensor:
    """Row-wise multiview attention over projected tokens ``[(b n), H*W, C]`` (``n = views``
    consecutive batch entries per object): a query in row ``r`` of a view attends over row ``r``
    of all its object's views. Returns ``[(b n), H*W, C]``."""
    bn, length, channels = q.shape
    if bn % views or length != height * width or channels % heads:
        raise ValueError(f"row attention: tokens {tuple(q.shape)} do not split into {views} views "
                         f"of {height}x{width} with {heads} heads")
    b, d = bn // views, channels // heads

    def rows_across_views(x: torch.Tensor) -> torch.Tensor:  # -> [b, H, n*W, heads, d]
        return (x.view(b, views, height, width, heads, d).permute(0, 2, 1, 3, 4, 5)
                .reshape(b, height, views * width, heads, d))

    if mode == "repeat":
        # As the repository: one query group per (object, view, row); the row's keys/values over
        # all views are materialised once per view.
        query = q.view(b * views * height, width, heads, d).transpose(1, 2)
        key, value = (rows_across_views(x).repeat_interleave(views, dim=0)
                      .view(b * views * height, views * width, heads, d).transpose(1, 2)
                      for x in (k, v))
        out = F.scaled_dot_product_attention(query, key, value)  # [(b n H), heads, W, d]
        return out.transpose(1, 2).reshape(bn, length, channels)
    if mode == "grouped":
        query, key, value = (rows_across_views(x).view(b * height, views * width, heads, d)
                             .transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(query, key, value)  # [(b H), heads, n*W, d]
        return (out.transpose(1, 2).reshape(b, height, views, width, channels)
                .permute(0, 2, 1, 3, 4).reshape(bn, length, channels))
    raise ValueError(f"row attention: mode must be one of {ROW_ATTENTION}, got {mode!r}")


class RowMultiviewReferenceProcessor(nn.Module):
    """Attention processor for every attention of UP2You's UNet. For self-attentions
    (``use_mv``/``use_ref``) it adds, to the layer's own attention output, a row-wise multiview
    branch and a reference branch, each with its own q/k/v/out projections of the layer's shape
    (no q/k/v bias, output bias). Cross-attentions get it with both branches off (no parameters).

    Extra keyword arguments, passed through the UNet's ``cross_attention_kwargs`` (named
    explicitly: diffusers' ``Attention`` drops keywords a processor's ``__call__`` does not name):
    ``num_views``, ``mv_scale``, ``ref_hidden_states`` (``{processor name: [batch, K, C]}``),
    ``ref_scale``, ``cache_hidden_states`` (a dict: the processor records its input there),
    ``use_mv``, ``use_ref`` (switch the branches off for one call)."""

    def __init__(self, name: str, hidden_size: int, num_views: int, use_mv: bool, use_ref: bool,
                 row_attention: str = "repeat") -> None:
        super().__init__()
        if row_attention not in ROW_ATTENTION:
            raise ValueError(f"row_attention must be one of {ROW_ATTENTION}, got {row_attention!r}")
        self.name = name
        self.num_views = num_views
        self.use_mv = use_mv
        self.use_ref = use_ref
        self.row_attention = row_attention
        for branch, on in (("mv", use_mv), ("ref", use_ref)):
            if on:
                for proj in ("q", "k", "v"):
                    setattr(self, f"to_{proj}_{branch}", nn.Linear(hidden_size, hidden_size, bias=False))
                setattr(self, f"to_out_{branch}",
                        nn.ModuleList([nn.Linear(hidden_size, hidden_size, bias=True), nn.Dropout(0.0)]))

    # ``__call__``, not ``forward``: diffusers inspects the processor's ``__call__`` signature.
    def __call__(  # type: ignore[override]
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        temb: Optional[torch.Tensor] = None,
        mv_scale: float = 1.0,
        ref_hidden_states: Optional[Dict[str, torch.Tensor]] = None,
        ref_scale: float = 1.0,
        cache_hidden_states: Optional[Dict[str, torch.Tensor]] = None,
        use_mv: bool = True,
        use_ref: bool = True,
        num_views: Optional[int] = None,
    ) -> torch.Tensor:
        views = self.num_views if num_views is None else num_views
        if cache_hidden_states is not None:
            cache_hidden_states[self.name] = hidden_states.clone()
        use_mv = self.use_mv and use_mv
        use_ref = self.use_ref and use_ref

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_input = hidden_states.ndim == 4
        if image_input:
            b4, c4, h4, w4 = hidden_states.shape
            hidden_states = hidden_states.view(b4, c4, h4 * w4).transpose(1, 2)
        batch, tokens, _ = hidden_states.shape
        if attention_mask is not None:
            context_len = tokens if encoder_hidden_states is None else encoder_hidden_states.shape[1]
            attention_mask = attn.prepare_attention_mask(attention_mask, context_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            context = hidden_states
        elif attn.norm_cross:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states)
        else:
            context = encoder_hidden_states
        key, value = attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        d = key.shape[-1] // heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, heads, d).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(query), split(key), split(value),
                                             attn_mask=attention_mask)
        out = attn.to_out[0](out.transpose(1, 2).reshape(batch, -1, heads * d).to(query.dtype))
        out = attn.to_out[1](out)

        if use_mv:
            side = math.isqrt(tokens)
            if side * side != tokens:
                raise ValueError(f"{self.name}: {tokens} tokens are not a square feature map")
            mv = row_multiview_attention(self.to_q_mv(hidden_states), self.to_k_mv(hidden_states),
                                         self.to_v_mv(hidden_states), heads, views, side, side,
                                         self.row_attention)
            out = out + self.to_out_mv[1](self.to_out_mv[0](mv.to(query.dtype))) * mv_scale
        if use_ref:
            if ref_hidden_states is None or self.name not in ref_hidden_states:
                raise ValueError(f"{self.name}: reference attention needs ref_hidden_states[{self.name!r}]")
            reference = ref_hidden_states[self.name]
            if reference.shape[0] != batch:
                raise ValueError(f"{self.name}: reference tokens for batch {reference.shape[0]}, "
                                 f"queries have {batch}")
            ref = F.scaled_dot_product_attention(split(self.to_q_ref(hidden_states)),
                                                 split(self.to_k_ref(reference)),
                                                 split(self.to_v_ref(reference)))
            ref = ref.transpose(1, 2).reshape(batch, -1, heads * d).to(query.dtype)
            out = out + self.to_out_ref[1](self.to_out_ref[0](ref)) * ref_scale

        if image_input:
            out = out.transpose(-1, -2).reshape(b4, c4, h4, w4)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _hidden_size(config, name: str) -> int:
    """Width of the attention ``name`` (a key of ``unet.attn_processors``)."""
    channels = list(config.block_out_channels)
    if name.startswith("mid_block"):
        return channels[-1]
    level = int(name.split(".")[1])
    return channels[::-1][level] if name.startswith("up_blocks") else channels[level]


def install_processors(unet, views: int, row_attention: str = "repeat") -> None:
    """Gives every attention of ``unet`` a :class:`RowMultiviewReferenceProcessor`: self-attentions
    with the multiview and reference branches, cross-attentions without (as UP2You's
    ``_init_custom_adapter`` does)."""
    processors = {}
    for name in unet.attn_processors:
        self_attention = name.endswith("attn1.processor")
        processors[name] = RowMultiviewReferenceProcessor(
            name, _hidden_size(unet.config, name), views, use_mv=self_attention,
            use_ref=self_attention, row_attention=row_attention)
    unet.set_attn_processor(processors)


def select_reference_tokens(recorded: torch.Tensor, weight_maps: List[torch.Tensor],
                            ratio: float = MAX_SELECT_RATIO) -> torch.Tensor:
    """UP2You's top-k reference selection for one layer and one object.

    ``recorded``: ``[N_ref, H*W, C]``, a processor's input in the reference pass;
    ``weight_maps``: per target view ``[1, N_ref, h, w, 1]``. Per view, the map is resized
    (bilinear, corners aligned) to ``H x W``, the ``int(min(ratio, N_ref) * H * W)`` heaviest of
    the ``N_ref * H * W`` tokens are kept in index order and multiplied by their weight.
    Returns ``[views, K, C]``."""
    n_ref, length, channels = recorded.shape
    side = math.isqrt(length)
    keep = int(min(ratio, n_ref) * length)
    flat = recorded.reshape(1, n_ref * length, channels)
    selected = []
    for view_map in weight_maps:
        w = view_map.to(device=recorded.device, dtype=recorded.dtype)
        w = w.reshape(n_ref, 1, w.shape[2], w.shape[3])
        w = F.interpolate(w, size=(side, side), mode="bilinear", align_corners=True)
        w = w.reshape(1, n_ref * length)
        index = torch.topk(w, k=keep, dim=1).indices.sort(dim=1).values
        tokens = torch.gather(flat, 1, index.unsqueeze(-1).expand(-1, -1, channels))
        selected.append(tokens * torch.gather(w, 1, index).unsqueeze(-1))
    return torch.cat(selected, dim=0)


# --- model factories --------------------------------------------------------------------------


def sd21_unet(preset: str = "full"):
    """SD 2.1(-base) ``UNet2DConditionModel`` (full: 865,910,724 parameters)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, use_linear_projection=True,
        upcast_attention=False, **PRESETS[preset]["unet"])


def up2you_unet(preset: str = "full", views: int = 6, row_attention: str = "repeat"):
    """The SD 2.1 UNet with UP2You's processors installed (their projections are parameters of
    the UNet, as in UP2You)."""
    unet = sd21_unet(preset)
    install_processors(unet, views, row_attention)
    return unet


def clip_h_text_encoder(preset: str = "full"):
    """OpenCLIP-H text tower as transformers' ``CLIPTextModel`` (SD 2.x's text encoder)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, max_position_embeddings=TEXT_TOKENS, hidden_act="gelu",
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=1, **PRESETS[preset]["text"]))


def sd_vae(preset: str = "full"):
    """SD ``AutoencoderKL`` (full: 34.2 M encoder + 49.5 M decoder)."""
    from diffusers import AutoencoderKL

    cfg = PRESETS[preset]["vae"]
    levels = len(cfg["block_out_channels"])
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, latent_channels=4, sample_size=768,
        scaling_factor=0.18215, **cfg)


def t2i_adapter(preset: str = "full"):
    """UP2You's condition encoder: diffusers ``T2IAdapter`` sized from the UNet config."""
    from diffusers import T2IAdapter

    unet = PRESETS[preset]["unet"]
    return T2IAdapter(in_channels=3, channels=list(unet["block_out_channels"]),
                      num_res_blocks=unet["layers_per_block"], downscale_factor=8)


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(preset: str = "full", views: int = 6) -> Dict[str, int]:
    """Parameters of each resident component, built on the ``meta`` device (no memory)."""
    if preset not in PRESETS:
        raise ValueError(f"up2you: parameter `preset` must be one of {sorted(PRESETS)}, got {preset!r}")
    with _quiet("diffusers"), torch.device("meta"):
        plain = _numel(sd21_unet(preset))
        unet = _numel(up2you_unet(preset, views))
        counts = {
            "unet_sd21": plain,
            "unet": unet,
            "unet_added": unet - plain,
            "text_encoder": _numel(clip_h_text_encoder(preset)),
            "vae": _numel(sd_vae(preset)),
            "t2i_adapter": _numel(t2i_adapter(preset)),
        }
    counts["resident"] = sum(counts[k] for k in ("unet", "text_encoder", "vae", "t2i_adapter"))
    return counts


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Silences one logger (diffusers warns on ``ModelMixin.to(dtype)`` about an empty list of
    fp32 modules, which ``fast_build``'s cast triggers for nothing)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# --- parameters -------------------------------------------------------------------------------


def guided_steps(steps: int, interval: int, guidance: float) -> List[bool]:
    """Which steps run both CFG branches: every ``interval``-th from step 0, and none when
    ``guidance <= 1`` (diffusers' rule for turning CFG on)."""
    return [guidance > 1.0 and i % interval == 0 for i in range(steps)]


def _bad(name: str, want: str, got: Any) -> ValueError:
    return bad_param("up2you", name, want, got)


def _int(params: Dict[str, Any], name: str, default: int, lo: int, hi: int, multiple: int = 1) -> int:
    return int_param("up2you", params, name, default, lo, hi, multiple)


def parse_params(params: Dict[str, Any]) -> Tuple[SimpleNamespace, List[Tuple[str, str]]]:
    """Validated parameters with defaults, and the replica-only parameters that were set (with
    why they do nothing here). Raises ValueError naming the offending parameter."""
    reject_unknown("up2you", params, PARAMS, also_allowed=REPLICA_ONLY)
    ignored = [(key, REPLICA_ONLY[key]) for key in params if key in REPLICA_ONLY]
    preset = preset_param("up2you", params, COMMON_DEFAULTS["preset"], PRESETS)
    d = PRESETS[preset]["defaults"]
    guidance = params.get("guidance", COMMON_DEFAULTS["guidance"])
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
            or not math.isfinite(guidance) or guidance < 0:
        raise _bad("guidance", "a finite number >= 0", guidance)
    slicing = params.get("vae_slicing", COMMON_DEFAULTS["vae_slicing"])
    if not isinstance(slicing, bool):
        raise _bad("vae_slicing", "true or false", slicing)
    row = params.get("row_attention", COMMON_DEFAULTS["row_attention"])
    if row not in ROW_ATTENTION:
        raise _bad("row_attention", f"one of {list(ROW_ATTENTION)}", row)
    cfg = SimpleNamespace(
        preset=preset,
        views=_int(params, "views", COMMON_DEFAULTS["views"], 1, 64),
        resolution=_int(params, "resolution", d["resolution"], 64, 4096, SIZE_MULTIPLE),
        steps=_int(params, "steps", d["steps"], 1, 1000),
        guidance=float(guidance),
        guidance_interval=_int(params, "guidance_interval", COMMON_DEFAULTS["guidance_interval"], 1, 1000),
        vae_slicing=slicing,
        reference_images=_int(params, "reference_images", COMMON_DEFAULTS["reference_images"], 1, 64),
        row_attention=row,
        seed=_int(params, "seed", COMMON_DEFAULTS["seed"], 0, 2**63 - 1),
    )
    return cfg, ignored


# --- the pipeline -----------------------------------------------------------------------------


class Up2You:
    """UP2You's RGB multiview generation stage, reconstructed (see the module docstring)."""

    def __init__(self) -> None:
        self.cfg: Optional[SimpleNamespace] = None
        self.unet = None
        self.vae = None
        self.text_encoder = None
        self.adapter = None
        self.scheduler = None
        self.last_images = None

    # setup -----------------------------------------------------------------------------------

    def setup(self, params: Dict[str, Any], ctx) -> None:
        cfg, ignored = parse_params(params)  # before anything heavy, so bad params fail fast
        self.cfg = cfg
        for key, why in ignored:
            ctx.not_applicable(key, why)
        from diffusers.image_processor import VaeImageProcessor

        device, dtype, preset = ctx.device, ctx.dtype, cfg.preset

        def build(factory: Callable[[], nn.Module], offset: int) -> nn.Module:
            with _quiet("diffusers"):
                return fast_build(factory, device, dtype, (cfg.seed + offset) % 2**63).requires_grad_(False)

        # Resident during the stage, as after `rgb_pipe.to(device)` + `cond_encoder.to(device)`.
        self.unet = build(lambda: up2you_unet(preset, cfg.views, cfg.row_attention), 0)
        self.text_encoder = build(lambda: clip_h_text_encoder(preset), 1)
        self.vae = build(lambda: sd_vae(preset), 2)
        self.adapter = build(lambda: t2i_adapter(preset), 3)
        if cfg.vae_slicing:
            self.vae.enable_slicing()
        else:
            self.vae.disable_slicing()
        self.scheduler = make_scheduler()
        self.image_processor = VaeImageProcessor(vae_scale_factor=8)
        self.control_processor = VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True,
                                                   do_normalize=False)
        for name, module in (("unet (SD 2.1 + row-MV/reference attentions)", self.unet),
                             ("text_encoder (CLIP-H)", self.text_encoder), ("vae", self.vae),
                             ("t2i_adapter", self.adapter)):
            ctx.log(f"up2you[{preset}] {name}: {_numel(module):,} parameters")

        # The earlier stages' outputs (untimed; on the device, where the real stages leave them).
        g = torch.Generator(device="cpu").manual_seed(cfg.seed)
        side, n_ref = cfg.resolution, cfg.reference_images
        self.reference_photos = torch.rand(n_ref, 3, side, side, generator=g).to(device)
        self.pose_renders = torch.rand(cfg.views, 3, side, side, generator=g).to(device)
        self.weight_maps = [
            torch.softmax(torch.randn(1, n_ref * WEIGHT_MAP_SIDE ** 2, generator=g), dim=1)
            .reshape(1, n_ref, WEIGHT_MAP_SIDE, WEIGHT_MAP_SIDE, 1).to(device)
            for _ in range(cfg.views)]
        prompt = [BOS] + [1000 + i for i in range(PROMPT_TOKENS)] + [EOS]
        ids = torch.full((2, TEXT_TOKENS), PAD, dtype=torch.long)
        ids[0, :2] = torch.tensor([BOS, EOS])  # the empty negative prompt
        ids[1, :len(prompt)] = torch.tensor(prompt)
        self.token_ids = ids.to(device)
        guided = guided_steps(cfg.steps, cfg.guidance_interval, cfg.guidance)
        ctx.log(f"up2you: views={cfg.views} resolution={cfg.resolution} steps={cfg.steps} "
                f"guidance={cfg.guidance} interval={cfg.guidance_interval} "
                f"(CFG on {sum(guided)} of {cfg.steps} steps) reference_images={n_ref} "
                f"vae_slicing={cfg.vae_slicing} row_attention={cfg.row_attention}")
        if device.type == "cuda":
            # The random fill's temporaries must not stay reserved into the measured calls.
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()

    # call ------------------------------------------------------------------------------------

    def call(self, ctx) -> None:
        cfg = self.cfg
        device = ctx.device
        views = cfg.views
        do_cfg = cfg.guidance > 1.0
        with torch.no_grad():
            # The script passes torch.Generator(device).manual_seed(42) to the pipeline.
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
            with ctx.stage("reference_unet"):
                prompt_embeds = self._encode_prompt(ctx, do_cfg)
                reference = self._reference_tokens(ctx, prompt_embeds, generator, do_cfg)
            with ctx.stage("rgb_multiview"):
                latents = self._multiview(ctx, prompt_embeds, reference, generator, do_cfg)
            with ctx.stage("decode_rgb"):
                image = self.vae.decode(latents / self.vae.config.scaling_factor,
                                        return_dict=False, generator=generator)[0]
                self.last_images = self.image_processor.postprocess(
                    image, output_type="pil", do_denormalize=[True] * views)

    def _encode_prompt(self, ctx, do_cfg: bool) -> torch.Tensor:
        """``encode_prompt``: the prompt (and with CFG the empty negative prompt) through the text
        encoder, one batch-1 call each, repeated per view; ``[uncond, cond]`` with CFG."""
        views = self.cfg.views
        rows = [0, 1] if do_cfg else [1]
        embeds = []
        for row in rows:
            e = self.text_encoder(self.token_ids[row:row + 1])[0]
            ctx.count("text_encoder_evals")
            embeds.append(e.to(self.text_encoder.dtype).repeat(views, 1, 1))
        return torch.cat(embeds)

    def _reference_tokens(self, ctx, prompt_embeds: torch.Tensor, generator,
                          do_cfg: bool) -> Dict[str, Dict[str, torch.Tensor]]:
        """The reference pass through the same UNet at t = 0, the per-view selection and the
        CFG doubling. Returns both dicts UP2You keeps alive during the loop."""
        cfg, dtype = self.cfg, prompt_embeds.dtype
        photos = self.image_processor.preprocess(self.reference_photos).to(device=ctx.device, dtype=dtype)
        latents = self.vae.encode(photos).latent_dist.sample(generator) * self.vae.config.scaling_factor
        n_ref = latents.shape[0]
        recorded: Dict[str, torch.Tensor] = {}
        self.unet(latents, torch.zeros(n_ref, dtype=torch.long, device=ctx.device),
                  encoder_hidden_states=prompt_embeds[-1:].repeat_interleave(n_ref, dim=0),
                  cross_attention_kwargs={"cache_hidden_states": recorded, "use_mv": False,
                                          "use_ref": False},
                  return_dict=False)
        ctx.count("ref_unet_evals")
        for name in list(recorded):
            recorded[name] = select_reference_tokens(recorded[name], self.weight_maps)
        if do_cfg:  # the unconditional branch sees no reference
            recorded = {k: torch.cat([torch.zeros_like(v), v]) for k, v in recorded.items()}
        kept = {k: v.clone() for k, v in recorded.items()}  # the copy in cross_attention_kwargs
        # Nothing may keep them past the call: held into the next one, they would occupy
        # cached blocks that the next call's tensors then need, which UP2You's script never does.
        return {"pipeline": recorded, "kwargs": kept}

    def _multiview(self, ctx, prompt_embeds: torch.Tensor, reference, generator,
                   do_cfg: bool) -> torch.Tensor:
        cfg, device, dtype = self.cfg, ctx.device, prompt_embeds.dtype
        views = cfg.views
        control = self.control_processor.preprocess(
            self.pose_renders, height=cfg.resolution, width=cfg.resolution).to(device=device, dtype=dtype)
        if do_cfg:
            control = torch.cat([control] * 2)
        adapter_state = [state * CONTROL_SCALE for state in self.adapter(control)]

        scheduler = self.scheduler
        scheduler.set_timesteps(cfg.steps, device=device)
        side = cfg.resolution // 8
        latents = torch.randn((views, 4, side, side), generator=generator, device=device,
                              dtype=dtype) * scheduler.init_noise_sigma
        full_refs = reference["kwargs"]
        cond_refs = {k: v[views:] for k, v in full_refs.items()} if do_cfg else full_refs
        cond_embeds = prompt_embeds[views:] if do_cfg else prompt_embeds
        cond_state = [s[views:] for s in adapter_state] if do_cfg else adapter_state
        guided = guided_steps(cfg.steps, cfg.guidance_interval, cfg.guidance)
        for i, t in enumerate(scheduler.timesteps):
            if guided[i]:
                sample, embeds, refs, states = torch.cat([latents] * 2), prompt_embeds, full_refs, adapter_state
            else:
                sample, embeds, refs, states = latents, cond_embeds, cond_refs, cond_state
            sample = scheduler.scale_model_input(sample, t)
            noise = self.unet(
                sample, t, encoder_hidden_states=embeds,
                cross_attention_kwargs={"num_views": views, "mv_scale": MV_SCALE,
                                        "ref_hidden_states": refs, "ref_scale": REF_SCALE},
                # The UNet pops from this list; the pipeline hands it clones every step.
                down_intrablock_additional_residuals=[s.clone() for s in states],
                return_dict=False)[0]
            if guided[i]:
                uncond, cond = noise.chunk(2)
                noise = uncond + cfg.guidance * (cond - uncond)
            latents = scheduler.step(noise, t, latents, generator=generator, return_dict=False)[0]
            ctx.count("unet_calls")
            ctx.count("unet_evals", 2 if guided[i] else 1)
            ctx.count("cfg_steps", int(guided[i]))
        return latents
