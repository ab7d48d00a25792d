"""Winograd F(4x4, 3x3) for Caffe's 3x3 stride-1 convolutions in eager CPU inference.

A 3x3 convolution computes each 4x4 output tile from a 6x6 input tile with 36 multiplies per
(input channel, output channel) pair instead of 144 (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016; interpolation points 0, +-1, +-2, infinity):

    Y = A^T [ (G g G^T) * (B^T d B) ] A

with g the 3x3 kernel, d the 6x6 input tile and * the element-wise product; summed over input
channels, the element-wise products become 36 independent matrix products (tiles x C) @ (C x K).
The weights are transformed once (in float64, then rounded to float32). Rounding differs from a
direct convolution by about 1e-5 of the output's magnitude, well inside the parity tolerance
(the tests check optimised nets against Caffe's own blobs with Winograd forced on).

`WinogradConvolution` uses it only in eager float32 CPU inference and only where it is faster:
the first call with a new input shape times both ways (as cudnn.benchmark does). Traced,
compiled and exported graphs, and generated source, get the plain convolution.
"""

from __future__ import annotations

import time
from typing import Literal

import torch
import torch.nn.functional as F

from modelport.layers.conv import CaffeConvolution
from modelport.optimize import onednn
from modelport.optimize.onednn import InferenceConvolution

_BT = torch.tensor([[4, 0, -5, 0, 1, 0],
                    [0, -4, -4, 1, 1, 0],
                    [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0],
                    [0, 2, -1, -2, 1, 0],
                    [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0],
                   [-1 / 6, -1 / 6, -1 / 6],
                   [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6],
                   [1 / 24, -1 / 12, 1 / 6],
                   [0, 0, 1]], dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0],
                    [0, 1, -1, 2, -2, 0],
                    [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
# Both 2-D tile transforms as one matrix on the flattened tile (row-major 6x6 -> 36).
INPUT_TRANSFORM = torch.kron(_BT, _BT).float()  # 36 x 36
OUTPUT_TRANSFORM = torch.kron(_AT, _AT).float()  # 16 x 36

Policy = Literal["auto", "always", "never"]


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """K x C x 3 x 3 kernels -> 36 x K x C: G g G^T for every (output, input) channel pair."""
    u = torch.einsum("ai,kcij,bj->abkc", _G, weight.detach().double(), _G)
    return u.reshape(36, weight.shape[0], weight.shape[1]).float().contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None,
                     pad: tuple[int, int]) -> torch.Tensor:
    """Caffe's 3x3, stride-1, zero-padded convolution of N x C x H x W `x` with transformed
    kernels `u` (transform_weight); returns N x K x Ho x Wo in channels_last memory order."""
    n, c, h, w = (int(d) for d in x.shape)
    k = int(u.shape[1])
    ho, wo = h + 2 * pad[0] - 2, w + 2 * pad[1] - 2
    th, tw = -(-ho // 4), -(-wo // 4)
    # Zero padding: Caffe's `pad` on the left/top, up to whole tiles on the right/bottom.
    xp = F.pad(x, (pad[1], pad[1] + 4 * tw - wo, pad[0], pad[0] + 4 * th - ho))
    tiles = xp.unfold(2, 6, 4).unfold(3, 6, 4)  # N C th tw 6 6 (a view)
    d = tiles.permute(4, 5, 0, 2, 3, 1).reshape(36, -1)  # 36 x (N th tw C)
    v = onednn.linear(INPUT_TRANSFORM, d.t(), None).view(36, n * th * tw, c)
    m = torch.stack([onednn.linear(v[j], u[j], None) for j in range(36)])  # 36 x tiles x K
    y = onednn.linear(OUTPUT_TRANSFORM, m.view(36, -1).t(), None).view(4, 4, n, th, tw, k)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, 4 * th, 4 * tw, k)
    if bias is not None:
        y.add_(bias)
    return y[:, :ho, :wo, :].permute(0, 3, 1, 2)


def _best_time(fn: object, runs: int = 2) -> float:
    assert callable(fn)
    fn()  # warm-up
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class WinogradConvolution(InferenceConvolution):
    """A Caffe 3x3 / stride 1 / dilation 1 / group 1 convolution (+ ReLU) that, in eager CPU
    inference, runs Winograd F(4x4, 3x3) where that is faster for the input's shape than
    oneDNN's direct convolution (policy "auto": timed once per shape), always ("always") or
    never ("never")."""

    def __init__(self, conv: CaffeConvolution, policy: Policy = "auto",
                 relu: bool = False) -> None:
        super().__init__(conv, relu)
        self.policy: Policy = policy
        self._faster: dict[tuple[int, ...], bool] = {}
        self._u: torch.Tensor | None = None

    @staticmethod
    def eligible(module: object) -> bool:
        return (isinstance(module, CaffeConvolution) and not module.transposed
                and module.axis == 1 and module.group == 1
                and tuple(module.weight.shape[2:]) == (3, 3)
                and tuple(module.stride) == (1, 1) and tuple(module.dilation) == (1, 1))

    def _winograd(self, x: torch.Tensor) -> torch.Tensor:
        if self._u is None:
            self._u = transform_weight(self.weight)
        y = winograd_conv3x3(x, self._u, self.bias, (int(self.pad[0]), int(self.pad[1])))
        return F.relu_(y) if self.relu else y

    def _use_winograd(self, x: torch.Tensor) -> bool:
        if self.policy != "auto":
            return self.policy == "always"
        key = tuple(int(d) for d in x.shape)
        faster = self._faster.get(key)
        if faster is None:
            # Winograd's transforms are memory-bound: with few channels it never pays.
            faster = min(x.shape[1], self.weight.shape[0]) >= 128 and \
                _best_time(lambda: self._winograd(x)) < _best_time(lambda: self.direct(x))
            self._faster[key] = faster
        return faster

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and onednn.eager_cpu_inference(x, self.weight):
            return self._winograd(x) if self._use_winograd(x) else self.direct(x)
        return super().forward(x)
