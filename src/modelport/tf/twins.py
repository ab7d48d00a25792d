"""Small PyTorch twins of Keras layers, so a module that mirrors a Keras model stays short.

The twin-module pattern: write a PyTorch module whose layers mirror the Keras model's layers,
registered in the order of `model.layers` (that is the order structural matching follows), then
`modelport.tf.port_weights(path, twin)` fills it. Each twin here is the standard torch layer
(same parameters and state-dict keys) plus TF's padding rule:

- `Conv2dSame`: Keras Conv2D / TF-slim conv2d, `padding="same"` pads as TF (the odd pixel
  bottom/right, from the input size at run time), `"valid"` pads nothing.
- `DepthwiseConv2dSame(channels, k, depth_multiplier)`: DepthwiseConv2D, a grouped
  `Conv2dSame` with `groups=channels` and `channels*depth_multiplier` outputs.
- `SeparableConv2d`: SeparableConv2D as `.depthwise` (no bias) then `.pointwise` (1x1, bias).
- `ConvTranspose2dSame`: Conv2DTranspose with Keras's output size (`in*stride` for "same",
  `in*stride + max(k - stride, 0)` for "valid"), cropping / extending the full transposed
  convolution as TF does.
- BatchNormalization is `nn.BatchNorm2d(c, eps=1e-3)` (Keras's default epsilon), Dense is
  `nn.Linear`; a Flatten of an NHWC map is `nn.Flatten()` plus the Dense row re-order that
  `port_weights` applies (give it `sample_input=` or `flatten_shapes=`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modelport.errors import ConfigError
from modelport.tf.same_pad import _pair, pad_same

__all__ = ["Conv2dSame", "ConvTranspose2dSame", "DepthwiseConv2dSame", "SeparableConv2d"]


def _padding(padding: str) -> str:
    p = padding.lower()
    if p not in ("same", "valid"):
        raise ConfigError(f"padding {padding!r} is not a TF padding. Fix: 'same' or 'valid'")
    return p


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d that pads as TF's 'SAME' (or not at all, 'valid')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: str = "same",
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, groups=groups, bias=bias)
        self.tf_padding = _padding(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_padding == "same":
            x = pad_same(x, _pair(self.kernel_size), _pair(self.stride),  # type: ignore[arg-type]
                         _pair(self.dilation))  # type: ignore[arg-type]  # torch's tuple types
        return super().forward(x)


class DepthwiseConv2dSame(Conv2dSame):
    """Keras DepthwiseConv2D: each input channel convolved with `depth_multiplier` filters."""

    def __init__(self, channels: int, kernel_size: int | tuple[int, int],
                 depth_multiplier: int = 1, stride: int | tuple[int, int] = 1,
                 padding: str = "same", dilation: int | tuple[int, int] = 1,
                 bias: bool = True) -> None:
        super().__init__(channels, channels * depth_multiplier, kernel_size, stride, padding,
                         dilation, groups=channels, bias=bias)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D: a depthwise conv (no bias) then a 1x1 pointwise conv (bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: str = "same",
                 dilation: int | tuple[int, int] = 1, depth_multiplier: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        self.depthwise = DepthwiseConv2dSame(in_channels, kernel_size, depth_multiplier, stride,
                                             padding, dilation, bias=False)
        self.pointwise = nn.Conv2d(in_channels * depth_multiplier, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """Keras Conv2DTranspose (no output_padding): the full transposed convolution, then cropped
    (or zero-extended) to Keras's output size as TF's conv2d_transpose does, bias added last."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: str = "same",
                 dilation: int | tuple[int, int] = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, bias=bias)
        self.tf_padding = _padding(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]  # no output_size
        full = F.conv_transpose2d(x, self.weight, None, self.stride, 0, 0, 1, self.dilation)
        pads = []
        for axis in (1, 0):  # F.pad order: last axis (W) first
            n, k = x.shape[2 + axis], self.kernel_size[axis]
            s, d = self.stride[axis], self.dilation[axis]
            k_eff = (k - 1) * d + 1
            extra = max(k_eff - s, 0)
            if self.tf_padding == "same":
                out, before = n * s, extra // 2
            else:
                out, before = n * s + extra, 0
            length = full.shape[2 + axis]  # (n - 1) * s + k_eff
            pads += [-before, out - (length - before)]
        y = F.pad(full, pads)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y
