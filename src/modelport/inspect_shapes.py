"""`modelport inspect` without torch, for plain nets given without weights.

`modelport.inspect` converts every layer (shape-only) to learn its output shapes, parameters
and multiply-adds: exact for every registered type, but it imports torch (seconds). Most nets
people inspect (VGG, AlexNet/CaffeNet, GoogLeNet, ResNet) use a dozen layer types whose Caffe
shape arithmetic fits in a few lines; this module computes those rows directly, torch-free.

It is only a shortcut: `inspect_without_torch` returns None (the caller then runs the full
inspect) as soon as a layer has a type or a parameter outside what it handles, or anything a
converter would flag (a shape error, an undeclared input, a weights file). So every row it
returns is the row `modelport.inspect` gives; tests/test_inspect_shapes.py compares the two
on every golden net.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modelport import caffe_math, limits
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Layer, Net
from modelport.pipeline import load_net

Shape = tuple[int, ...]
PP = caffe_pb2.PoolingParameter
EP = caffe_pb2.EltwiseParameter

# NeuronLayer types (top shape = bottom shape, no blobs) whose converters check no parameter.
_NEURONS = frozenset({"ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL"})


class _UnhandledError(Exception):
    """This layer needs the full (torch) inspect."""


@dataclass
class LayerInfo:
    """One row of the inspect table (the same class for this torch-free path and for
    `modelport.inspect`)."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    top_shapes: list[Shape | None]
    params: int = 0
    macs: int = 0
    problem: str | None = None  # why the layer cannot be converted (None: it can)
    no_converter: bool = False  # the problem is a type without a converter
    weights_found: bool = False

    @property
    def supported(self) -> bool:
        return self.problem is None


Row = LayerInfo


class Totals:
    """The table's totals over `layers` (for Rows and modelport.inspect.NetInfo)."""

    layers: list[LayerInfo]

    @property
    def total_params(self) -> int:
        return sum(la.params for la in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(la.macs for la in self.layers)


@dataclass
class Rows(Totals):
    """The whole table, as `modelport.inspect.NetInfo` has it (every layer supported)."""

    name: str
    layers: list[Row] = field(default_factory=list)
    has_weights: bool = False
    missing_weights: list[Row] = field(default_factory=list)
    unsupported: list[Row] = field(default_factory=list)


def _unhandled(*_: object) -> Exception:
    """caffe_math's geometry refusals: the converter reports them, so the full inspect runs."""
    return _UnhandledError()


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise _UnhandledError
    return axis % ndim


def _convolution(layer: Layer, b: Shape) -> tuple[list[Shape], int, int]:
    """Caffe ConvolutionLayer::compute_output_shape: (in + 2 pad - (dilation (k - 1) + 1)) /
    stride + 1 per spatial axis; weight num_output x C/group x kh x kw, bias num_output."""
    p = layer.param.convolution_param
    if len(b) != 4 or p.axis != 1 or p.force_nd_im2col or len(layer.tops) != 1:
        raise _UnhandledError
    kernel, stride, pad, dilation = caffe_math.conv_geometry(p, 2, _unhandled)
    channels, group, num_output = b[1], p.group, p.num_output
    if (min(dilation) <= 0 or num_output <= 0 or group <= 0 or channels % group
            or num_output % group):
        raise _UnhandledError
    out = []
    for n, k, s, pd, d in zip(b[2:], kernel, stride, pad, dilation):
        span = n + 2 * pd - (d * (k - 1) + 1)
        if span < 0:
            raise _UnhandledError  # the converter reports it
        out.append(span // s + 1)
    top = (b[0], num_output, *out)
    per_output = channels // group * kernel[0] * kernel[1]
    params = num_output * per_output + (num_output if p.bias_term else 0)
    return [top], params, math.prod(top) * per_output


def _pooling(layer: Layer, b: Shape) -> list[Shape]:
    """Caffe PoolingLayer::Reshape (caffe_math.pooled_size); MAX/AVE with one top only."""
    p = layer.param.pooling_param
    if len(b) != 4 or len(layer.tops) != 1 or p.pool not in (PP.MAX, PP.AVE):
        raise _UnhandledError
    kernel, stride, pad = caffe_math.pooling_geometry(p, _unhandled)
    if kernel is None:  # global_pooling
        return [(b[0], b[1], 1, 1)]
    if any(n + 2 * pd < k for n, k, pd in zip(b[2:], kernel, pad)):
        raise _UnhandledError
    ceil = p.round_mode == PP.CEIL and p.ceil_mode
    any_pad = any(pad)
    out = [caffe_math.pooled_size(n, k, s, pd, ceil, any_pad)
           for n, k, s, pd in zip(b[2:], kernel, stride, pad)]
    if min(out) <= 0:
        raise _UnhandledError
    return [(b[0], b[1], *out)]


def _inner_product(layer: Layer, b: Shape) -> tuple[list[Shape], int, int]:
    """Caffe InnerProductLayer: K = prod(bottom[axis:]), top bottom[:axis] + (num_output,);
    weight N x K (K x N transposed), bias N."""
    p = layer.param.inner_product_param
    if len(layer.tops) != 1 or p.num_output <= 0:
        raise _UnhandledError
    axis = _axis(p.axis, len(b))
    k, n = math.prod(b[axis:]), p.num_output
    params = n * k + (n if p.bias_term else 0)
    return [(*b[:axis], n)], params, math.prod(b[:axis]) * n * k


def _one_layer(layer: Layer, bottoms: list[Shape]) -> tuple[list[Shape], int, int]:
    """(top shapes, parameters, multiply-adds) of one layer, or _UnhandledError."""
    t = layer.type
    one = len(bottoms) == 1 and len(layer.tops) == 1
    b = bottoms[0] if bottoms else ()
    if t == "Convolution" and len(bottoms) == 1:
        return _convolution(layer, b)
    if t == "InnerProduct" and len(bottoms) == 1:
        return _inner_product(layer, b)
    if t == "Pooling" and len(bottoms) == 1:
        return _pooling(layer, b), 0, 0
    if t in _NEURONS and one:
        return [b], 0, 0
    if t == "Dropout" and one and 0 <= layer.param.dropout_param.dropout_ratio < 1:
        return [b], 0, 0
    if t == "Softmax" and one:
        _axis(layer.param.softmax_param.axis, len(b))
        return [b], 0, 0
    if t == "LRN" and one and len(b) == 4:
        p = layer.param.lrn_param
        if p.local_size % 2 == 1 and p.local_size > 0 and p.k > 0:
            return [b], 0, 0
    if t == "Split" and len(bottoms) == 1 and layer.tops:
        return [b] * len(layer.tops), 0, 0
    if t == "Concat" and bottoms and len(layer.tops) == 1:
        p = layer.param.concat_param
        if p.HasField("concat_dim") or any(len(s) != len(b) for s in bottoms):
            raise _UnhandledError
        axis = _axis(p.axis, len(b))
        if any(s[:axis] + s[axis + 1:] != b[:axis] + b[axis + 1:] for s in bottoms):
            raise _UnhandledError
        return [(*b[:axis], sum(s[axis] for s in bottoms), *b[axis + 1:])], 0, 0
    if t == "Eltwise" and len(bottoms) >= 2 and len(layer.tops) == 1:
        p = layer.param.eltwise_param
        if any(s != b for s in bottoms) or p.coeff:
            raise _UnhandledError
        return [b], 0, 0
    if t == "Flatten" and one:
        p = layer.param.flatten_param
        start, end = _axis(p.axis, len(b)), _axis(p.end_axis, len(b))
        if end < start:
            raise _UnhandledError
        return [(*b[:start], math.prod(b[start:end + 1]), *b[end + 1:])], 0, 0
    raise _UnhandledError


def top_shapes(layer: Layer, bottoms: Sequence[Shape]) -> list[Shape] | None:
    """The top shapes Caffe gives `layer` for these bottom shapes, or None when this module
    does not handle the layer (or its converter would refuse it: the caller then runs it)."""
    try:
        tops, _, _ = _one_layer(layer, [tuple(b) for b in bottoms])
    except _UnhandledError:
        return None
    return tops if len(tops) == len(layer.tops) else None


def inspect_without_torch(prototxt: str | os.PathLike[str],
                          input_shapes: Mapping[str, Sequence[int]] | None = None,
                          phase: str = "test") -> Rows | None:
    """The inspect table of a net read without weights, or None when it needs the full
    inspect (see the module docstring)."""
    try:
        net = load_net(prototxt, None, phase)
        return _rows(net, input_shapes)
    except _UnhandledError:
        return None


def _rows(net: Net, given: Mapping[str, Sequence[int]] | None) -> Rows:
    declared: dict[str, Shape] = {k: tuple(v) for k, v in net.input_shapes().items()}
    inputs = [top for layer in net.layers if layer.type == "Input" for top in layer.tops]
    for name, dims in (given or {}).items():
        if name not in inputs:
            raise _UnhandledError  # the full inspect names the error
        declared[name] = tuple(int(d) for d in dims)
    shapes: dict[str, Shape] = {}
    rows = Rows(net.name)
    for layer in net.layers:
        if layer.blobs:
            raise _UnhandledError
        row = Row(layer.name, layer.type, layer.bottoms, layer.tops, [])
        rows.layers.append(row)
        if layer.type == "Input":
            for top in layer.tops:
                shape = declared.get(top)
                if not shape or any(d <= 0 for d in shape) or math.prod(shape) >= 1 << 40:
                    raise _UnhandledError
                shapes[top] = shape
                row.top_shapes.append(shape)
            continue
        if any(bt not in shapes for bt in layer.bottoms):
            raise _UnhandledError
        tops, row.params, row.macs = _one_layer(layer, [shapes[bt] for bt in layer.bottoms])
        if len(tops) != len(layer.tops):
            raise _UnhandledError
        for top, shape in zip(layer.tops, tops):
            shapes[top] = shape
        row.top_shapes = list(tops)
    return rows


def format_shape(shape: Shape | None) -> str:
    """A shape as Caffe prints it (`2x3x7x9`, `limits.format_shape`; `?` when unknown);
    `modelport.inspect` uses it too."""
    return "?" if shape is None else limits.format_shape(shape)


def human(n: int) -> str:
    """A count with a K/M/G suffix (two decimals); `modelport.inspect` uses it too."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
