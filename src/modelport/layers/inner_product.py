"""InnerProduct (axis, transpose, bias_term) and Embed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modelport.errors import LayerError
from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape
from modelport.layers.registry import register_layer, weight_bias, weight_bias_fillers


class CaffeInnerProduct(CaffeModule):
    """y = flatten(x, axis) @ W^T + b, W kept in Caffe's layout (N x K, or K x N if transposed).

    The axes from `axis` on are flattened in C order (N x C x H x W flattens as C, H, W), the
    axes before it are kept.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, axis: int,
                 transpose: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.caffe_blob_names = ("weight", "bias") if bias is not None else ("weight",)
        self.axis = axis
        self.transpose = transpose

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(self.axis)
        if self.transpose:
            y = torch.matmul(flat, self.weight)
            return y + self.bias if self.bias is not None else y
        return F.linear(flat, self.weight, self.bias)

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        n = self.weight.shape[1] if self.transpose else self.weight.shape[0]
        return [tuple(bottom_shapes[0][: self.axis]) + (int(n),)]

    def extra_repr(self) -> str:
        return (f"weight={tuple(self.weight.shape)}, axis={self.axis}, "
                f"transpose={self.transpose}, bias={self.bias is not None}")


def inner_product_macs(layer: Layer, module: CaffeModule, bottoms: Sequence[Shape],
                       tops: Sequence[Shape]) -> int:
    """Multiply-adds of an inner product: rows (the axes before `axis`) x weight elements."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or not tops:
        return 0
    axis = int(getattr(module, "axis", 1))
    return math.prod(bottoms[0][:axis]) * weight.numel()


@register_layer("InnerProduct", blobs=weight_bias("inner_product_param"),
                num_output="inner_product_param", macs=inner_product_macs,
                fillers=weight_bias_fillers("inner_product_param"))
def convert_inner_product(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe InnerProduct (layers/inner_product_layer.cpp): flattens the axes from `axis`
    (default 1) on into K = their product (C order), keeps the axes before, and computes
    y = x W^T + b with weight N x K (K x N when `transpose`), N = num_output; bias_term adds
    a length-N bias."""
    ctx.expect_bottoms(1)
    p = layer.param.inner_product_param
    if not p.HasField("num_output") or p.num_output == 0:
        raise ctx.error("num_output is not set", "set inner_product_param.num_output")
    shape = ctx.bottom_shapes[0]
    axis = ctx.axis(p.axis)
    k = 1
    for d in shape[axis:]:
        k *= d
    n = p.num_output
    ctx.expect_blob_count(2 if p.bias_term else 1)
    weight = ctx.blob(0, (k, n) if p.transpose else (n, k), p.weight_filler)
    bias = ctx.blob(1, (n,), p.bias_filler) if p.bias_term else None
    return CaffeInnerProduct(weight, bias, axis, p.transpose)


def _eager() -> bool:
    """True when running plain eager PyTorch (not scripting, tracing, compiling or exporting),
    the only case where a check may read tensor values."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    return not (torch.compiler.is_compiling() or torch.compiler.is_exporting())


class CaffeEmbed(CaffeModule):
    """A lookup table: each value of the bottom (an integer stored as float) picks a row of the
    input_dim x num_output weight; the top gains a trailing num_output axis."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, layer_name: str,
                 layer_type: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.caffe_blob_names = ("weight", "bias") if bias is not None else ("weight",)
        self.layer_name = layer_name
        self.layer_type = layer_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Caffe casts with static_cast<int>: truncation toward zero.
        index = x.to(torch.int64)
        if _eager():
            self._check_range(index)
        y = F.embedding(index, self.weight)
        return y + self.bias if self.bias is not None else y

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        return [tuple(bottom_shapes[0]) + (int(self.weight.shape[1]),)]

    @torch.jit.unused
    def _check_range(self, index: torch.Tensor) -> None:
        if index.device.type == "meta" or index.numel() == 0:
            return
        rows = self.weight.shape[0]
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= rows:
            bad = low if low < 0 else high
            raise LayerError(self.layer_name, self.layer_type,
                             f"input value {bad} is outside the table's rows 0..{rows - 1}",
                             "feed integer indices below embed_param.input_dim")

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, bias={self.bias is not None}"


@register_layer("Embed", blobs=weight_bias("embed_param"), num_output="embed_param",
                fillers=weight_bias_fillers("embed_param"))
def convert_embed(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Embed (layers/embed_layer.cpp): a lookup table; each bottom value (an integer held
    in a float, truncated) selects row `index` of the input_dim x num_output weight, plus an
    optional length-num_output bias; the top shape is the bottom shape + (num_output,)."""
    ctx.expect_bottoms(1)
    p = layer.param.embed_param
    if p.num_output == 0:
        raise ctx.error("num_output is not set", "set embed_param.num_output")
    if p.input_dim == 0:
        raise ctx.error("input_dim is not set",
                        "set embed_param.input_dim (the number of table rows)")
    ctx.expect_blob_count(2 if p.bias_term else 1)
    weight = ctx.blob(0, (p.input_dim, p.num_output), p.weight_filler)
    bias = ctx.blob(1, (p.num_output,), p.bias_filler) if p.bias_term else None
    return CaffeEmbed(weight, bias, layer.name, layer.type)
