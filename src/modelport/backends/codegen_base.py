"""The emitter and helper registries of model.py generation (modelport.backends.codegen), and
the literal writer, on their own below both codegen and the built-in emitters
(codegen_layers), so that neither imports the other's module to register or to write.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from modelport.ir import Layer

__all__ = ["Emitted", "Emitter", "call", "lit", "register_emitter", "register_helper"]


@dataclass(frozen=True)
class Emitted:
    """How one layer appears in the generated file: its constructor and the helpers it uses."""

    expr: str
    helpers: tuple[str, ...] = ()


Emitter = Callable[[Layer, nn.Module], Emitted]

_EMITTERS: dict[type, Emitter] = {}
# name -> (source, names of helpers it needs). Emitted in dependency order, each once.
_HELPERS: dict[str, tuple[str, tuple[str, ...]]] = {}


def register_emitter(*classes: type) -> Callable[[Emitter], Emitter]:
    """Register `fn(layer, module) -> Emitted` as the source emitter for module `classes`."""

    def decorator(fn: Emitter) -> Emitter:
        for cls in classes:
            _EMITTERS[cls] = fn
        return fn

    return decorator


def register_helper(name: str, source: str, needs: Sequence[str] = ()) -> None:
    """Add a helper snippet (a function or class definition in plain torch) by name."""
    _HELPERS[name] = (textwrap.dedent(source).strip("\n"), tuple(needs))


def lit(value: object) -> str:
    """A Python literal that reproduces `value` exactly (floats by repr: round-trips)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        if value == float("inf"):
            return 'float("inf")'
        if value == float("-inf"):
            return '-float("inf")'
        if value != value:
            return 'float("nan")'
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, torch.Size):
        value = tuple(value)
    if isinstance(value, tuple):
        inner = ", ".join(lit(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(lit(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return lit(value.item())
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a literal")


def call(name: str, *args: object, **kwargs: object) -> str:
    """`name(arg, ..., key=value)` with every value written by `lit`."""
    parts = [lit(a) for a in args] + [f"{k}={lit(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"
