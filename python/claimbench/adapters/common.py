"""Helpers the adapters share: importing part of a package without its ``__init__``, and
checking parameters with errors that name the adapter and the parameter."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, Callable, Dict, Iterable, TypeVar

T = TypeVar("T")


def import_without_package_init(parent: str, load: Callable[[], T]) -> T:
    """Runs ``load`` (which imports submodules of the package ``parent``) with a placeholder
    standing in for ``parent``, so that its ``__init__`` — heavy or compiled imports for parts
    of the library the caller does not run — never executes. The placeholder is removed again,
    so a later real ``import parent`` runs the ``__init__``; the submodules stay cached."""
    if parent in sys.modules:
        return load()
    spec = importlib.util.find_spec(parent)
    if spec is None:
        raise ImportError(f"no package `{parent}`")
    placeholder = importlib.util.module_from_spec(spec)
    sys.modules[parent] = placeholder
    try:
        return load()
    finally:
        if sys.modules.get(parent) is placeholder:
            del sys.modules[parent]
        owner_name, _, child = parent.rpartition(".")
        owner = sys.modules.get(owner_name)
        if owner is not None and getattr(owner, child, None) is placeholder:
            delattr(owner, child)


def bad_param(adapter: str, name: str, want: str, got: Any) -> ValueError:
    return ValueError(f"{adapter}: parameter `{name}` must be {want}, got {got!r}")


def int_param(adapter: str, params: Dict[str, Any], name: str, default: int, lo: int, hi: int,
              multiple: int = 1) -> int:
    """``params[name]`` (else ``default``): an integer (not a bool) in ``lo..hi``, a multiple of
    ``multiple``."""
    v = params.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi or v % multiple:
        extra = f", a multiple of {multiple}" if multiple > 1 else ""
        raise bad_param(adapter, name, f"an integer in {lo}..{hi}{extra}", v)
    return v


def reject_unknown(adapter: str, params: Dict[str, Any], known: Iterable[str],
                   also_allowed: Iterable[str] = ()) -> None:
    """Raises for a parameter the adapter does not know. ``entry`` (the manifest's name for the
    class) is allowed, so a caller may pass a manifest's parameters whole."""
    known = list(known)
    allowed = set(known) | set(also_allowed) | {"entry"}
    for key in params:
        if key not in allowed:
            raise ValueError(f"{adapter}: unknown parameter `{key}` (known: {', '.join(known)})")


def preset_param(adapter: str, params: Dict[str, Any], default: str,
                 presets: Dict[str, Any]) -> str:
    """``params["preset"]`` (else ``default``), one of ``presets``' keys."""
    preset = params.get("preset", default)
    if not isinstance(preset, str) or preset not in presets:
        raise bad_param(adapter, "preset", f"one of {sorted(presets)}", preset)
    return preset
