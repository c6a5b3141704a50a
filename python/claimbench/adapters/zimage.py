"""Z-Image-Turbo text-to-image through the real diffusers ``ZImagePipeline`` (diffusers 0.42.1),
with random weights, configured the way the note's app runs it: bf16 or fp16 weights, 1024², 9
steps, guidance 0, ``output_type="pil"``, a CPU ``torch.Generator``, and one of three placements
(``pipe.to(device)``, ``enable_model_cpu_offload``, ``enable_sequential_cpu_offload``).

Components (``preset = "full"``, the published Z-Image-Turbo shapes):

- text encoder: transformers ``Qwen3Model`` with the Qwen3-4B config (4,022,468,096 parameters);
- transformer: ``ZImageTransformer2DModel()`` with its defaults (6,154,908,736);
- VAE: the 16-channel Flux ``AutoencoderKL`` (83,819,683), ``sample_size`` 1024;
- scheduler: ``FlowMatchEulerDiscreteScheduler(shift=3.0)``; the pipeline passes its own sigmas
  and ``mu``, so the scheduler config changes no cost.

``preset = "tiny"`` keeps every class and the block structure (Qwen3 layers, noise and context
refiners, main DiT blocks, a 4-level VAE, so the 16-pixel size granularity is the same) at
widths that run a 64×64, 2-step call on a CPU in seconds. Its VAE ``sample_size`` is 64, so that,
as at full size and 1024², the default resolution decodes in one tile.

Tokenizer. No Qwen vocabulary can be downloaded, so the tokenizer is built here with
``tokenizers``: Qwen2/3's pre-tokenisation (NFC, the Qwen split regex, byte-level mapping), a
word-level model over the pieces of the configured prompt (as wrapped by the chat template), and
Qwen's special tokens at their real ids (``<|endoftext|>`` 151643 = pad, ``<|im_start|>`` 151644,
``<|im_end|>`` 151645), with the Qwen3 chat template's single-turn behaviour. What costs time
and memory is the same as with the real tokenizer: the text encoder always runs on
``max_sequence_length`` (512) padded tokens (once more for the empty negative prompt under
CFG), and the DiT sees the unmasked ones. What differs is
how many tokens a piece becomes: the real byte-level BPE splits rare or long words into several
tokens, this one maps each pre-token piece to one id; Han characters are split one per token
(the real BPE merges frequent pairs). For English prompts the caption is therefore the same
length or a few tokens shorter (the default prompt: 27 tokens here, template included); for
Chinese prompts it is somewhat longer. Token ids are stable hashes of the pieces (random
weights make their values irrelevant).

What the knobs do in real diffusers 0.42.1, which this adapter reports through
``ctx.not_applicable`` rather than hides:

- ``attention = "sliced:*"`` calls ``pipe.enable_attention_slicing``, which only reaches
  top-level components with ``set_attention_slice``; none of Z-Image's has it, so it is a no-op.
- ``vae_slicing`` slices the decode batch, which is ``batch`` images: a no-op at batch 1.
  (``ZImagePipeline`` has no ``enable_vae_slicing`` alias; the adapter calls ``vae.enable_slicing``.)
- ``vae_tiling`` tiles only latents larger than ``sample_size / 8``: a no-op at ≤ 1024² (full).
- ``offload = "sequential"`` on a CPU device enables, but the first forward fails inside
  accelerate (diffusers turns the device into ``cpu:0``, where re-materialising a parameter
  breaks), and moving CPU weights to the CPU measures nothing: on a CPU device the call runs
  without offload.
- Classifier-free guidance is on when ``guidance > 0`` (not > 1): the negative prompt is encoded
  too and the transformer runs once per step on a doubled list of latents.

Stages per call: ``text_encoder`` (``encode_prompt``), ``dit`` (latent preparation and the
denoising loop) and ``vae_decode``, as the replica names them, then ``postprocess`` (the PIL
conversion and the offload hooks' final release; the replica has no such stage). Under model
offload, accelerate's hooks move a component to the GPU, and the previous one off it, when the
component is first used: both moves fall in that component's stage, as in the replica.

Counters per call: ``text_encoder_evals``, ``dit_evals`` (transformer forwards, one per step),
``dit_samples`` (latents in those forwards: steps × batch × 2 with CFG), ``vae_decodes`` (calls of
``vae.decode``) and ``vae_decoder_evals`` (decoder forwards: tiles and slices). They are host-side
counts from forward hooks and add no device synchronisation.
"""

from __future__ import annotations

import contextlib
import os
import re
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

# No network: nothing here downloads, and a hub call by accident must fail rather than hang.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ[_var] = "1"

import torch  # noqa: E402
from torch import nn  # noqa: E402

from claimbench.build import _restore_computed_buffers, fast_build, random_init_  # noqa: E402

PRESETS = ("full", "tiny")
OFFLOADS = ("none", "model", "sequential")

# Both presets' VAEs have 4 levels (8× downsampling) and the DiT patchifies 2×2 latents.
SIZE_MULTIPLE = 16

DEFAULT_PROMPT = "A photo of a cat sitting on a windowsill at sunset, highly detailed, 8k."

DEFAULTS: Dict[str, Any] = {
    "preset": "full",
    "offload": "none",
    "height": 1024,
    "width": 1024,
    "steps": 9,
    "guidance": 0.0,
    "prompt": DEFAULT_PROMPT,
    "attention": "default",
    "vae_slicing": False,
    "vae_tiling": False,
    "batch": 1,
    "seed": 0,
    "max_sequence_length": 512,
}

# Qwen2/Qwen3 special tokens at their real ids.
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_IDS = {ENDOFTEXT: 151643, IM_START: 151644, IM_END: 151645}
QWEN_VOCAB = 151936  # embedding rows (151,643 BPE ranks + specials, padded)

# Qwen2/Qwen3 pre-tokenisation regex.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen3's chat template, reduced to what a single user turn with a generation prompt renders.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


# --------------------------------------------------------------------------------------------
# Model configurations


def text_encoder_factory(preset: str) -> Callable[[], nn.Module]:
    from transformers import Qwen3Config, Qwen3Model

    if preset == "full":
        cfg = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                   num_attention_heads=32, num_key_value_heads=8, head_dim=128)
    else:
        # Two layers at least: the pipeline takes hidden_states[-2].
        cfg = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    config = Qwen3Config(vocab_size=QWEN_VOCAB, max_position_embeddings=40960, rope_theta=1e6,
                         rms_norm_eps=1e-6, tie_word_embeddings=True, **cfg)
    return lambda: Qwen3Model(config)


def transformer_factory(preset: str) -> Callable[[], nn.Module]:
    from diffusers import ZImageTransformer2DModel

    if preset == "full":
        return lambda: ZImageTransformer2DModel()
    # head_dim = dim / n_heads must equal sum(axes_dims); cap_feat_dim = text encoder width.
    return lambda: ZImageTransformer2DModel(dim=64, n_layers=2, n_refiner_layers=1, n_heads=2,
                                            n_kv_heads=2, cap_feat_dim=64, axes_dims=[8, 12, 12])


def vae_factory(preset: str) -> Callable[[], nn.Module]:
    from diffusers import AutoencoderKL

    full = preset == "full"
    kwargs = dict(
        latent_channels=16,
        block_out_channels=[128, 256, 512, 512] if full else [32, 32, 32, 32],
        layers_per_block=2 if full else 1,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
        sample_size=1024 if full else 64,
    )
    return lambda: AutoencoderKL(**kwargs)


def make_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0,
                                           use_dynamic_shifting=False)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_models(preset: str = "full") -> Dict[str, nn.Module]:
    """The three models on the ``meta`` device: shapes and parameter counts, no memory."""
    with torch.device("meta"):
        return {
            "text_encoder": text_encoder_factory(preset)(),
            "transformer": transformer_factory(preset)(),
            "vae": vae_factory(preset)(),
        }


# --------------------------------------------------------------------------------------------
# Tokenizer


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        # One token per Han character (see the module docstring).
        pre_tokenizers.Split(Regex(r"\p{Han}"), behavior="isolated"),
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def _render(prompt: str) -> str:
    """The chat-template text the pipeline renders for ``prompt``, without a tokenizer."""
    return f"{IM_START}user\n{prompt}{IM_END}\n{IM_START}assistant\n"


def build_tokenizer(prompts: List[str]):
    """A fast tokenizer that covers ``prompts`` as the pipeline wraps them (see module docstring)."""
    import unicodedata

    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    pre = _pre_tokenizer()
    special = re.compile("|".join(re.escape(s) for s in SPECIAL_IDS))
    vocab: Dict[str, int] = dict(SPECIAL_IDS)
    used = set(vocab.values())
    for prompt in prompts:
        for segment in special.split(_render(unicodedata.normalize("NFC", prompt))):
            for piece, _ in pre.pre_tokenize_str(segment):
                if piece in vocab:
                    continue
                i = zlib.crc32(piece.encode("utf-8")) % SPECIAL_IDS[ENDOFTEXT]
                while i in used:
                    i = (i + 1) % SPECIAL_IDS[ENDOFTEXT]
                vocab[piece] = i
                used.add(i)
    # Pieces outside the configured prompts (none in a run) fall back to <|endoftext|>.
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=ENDOFTEXT))
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_IDS])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=ENDOFTEXT, eos_token=IM_END,
                                   chat_template=CHAT_TEMPLATE, model_max_length=131072)


# --------------------------------------------------------------------------------------------
# Building


def build_host_resident(factory: Callable[[], nn.Module], device: torch.device,
                        dtype: torch.dtype, seed: int) -> nn.Module:
    """Like ``fast_build``, but the result lives in CPU memory, as a checkpoint loaded for
    offloading does. On CUDA the random fill runs on the device (see :func:`build_on_host`)."""
    if device.type == "cpu":
        return fast_build(factory, device, dtype, seed)
    return build_on_host(factory, device, dtype, seed)


def build_on_host(factory: Callable[[], nn.Module], fill_device: torch.device,
                  dtype: torch.dtype, seed: int) -> nn.Module:
    """``factory()`` with CPU storage, each parameter drawn on ``fill_device`` by
    ``random_init_``'s rule and copied down one at a time: as fast as a device build, and it
    never needs the whole model on the device, so it also works under a VRAM budget smaller
    than the model (the case offloading exists for)."""
    cpu = torch.device("cpu")
    with torch.device("meta"):
        model = factory()
    model = model.to_empty(device=cpu).to(dtype=dtype)
    with torch.no_grad():
        for i, (name, p) in enumerate(model.named_parameters()):
            # A one-parameter module under the same leaf name gets random_init_'s exact rule.
            leaf = name.rsplit(".", 1)[-1]
            holder = nn.Module()
            holder.register_parameter(
                leaf, nn.Parameter(torch.empty(p.shape, device=fill_device, dtype=p.dtype),
                                   requires_grad=False))
            random_init_(holder, seed * 100_003 + i)
            p.copy_(getattr(holder, leaf))
            del holder
        for _, b in model.named_buffers():
            if b.dtype.is_floating_point and not torch.isfinite(b).all():
                b.zero_()
    _restore_computed_buffers(model, factory)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Parameters


def parse_attention(value: Any) -> Optional[Any]:
    """``default`` → None; ``sliced:auto`` → "auto"; ``sliced:max`` → "max"; ``sliced:N`` → N."""
    if not isinstance(value, str):
        raise ValueError(f"parameter `attention` must be a string, got {value!r}")
    if value == "default":
        return None
    if value.startswith("sliced:"):
        arg = value[len("sliced:"):]
        if arg in ("auto", "max"):
            return arg
        if arg.isdigit() and int(arg) > 0:
            return int(arg)
    raise ValueError(
        f"parameter `attention` = {value!r}: expected default, sliced:auto, sliced:max or sliced:N (N > 0)")


def _int(params: Dict[str, Any], key: str, minimum: int) -> int:
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"parameter `{key}` = {v!r}: expected an integer >= {minimum}")
    return v


def _bool(params: Dict[str, Any], key: str) -> bool:
    v = params[key]
    if not isinstance(v, bool):
        raise ValueError(f"parameter `{key}` = {v!r}: expected true or false")
    return v


def _choice(params: Dict[str, Any], key: str, choices: Tuple[str, ...]) -> str:
    v = params[key]
    if v not in choices:
        raise ValueError(f"parameter `{key}` = {v!r}: expected one of {', '.join(choices)}")
    return v


def parse_params(params: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """Validated parameters with defaults filled in, and the names this adapter does not know."""
    p = dict(DEFAULTS)
    p.update(params)
    out: Dict[str, Any] = {
        "preset": _choice(p, "preset", PRESETS),
        "offload": _choice(p, "offload", OFFLOADS),
        "steps": _int(p, "steps", 1),
        "batch": _int(p, "batch", 1),
        "seed": _int(p, "seed", 0),
        "max_sequence_length": _int(p, "max_sequence_length", 1),
        "vae_slicing": _bool(p, "vae_slicing"),
        "vae_tiling": _bool(p, "vae_tiling"),
        "attention": parse_attention(p["attention"]),
    }
    for key in ("height", "width"):
        v = _int(p, key, SIZE_MULTIPLE)
        if v % SIZE_MULTIPLE:
            raise ValueError(f"parameter `{key}` = {v}: must be a multiple of {SIZE_MULTIPLE}")
        out[key] = v
    g = p["guidance"]
    if isinstance(g, bool) or not isinstance(g, (int, float)) or g < 0:
        raise ValueError(f"parameter `guidance` = {g!r}: expected a number >= 0")
    out["guidance"] = float(g)
    if not isinstance(p["prompt"], str) or not p["prompt"].strip():
        raise ValueError(f"parameter `prompt` = {p['prompt']!r}: expected a non-empty string")
    out["prompt"] = p["prompt"]
    unknown = sorted(k for k in params if k not in DEFAULTS)
    return out, unknown


# --------------------------------------------------------------------------------------------
# The pipeline


class ZImage:
    """``ZImagePipeline`` with random weights; see the module docstring."""

    def __init__(self) -> None:
        self.pipe = None
        self.p: Dict[str, Any] = {}
        self.offload = "none"
        self.images = None
        self._ctx = None

    def setup(self, params: Dict[str, Any], ctx) -> None:
        p, unknown = parse_params(params)
        self.p = p
        self._ctx = ctx
        for key in unknown:
            ctx.not_applicable(key, "not a parameter of the Z-Image pipeline; ignored")
        _offline()

        from diffusers import ZImagePipeline

        device, dtype = ctx.device, ctx.dtype
        offload = p["offload"]
        if offload == "sequential" and device.type == "cpu":
            ctx.not_applicable(
                "offload", "sequential CPU offload needs an accelerator (on a CPU device accelerate's "
                "hooks fail in the first forward, on `cpu:0`); ran without offload")
            offload = "none"
        self.offload = offload

        build = fast_build if offload == "none" else build_host_resident
        preset = p["preset"]
        with _quiet_diffusers():
            text_encoder = build(text_encoder_factory(preset), device, dtype, 0)
            transformer = build(transformer_factory(preset), device, dtype, 1)
            vae = build(vae_factory(preset), device, dtype, 2)
        for name, m in (("text_encoder", text_encoder), ("transformer", transformer), ("vae", vae)):
            ctx.log(f"zimage {preset}: {name} {type(m).__name__} {parameter_count(m):,} parameters")

        prompts = [p["prompt"], ""]  # "" = the negative prompt under CFG
        pipe = ZImagePipeline(scheduler=make_scheduler(), vae=vae, text_encoder=text_encoder,
                              tokenizer=build_tokenizer(prompts), transformer=transformer)
        pipe.set_progress_bar_config(disable=True)

        if offload == "none":
            pipe.to(device)
        elif offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)

        if p["attention"] is not None:
            pipe.enable_attention_slicing(p["attention"])
            reached = [n for n, m in pipe.components.items()
                       if isinstance(m, nn.Module) and hasattr(m, "set_attention_slice")]
            if not reached:
                ctx.not_applicable("attention", "no Z-Image component has `set_attention_slice`; "
                                   "enable_attention_slicing changes nothing")
        if p["vae_slicing"]:
            pipe.vae.enable_slicing()
            if p["batch"] == 1:
                ctx.not_applicable("vae_slicing", "the VAE decodes a batch of 1; AutoencoderKL "
                                   "slices only batches > 1")
        if p["vae_tiling"]:
            pipe.vae.enable_tiling()
            scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
            lh, lw = p["height"] // scale, p["width"] // scale
            if max(lh, lw) <= pipe.vae.tile_latent_min_size:
                ctx.not_applicable("vae_tiling", f"{lh}x{lw} latents fit in one "
                                   f"{pipe.vae.tile_latent_min_size}-latent tile; decoded whole")

        self._install_counters(pipe)
        self.pipe = pipe
        if device.type == "cuda":
            # The random fill's temporaries must not stay reserved into the measured calls.
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()

    def _install_counters(self, pipe) -> None:
        def count(name: str, n: int = 1) -> None:
            if self._ctx is not None:
                self._ctx.count(name, n)

        pipe.text_encoder.register_forward_pre_hook(lambda m, a: count("text_encoder_evals"))

        def dit_pre(module, args, kwargs):
            count("dit_evals")
            x = args[0] if args else kwargs.get("x")
            count("dit_samples", len(x) if isinstance(x, (list, tuple)) else int(x.shape[0]))

        pipe.transformer.register_forward_pre_hook(dit_pre, with_kwargs=True)
        pipe.vae.decoder.register_forward_pre_hook(lambda m, a: count("vae_decoder_evals"))

        # Stage boundaries, the replica's stages: `encode_prompt` returning ends `text_encoder`;
        # the decode's start ends `dit` (latent preparation and the denoising loop); its end ends
        # `vae_decode`. vae.decode is not a forward; wrap the bound method (diffusers' own offload
        # hook on it, `apply_forward_hook`, still runs inside).
        encode_prompt, decode = pipe.encode_prompt, pipe.vae.decode

        def staged_encode_prompt(*args, **kwargs):
            out = encode_prompt(*args, **kwargs)
            self._mark("text_encoder")
            return out

        def counted_decode(*args, **kwargs):
            count("vae_decodes")
            self._mark("dit")
            out = decode(*args, **kwargs)
            self._mark("vae_decode")
            return out

        pipe.encode_prompt = staged_encode_prompt
        pipe.vae.decode = counted_decode

    def _mark(self, stage: str) -> None:
        """A stage boundary: the time since the previous one is ``stage``'s (synchronised)."""
        if self._ctx is not None:
            self._ctx.mark(stage)

    def call(self, ctx) -> None:
        self._ctx = ctx
        p = self.p
        # Stages `text_encoder`, `dit` and `vae_decode` are marked by the hooks above;
        # `postprocess` is the rest: the PIL conversion and the offload hooks' final release.
        with ctx.stage("postprocess"):
            # The app draws the initial noise with a CPU generator.
            out = self.pipe(
                prompt=p["prompt"],
                height=p["height"],
                width=p["width"],
                num_inference_steps=p["steps"],
                guidance_scale=p["guidance"],
                num_images_per_prompt=p["batch"],
                generator=torch.Generator("cpu").manual_seed(p["seed"]),
                max_sequence_length=p["max_sequence_length"],
                output_type="pil",
            )
        self.images = out.images


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """Silences diffusers' warning that casting a freshly built model with ``.to(dtype)``
    bypasses ``_keep_in_fp32_modules`` (Z-Image's models list none)."""
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        yield
    finally:
        dlogging.set_verbosity(level)


def _offline() -> None:
    """Hub offline mode also where huggingface_hub was imported before this module."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ[var] = "1"
    try:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
        hub_constants.HF_HUB_DISABLE_TELEMETRY = True
    except ImportError:  # pragma: no cover - diffusers depends on it
        pass

