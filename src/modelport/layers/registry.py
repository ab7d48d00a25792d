"""The one place Caffe layer types are mapped to PyTorch converters.

A converter is a function `(layer, ctx) -> CaffeModule` registered under a Caffe type name:

    @register_layer("LRN")
    def convert_lrn(layer: Layer, ctx: ConvertContext) -> CaffeModule:
        \"\"\"Caffe LRN (src/caffe/layers/lrn_layer.cpp): ...\"\"\"

User code may register converters for its own (fork) layer types the same way; registering a
type twice is an error unless `replace=True`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelport.errors import ConfigError

if TYPE_CHECKING:
    from modelport.ir import Layer
    from modelport.layers.base import CaffeModule, ConvertContext

ConverterFn = Callable[["Layer", "ConvertContext"], "CaffeModule"]


@dataclass(frozen=True)
class LayerSpec:
    """A registered converter and what the README says about it."""

    type: str
    convert: ConverterFn
    family: str
    summary: str
    # "inference": runs in deploy nets; "train": only meaningful when training (losses,
    # accuracy); "data": produces blobs from files (fed by the training data pipeline).
    role: str = "inference"


_REGISTRY: dict[str, LayerSpec] = {}


def register_layer(type_name: str, *, role: str = "inference",
                   replace: bool = False) -> Callable[[ConverterFn], ConverterFn]:
    """Register `fn` as the converter for Caffe layers of type `type_name`."""

    def decorator(fn: ConverterFn) -> ConverterFn:
        if type_name in _REGISTRY and not replace:
            raise ConfigError(
                f"a converter for Caffe type '{type_name}' is already registered "
                f"({_REGISTRY[type_name].convert.__module__}); pass replace=True to override it"
            )
        doc = inspect.getdoc(fn) or ""
        summary = doc.split("\n\n")[0].replace("\n", " ").strip()
        family = fn.__module__.rsplit(".", 1)[-1]
        _REGISTRY[type_name] = LayerSpec(type_name, fn, family, summary, role)
        return fn

    return decorator


def lookup(type_name: str) -> LayerSpec | None:
    """The converter registered for `type_name`, or None."""
    _ensure_builtin_layers()
    return _REGISTRY.get(type_name)


def layer_types(role: str | None = None) -> list[str]:
    """Every registered Caffe type (optionally only those of one role), sorted."""
    _ensure_builtin_layers()
    return sorted(t for t, s in _REGISTRY.items() if role is None or s.role == role)


def close_types(type_name: str, limit: int = 1) -> list[str]:
    """Registered types a misspelt `type_name` may mean ('Convolutoin' -> ['Convolution']): a
    case-insensitive match first, then difflib's close matches."""
    types = layer_types()
    same = [t for t in types if t.lower() == type_name.lower() and t != type_name]
    if same:
        return same
    import difflib

    return difflib.get_close_matches(type_name, types, n=limit, cutoff=0.75)


def unknown_type_reason(type_name: str) -> str:
    """Why a layer of unregistered type `type_name` cannot be converted, with a suggestion."""
    close = close_types(type_name)
    if close:
        return f"no converter registered (did you mean {' or '.join(map(repr, close))}?)"
    return "no converter registered"


def specs() -> list[LayerSpec]:
    _ensure_builtin_layers()
    return [_REGISTRY[t] for t in sorted(_REGISTRY)]


def _ensure_builtin_layers() -> None:
    import modelport.layers  # noqa: F401  (importing the package registers the families)
