"""TensorFlow's 'SAME' padding as a PyTorch module.

TF pads each spatial axis of size `n` for a kernel `k`, stride `s` and dilation `d` by

    pad_total = max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)

split as `pad_total // 2` before and the rest (the odd pixel) after: bottom / right
(tensorflow/core/framework/kernel_shape_util.cc, GetWindowedOutputSizeVerbose). The output has
`ceil(n / s)` positions. PyTorch's `padding=` is symmetric and `padding="same"` refuses
strides > 1, so a ported model that pads as torch does differs from TF on every odd total.
`SamePad2d` computes the amounts from the input's size at run time (any input size works, odd
ones included) with integer arithmetic only, so `torch.export` / ONNX export trace it to one
`pad` op. `SamePad1d` (N, C, L) and `SamePad3d` (N, C, D, H, W) apply the same rule per axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modelport.errors import ConfigError

__all__ = ["SamePad1d", "SamePad2d", "SamePad3d", "pad_same", "same_pad_amounts"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _ntuple(v: int | Sequence[int], n: int, what: str = "a window size") -> tuple[int, ...]:
    """`v` as n ints (one int repeated); ConfigError on another length."""
    if isinstance(v, int):
        return (int(v),) * n
    out = tuple(int(d) for d in v)
    if len(out) != n:
        raise ConfigError(f"{what} {tuple(v)!r} has {len(out)} entries for {n} spatial axes. "
                          f"Fix: give one int or {n}")
    return out


def same_pad_amounts(size: int, kernel: int, stride: int = 1, dilation: int = 1
                     ) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) of one axis of `size` elements."""
    # (ceil(n/s) - 1) * s - n == (-n) % s - s, so with k_eff = (k - 1) * d + 1 the total is
    # (-n) % s + k_eff - s: never negative when k_eff >= s (no max, so a symbolic size under
    # torch.export with dynamic H / W stays one expression without guards)
    k_eff = (kernel - 1) * dilation + 1
    need = (-size) % stride + k_eff - stride
    if k_eff < stride:
        need = max(need, 0) if isinstance(need, int) else torch.sym_max(need, 0)
    return need // 2, need - need // 2


def pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int],
             dilation: Sequence[int] | None = None, value: float = 0.0) -> torch.Tensor:
    """`x` (N, C, *spatial) padded as TF 'SAME' pads it for this window (the extra element
    after), one entry of `kernel` / `stride` / `dilation` per spatial axis."""
    n = len(kernel)
    dilation = (1,) * n if dilation is None else dilation
    pads: list[int] = []
    for axis in reversed(range(n)):  # F.pad order: the last axis first
        pads += same_pad_amounts(x.shape[x.dim() - n + axis], kernel[axis], stride[axis],
                                 dilation[axis])
    if all(isinstance(p, int) and p == 0 for p in pads):  # concrete sizes, nothing to pad
        return x
    return F.pad(x, pads, value=value)


class _SamePadNd(nn.Module):
    dims = 2

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] = 1,
                 dilation: int | Sequence[int] = 1, value: float = 0.0) -> None:
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, self.dims, "kernel_size")
        self.stride = _ntuple(stride, self.dims, "stride")
        self.dilation = _ntuple(dilation, self.dims, "dilation")
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_same(x, self.kernel_size, self.stride, self.dilation, self.value)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}" + (f", value={self.value}" if self.value else ""))


class SamePad2d(_SamePadNd):
    """Pads (N, C, H, W) exactly as TF 'SAME' does for a window `kernel_size`, `stride`,
    `dilation`; follow it with the conv / pool at `padding=0`.

    `value` is the fill: 0 for convolutions; `-inf` before a max pool (TF's SAME max pool
    ignores the padded positions). An average pool is not this: TF's SAME average divides each
    window by its count of real (unpadded) elements (`twins.AvgPool2dSame`)."""

    dims = 2


class SamePad1d(_SamePadNd):
    """`SamePad2d` for (N, C, L): Conv1D / MaxPooling1D with padding="same"."""

    dims = 1


class SamePad3d(_SamePadNd):
    """`SamePad2d` for (N, C, D, H, W): Conv3D / MaxPooling3D with padding="same"."""

    dims = 3
