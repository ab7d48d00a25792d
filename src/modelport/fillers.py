"""Caffe's weight fillers (include/caffe/filler.hpp), for blobs a weights file does not provide.

`fill(filler, shape)` returns a float32 tensor initialised the way Caffe's `GetFiller(param)`
would initialise a blob of that shape: the same distribution with the same parameters, the same
fan-in/fan-out arithmetic, and bit-identical values for the deterministic fillers (constant,
bilinear). Random values come from a torch Generator (pass `generator=` for reproducible runs),
or, with `rng=CaffeRNG(seed)`, from Caffe's own boost::mt19937 stream: then the blob equals
Caffe's bit for bit and the stream advances by exactly the draws Caffe's filler takes, so one
`CaffeRNG` passed to every filler in net-construction order replays `Net::Init`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from modelport import limits
from modelport.caffe_rng import CaffeRNG
from modelport.errors import ConfigError
from modelport.schema import caffe_pb2

FILLER_TYPES = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra",
                "bilinear")


def fill(filler: caffe_pb2.FillerParameter, shape: Sequence[int],
         generator: torch.Generator | None = None, *, rng: CaffeRNG | None = None,
         ) -> torch.Tensor:
    """A float32 tensor of `shape` initialised as Caffe's filler `filler.type` would; with
    `rng`, drawn from Caffe's stream (`caffe_rng_*<float>`) exactly as filler.hpp does."""
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
    if limits.shape_only_active():  # inspect: the shape is all that is needed
        problem = limits.shape_problem(shape)
        if problem is not None:
            raise ConfigError(f"a weight blob {problem}. Fix: check num_output and the kernel")
        return torch.empty(shape, dtype=torch.float32, device="meta")
    limits.reserve_weights(shape)  # refused before allocating when over the memory limit
    if kind == "constant":
        return torch.full(shape, float(filler.value), dtype=torch.float32)
    if kind == "uniform":
        return _uniform(shape, filler.min, filler.max, generator, rng)
    if kind == "gaussian":
        return _gaussian(filler, shape, generator, rng)
    if kind == "positive_unitball":
        return _positive_unitball(shape, generator, rng)
    if kind in ("xavier", "msra"):
        return _variance_scaled(filler, shape, generator, rng)
    return _bilinear(shape)


def _uniform(shape: tuple[int, ...], low: float, high: float,
             generator: torch.Generator | None, rng: CaffeRNG | None = None) -> torch.Tensor:
    # caffe_rng_uniform: boost uniform_real on [low, nextafter(high)), i.e. [low, high].
    if high < low:
        raise ConfigError(f"uniform filler: max {high} is smaller than min {low}")
    if rng is not None:
        values = rng.uniform(np.float32(low), np.float32(high), math.prod(shape), np.float32)
        return torch.from_numpy(values.reshape(shape))
    out = torch.empty(shape, dtype=torch.float32)
    return out.uniform_(float(low), float(high), generator=generator)


def _normal(shape: tuple[int, ...], mean: float, std: float,
            generator: torch.Generator | None, rng: CaffeRNG | None) -> torch.Tensor:
    """caffe_rng_gaussian<float>(count, Dtype(mean), Dtype(std))."""
    if rng is not None:
        values = rng.gaussian(np.float32(mean), np.float32(std), math.prod(shape), np.float32)
        return torch.from_numpy(values.reshape(shape))
    return torch.empty(shape, dtype=torch.float32).normal_(float(mean), float(std),
                                                           generator=generator)


def _gaussian(filler: caffe_pb2.FillerParameter, shape: tuple[int, ...],
              generator: torch.Generator | None, rng: CaffeRNG | None = None) -> torch.Tensor:
    """GaussianFiller: N(mean, std); with `sparse` = s >= 0 every value is kept with
    probability s / shape[0] (Caffe's rng_bernoulli mask, drawn after all the values), else
    multiplied by 0 (a negative value becomes -0.0, as Caffe's `data[i] *= mask[i]`)."""
    if filler.std <= 0:
        raise ConfigError(f"gaussian filler: std must be positive, got {filler.std}")
    out = _normal(shape, filler.mean, filler.std, generator, rng)
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
        if rng is not None:
            bits = rng.bernoulli(np.float32(sparse) / np.float32(num_outputs), out.numel(),
                                 np.float32)
            mask = torch.from_numpy(bits.astype(np.float32).reshape(shape))
        else:
            mask = torch.bernoulli(torch.full(shape, p, dtype=torch.float32),
                                   generator=generator)
        out *= mask
    return out


def _legacy_dim(shape: tuple[int, ...], axis: int, kind: str) -> int:
    """Caffe's Blob::LegacyShape: axes beyond the blob's count as 1; at most 4 axes."""
    if len(shape) > 4:
        raise ConfigError(f"filler '{kind}': Caffe's num()/channels() accept blobs of at most 4 "
                          f"axes, got shape {shape}")
    return shape[axis] if axis < len(shape) else 1


def _fan(filler: caffe_pb2.FillerParameter, shape: tuple[int, ...]) -> np.float32:
    """The n of XavierFiller / MSRAFiller: fan_in = count / shape(0), fan_out = count /
    shape(1) (count for a 1-D blob), or their average, as a float32 like Caffe's `Dtype n`.
    The stored shape is used at any number of axes (5-D convolution weights included)."""
    count = math.prod(shape)
    if not shape:
        raise ConfigError(f"filler '{filler.type}': a 0-axis blob has no fan-in (Caffe's "
                          "shape(0) fails). Fix: use a constant or gaussian filler")
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    norm = filler.variance_norm
    if norm == caffe_pb2.FillerParameter.AVERAGE:
        return np.float32(fan_in + fan_out) / np.float32(2)
    if norm == caffe_pb2.FillerParameter.FAN_OUT:
        return np.float32(fan_out)
    return np.float32(fan_in)


def _variance_scaled(filler: caffe_pb2.FillerParameter, shape: tuple[int, ...],
                     generator: torch.Generator | None, rng: CaffeRNG | None = None,
                     ) -> torch.Tensor:
    """XavierFiller: U(-a, a), a = sqrt(3 / n). MSRAFiller: N(0, sqrt(2 / n)^2). In float."""
    n = _fan(filler, shape)
    if filler.type == "xavier":
        scale = float(np.sqrt(np.float32(3) / n))
        return _uniform(shape, -scale, scale, generator, rng)
    std = float(np.sqrt(np.float32(2) / n))
    return _normal(shape, 0.0, std, generator, rng)


def _positive_unitball(shape: tuple[int, ...], generator: torch.Generator | None,
                       rng: CaffeRNG | None = None) -> torch.Tensor:
    """PositiveUnitballFiller: U(0, 1) values, each of the num() rows divided by its float sum,
    accumulated in order as Caffe's loop does."""
    out = _uniform(shape, 0.0, 1.0, generator, rng)
    num = _legacy_dim(shape, 0, "positive_unitball") if shape else 1
    rows = out.numpy().reshape(num, -1)
    sums = np.cumsum(rows, axis=1, dtype=np.float32)[:, -1:]  # sequential, not pairwise
    rows /= sums
    return out


def _bilinear(shape: tuple[int, ...]) -> torch.Tensor:
    """BilinearFiller: every K x K kernel of a (num, channels, K, K) blob holds Caffe's bilinear
    upsampling weights (1 - |x/f - c|) * (1 - |y/f - c|), f = ceil(K/2) (an int),
    c = float((K - 1) / (2. * f)) (this 2018 filler.hpp; older Caffe had
    (2f - 1 - f % 2) / (2f), which differs for odd K). All float arithmetic (checked against
    the goldens: double factors would be 1 ulp off for K = 5, 6)."""
    if len(shape) != 4:
        raise ConfigError(f"bilinear filler: blob must have 4 axes, got shape {shape}")
    height, width = shape[2], shape[3]
    if height != width:
        raise ConfigError(f"bilinear filler: filter must be square, got {height}x{width}")
    f = math.ceil(width / 2.0)
    c = np.float32((width - 1) / (2.0 * f))
    ff = np.float32(f)
    one = np.float32(1)
    x = np.arange(width, dtype=np.float32) / ff - c
    y = np.arange(height, dtype=np.float32) / ff - c
    kernel = (one - np.abs(y))[:, None] * (one - np.abs(x))[None, :]
    out = np.broadcast_to(kernel.astype(np.float32), shape).copy()
    return torch.from_numpy(out)
