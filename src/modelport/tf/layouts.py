"""TensorFlow / Keras weight layouts -> PyTorch layouts (numpy only).

TF stores channels last everywhere; PyTorch puts the output channels first:

- Conv (Conv1D/2D/3D, TF-slim `weights`): `(*spatial, in, out)` (HWIO) -> `(out, in, *spatial)`
  (OIHW). A grouped Keras Conv2D stores `(H, W, in/groups, out)`, which is torch's grouped
  layout after the same permutation.
- DepthwiseConv2D / a SeparableConv2D's depthwise half: `(H, W, in, mult)` -> `(in*mult, 1, H,
  W)`; TF's output channel `i*mult + m` is torch's group `i`, member `m`: the same order.
- Conv2DTranspose: `(H, W, out, in)` -> torch ConvTranspose2d's `(in, out, H, W)`.
- Dense: `(in, out)` -> `(out, in)`; the first Dense after a Flatten of an NHWC feature map
  `(H, W, C)` has its input rows in `(h, w, c)` order, a flatten of NCHW reads `(c, h, w)`: the
  rows are re-ordered as well (likewise `(L, C)` of a Conv1D map, `(D, H, W, C)` of Conv3D).
- `flip=True` reverses the spatial axes of a kernel: Theano-style true convolution vs TF's (and
  torch's) cross-correlation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["conv_kernel", "dense_kernel", "depthwise_kernel", "flip_spatial",
           "transpose_kernel"]


def flip_spatial(kernel: np.ndarray, spatial: int) -> np.ndarray:
    """The kernel with its first `spatial` axes reversed (channels-last TF layout)."""
    return np.flip(kernel, axis=tuple(range(spatial)))


def conv_kernel(kernel: np.ndarray, flip: bool = False) -> np.ndarray:
    """`(*spatial, in, out)` -> `(out, in, *spatial)`."""
    sp = kernel.ndim - 2
    k = flip_spatial(kernel, sp) if flip else kernel
    return np.ascontiguousarray(np.transpose(k, (sp + 1, sp, *range(sp))))


def depthwise_kernel(kernel: np.ndarray, flip: bool = False) -> np.ndarray:
    """`(*spatial, in, mult)` -> `(in*mult, 1, *spatial)` (out channel `i*mult + m`)."""
    sp = kernel.ndim - 2
    k = flip_spatial(kernel, sp) if flip else kernel
    merged = k.reshape(*k.shape[:sp], k.shape[sp] * k.shape[sp + 1])
    return np.ascontiguousarray(np.moveaxis(merged, -1, 0)[:, None])


def transpose_kernel(kernel: np.ndarray, flip: bool = False) -> np.ndarray:
    """Conv2DTranspose `(*spatial, out, in)` -> ConvTranspose `(in, out, *spatial)`."""
    return conv_kernel(kernel, flip)  # the same axis permutation, with in/out named the other way


def dense_kernel(kernel: np.ndarray, nhwc: Sequence[int] | None = None) -> np.ndarray:
    """`(in, out)` -> `(out, in)`; with `nhwc = (*spatial, C)` (`(H, W, C)`, `(L, C)` or
    `(D, H, W, C)`) the rows, a flatten of a channels-last map, are re-ordered to a flatten of
    the channels-first map (`(h, w, c)` -> `(c, h, w)`)."""
    if nhwc is not None:
        dims = [int(d) for d in nhwc]
        sp = len(dims) - 1
        out = kernel.shape[1]
        kernel = kernel.reshape(*dims, out).transpose(sp, *range(sp), sp + 1).reshape(-1, out)
    return np.ascontiguousarray(kernel.T)
