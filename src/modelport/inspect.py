"""`modelport inspect`: what a Caffe net contains, layer by layer, before converting it.

For every layer: name, type, bottoms -> tops, output shapes, parameter count (every weight blob,
BatchNorm's statistics included) and FLOPs, counted as **multiply-adds** (one MAC = one multiply
and one add) for the layers that dominate the cost: Convolution (top elements x C/group x
kernel), Deconvolution (bottom elements x num_output/group x kernel) and InnerProduct (rows x
weight elements). Other layers count 0 (their cost is linear in the blob size).

Unlike `convert`, nothing here is an error per layer: a layer without a converter, or one that
cannot be applied to its bottoms, is flagged with the reason and the layers after it that depend
on it get unknown shapes ("?"). An input shape no tensor can have (a negative dim, more than
2^63 bytes) is an error.

No weights are allocated: each layer is converted in shape-only mode (`limits.shape_only`:
fillers return meta tensors), so a `num_output: 2000000000` layer is counted, not filled. Layers
identical but for their names and blob names (the blocks of a ResNet) are converted once per
distinct (parameters, bottom shapes, stored blob shapes) and the result reused, so inspecting
thousands of layers costs one conversion per distinct layer plus a linear walk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from modelport import limits
from modelport.backends.torch_module import infer_tops, input_shapes_for, is_source
from modelport.errors import ModelportError, ShapeError
from modelport.formats.caffe import caffe_pb2
from modelport.inspect_shapes import LayerInfo, Totals, format_shape, human  # noqa: F401 - public here since 0.1
from modelport.ir import Layer, Net
from modelport.layers.base import CaffeModule, ConvertContext, Shape
from modelport.layers.registry import facts, lookup
from modelport.pipeline import load_net


@dataclass
class NetInfo(Totals):
    """The inspect table of a net: its rows in Caffe's order, whether a caffemodel was read, and the
    totals."""

    name: str
    layers: list[LayerInfo] = field(default_factory=list)
    has_weights: bool = False  # a caffemodel was read (some layer has blobs)

    @property
    def missing_weights(self) -> list[LayerInfo]:
        """Layers with learnable blobs that the caffemodel did not provide."""
        if not self.has_weights:
            return []
        return [la for la in self.layers if la.params and not la.weights_found]

    @property
    def unsupported(self) -> list[LayerInfo]:
        return [la for la in self.layers if not la.supported]


def layer_macs(layer: Layer, module: CaffeModule, bottoms: Sequence[Shape],
               tops: Sequence[Shape]) -> int:
    """Multiply-adds of one layer: the counter its type registers (LayerFacts.macs), else 0."""
    count = facts(layer.type).macs
    return count(layer, module, bottoms, tops) if count is not None else 0


def _type_problem(layer: Layer) -> str | None:
    if layer.type == "Python":
        p = layer.param.python_param
        return f"Python layer {p.module}.{p.layer} runs user code; no converter registered"
    if lookup(layer.type) is None:
        from modelport.layers.registry import unknown_type_reason

        return unknown_type_reason(layer.type)
    return None


def inspect_net(net: Net, input_shapes: Mapping[str, Sequence[int]] | None = None) -> NetInfo:
    """Walk `net` in Caffe's order, converting each layer on its own to learn shapes/params."""
    declared = input_shapes_for(net, input_shapes)
    shapes: dict[str, Shape | None] = {}
    done: dict[bytes, tuple[list[Shape], int, int]] = {}  # conversions of identical layers
    info = NetInfo(net.name, has_weights=any(layer.blobs for layer in net.layers))
    for layer in net.layers:
        row = LayerInfo(layer.name, layer.type, layer.bottoms, layer.tops, [],
                        weights_found=bool(layer.blobs))
        info.layers.append(row)
        if is_source(layer):
            for top in layer.tops:
                given: Shape | None = declared.get(top) or None
                if given is not None:
                    problem = limits.shape_problem(given)
                    if problem is not None:
                        raise ShapeError(layer.name, layer.type, f"input blob '{top}' {problem}",
                                         f"give a valid shape (--input-shape {top}=N,C,H,W)")
                shapes[top] = given
                row.top_shapes.append(given)
            if any(s is None for s in row.top_shapes):
                row.problem = "input shape not declared (give --input-shape)"
            continue
        row.problem = _type_problem(layer)
        row.no_converter = row.problem is not None
        missing = [b for b in layer.bottoms if b not in shapes]
        if row.problem is None and missing:
            row.problem = f"bottom blob '{missing[0]}' is not produced by any earlier layer"
        bottoms = [shapes.get(b) for b in layer.bottoms]
        tops: list[Shape | None] = [None] * len(layer.tops)
        if row.problem is None and all(s is not None for s in bottoms):
            try:
                tops = list(_convert_cached(layer, [s for s in bottoms if s is not None], net,
                                            row, done))
            except ModelportError as exc:
                row.problem = str(exc).split("): ", 1)[-1] if "): " in str(exc) else str(exc)
        for top, top_shape in zip(layer.tops, tops):
            shapes[top] = top_shape
        row.top_shapes = tops
    return info


def _layer_key(layer: Layer, bottoms: list[Shape], phase: int) -> bytes:
    """What a conversion depends on: the layer's parameters without its own name and blob
    names, the bottom shapes, the stored blobs' shapes and the phase."""
    param = caffe_pb2.LayerParameter()
    param.CopyFrom(layer.param)
    for name in ("name", "bottom", "top"):
        param.ClearField(name)
    extra = repr((len(layer.bottoms), len(layer.tops), bottoms, phase,
                  [(tuple(b.data.shape), b.legacy_4d) for b in layer.blobs]))
    return param.SerializeToString(deterministic=True) + extra.encode()


def _convert_cached(layer: Layer, bottoms: list[Shape], net: Net, row: LayerInfo,
                    done: dict[bytes, tuple[list[Shape], int, int]]) -> list[Shape]:
    """`_convert_one`, or the result of an identical earlier layer (only successes are kept,
    so every error still names its own layer)."""
    key = _layer_key(layer, bottoms, net.phase)
    if key in done:
        tops, row.params, row.macs = done[key]
        return list(tops)
    tops = _convert_one(layer, bottoms, net, row)
    done[key] = (tops, row.params, row.macs)
    return list(tops)


def _convert_one(layer: Layer, bottoms: list[Shape], net: Net, row: LayerInfo) -> list[Shape]:
    spec = lookup(layer.type)
    assert spec is not None
    ctx = ConvertContext(layer, tuple(bottoms), net.phase, allow_missing_weights=True)
    with torch.random.fork_rng(), limits.shape_only():
        module = spec.convert(layer, ctx)
    row.params = sum(int(t.numel()) for t in module.caffe_blobs() if t is not None)
    meta = [torch.empty(s, device="meta") for s in bottoms]
    outs = infer_tops(layer, module.to("meta"), meta, bottoms)
    tops = [tuple(int(d) for d in t.shape) for t in outs]
    row.macs = layer_macs(layer, module, bottoms, tops)
    return tops


def inspect_files(prototxt: str | os.PathLike[str],
                  caffemodel: str | os.PathLike[str] | None = None,
                  input_shapes: Mapping[str, Sequence[int]] | None = None, phase: str = "test",
                  progress: Callable[[int, int], None] | None = None) -> NetInfo:
    """Read the files (weights optional) and inspect the net."""
    net = load_net(prototxt, caffemodel, phase, progress=progress)
    return inspect_net(net, input_shapes)


