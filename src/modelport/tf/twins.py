"""Small PyTorch twins of Keras layers, so a module that mirrors a Keras model stays short.

The twin-module pattern: write a PyTorch module whose layers mirror the Keras model's layers,
registered in the order of `model.layers` (that is the order structural matching follows), then
`modelport.tf.port_weights(path, twin)` fills it. Each twin here is the standard torch layer
(same parameters and state-dict keys) plus TF's padding rule; the 1-D, 2-D and 3-D forms take
(N, C, L), (N, C, H, W) and (N, C, D, H, W):

- `Conv1dSame` / `Conv2dSame` / `Conv3dSame`: Keras ConvND / TF-slim conv2d, `padding="same"`
  pads as TF (the odd element after, from the input size at run time), `"valid"` pads nothing,
  `"causal"` (Conv1D only) pads `(k - 1) * dilation` before.
- `DepthwiseConv1dSame` / `DepthwiseConv2dSame(channels, k, depth_multiplier)`: a grouped conv
  with `groups=channels` and `channels*depth_multiplier` outputs.
- `SeparableConv1d` / `SeparableConv2d`: `.depthwise` (no bias) then `.pointwise` (1x1, bias).
- `ConvTranspose1dSame` / `2dSame` / `3dSame`: ConvNDTranspose with Keras's output size and
  `output_padding` (`keras_transpose_size`), cropping / zero-extending the full transposed
  convolution as TF's conv_transpose does, bias added last.
- `MaxPool{1,2,3}dSame` / `AvgPool{1,2,3}dSame`: MaxPoolingND / AveragePoolingND, "same" or
  "valid", `stride` defaulting to the pool size as in Keras; a SAME average divides each window
  by its count of real (unpadded) elements, as TF does.
- `LayerNormChannels(c)` / `LinearChannels(c, n)`: Keras LayerNormalization (axis=-1) and
  Dense on a channels-last map, applied to dim 1 of the twin's channels-first map (the
  parameters are nn.LayerNorm's / nn.Linear's, the output channels first again).
- BatchNormalization is `nn.BatchNorm{1,2,3}d(c, eps=1e-3)` (Keras's default epsilon), Dense is
  `nn.Linear`; a Flatten of a channels-last map is `nn.Flatten()` plus the Dense row re-order
  that `port_weights` applies (give it `sample_input=` or `flatten_shapes=`). Weightless
  ZeroPadding / Cropping / UpSampling(nearest) / GlobalAveragePooling are `F.pad`, slicing,
  `nn.Upsample` and `mean`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelport.errors import ConfigError
from modelport.tf.same_pad import _ntuple, pad_same

__all__ = ["AvgPool1dSame", "AvgPool2dSame", "AvgPool3dSame", "Conv1dSame", "Conv2dSame",
           "Conv3dSame", "ConvTranspose1dSame", "ConvTranspose2dSame", "ConvTranspose3dSame",
           "DepthwiseConv1dSame", "DepthwiseConv2dSame", "MaxPool1dSame", "MaxPool2dSame",
           "LayerNormChannels", "LinearChannels", "MaxPool3dSame", "SeparableConv1d",
           "SeparableConv2d", "keras_transpose_size"]

Size = int | Sequence[int]


def _arg(v: Size) -> Any:
    """A size as torch's constructors take it (an int, or a tuple)."""
    return int(v) if isinstance(v, int) else tuple(int(d) for d in v)


def _padding(padding: str, causal_ok: bool = False) -> str:
    p = padding.lower()
    allowed = ("same", "valid", "causal") if causal_ok else ("same", "valid")
    if p not in allowed:
        raise ConfigError(f"padding {padding!r} is not a TF padding here. Fix: "
                          + " or ".join(f"'{a}'" for a in allowed))
    return p


def _tf_pad(x: torch.Tensor, mode: str, kernel: Sequence[int], stride: Sequence[int],
            dilation: Sequence[int]) -> torch.Tensor:
    if mode == "same":
        return pad_same(x, kernel, stride, dilation)
    if mode == "causal":  # Conv1D: all of the window's reach before, the output never looks ahead
        return F.pad(x, ((kernel[0] - 1) * dilation[0], 0))
    return x


class _ConvSame:
    """The constructor and forward of the ConvNdSame twins (mixed in before nn.ConvNd): the
    torch conv pads nothing itself; `forward` pads as TF's padding mode, then convolves."""

    causal_ok = False  # Conv1D alone has padding='causal'
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size,
                 stride: Size = 1, padding: str = "same", dilation: Size = 1, groups: int = 1,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, _arg(kernel_size),  # type: ignore[call-arg]
                         stride=_arg(stride), padding=0, dilation=_arg(dilation), groups=groups,
                         bias=bias)
        self.tf_padding = _padding(padding, causal_ok=self.causal_ok)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = _tf_pad(x, self.tf_padding, self.kernel_size, self.stride, self.dilation)
        return super().forward(padded)  # type: ignore[misc]  # nn.ConvNd.forward


class Conv1dSame(_ConvSame, nn.Conv1d):
    """nn.Conv1d that pads as TF's 'SAME', 'causal' (left only) or not at all ('valid')."""

    causal_ok = True


class Conv2dSame(_ConvSame, nn.Conv2d):
    """nn.Conv2d that pads as TF's 'SAME' (or not at all, 'valid')."""


class Conv3dSame(_ConvSame, nn.Conv3d):
    """nn.Conv3d that pads as TF's 'SAME' (or not at all, 'valid')."""


class DepthwiseConv1dSame(Conv1dSame):
    """Keras DepthwiseConv1D: each input channel convolved with `depth_multiplier` filters."""

    def __init__(self, channels: int, kernel_size: Size, depth_multiplier: int = 1,
                 stride: Size = 1, padding: str = "same", dilation: Size = 1,
                 bias: bool = True) -> None:
        super().__init__(channels, channels * depth_multiplier, _arg(kernel_size), _arg(stride),
                         padding, _arg(dilation), groups=channels, bias=bias)


class DepthwiseConv2dSame(Conv2dSame):
    """Keras DepthwiseConv2D: each input channel convolved with `depth_multiplier` filters."""

    def __init__(self, channels: int, kernel_size: Size, depth_multiplier: int = 1,
                 stride: Size = 1, padding: str = "same", dilation: Size = 1,
                 bias: bool = True) -> None:
        super().__init__(channels, channels * depth_multiplier, _arg(kernel_size), _arg(stride),
                         padding, _arg(dilation), groups=channels, bias=bias)


class SeparableConv1d(nn.Module):
    """Keras SeparableConv1D: a depthwise conv (no bias) then a 1x1 pointwise conv (bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size,
                 stride: Size = 1, padding: str = "same", dilation: Size = 1,
                 depth_multiplier: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.depthwise = DepthwiseConv1dSame(in_channels, kernel_size, depth_multiplier, stride,
                                             padding, dilation, bias=False)
        self.pointwise = nn.Conv1d(in_channels * depth_multiplier, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D: a depthwise conv (no bias) then a 1x1 pointwise conv (bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size,
                 stride: Size = 1, padding: str = "same", dilation: Size = 1,
                 depth_multiplier: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.depthwise = DepthwiseConv2dSame(in_channels, kernel_size, depth_multiplier, stride,
                                             padding, dilation, bias=False)
        self.pointwise = nn.Conv2d(in_channels * depth_multiplier, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def keras_transpose_size(n: int, kernel: int, stride: int, dilation: int, padding: str,
                         output_padding: int | None) -> tuple[int, int]:
    """(output length, elements cropped before) of one axis of Keras's ConvNDTranspose on TF.

    The length is Keras's rule (`compute_conv_transpose_output_length`): without output_padding
    `n*s` ("same") or `n*s + max(k_eff - s, 0)` ("valid"); with it `(n-1)*s + k_eff - 2*pad +
    output_padding`, pad `k_eff // 2` ("same") or 0. TF's conv_transpose then crops the full
    transposed convolution (length `(n-1)*s + k_eff`) as the gradient of a SAME conv of that
    output: `max((n-1)*s + k_eff - out, 0) // 2` before ("valid": 0), zeros past its end."""
    k_eff = (kernel - 1) * dilation + 1
    same = padding == "same"
    if output_padding is None:
        out = n * stride if same else n * stride + max(k_eff - stride, 0)
    else:
        out = (n - 1) * stride + k_eff - 2 * (k_eff // 2 if same else 0) + output_padding
    before = max((n - 1) * stride + k_eff - out, 0) // 2 if same else 0
    return out, before


_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class _TransposeSame:
    """The constructor and forward of the ConvTransposeNdSame twins (mixed in before
    nn.ConvTransposeNd): the torch layer holds the weights and pads nothing; `forward` crops
    or zero-extends its full transposed convolution to Keras's size."""

    dims = 2
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    kernel_size: tuple[int, ...]
    tf_padding: str
    tf_output_padding: tuple[int, ...] | None

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size,
                 stride: Size = 1, padding: str = "same", dilation: Size = 1,
                 bias: bool = True, output_padding: Size | None = None) -> None:
        super().__init__(in_channels, out_channels, _arg(kernel_size),  # type: ignore[call-arg]
                         stride=_arg(stride), padding=0, dilation=_arg(dilation), bias=bias)
        self.tf_padding = _padding(padding)
        self.tf_output_padding = None if output_padding is None else \
            _ntuple(output_padding, self.dims, "output_padding")
        if self.tf_output_padding is not None:
            for op, s, d in zip(self.tf_output_padding, self.stride, self.dilation):
                if not 0 <= op < max(s, d):
                    raise ConfigError(f"output_padding {self.tf_output_padding} must be >= 0 and "
                                      "below the stride (or dilation), as in Keras. Fix: a "
                                      "smaller output_padding")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = x.dim() - 2
        full = _TRANSPOSE[dims](x, self.weight, None, self.stride, 0, 0, 1, self.dilation)
        pads: list[int] = []
        for axis in reversed(range(dims)):  # F.pad order: the last axis first
            op = None if self.tf_output_padding is None else self.tf_output_padding[axis]
            out, before = keras_transpose_size(x.shape[2 + axis], self.kernel_size[axis],
                                               self.stride[axis], self.dilation[axis],
                                               self.tf_padding, op)
            pads += [-before, out - (full.shape[2 + axis] - before)]
        y = F.pad(full, pads)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, *([1] * dims))
        return y


class ConvTranspose1dSame(_TransposeSame, nn.ConvTranspose1d):  # type: ignore[misc]
    """Keras Conv1DTranspose (`output_padding` too) with Keras's output length on TF."""

    dims = 1


class ConvTranspose2dSame(_TransposeSame, nn.ConvTranspose2d):  # type: ignore[misc]
    """Keras Conv2DTranspose (`output_padding` too): the full transposed convolution, cropped
    (or zero-extended) to Keras's output size as TF's conv2d_transpose does, bias added last."""

    dims = 2


class ConvTranspose3dSame(_TransposeSame, nn.ConvTranspose3d):  # type: ignore[misc]
    """Keras Conv3DTranspose (`output_padding` too) with Keras's output size on TF."""

    dims = 3


_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class _PoolSame(nn.Module):
    dims = 2
    average = False

    def __init__(self, kernel_size: Size, stride: Size | None = None,
                 padding: str = "same") -> None:
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, self.dims, "pool_size")
        self.stride = self.kernel_size if stride is None else \
            _ntuple(stride, self.dims, "strides")
        self.tf_padding = _padding(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        if not self.average:
            if self.tf_padding == "same":  # padded positions never win the max
                x = pad_same(x, k, s, value=float("-inf"))
            return _MAX[self.dims](x, k, s)  # type: ignore[operator]  # F's overloads
        if self.tf_padding == "valid":
            return _AVG[self.dims](x, k, s)  # type: ignore[operator]
        # TF's SAME average: the window's sum over its real elements / their count
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        total = _AVG[self.dims](pad_same(x, k, s), k, s)  # type: ignore[operator]
        count = _AVG[self.dims](pad_same(ones, k, s), k, s)  # type: ignore[operator]
        return total / count

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.tf_padding}"


class MaxPool1dSame(_PoolSame):
    """Keras MaxPooling1D (padding "same" or "valid"; stride defaults to the pool size)."""

    dims = 1


class MaxPool2dSame(_PoolSame):
    """Keras MaxPooling2D (padding "same" or "valid"; stride defaults to the pool size)."""

    dims = 2


class MaxPool3dSame(_PoolSame):
    """Keras MaxPooling3D (padding "same" or "valid"; stride defaults to the pool size)."""

    dims = 3


class AvgPool1dSame(_PoolSame):
    """Keras AveragePooling1D: "same" divides by the count of real elements, as TF does."""

    dims, average = 1, True


class AvgPool2dSame(_PoolSame):
    """Keras AveragePooling2D: "same" divides by the count of real elements, as TF does."""

    dims, average = 2, True


class AvgPool3dSame(_PoolSame):
    """Keras AveragePooling3D: "same" divides by the count of real elements, as TF does."""

    dims, average = 3, True


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1)


class LayerNormChannels(nn.LayerNorm):
    """Keras LayerNormalization(axis=-1) of a channels-last map: nn.LayerNorm over dim 1 of
    (N, C, ...), Keras's epsilon 1e-3 by default."""

    def __init__(self, channels: int, eps: float = 1e-3, bias: bool = True) -> None:
        super().__init__(channels, eps=eps, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_channels_last(x)).movedim(-1, 1)


class LinearChannels(nn.Linear):
    """Keras Dense on a channels-last map of rank > 2: nn.Linear over dim 1 of (N, C, ...)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_channels_last(x)).movedim(-1, 1)
