"""A Caffe net as a live `torch.nn.Module`, one submodule per Caffe layer, named after it.

Execution follows Caffe's layer order over a dict of named blobs: a layer reads its bottoms and
writes its tops (in-place layers overwrite their blob, as in Caffe). Input, data layers and
other blob sources are fed by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from modelport.errors import (
    ConfigError,
    LayerError,
    ModelportError,
    ShapeError,
    UnsupportedLayerError,
)
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Layer, Net
from modelport.layers.base import CaffeModule, ConvertContext, Shape
from modelport.layers.registry import lookup
from modelport.passes.splits import split_tops

# Registry roles whose layers' tops are supplied from outside the module (inputs, data sources).
SOURCE_ROLES = frozenset({"input", "data"})


def is_source(layer: Layer) -> bool:
    spec = lookup(layer.type)
    return spec is not None and spec.role in SOURCE_ROLES


def input_shapes_for(net: Net, given: Mapping[str, Sequence[int]] | None) -> dict[str, Shape]:
    """The net's declared input shapes with `given` overriding them; ConfigError when `given`
    names a blob that no input or data layer produces (a typo would otherwise be ignored)."""
    shapes: dict[str, Shape] = {k: tuple(v) for k, v in net.input_shapes().items()}
    if not given:
        return shapes
    inputs = [top for layer in net.layers if is_source(layer) for top in layer.tops]
    unknown = [name for name in given if name not in inputs]
    if unknown:
        raise ConfigError(f"input shape given for '{unknown[0]}', which is not an input blob of "
                          f"{net.source} (its inputs: {', '.join(inputs) or 'none'}). Fix: "
                          "use one of those names in --input-shape / input_shapes")
    for name, shape in given.items():
        shapes[name] = tuple(int(d) for d in shape)
    return shapes


def infer_tops(layer: Layer, module: CaffeModule, bottoms: Sequence[torch.Tensor],
               bottom_shapes: Sequence[Shape]) -> list[torch.Tensor]:
    """The tops `module` produces from `bottoms` (meta tensors: shapes only), or the module's
    own `output_shapes`; ShapeError naming the layer when it cannot be applied to them."""
    explicit = module.output_shapes(tuple(bottom_shapes))
    if explicit is not None:
        tops = [torch.empty(s, device="meta") for s in explicit]
    else:
        try:
            with torch.no_grad():
                out = module(*bottoms)
        except ModelportError:
            raise
        except Exception as exc:  # torch reports shape problems as several exception types
            raise ShapeError(layer.name, layer.type,
                             f"cannot be applied to bottom shapes "
                             f"{', '.join(str(s) for s in bottom_shapes)} "
                             f"({_one_line(exc)})",
                             "check the input shape and this layer's parameters") from None
        tops = list(out) if isinstance(out, tuple | list) else [out]
    if len(tops) != len(layer.tops):
        raise ShapeError(layer.name, layer.type,
                         f"produces {len(tops)} blobs but lists {len(layer.tops)} tops")
    return tops


def unsupported_layers(net: Net) -> list[tuple[str, str, str]]:
    """Every layer of `net` that no converter handles, as (name, type, reason)."""
    problems = []
    for layer in net.layers:
        if is_source(layer):
            continue
        if layer.type == "Python":
            p = layer.param.python_param
            problems.append((layer.name, layer.type,
                             f"Python layer {p.module}.{p.layer} runs user code; "
                             "no converter registered for it"))
        elif lookup(layer.type) is None:
            problems.append((layer.name, layer.type, "no converter registered"))
    return problems


def check_convertible(net: Net) -> None:
    """Raise one UnsupportedLayerError listing every unconvertible layer, or a FormatError
    for fields the schema does not know (only once all layer types are known)."""
    problems = unsupported_layers(net)
    if problems:
        raise UnsupportedLayerError(problems, net.source)
    for note in net.notes:
        if note.startswith("unknown-field: "):
            from modelport.errors import FormatError

            raise FormatError(note[len("unknown-field: "):])


def _module_key(name: str, taken: set[str], owner: nn.Module) -> str:
    """A submodule name for a Caffe layer name: the same text where PyTorch allows it."""
    key = name.replace(".", "_") or "_"
    while key in taken or (hasattr(owner, key) and key not in owner._modules):
        key += "_"
    taken.add(key)
    return key


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class CaffeNet(nn.Module):
    """The converted net. Call with the input blobs (positional, in `input_names` order, or by
    name); returns the output blob, or a dict of them when the net has several."""

    def __init__(self, net: Net, input_shapes: Mapping[str, Sequence[int]] | None = None,
                 allow_missing_weights: bool = False) -> None:
        super().__init__()
        check_convertible(net)
        self.net = net
        self.phase = net.phase
        shapes = input_shapes_for(net, input_shapes)
        self.source_layers: list[Layer] = []
        self.input_names: list[str] = []
        self.layer_keys: dict[str, str] = {}
        self.run_order: list[tuple[Layer, str]] = []
        self.blob_shapes: dict[str, Shape] = {}
        taken: set[str] = set()
        meta: dict[str, torch.Tensor] = {}
        for layer in net.layers:
            if is_source(layer):
                self.source_layers.append(layer)
                for top in layer.tops:
                    if top in self.input_names:
                        raise ConfigError(f"blob '{top}' is produced by two input layers")
                    self.input_names.append(top)
                    shape = shapes.get(top, ())
                    if not shape:
                        raise ShapeError(layer.name, layer.type,
                                         f"the shape of input blob '{top}' is not declared",
                                         "give it with --input-shape "
                                         f"{top}=N,C,H,W (or input_shapes={{'{top}': ...}})")
                    if any(d <= 0 for d in shape):
                        raise ShapeError(layer.name, layer.type,
                                         f"input blob '{top}' has shape {shape}; every "
                                         "dimension must be positive")
                    self.blob_shapes[top] = shape
                    meta[top] = torch.empty(shape, device="meta")
                continue
            for b in layer.bottoms:
                if b not in meta:
                    raise LayerError(layer.name, layer.type,
                                     f"bottom blob '{b}' is not produced by any earlier layer",
                                     "check the bottom names and the layer order "
                                     "(and the include/exclude phase rules)")
            bottom_shapes = tuple(self.blob_shapes[b] for b in layer.bottoms)
            ctx = ConvertContext(layer, bottom_shapes, self.phase, allow_missing_weights)
            spec = lookup(layer.type)
            assert spec is not None  # check_convertible guarantees it
            module = spec.convert(layer, ctx)
            key = _module_key(layer.name, taken, self)
            self.add_module(key, module)
            self.layer_keys[layer.name] = key
            self.run_order.append((layer, key))
            tops = self._infer(layer, module, [meta[b] for b in layer.bottoms], bottom_shapes)
            for top, t in zip(layer.tops, tops):
                meta[top] = t
                self.blob_shapes[top] = tuple(int(d) for d in t.shape)
        self.output_names: list[str] = list(net.output_names())
        self.split_aliases = split_tops(net)

    def _infer(self, layer: Layer, module: CaffeModule, bottoms: list[torch.Tensor],
               bottom_shapes: tuple[Shape, ...]) -> list[torch.Tensor]:
        return infer_tops(layer, module, bottoms, bottom_shapes)

    def layer_module(self, layer_name: str) -> CaffeModule:
        """The submodule converted from the Caffe layer `layer_name`."""
        module = self._modules[self.layer_keys[layer_name]]
        assert isinstance(module, CaffeModule)
        return module

    def _bind_inputs(self, args: tuple[torch.Tensor, ...],
                     kwargs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(args) > len(self.input_names):
            raise ConfigError(f"the net takes {len(self.input_names)} inputs "
                              f"({', '.join(self.input_names)}), got {len(args)}")
        blobs = dict(zip(self.input_names, args))
        for name, value in kwargs.items():
            if name not in self.input_names:
                raise ConfigError(f"'{name}' is not an input of the net; inputs are "
                                  f"{', '.join(self.input_names)}")
            if name in blobs:
                raise ConfigError(f"input '{name}' given twice")
            blobs[name] = value
        missing = [n for n in self.input_names if n not in blobs]
        if missing:
            raise ConfigError(f"missing net input(s): {', '.join(missing)}")
        return blobs

    def forward_blobs(self, *args: torch.Tensor, include_splits: bool = False,
                      on_top: Callable[[Layer, int, torch.Tensor], None] | None = None,
                      **kwargs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the net; return every blob by its Caffe name (in-place blobs: final value).

        With include_splits, the tops of Caffe's implicit Split layers are included too, each
        holding its source blob's value as produced (as pycaffe's net.blobs shows them).
        `on_top(layer, top_index, tensor)` is called for every top as it is produced (input
        layers first), so a caller can see each in-place layer's own output.
        """
        blobs = self._bind_inputs(args, kwargs)
        if on_top is not None:
            for layer in self.source_layers:
                for j, top in enumerate(layer.tops):
                    on_top(layer, j, blobs[top])
        splits: dict[str, torch.Tensor] = {}
        if include_splits:
            for layer in self.source_layers:
                for j, top in enumerate(layer.tops):
                    for alias in self.split_aliases.get((layer.name, j), ()):
                        splits[alias] = blobs[top]
        for layer, key in self.run_order:
            module = self._modules[key]
            assert module is not None  # every run_order key names a registered submodule
            out = module(*[blobs[b] for b in layer.bottoms])
            outs = list(out) if isinstance(out, tuple | list) else [out]
            for j, (top, t) in enumerate(zip(layer.tops, outs)):
                blobs[top] = t
                if on_top is not None:
                    on_top(layer, j, t)
                if include_splits:
                    for alias in self.split_aliases.get((layer.name, j), ()):
                        splits[alias] = t
        blobs.update(splits)
        return blobs

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor,
                ) -> torch.Tensor | dict[str, torch.Tensor]:
        # kwargs are input blobs by name (mypy cannot tell they never hold include_splits)
        blobs = self.forward_blobs(*args, **kwargs)  # type: ignore[arg-type]
        if len(self.output_names) == 1:
            return blobs[self.output_names[0]]
        return {name: blobs[name] for name in self.output_names}


def build_module(net: Net, input_shapes: Mapping[str, Sequence[int]] | None = None,
                 allow_missing_weights: bool = False) -> CaffeNet:
    """Convert an IR net into a CaffeNet (eval mode for TEST nets, train mode for TRAIN)."""
    module = CaffeNet(net, input_shapes, allow_missing_weights)
    module.train(net.phase == caffe_pb2.TRAIN)
    return module
