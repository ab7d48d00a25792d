"""Caffe's arithmetic as pure functions, one per rule that other frameworks get wrong."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from modelport.schema import caffe_pb2

Dims = tuple[int, ...]
# How a geometry function refuses: given what is wrong (and the fix, when there is one), returns
# the exception to raise (a converter's ConvertContext.error; the torch-free inspect's "hand
# this layer to the full inspect").
Refuse = Callable[..., Exception]

# Caffe initialises max pooling with -FLT_MAX, so a window lying wholly outside the image gives
# this value rather than -inf.
FLT_MAX = 3.4028234663852886e38
# Caffe's stochastic pooling (GPU, TEST) starts its running sum at FLT_MIN.
FLT_MIN = 1.1754943508222875e-38


def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True,
                any_pad: bool | None = None) -> int:
    """Output length of Caffe pooling (layers/pooling_layer.cpp, Reshape).

    Caffe rounds `(size + 2*pad - kernel) / stride` up (round_mode CEIL, the default) or down,
    adds 1, and then -- only when the layer has any padding (`any_pad`: pad_h or pad_w non-zero,
    so it applies to an axis with pad 0 too) -- drops a last window that would start inside the
    bottom/right padding. With no padding and kernel < stride a last window may start past the
    image: Caffe keeps it (PyTorch's ceil_mode does not).
    """
    if any_pad is None:
        any_pad = pad > 0
    span = size + 2 * pad - kernel
    out = (math.ceil(span / stride) if ceil else span // stride) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def conv_geometry(p: caffe_pb2.ConvolutionParameter, num_spatial: int, refuse: Refuse,
                  ) -> tuple[Dims, Dims, Dims, Dims]:
    """Caffe's kernel/stride/pad/dilation fields as per-axis tuples.

    Caffe (BaseConvolutionLayer::LayerSetUp): `kernel_h`/`kernel_w` (2-D only) override
    `kernel_size`; a repeated field gives one value for all axes or one per axis; defaults are
    stride 1, pad 0, dilation 1.
    """

    def resolve(repeated: Sequence[int], h_set: bool, h: int, w_set: bool, w: int,
                default: int | None, what: str) -> Dims:
        if h_set or w_set:
            if num_spatial != 2:
                raise refuse(f"{what}_h/{what}_w can only be used for 2-D convolution")
            if not (h_set and w_set):
                raise refuse(f"{what}_h and {what}_w must be given together")
            if repeated:
                raise refuse(f"give either {what} or {what}_h/{what}_w, not both")
            return (h, w)
        if not repeated:
            if default is None:
                raise refuse(f"{what} is not set", f"set {what} (or {what}_h and {what}_w)")
            return (default,) * num_spatial
        if len(repeated) == 1:
            return (int(repeated[0]),) * num_spatial
        if len(repeated) != num_spatial:
            raise refuse(f"{what} has {len(repeated)} values for {num_spatial} spatial axes")
        return tuple(int(v) for v in repeated)

    kernel = resolve(p.kernel_size, p.HasField("kernel_h"), p.kernel_h, p.HasField("kernel_w"),
                     p.kernel_w, None, "kernel")
    stride = resolve(p.stride, p.HasField("stride_h"), p.stride_h, p.HasField("stride_w"),
                     p.stride_w, 1, "stride")
    pad = resolve(p.pad, p.HasField("pad_h"), p.pad_h, p.HasField("pad_w"), p.pad_w, 0, "pad")
    dilation = resolve(p.dilation, False, 0, False, 0, 1, "dilation")
    if any(k <= 0 for k in kernel):
        raise refuse(f"kernel size {kernel} must be positive")
    if any(s <= 0 for s in stride):
        raise refuse(f"stride {stride} must be positive")
    return kernel, stride, pad, dilation


def pooling_geometry(p: caffe_pb2.PoolingParameter, refuse: Refuse,
                     ) -> tuple[Dims | None, Dims, Dims]:
    """Kernel (None when global), stride and pad of a PoolingParameter, with Caffe's checks
    (PoolingLayer::LayerSetUp)."""

    def pair(scalar_set: bool, scalar: int, h_set: bool, h: int, w_set: bool, w: int,
             what: str) -> Dims | None:
        if h_set or w_set:
            if not (h_set and w_set):
                raise refuse(f"{what}_h and {what}_w must be given together")
            if scalar_set:
                raise refuse(f"give either {what} or {what}_h/{what}_w, not both")
            return (h, w)
        return (scalar, scalar) if scalar_set else None

    kernel = pair(p.HasField("kernel_size"), p.kernel_size, p.HasField("kernel_h"), p.kernel_h,
                  p.HasField("kernel_w"), p.kernel_w, "kernel")
    stride = pair(p.HasField("stride"), p.stride, p.HasField("stride_h"), p.stride_h,
                  p.HasField("stride_w"), p.stride_w, "stride") or (1, 1)
    pad = pair(p.HasField("pad"), p.pad, p.HasField("pad_h"), p.pad_h, p.HasField("pad_w"),
               p.pad_w, "pad") or (0, 0)
    if p.global_pooling:
        if kernel is not None:
            raise refuse("global_pooling with a kernel size",
                         "remove kernel_size (the kernel is the whole input)")
        if any(pad) or any(s != 1 for s in stride):
            raise refuse("global_pooling allows only pad 0 and stride 1")
        return None, stride, pad
    if kernel is None:
        raise refuse("kernel_size (or kernel_h and kernel_w) is not set")
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride):
        raise refuse(f"kernel {kernel} and stride {stride} must be positive")
    if any(pd >= k for pd, k in zip(pad, kernel)):
        raise refuse(f"pad {pad} must be smaller than the kernel {kernel}")
    return kernel, stride, pad


def ave_pool_divisor(index: int, size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's AVE pooling divisor along one axis for output `index`: the window clipped to the
    padded extent [-pad, size + pad) -- padding counts, the ceil overflow beyond it does not."""
    start = index * stride - pad
    end = min(start + kernel, size + pad)
    return end - start


def lrn_scale_alpha(alpha: float, local_size: int, norm_region_within: bool) -> float:
    """The per-element coefficient Caffe applies to the sum of squares in LRN:
    alpha / local_size across channels, alpha / local_size^2 within a channel (TensorFlow's
    `alpha` is this already divided value)."""
    return alpha / (local_size * local_size if norm_region_within else local_size)


def batchnorm_scale(scale_factor: float) -> float:
    """Caffe BatchNorm stores running sums: mean = blob0 * s, var = blob1 * s with
    s = 1/blob2, and s = 0 when blob2 is 0 (layers/batch_norm_layer.cpp)."""
    return 0.0 if scale_factor == 0 else 1.0 / scale_factor


def batchnorm_scale_tensor(scale_factor: torch.Tensor) -> torch.Tensor:
    """`batchnorm_scale` on a tensor, without data-dependent Python branches (it traces and
    exports): 1/blob2 where blob2 != 0, else 0."""
    zero = scale_factor == 0
    return (1.0 / scale_factor.masked_fill(zero, 1.0)).masked_fill(zero, 0.0)
