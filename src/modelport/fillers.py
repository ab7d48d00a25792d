"""Caffe's weight fillers (include/caffe/filler.hpp), for blobs a weights file does not provide.

`fill(filler, shape)` returns a float32 tensor initialised the way Caffe's `GetFiller(param)`
would initialise a blob of that shape: the same distribution with the same parameters, the same
fan-in/fan-out arithmetic, and bit-identical values for the deterministic fillers (constant,
bilinear). Random values come from a torch Generator (pass `generator=` for reproducible runs);
they cannot equal Caffe's draws, which come from its own boost::mt19937 stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from modelport.errors import ConfigError
from modelport.formats.caffe import caffe_pb2

FILLER_TYPES = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra",
                "bilinear")


def fill(filler: caffe_pb2.FillerParameter, shape: Sequence[int],
         generator: torch.Generator | None = None) -> torch.Tensor:
    """A float32 tensor of `shape` initialised as Caffe's filler `filler.type` would."""
    shape = tuple(int(d) for d in shape)
    kind = filler.type
    count = math.prod(shape)
    if kind not in FILLER_TYPES:
        raise ConfigError(f"unknown filler type '{kind}' (Caffe knows {', '.join(FILLER_TYPES)}). "
                          "Fix: correct the weight_filler/bias_filler type")
    if count == 0:
        raise ConfigError(f"filler '{kind}': cannot fill an empty blob of shape {shape}")
    if kind != "gaussian" and filler.sparse != -1:
        # Every Caffe filler but gaussian CHECKs sparse == -1.
        raise ConfigError(f"filler '{kind}': sparse={filler.sparse} is only supported by the "
                          "gaussian filler. Fix: remove 'sparse' or use type: \"gaussian\"")
    if kind == "constant":
        return torch.full(shape, float(filler.value), dtype=torch.float32)
    if kind == "uniform":
        return _uniform(shape, filler.min, filler.max, generator)
    if kind == "gaussian":
        return _gaussian(filler, shape, generator)
    if kind == "positive_unitball":
        return _positive_unitball(shape, generator)
    if kind in ("xavier", "msra"):
        return _variance_scaled(filler, shape, generator)
    return _bilinear(shape)


def _uniform(shape: tuple[int, ...], low: float, high: float,
             generator: torch.Generator | None) -> torch.Tensor:
    # caffe_rng_uniform: boost uniform_real on [low, nextafter(high)), i.e. [low, high].
    if high < low:
        raise ConfigError(f"uniform filler: max {high} is smaller than min {low}")
    out = torch.empty(shape, dtype=torch.float32)
    return out.uniform_(float(low), float(high), generator=generator)


def _gaussian(filler: caffe_pb2.FillerParameter, shape: tuple[int, ...],
              generator: torch.Generator | None) -> torch.Tensor:
    """GaussianFiller: N(mean, std); with `sparse` = s >= 0 every value is kept with
    probability s / shape[0] (Caffe's rng_bernoulli mask), else zeroed."""
    if filler.std <= 0:
        raise ConfigError(f"gaussian filler: std must be positive, got {filler.std}")
    out = torch.empty(shape, dtype=torch.float32).normal_(float(filler.mean), float(filler.std),
                                                          generator=generator)
    sparse = filler.sparse
    if sparse < -1:
        raise ConfigError(f"gaussian filler: sparse must be >= -1, got {sparse}")
    if sparse >= 0:
        if not shape:
            raise ConfigError("gaussian filler: sparse needs a blob with at least one axis")
        num_outputs = shape[0]
        # Caffe: Dtype(sparse) / Dtype(num_outputs), the mean count of non-zero inputs per output.
        p = float(np.float32(sparse) / np.float32(num_outputs))
        if p > 1:
            raise ConfigError(f"gaussian filler: sparse={sparse} exceeds the {num_outputs} "
                              "outputs (non-zero probability > 1)")
        mask = torch.bernoulli(torch.full(shape, p, dtype=torch.float32), generator=generator)
        out *= mask
    return out


def _legacy_dim(shape: tuple[int, ...], axis: int, kind: str) -> int:
    """Caffe's Blob::LegacyShape: axes beyond the blob's count as 1; at most 4 axes."""
    if len(shape) > 4:
        raise ConfigError(f"filler '{kind}': Caffe's num()/channels() accept blobs of at most 4 "
                          f"axes, got shape {shape}")
    return shape[axis] if axis < len(shape) else 1


def _fan(filler: caffe_pb2.FillerParameter, shape: tuple[int, ...]) -> np.float32:
    """The n of XavierFiller / MSRAFiller: fan_in = count/num, fan_out = count/channels, or
    their average, as a float32 like Caffe's `Dtype n`."""
    count = math.prod(shape)
    fan_in = count // _legacy_dim(shape, 0, filler.type)
    fan_out = count // _legacy_dim(shape, 1, filler.type)
    norm = filler.variance_norm
    if norm == caffe_pb2.FillerParameter.AVERAGE:
        return np.float32(fan_in + fan_out) / np.float32(2)
    if norm == caffe_pb2.FillerParameter.FAN_OUT:
        return np.float32(fan_out)
    return np.float32(fan_in)


def _variance_scaled(filler: caffe_pb2.FillerParameter, shape: tuple[int, ...],
                     generator: torch.Generator | None) -> torch.Tensor:
    """XavierFiller: U(-a, a), a = sqrt(3 / n). MSRAFiller: N(0, sqrt(2 / n)^2)."""
    n = _fan(filler, shape)
    if filler.type == "xavier":
        scale = float(np.sqrt(np.float32(3) / n))
        return _uniform(shape, -scale, scale, generator)
    std = float(np.sqrt(np.float32(2) / n))
    return torch.empty(shape, dtype=torch.float32).normal_(0.0, std, generator=generator)


def _positive_unitball(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """PositiveUnitballFiller: U(0, 1) values, each of the num() rows divided by its sum."""
    out = _uniform(shape, 0.0, 1.0, generator)
    num = _legacy_dim(shape, 0, "positive_unitball") if shape else 1
    rows = out.reshape(num, -1)
    rows /= rows.sum(dim=1, keepdim=True)
    return out


def _bilinear(shape: tuple[int, ...]) -> torch.Tensor:
    """BilinearFiller: every K x K kernel of a (num, channels, K, K) blob holds Caffe's bilinear
    upsampling weights (1 - |x/f - c|) * (1 - |y/f - c|), f = ceil(K/2),
    c = (2f - 1 - f % 2) / (2f); computed in float32 as Caffe does."""
    if len(shape) != 4:
        raise ConfigError(f"bilinear filler: blob must have 4 axes, got shape {shape}")
    height, width = shape[2], shape[3]
    if height != width:
        raise ConfigError(f"bilinear filler: filter must be square, got {height}x{width}")
    f = math.ceil(width / 2.0)
    c = np.float32((2 * f - 1 - f % 2) / (2.0 * f))
    ff = np.float32(f)
    one = np.float32(1)
    x = (np.arange(width, dtype=np.float32) / ff - c)
    y = (np.arange(height, dtype=np.float32) / ff - c)
    kernel = (one - np.abs(y))[:, None] * (one - np.abs(x))[None, :]
    out = np.broadcast_to(kernel.astype(np.float32), shape).copy()
    return torch.from_numpy(out)
