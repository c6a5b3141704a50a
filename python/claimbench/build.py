"""Building large models with random weights quickly: construct on the ``meta`` device (no
memory, no initialisation), allocate storage on the target device with ``to_empty``, then
initialise every parameter and buffer in place there. Building a 6 B-parameter model this way
takes seconds on a GPU where a plain construction on the CPU takes minutes.

Random weights change no shape, dtype or kernel choice, so time and memory follow the real
model's; what they change is data-dependent work (early exits, marching-cubes surface size),
which adapters state where it matters.
"""

from __future__ import annotations

import math
from typing import Callable, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def random_init_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Initialises every parameter and floating buffer of ``module`` in place, on its device.

    Weights get N(0, 1/fan_in) (keeps activations of deep random stacks finite), biases and
    norm offsets 0, norm scales 1. Buffers are restored from a parameter-free
    construction (see :func:`fast_build`)."""
    gen_device = next((p.device for p in module.parameters()), torch.device("cpu"))
    generator = torch.Generator(device=gen_device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim <= 1:
                is_scale = leaf == "weight" or "scale" in leaf or leaf == "gamma"
                p.fill_(1.0 if is_scale else 0.0)
            else:
                fan_in = max(1, p[0].numel())
                std = 1.0 / math.sqrt(fan_in)
                if p.dtype.is_floating_point:
                    tmp = torch.empty(p.shape, device=p.device, dtype=torch.float32)
                    tmp.normal_(0.0, std, generator=generator)
                    p.copy_(tmp)
                    del tmp
        for _, b in module.named_buffers():
            if b.dtype.is_floating_point and not torch.isfinite(b).all():
                b.zero_()
    return module


def fast_build(
    factory: Callable[[], M],
    device: torch.device,
    dtype: torch.dtype,
    seed: int = 0,
) -> M:
    """``factory()`` on the meta device, moved to ``device`` with uninitialised storage in
    ``dtype``, then initialised in place by :func:`random_init_`. Buffers that modules compute
    in ``__init__`` (rotary tables, position ids) are left undefined by ``to_empty``; they are
    taken from a second construction whose parameters go straight to ``meta``."""
    with torch.device("meta"):
        model = factory()
    # The dtype is set on meta, so the device never holds an fp32 copy: as from_pretrained(...,
    # torch_dtype=...) loads, and as the built-in replicas build. Casting after to_empty left
    # the freed fp32 storage in the allocator's cache, counted as reserved memory.
    model = model.to(dtype=dtype) if dtype is not None else model
    model = model.to_empty(device=device)
    random_init_(model, seed)
    _restore_computed_buffers(model, factory)
    return model.eval()


def _restore_computed_buffers(model: nn.Module, factory: Callable[[], nn.Module]) -> None:
    buffers = dict(model.named_buffers())
    if not buffers:
        return
    # Buffers are small (rotary tables, ids); building them needs a real module, but only its
    # buffers are kept.
    reference = _buffers_of(factory)
    with torch.no_grad():
        for name, b in buffers.items():
            ref = reference.get(name)
            if ref is not None and ref.shape == b.shape:
                b.copy_(ref.to(device=b.device, dtype=b.dtype))


def parameters_on_meta(factory: Callable[[], M]) -> M:
    """``factory()`` with every parameter created on meta (``torch.nn.utils.init`` skipped) and
    every other tensor (buffers, plain attributes) on the CPU."""
    original = nn.Module.register_parameter

    def register_on_meta(self, name, param):  # type: ignore[no-untyped-def]
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        return original(self, name, param)

    nn.Module.register_parameter = register_on_meta  # type: ignore[assignment]
    try:
        with torch.device("cpu"):
            return factory()
    finally:
        nn.Module.register_parameter = original  # type: ignore[assignment]


def _buffers_of(factory: Callable[[], nn.Module]) -> dict:
    """Buffers a module computes at construction, without materialising its parameters."""
    copy = parameters_on_meta(factory)
    return {k: v for k, v in copy.named_buffers() if v.device.type != "meta"}
