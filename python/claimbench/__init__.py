"""claimbench's Python side: the worker that runs real pipeline code under the same knobs and
measurement definitions as the Rust worker, and adapters for the notes' libraries.

A user pipeline is a class with ``setup(params, ctx)`` (once, untimed) and ``call(ctx)`` (one
measured call); see :class:`claimbench.context.Context` for what ``ctx`` offers.

Nothing here imports torch at package import, so that the worker can report a Python without
torch as an outcome rather than die before it can speak.
"""

__all__ = ["Context", "Pipeline"]


def __getattr__(name):
    if name in __all__:
        from claimbench import context

        return getattr(context, name)
    raise AttributeError(f"module 'claimbench' has no attribute {name!r}")
