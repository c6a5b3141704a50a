"""What a pipeline sees of the harness: the device, the dtype, its parameters, and the calls that
mark stage boundaries and count events inside one measured call."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Pipeline:
    """Base class for pipelines (optional: any class with ``setup`` and ``call`` works)."""

    def setup(self, params: Dict[str, Any], ctx: "Context") -> None:
        """Builds models and inputs; runs once per worker process, untimed."""

    def call(self, ctx: "Context") -> None:
        """One measured call. Mark stages with ``with ctx.stage("name"):``."""
        raise NotImplementedError


class Context:
    """Handed to ``setup`` and ``call``.

    Attributes:
        device: ``torch.device`` the variant runs on (``cuda:0`` or ``cpu``).
        dtype: ``torch.dtype`` of the ``dtype`` knob (weights and activations).
        autocast: ``torch.dtype`` of the ``autocast`` knob, or ``None``; the worker already runs
            every call under ``torch.autocast`` with it, so pipelines need not.
        params: the manifest's parameters after matrix expansion, typed (int, float, bool, str).
        knobs: the variant's knobs as the plan has them (a dict, manifest spelling).
    """

    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype,
        autocast: Optional[torch.dtype],
        params: Dict[str, Any],
        knobs: Dict[str, Any],
        empty_cache_between_stages: bool = False,
        log: Optional[Callable[[str, str], None]] = None,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.autocast = autocast
        self.params = params
        self.knobs = knobs
        self._empty_cache = empty_cache_between_stages
        self._log = log or (lambda level, message: None)
        self._last = time.perf_counter()
        self.stage_times: List[Dict[str, Any]] = []
        self.counters: Dict[str, int] = {}
        self.not_applicable_knobs: List[str] = []

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def synchronize(self) -> None:
        """Waits for all queued device work (no-op on CPU)."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def begin_call(self, start: float) -> None:
        """Called by the worker at the start of each measured call."""
        self._last = start
        self.stage_times = []
        self.counters = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Runs the block as stage ``name``. When the block ends, the device is synchronised (and
        the allocator cache emptied if the ``empty_cache_between_stages`` knob is on), then the
        host time since the previous boundary is recorded, as the Rust worker does. Stages of the
        same name within one call add up. A block that raises records nothing."""
        yield
        self.synchronize()
        if self._empty_cache and self.is_cuda:
            torch.cuda.empty_cache()
        now = time.perf_counter()
        ms = (now - self._last) * 1e3
        self._last = now
        for s in self.stage_times:
            if s["name"] == name:
                s["wall_ms"] += ms
                break
        else:
            self.stage_times.append({"name": name, "wall_ms": ms})

    def mark(self, name: str) -> None:
        """Ends stage ``name`` here, as a ``stage`` block around everything since the previous
        boundary would: for hooks that only see where a stage ends (a wrapped method returning)."""
        with self.stage(name):
            pass

    def count(self, name: str, n: int = 1) -> None:
        """Adds ``n`` to a named counter (e.g. ``unet_evals``)."""
        if n < 0:
            raise ValueError(f"counter `{name}`: cannot add {n}")
        self.counters[name] = self.counters.get(name, 0) + int(n)

    def not_applicable(self, knob: str, why: str) -> None:
        """Records that a knob the manifest sets has no effect on this pipeline (e.g. attention
        slicing on a model without ``set_attention_slice``); the record keeps it as a warning."""
        text = f"{knob}: {why}"
        if text not in self.not_applicable_knobs:
            self.not_applicable_knobs.append(text)
            self._log("warn", f"not applicable: {text}")

    def log(self, message: str) -> None:
        """A line for the process record's log."""
        self._log("info", message)
