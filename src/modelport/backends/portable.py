"""Portable forms of fused layers: standard-op modules that compute what a fused speed rewrite
(modelport.optimize) computes, with the same parameters and state-dict keys.

An optimised module answers `portable()` with one of these (or with a plain layer module);
codegen writes model.py from that form, so the backends never import the optimisers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modelport.layers.base import CaffeModule
from modelport.layers.conv import CaffeConvolution


class ConvolutionReLU(CaffeConvolution):
    """A Caffe convolution followed by Caffe's ReLU (negative_slope 0), applied in place."""

    @classmethod
    def of(cls, conv: CaffeConvolution) -> ConvolutionReLU:
        """The convolution `conv` with the ReLU after it (shares the parameters)."""
        return cls(conv.weight, conv.bias, conv.stride, conv.pad, conv.dilation, conv.group,
                   conv.axis, conv.transposed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(super().forward(x))


class ConvolutionSum(CaffeModule):
    """A convolution whose output is added to a second input (Caffe Eltwise SUM with
    coefficients 1), then Caffe's ReLU when `relu`: relu?(conv(x) + other)."""

    def __init__(self, conv: CaffeConvolution, relu: bool) -> None:
        super().__init__()
        self.conv = conv
        self.relu = relu

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        y = self.conv(x) + other
        return F.relu_(y) if self.relu else y
