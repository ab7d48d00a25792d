"""A Caffe net as a live `torch.nn.Module`, one submodule per Caffe layer, named after it.

Execution follows Caffe's layer order over a dict of named blobs: a layer reads its bottoms and
writes its tops (in-place layers overwrite their blob, as in Caffe). Input, data layers and
other blob sources are fed by the caller.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from modelport import limits
from modelport.errors import (
    ConfigError,
    LayerError,
    ModelportError,
    ShapeError,
    UnsupportedLayerError,
    WeightError,
)
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Layer, Net
from modelport.layers.base import CaffeModule, ConvertContext, Shape
from modelport.layers.registry import lookup
from modelport.passes.splits import split_tops_by_index

# Registry roles whose layers' tops are supplied from outside the module (inputs, data sources).
SOURCE_ROLES = frozenset({"input", "data"})


def is_source(layer: Layer) -> bool:
    """True for a layer whose tops enter the net from outside (an input or data layer role)."""
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


# Caffe's NeuronLayer types without blobs: NeuronLayer::Reshape gives the top the bottom's shape,
# whatever it is. Their meta-tensor forward would tell nothing more, and costs seconds: the first
# Python-decomposed meta op (F.relu among them) imports torch._dynamo.
SAME_SHAPE_TYPES = frozenset({"ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Power", "Exp",
                              "Log", "Threshold", "Clip", "Swish", "Dropout"})


def infer_tops(layer: Layer, module: CaffeModule, bottoms: Sequence[torch.Tensor],
               bottom_shapes: Sequence[Shape]) -> list[torch.Tensor]:
    """The tops `module` produces from `bottoms` (meta tensors: shapes only), or the module's
    own `output_shapes`; ShapeError naming the layer when it cannot be applied to them."""
    explicit = module.output_shapes(tuple(bottom_shapes))
    if explicit is None and layer.type in SAME_SHAPE_TYPES and len(bottom_shapes) == 1:
        explicit = [tuple(bottom_shapes[0])]
    if explicit is None:  # Convolution, Pooling, LRN, Concat, ...: Caffe's shape arithmetic
        # (the meta forward's first torch._check imports sympy: seconds); None when unusual
        from modelport.inspect_shapes import top_shapes

        explicit = top_shapes(layer, bottom_shapes)
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
            from modelport.layers.registry import unknown_type_reason

            problems.append((layer.name, layer.type, unknown_type_reason(layer.type)))
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


# Attributes of the generated model.py `Net` (class attributes and methods) and of CaffeNet
# instances: a layer's submodule may not take these names (nn.Module's own come from dir()).
GENERATED_NET_ATTRIBUTES = frozenset({"input_names", "output_names", "input_shapes", "forward",
                                      "forward_blobs"})
CAFFENET_ATTRIBUTES = frozenset({"net", "phase", "source_layers", "input_names", "layer_keys",
                                 "module_keys", "run_order", "blob_shapes", "output_names",
                                 "split_aliases"})


def reserved_attribute_names(owner: nn.Module | None = None) -> frozenset[str]:
    """Names a layer's submodule must never take: every attribute of nn.Module (and of `owner`,
    e.g. a CaffeNet), and those of CaffeNet and of the generated Net."""
    names = set(dir(owner if owner is not None else nn.Module()))
    return frozenset(names) | CAFFENET_ATTRIBUTES | GENERATED_NET_ATTRIBUTES


def module_keys(names: Sequence[str], reserved: frozenset[str] | None = None) -> list[str]:
    r"""Submodule keys for layers named `names` (net order), all distinct.

    A layer's key is its Caffe name wherever that name is a safe key (printable ASCII, not
    empty, none of `. " ' \\ , ; ( ) [ ]`, not an attribute in `reserved`) and no earlier layer
    has it, so state-dict keys are `conv1.weight` or `inception_3a/1x1.weight` as in Caffe.
    Otherwise those characters become `_` (torch.fx pastes submodule names between double
    quotes into the code it executes, torch.export cannot load a program whose module names
    hold an unbalanced bracket, a comma or a semicolon, and TorchScript's printer mis-escapes
    non-ASCII ones), a reserved name or a Python keyword gets a trailing
    `_` (`forward` -> `forward_`, `class` -> `class_`: torch.fx writes `self.class`), and a
    name already taken (Caffe allows two layers with one name, e.g. the two `loss` layers of
    BVLC's mnist_autoencoder) gets `_1`, `_2`, ... (`loss_1`), never taking a key another
    layer's own name claims.
    """
    reserved = reserved_attribute_names() if reserved is None else reserved

    def usable(key: str) -> bool:
        return (bool(key) and key == _key_text(key) and key not in reserved
                and not keyword.iskeyword(key))

    keys: list[str | None] = [None] * len(names)
    taken: set[str] = set()
    for i, name in enumerate(names):  # names usable as they are claim themselves first
        if usable(name) and name not in taken:
            keys[i] = name
            taken.add(name)
    for i, name in enumerate(names):
        if keys[i] is not None:
            continue
        base = _key_text(name) or "_"
        if base in reserved or keyword.iskeyword(base):
            base += "_"
        key, n = base, 0
        while key in taken or not usable(key):
            n += 1
            key = f"{base}_{n}"
        keys[i] = key
        taken.add(key)
    return [k for k in keys if k is not None]


# Printable ASCII characters a module key never holds: `.` is PyTorch's path separator;
# torch.fx pastes keys between double quotes into code it executes; torch.export's saved
# module stacks are split at , ; and brackets (`torch.export.load` fails on an unbalanced one).
_KEY_UNSAFE = frozenset(".\"'\\,;()[]")


def _key_text(name: str) -> str:
    """`name` with every character that is not printable ASCII, or is in _KEY_UNSAFE,
    replaced by `_`."""
    return "".join(ch if " " <= ch <= "~" and ch not in _KEY_UNSAFE else "_" for ch in name)


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
        # Caffe name -> key of the FIRST layer with that name (the one a name selects, as
        # Caffe's CopyTrainedLayersFrom fills the first); module_keys: one per net layer
        # (None for input/data layers), so same-named layers never share a module.
        self.layer_keys: dict[str, str] = {}
        self.module_keys: list[str | None] = []
        self.run_order: list[tuple[Layer, str]] = []
        self.blob_shapes: dict[str, Shape] = {}
        reserved = reserved_attribute_names(self)
        keys = iter(module_keys([lay.name for lay in net.layers if not is_source(lay)],
                                reserved))
        meta: dict[str, torch.Tensor] = {}
        budget = limits.WeightBudget()  # weights are refused before they exceed the limit
        for layer in net.layers:
            if is_source(layer):
                self.module_keys.append(None)
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
                    limits.check_blob_shape(layer, top, shape)
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
            key = next(keys)
            repeated = layer.name in self.layer_keys
            try:
                with budget.layer(layer):
                    module = spec.convert(layer, ctx)
            except WeightError as exc:
                if not repeated or layer.blobs:
                    raise
                raise WeightError(layer.name, layer.type,
                                  "has no weights: an earlier layer has the same name, and "
                                  "Caffe (CopyTrainedLayersFrom) copies a caffemodel's layer "
                                  "into the first layer of its name only",
                                  "rename one of the layers (and the caffemodel's layer), or "
                                  "allow missing weights (--allow-missing-weights) to "
                                  "initialise this one with its fillers as Caffe does") from exc
            self.add_module(key, module)
            self.layer_keys.setdefault(layer.name, key)
            self.module_keys.append(key)
            self.run_order.append((layer, key))
            tops = self._infer(layer, module, [meta[b] for b in layer.bottoms], bottom_shapes)
            for top, t in zip(layer.tops, tops):
                meta[top] = t
                self.blob_shapes[top] = tuple(int(d) for d in t.shape)
        self.output_names: list[str] = list(net.output_names())
        # (layer id, top index) -> Caffe's split tops of that top; the layer id is the layer's
        # name, or its module key when an earlier layer has the name (see _layer_id)
        self.split_aliases: dict[tuple[str, int], list[str]] = {}
        for (i, j), names in split_tops_by_index(net).items():
            producer, own = net.layers[i], self.module_keys[i]
            self.split_aliases[(self._layer_id(producer, own), j)] = names

    def _infer(self, layer: Layer, module: CaffeModule, bottoms: list[torch.Tensor],
               bottom_shapes: tuple[Shape, ...]) -> list[torch.Tensor]:
        return infer_tops(layer, module, bottoms, bottom_shapes)

    def _layer_id(self, layer: Layer, key: str | None) -> str:
        """The layer's name, or its module key (`ip_1`) when an earlier layer has the name."""
        return layer.name if key is None or self.layer_keys.get(layer.name) == key else key

    def layer_module(self, layer: str | Layer) -> CaffeModule:
        """The submodule converted from a Caffe layer: by name (the first layer with that name,
        when several share it), or by the Layer itself (from `run_order` or `net.layers`)."""
        if isinstance(layer, Layer):
            found = self.key_of(layer)
            if found is None:
                raise KeyError(layer.name)
            key = found
        else:
            key = self.layer_keys[layer]
        module = self._modules[key]
        assert isinstance(module, CaffeModule)
        return module

    def key_of(self, layer: Layer) -> str | None:
        """The submodule key of this Layer object (from `run_order` or `net.layers`), or None
        for input/data layers and layers optimisation folded away. One dict lookup by the
        object's id (rebuilt when run_order, net or module_keys change): PhaseNet asks per layer."""
        stamp = (id(self.run_order), len(self.run_order), id(self.net), len(self.module_keys),
                 len(self._modules))
        cache = self.__dict__.get("_key_by_id")
        if cache is None or cache[0] != stamp:
            found: dict[int, tuple[Layer, str | None]] = {}
            for lay, maybe in zip(self.net.layers, self.module_keys):
                found.setdefault(id(lay), (lay, maybe if maybe in self._modules else None))
            for lay, key in self.run_order:  # run_order first, as the scan did
                found[id(lay)] = (lay, key)
            cache = (stamp, found)
            self.__dict__["_key_by_id"] = cache
        hit = cache[1].get(id(layer))
        if hit is not None and hit[0] is layer:
            return hit[1]
        by_name = self.layer_keys.get(layer.name)
        return by_name if by_name is not None and by_name in self._modules else None

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
                    for alias in self.split_aliases.get((self._layer_id(layer, key), j), ()):
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
