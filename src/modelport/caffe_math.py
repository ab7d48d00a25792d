"""Caffe's arithmetic as pure functions, one per rule that other frameworks get wrong."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

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
