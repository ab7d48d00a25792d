"""Caffe's fillers (include/caffe/filler.hpp): exact values for the deterministic ones, the
distributions and fan arithmetic for the random ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modelport.errors import ConfigError
from modelport.fillers import fill
from modelport.formats.caffe import caffe_pb2

FP = caffe_pb2.FillerParameter


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_constant_is_exact_and_float32() -> None:
    out = fill(FP(type="constant", value=0.3), (2, 3, 4, 5))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 5)
    assert torch.all(out == torch.tensor(0.3, dtype=torch.float32))
    assert torch.all(fill(FP(), (7,)) == 0)  # the schema's default type is "constant", value 0


def test_uniform_range_and_mean() -> None:
    out = fill(FP(type="uniform", min=-0.5, max=1.5), (40, 30, 7, 5), _gen())
    assert out.min() >= -0.5 and out.max() <= 1.5
    assert out.min() < -0.49 and out.max() > 1.49
    # mean 0.5, std of the mean = (2/sqrt(12))/sqrt(42000) ~ 0.0028
    assert abs(out.mean().item() - 0.5) < 0.015


def test_gaussian_moments() -> None:
    out = fill(FP(type="gaussian", mean=2.0, std=0.25), (50, 40, 3, 7), _gen(1))
    assert abs(out.mean().item() - 2.0) < 0.01
    assert abs(out.std().item() - 0.25) < 0.01


def test_gaussian_sparse_keeps_sparse_over_num_outputs() -> None:
    # Caffe: non_zero_probability = sparse / shape[0]; 5 / 20 = 0.25 of the values survive.
    out = fill(FP(type="gaussian", std=1.0, sparse=5), (20, 3000), _gen(2))
    frac = (out != 0).float().mean().item()
    assert abs(frac - 0.25) < 0.01
    dense = fill(FP(type="gaussian", std=1.0, sparse=5), (20, 3000), _gen(2))
    assert torch.equal(out, dense)  # the generator makes it reproducible


def test_gaussian_sparse_larger_than_outputs_is_an_error() -> None:
    with pytest.raises(ConfigError, match="exceeds"):
        fill(FP(type="gaussian", sparse=9), (4, 10), _gen())


@pytest.mark.parametrize("norm, expected_n", [
    (FP.FAN_IN, 6 * 5 * 3),           # count / num
    (FP.FAN_OUT, 8 * 5 * 3),          # count / channels
    (FP.AVERAGE, (90 + 120) / 2),
])
def test_xavier_bound_follows_fan(norm: int, expected_n: float) -> None:
    shape = (8, 6, 5, 3)
    bound = math.sqrt(3.0 / expected_n)
    out = torch.cat([fill(FP(type="xavier", variance_norm=norm), shape, _gen(s)).flatten()
                     for s in range(30)])
    assert out.abs().max().item() <= bound * (1 + 1e-6)
    assert out.abs().max().item() > 0.99 * bound
    assert abs(out.var().item() * expected_n - 1.0) < 0.05  # var of U(-a, a) = a^2/3 = 1/n


@pytest.mark.parametrize("norm, expected_n", [
    (FP.FAN_IN, 70), (FP.FAN_OUT, 30), (FP.AVERAGE, 50),
])
def test_msra_std_on_inner_product_weight(norm: int, expected_n: float) -> None:
    # InnerProduct weights are (num_output, fan_in): num = 30, channels = 70.
    out = torch.cat([fill(FP(type="msra", variance_norm=norm), (30, 70), _gen(s)).flatten()
                     for s in range(20)])
    assert abs(out.std().item() / math.sqrt(2.0 / expected_n) - 1.0) < 0.03
    assert abs(out.mean().item()) < 0.01


def test_fan_of_one_axis_blob_uses_legacy_shape() -> None:
    # A 1-D blob (a bias) has num = 7 and channels = 1 (Blob::LegacyShape), so fan_in = 1 and
    # fan_out = 7: xavier FAN_IN draws from U(-sqrt(3), sqrt(3)).
    out = torch.cat([fill(FP(type="xavier"), (7,), _gen(s)) for s in range(400)])
    assert out.abs().max().item() > 0.95 * math.sqrt(3.0)
    out = torch.cat([fill(FP(type="xavier", variance_norm=FP.FAN_OUT), (7,), _gen(s))
                     for s in range(400)])
    assert out.abs().max().item() <= math.sqrt(3.0 / 7) * (1 + 1e-6)


def test_positive_unitball_rows_sum_to_one() -> None:
    out = fill(FP(type="positive_unitball"), (6, 4, 3, 5), _gen(3))
    assert out.min() >= 0 and out.max() <= 1
    sums = out.reshape(6, -1).double().sum(dim=1)
    assert torch.allclose(sums, torch.ones(6, dtype=torch.float64), atol=1e-6)


def _fcn_upsample_filt(size: int) -> np.ndarray:
    """The bilinear kernel of Long et al.'s FCN surgery code (an independent reference), valid
    for Caffe's documented kernel sizes K = 2 * factor - factor % 2."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5])
def test_bilinear_matches_fcn_kernel_for_documented_sizes(factor: int) -> None:
    k = 2 * factor - factor % 2
    out = fill(FP(type="bilinear"), (3, 1, k, k)).numpy()
    ref = _fcn_upsample_filt(k).astype(np.float32)
    for c in range(3):
        np.testing.assert_allclose(out[c, 0], ref, rtol=0, atol=1e-7)


def test_bilinear_exact_values() -> None:
    out = fill(FP(type="bilinear"), (2, 3, 4, 4)).numpy()
    row = np.array([0.25, 0.75, 0.75, 0.25], dtype=np.float32)
    assert np.array_equal(out[1, 2], np.outer(row, row).astype(np.float32))
    # An odd size off Caffe's recipe: the 2018 filler.hpp (f = 2, c = (K - 1) / (2f) = 0.5)
    # gives a symmetric kernel, rows [0.5, 1, 0.5] (golden/rng fillers_all, K = 3).
    odd = fill(FP(type="bilinear"), (1, 1, 3, 3)).numpy()[0, 0]
    row3 = np.array([0.5, 1.0, 0.5], dtype=np.float32)
    assert np.array_equal(odd, np.outer(row3, row3))


@pytest.mark.parametrize("param, shape, match", [
    (FP(type="bilinear"), (2, 3, 4), "4 axes"),
    (FP(type="bilinear"), (1, 1, 4, 3), "square"),
    (FP(type="xavier", sparse=3), (4, 5), "only supported by the gaussian"),
    (FP(type="Xavier"), (4, 5), "unknown filler type 'Xavier'"),
    (FP(type="positive_unitball"), (2, 3, 4, 5, 6), "at most 4"),
])
def test_filler_errors(param: caffe_pb2.FillerParameter, shape: tuple[int, ...],
                       match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fill(param, shape)
