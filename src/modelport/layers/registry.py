"""The one place Caffe layer types are mapped to PyTorch converters.

A converter is a function `(layer, ctx) -> CaffeModule` registered under a Caffe type name:

    @register_layer("LRN")
    def convert_lrn(layer: Layer, ctx: ConvertContext) -> CaffeModule:
        \"\"\"Caffe LRN (src/caffe/layers/lrn_layer.cpp): ...\"\"\"

The built-in families register themselves when `modelport.layers` (this module's package,
which Python imports before this module) is imported, so the registry is full before any
lookup and this module imports no layer family. User code may register converters for its own
(fork) layer types the same way; registering a type twice is an error unless `replace=True`.

The registration is also the one place that says what the rest of modelport needs to know about
a type without converting it (`LayerFacts`): the roles of its blobs in Caffe's blob order
(weight, bias, or a statistic whose lr_mult Caffe forces to 0, as BatchNormLayer::LayerSetUp
does), the sub-message holding its `num_output`, how many multiply-adds it costs, and, when it
is a per-channel affine map, that map (for folding into a preceding convolution). Surgery,
param groups, inspect, the caffemodel writer and the optimiser ask `lookup(type)` for these:

    @register_layer("InnerProduct", blobs=weight_bias("inner_product_param"),
                    num_output="inner_product_param", macs=inner_product_macs)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelport.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from modelport.ir import Layer
    from modelport.layers.base import CaffeModule, ConvertContext, Shape
    from modelport.schema import caffe_pb2

ConverterFn = Callable[["Layer", "ConvertContext"], "CaffeModule"]

# Blob roles (LayerFacts.blobs).
WEIGHT = "weight"
BIAS = "bias"  # the blob the fine-tuning convention gives 2x lr and no decay
STATISTIC = "statistic"  # not learned: Caffe forces its lr_mult to 0 (BatchNorm's sums)

BlobRolesFn = Callable[["Layer"], tuple[str, ...]]
MacsFn = Callable[["Layer", "CaffeModule", "Sequence[Shape]", "Sequence[Shape]"], int]
# (a, b) per channel of axis 1 (float64) with module(x) == a * x + b, or None.
Affine = tuple["torch.Tensor", "torch.Tensor"]
AffineFn = Callable[[Any, int], "Affine | None"]
FillersFn = Callable[["Layer"], tuple["caffe_pb2.FillerParameter", ...]]


@dataclass(frozen=True)
class LayerFacts:
    """What a layer type declares about itself beside its converter.

    `blobs(layer)` gives the role of each blob the layer's parameters declare, in Caffe's blob
    order (what `blobs` a caffemodel must hold for it); `num_output` names the sub-message of
    LayerParameter whose `num_output` sets its width; `macs(layer, module, bottom_shapes,
    top_shapes)` counts its multiply-adds; `channel_affine(module, ndim)` gives (a, b) with
    module(x) == a * x + b per channel of axis 1, or None when this instance is not such a map;
    `fillers(layer)` gives the FillerParameter LayerSetUp fills each declared blob with (Caffe's
    defaults included; `()` for blobs set without random draws, as BatchNorm's zeros).
    """

    blobs: BlobRolesFn | None = None
    num_output: str | None = None
    macs: MacsFn | None = None
    channel_affine: AffineFn | None = None
    fillers: FillersFn | None = None

    def blob_roles(self, layer: Layer) -> tuple[str, ...]:
        return self.blobs(layer) if self.blobs is not None else ()


NO_FACTS = LayerFacts()


def weight_bias(sub_message: str) -> BlobRolesFn:
    """Roles of a weight blob and, when `<sub_message>.bias_term`, a bias blob after it."""

    def roles(layer: Layer) -> tuple[str, ...]:
        bias = getattr(layer.param, sub_message).bias_term
        return (WEIGHT, BIAS) if bias else (WEIGHT,)

    return roles


def weight_bias_fillers(sub_message: str) -> FillersFn:
    """`<sub_message>.weight_filler`, and `bias_filler` when `bias_term` (Caffe's defaults:
    constant 0)."""

    def fillers(layer: Layer) -> tuple[caffe_pb2.FillerParameter, ...]:
        p = getattr(layer.param, sub_message)
        return (p.weight_filler, p.bias_filler) if p.bias_term else (p.weight_filler,)

    return fillers


def fixed_roles(*roles: str) -> BlobRolesFn:
    """A type whose blobs do not depend on its parameters (PReLU: one weight)."""
    return lambda layer: tuple(roles)


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
    facts: LayerFacts = NO_FACTS


_REGISTRY: dict[str, LayerSpec] = {}


def register_layer(type_name: str, *, role: str = "inference", replace: bool = False,
                   blobs: BlobRolesFn | None = None, num_output: str | None = None,
                   macs: MacsFn | None = None, channel_affine: AffineFn | None = None,
                   fillers: FillersFn | None = None,
                   ) -> Callable[[ConverterFn], ConverterFn]:
    """Register `fn` as the converter for Caffe layers of type `type_name`, with the type's
    facts (`LayerFacts`: blob roles, num_output field, MAC counter, per-channel affine form,
    blob fillers)."""
    facts = LayerFacts(blobs, num_output, macs, channel_affine, fillers)

    def decorator(fn: ConverterFn) -> ConverterFn:
        if type_name in _REGISTRY and not replace:
            raise ConfigError(
                f"a converter for Caffe type '{type_name}' is already registered "
                f"({_REGISTRY[type_name].convert.__module__}); pass replace=True to override it"
            )
        doc = inspect.getdoc(fn) or ""
        summary = doc.split("\n\n")[0].replace("\n", " ").strip()
        family = fn.__module__.rsplit(".", 1)[-1]
        _REGISTRY[type_name] = LayerSpec(type_name, fn, family, summary, role, facts)
        return fn

    return decorator


def lookup(type_name: str) -> LayerSpec | None:
    """The converter registered for `type_name`, or None."""
    return _REGISTRY.get(type_name)


def unregister_layer(type_name: str) -> None:
    """Forget the converter of `type_name` (a fork type registered for a while, in a test)."""
    _REGISTRY.pop(type_name, None)


def facts(type_name: str) -> LayerFacts:
    """The facts registered for `type_name` (none for an unregistered type)."""
    spec = lookup(type_name)
    return spec.facts if spec is not None else NO_FACTS


def blob_roles(layer: Layer) -> tuple[str, ...]:
    """The role of each of `layer`'s blobs: as many as it stores (a stored blob beyond what
    the type declares counts as a weight), else as many as its type declares."""
    declared = facts(layer.type).blob_roles(layer)
    if not layer.blobs:
        return declared
    return tuple(declared[i] if i < len(declared) else WEIGHT for i in range(len(layer.blobs)))


def layer_types(role: str | None = None) -> list[str]:
    """Every registered Caffe type (optionally only those of one role), sorted."""
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
    """Every registered converter, by type name."""
    return [_REGISTRY[t] for t in sorted(_REGISTRY)]
