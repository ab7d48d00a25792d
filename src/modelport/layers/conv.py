"""Convolution and Deconvolution, N-D (1-D, 2-D, 3-D spatial), grouped and dilated."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape, spatial_params
from modelport.layers.registry import register_layer, weight_bias, weight_bias_fillers

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DECONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class CaffeConvolution(CaffeModule):
    """Cross-correlation over the axes after `axis` (Caffe's channel axis), with groups.

    Axes before `axis` are independent samples (folded into the batch); Caffe's default axis 1
    gives the usual N x C x spatial layout.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: Shape,
                 pad: Shape, dilation: Shape, group: int, axis: int, transposed: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.caffe_blob_names = ("weight", "bias") if bias is not None else ("weight",)
        self.stride = stride
        self.pad = pad
        self.dilation = dilation
        self.group = group
        self.axis = axis
        self.transposed = transposed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis == 1:  # the usual N x C x spatial layout: nothing to fold (and no
            return self._conv(x)  # Reshape pair per layer in exported graphs)
        lead = x.shape[: self.axis]
        folded = x.reshape((math.prod(lead),) + tuple(x.shape[self.axis :]))
        y = self._conv(folded)
        return y.reshape(tuple(lead) + tuple(y.shape[1:]))

    def _conv(self, folded: torch.Tensor) -> torch.Tensor:
        nsp = len(self.stride)
        fn = (_DECONV if self.transposed else _CONV)[nsp]
        if self.transposed:
            # conv_transposeNd(input, weight, bias, stride, padding, output_padding, groups,
            # dilation); mypy joins the two tables' signatures into convNd's
            y = fn(folded, self.weight, self.bias, self.stride, self.pad, 0,  # type: ignore[call-overload]
                   self.group, self.dilation)
        else:
            y = fn(folded, self.weight, self.bias, self.stride, self.pad, self.dilation,
                   self.group)
        return y

    def extra_repr(self) -> str:
        kind = "deconv" if self.transposed else "conv"
        return (f"{kind} weight={tuple(self.weight.shape)}, stride={self.stride}, pad={self.pad}, "
                f"dilation={self.dilation}, group={self.group}, bias={self.bias is not None}")


def _convert(layer: Layer, ctx: ConvertContext, transposed: bool) -> CaffeConvolution:
    ctx.expect_bottoms(1)
    p = layer.param.convolution_param
    shape = ctx.bottom_shapes[0]
    axis = ctx.axis(p.axis)
    num_spatial = len(shape) - axis - 1
    if num_spatial not in _CONV:
        raise ctx.error(f"{num_spatial} spatial axes after axis {axis} of bottom {shape}; "
                        "1, 2 or 3 are supported")
    kernel, stride, pad, dilation = spatial_params(p, num_spatial, ctx)
    if not p.HasField("num_output") or p.num_output == 0:
        raise ctx.error("num_output is not set", "set convolution_param.num_output")
    channels, group, num_output = shape[axis], p.group, p.num_output
    if group == 0 or channels % group or num_output % group:
        raise ctx.error(f"group {group} must divide both the {channels} input channels and "
                        f"num_output {num_output}")
    if transposed:
        weight_shape = (channels, num_output // group, *kernel)
    else:
        weight_shape = (num_output, channels // group, *kernel)
        for i, (n, k, pd, d) in enumerate(zip(shape[axis + 1 :], kernel, pad, dilation)):
            if n + 2 * pd < d * (k - 1) + 1:
                raise ctx.error(
                    f"kernel extent {d * (k - 1) + 1} on spatial axis {i} is larger than the "
                    f"padded input {n + 2 * pd} (input {shape})",
                    "check the input shape")
    ctx.expect_blob_count(2 if p.bias_term else 1)
    weight = ctx.blob(0, weight_shape, p.weight_filler)
    bias = ctx.blob(1, (num_output,), p.bias_filler) if p.bias_term else None
    return CaffeConvolution(weight, bias, stride, pad, dilation, group, axis, transposed)


def convolution_macs(layer: Layer, module: CaffeModule, bottoms: Sequence[Shape],
                     tops: Sequence[Shape]) -> int:
    """Multiply-adds of a convolution: top elements x (C/group x kernel), the weight's
    per-output-channel size."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or not tops:
        return 0
    return math.prod(tops[0]) * math.prod(weight.shape[1:])


def deconvolution_macs(layer: Layer, module: CaffeModule, bottoms: Sequence[Shape],
                       tops: Sequence[Shape]) -> int:
    """Multiply-adds of a deconvolution: bottom elements x (num_output/group x kernel)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or not tops:
        return 0
    return math.prod(bottoms[0]) * math.prod(weight.shape[1:])


@register_layer("Convolution", blobs=weight_bias("convolution_param"),
                num_output="convolution_param", macs=convolution_macs,
                fillers=weight_bias_fillers("convolution_param"))
def convert_convolution(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Convolution (layers/conv_layer.cpp): cross-correlation with symmetric zero padding
    `pad` per axis, output `(in + 2*pad - (dilation*(k-1)+1)) / stride + 1` (floor); weight
    num_output x C/group x kernel; kernel_h/_w or per-axis repeated values; N-D via `axis`."""
    return _convert(layer, ctx, transposed=False)


@register_layer("Deconvolution", blobs=weight_bias("convolution_param"),
                num_output="convolution_param", macs=deconvolution_macs,
                fillers=weight_bias_fillers("convolution_param"))
def convert_deconvolution(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Deconvolution (layers/deconv_layer.cpp): the gradient of convolution; output
    `stride*(in-1) + dilation*(k-1) + 1 - 2*pad`; weight C x num_output/group x kernel (the same
    layout as torch's conv_transpose)."""
    return _convert(layer, ctx, transposed=True)
