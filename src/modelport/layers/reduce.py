"""Softmax, Reduction and ArgMax."""

from __future__ import annotations

import math

import numpy as np
import torch

from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext
from modelport.layers.registry import register_layer
from modelport.schema import caffe_pb2

RP = caffe_pb2.ReductionParameter


class CaffeSoftmax(CaffeModule):
    """exp(x - max) / sum(exp(x - max)) along `axis`."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


@register_layer("Softmax")
def convert_softmax(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Softmax (layers/softmax_layer.cpp): y = exp(x - max) / sum exp(x - max) along
    `axis` (default 1, the channel axis -- not the last one), independently for every position of
    the other axes."""
    ctx.expect_bottoms(1)
    return CaffeSoftmax(ctx.axis(layer.param.softmax_param.axis))


class CaffeReduction(CaffeModule):
    """Reduce every axis from `axis` on to one number per leading position, times coeff."""

    def __init__(self, operation: int, axis: int, coeff: float) -> None:
        super().__init__()
        self.operation = operation
        self.axis = axis
        self.coeff = coeff  # already divided by the reduced count for MEAN, as Caffe does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(self.axis)
        if self.operation == RP.ASUM:
            flat = torch.abs(flat)
        elif self.operation == RP.SUMSQ:
            flat = flat * flat
        y = flat.sum(dim=-1)
        return y if self.coeff == 1.0 else y * self.coeff

    def extra_repr(self) -> str:
        name = RP.ReductionOp.Name(self.operation)
        return f"{name}, axis={self.axis}, coeff={self.coeff}"


@register_layer("Reduction")
def convert_reduction(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Reduction (layers/reduction_layer.cpp): reduces ALL axes from `axis` (default 0)
    on -- the top keeps only the axes before it (axis 0 gives a 0-axis scalar blob) -- by SUM,
    ASUM (sum of |x|), SUMSQ (sum of x^2) or MEAN, then multiplies by `coeff`."""
    ctx.expect_bottoms(1)
    p = layer.param.reduction_param
    if p.operation not in (RP.SUM, RP.ASUM, RP.SUMSQ, RP.MEAN):
        raise ctx.error(f"unknown reduction operation {p.operation}")
    shape = ctx.bottom_shapes[0]
    axis = ctx.axis(p.axis)
    coeff = np.float32(p.coeff)
    if p.operation == RP.MEAN:
        coeff = coeff / np.float32(math.prod(shape[axis:]))
    return CaffeReduction(p.operation, axis, float(coeff))


def _sorted_desc(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values along the last axis and their indices, ordered as Caffe's
    std::partial_sort with std::greater on (value, index) pairs: descending value, and among
    equal values the higher index first."""
    size = x.shape[-1]
    flipped = torch.flip(x, dims=(-1,))  # equal values: the higher original index comes first
    if torch.onnx.is_in_onnx_export():
        # ONNX TopK breaks ties by the lower index (operator spec), which on the flipped input
        # is Caffe's order; the exporters cannot express a stable sort.
        values, flipped_index = torch.topk(flipped, k, dim=-1)
    else:
        values, flipped_index = torch.sort(flipped, dim=-1, descending=True, stable=True)
        values, flipped_index = values[..., :k], flipped_index[..., :k]
    return values, (size - 1) - flipped_index


class CaffeArgMax(CaffeModule):
    """Top-k indices (and optionally values) per sample or along one axis, as floats."""

    def __init__(self, top_k: int, out_max_val: bool, axis: int | None,
                 out_ndim: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.out_max_val = out_max_val
        self.axis = axis
        self.out_ndim = out_ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis is None:
            num = x.shape[0]
            values, index = _sorted_desc(x.reshape(num, -1), self.top_k)
            tail = (1,) * (self.out_ndim - 3)
            if self.out_max_val:
                out = torch.stack((index.to(x.dtype), values), dim=1)
                return out.reshape((num, 2, self.top_k) + tail)
            return index.to(x.dtype).reshape((num, 1, self.top_k) + tail)
        last = x.dim() - 1  # positive: the legacy ONNX exporter mishandles -1 here
        moved = torch.movedim(x, self.axis, last)
        values, index = _sorted_desc(moved, self.top_k)
        out = values if self.out_max_val else index.to(x.dtype)
        return torch.movedim(out, last, self.axis)

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, out_max_val={self.out_max_val}, axis={self.axis}"


@register_layer("ArgMax")
def convert_argmax(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe ArgMax (layers/argmax_layer.cpp): the top_k largest entries, ties going to the
    higher index (partial_sort with greater<pair>). Without `axis`, per sample over all other
    axes flattened; the top is N x 1 x top_k (x 1 ... to the bottom's axis count, at least 3),
    or N x 2 x top_k with indices then values when out_max_val. With `axis`, that axis is
    replaced by top_k and out_max_val gives the values instead of the indices. Indices are
    output as floats."""
    ctx.expect_bottoms(1)
    p = layer.param.argmax_param
    shape = ctx.bottom_shapes[0]
    if p.top_k < 1:
        raise ctx.error("top_k must be at least 1")
    axis: int | None = None
    if p.HasField("axis"):
        axis = ctx.axis(p.axis)
        size = shape[axis]
        where = f"axis {axis} of the bottom {shape}"
    else:
        size = math.prod(shape[1:])
        where = f"the {size} values per sample of the bottom {shape}"
    if p.top_k > size:
        raise ctx.error(f"top_k {p.top_k} is larger than {where}",
                        f"use top_k <= {size}")
    return CaffeArgMax(p.top_k, p.out_max_val, axis, max(len(shape), 3))
