"""claimbench's Python side: the worker that runs real pipeline code under the same knobs and
measurement definitions as the Rust worker, and adapters for the notes' libraries.

A user pipeline is a class with ``setup(params, ctx)`` (once, untimed) and ``call(ctx)`` (one
measured call); see :class:`claimbench.context.Context` for what ``ctx`` offers.
"""

from claimbench.context import Context, Pipeline

__all__ = ["Context", "Pipeline"]
