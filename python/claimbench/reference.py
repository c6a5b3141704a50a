"""Python twins of built-in workloads, op for op, so that the two workers can be checked to
measure alike (the conformance test), and a fault pipeline for testing failure handling."""

from __future__ import annotations

import os
import signal
import time

import torch


class Sleep:
    """The built-in ``sleep`` workload: ``ms`` per call, split evenly over ``stages``."""

    def setup(self, params, ctx):
        self.stages = int(params.get("stages", 1))
        self.per_stage_s = float(params.get("ms", 10.0)) / 1e3 / self.stages

    def call(self, ctx):
        for i in range(self.stages):
            with ctx.stage(f"sleep{i}"):
                time.sleep(self.per_stage_s)
        ctx.count("sleeps", self.stages)


class Matmul:
    """The built-in ``matmul`` workload: one (m×k)·(k×n) product whose result is dropped, so
    the call's peak allocation is exactly the m×n output (plus any library workspace)."""

    def setup(self, params, ctx):
        torch.manual_seed(int(params.get("seed", 0)))
        m, k, n = (int(params.get(x, 4096)) for x in ("m", "k", "n"))
        self.a = torch.randn(m, k, device=ctx.device, dtype=ctx.dtype)
        self.b = torch.randn(k, n, device=ctx.device, dtype=ctx.dtype)

    def call(self, ctx):
        with ctx.stage("matmul"):
            torch.matmul(self.a, self.b)


class Fault:
    """Fails on purpose after ``after_calls`` successful calls (warm-up included): ``kind`` is ``raise`` (a Python
    exception), ``alloc`` (asks for ``bytes`` of memory: an OOM), ``abort`` (the process dies
    by a signal), ``exit`` (exits without an outcome), ``print`` (writes to stdout, which must
    not corrupt the protocol) or ``none``."""

    KINDS = ("none", "raise", "alloc", "abort", "exit", "print")

    def setup(self, params, ctx):
        self.kind = params.get("kind", "none")
        if self.kind not in self.KINDS:
            raise ValueError(f"params.kind: `{self.kind}` is not one of {', '.join(self.KINDS)}")
        self.after = int(params.get("after_calls", 0))
        self.bytes = int(params.get("bytes", 1 << 50))
        self.calls = 0
        if params.get("in_setup", False):
            self._fail(ctx)

    def _fail(self, ctx):
        if self.kind == "raise":
            raise RuntimeError("fault pipeline: raised on purpose")
        if self.kind == "alloc":
            torch.empty(self.bytes, dtype=torch.uint8, device=ctx.device)
        if self.kind == "abort":
            os.kill(os.getpid(), signal.SIGABRT)
        if self.kind == "exit":
            os._exit(3)

    def call(self, ctx):
        with ctx.stage("work"):
            if self.kind == "print":
                print("stray output from a library")
            if self.calls >= self.after:
                self._fail(ctx)
            self.calls += 1
