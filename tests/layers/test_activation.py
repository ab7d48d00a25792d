"""Element-wise activations against numpy transcriptions of Caffe 1.0's Forward_cpu loops.

The `activations` golden covers one parameter set per type; these add what it does not: PReLU on
2-D and 3-D bottoms and with missing weights (Caffe's 0.25 default), Power's constant branch and
fractional powers, Exp/Log with other bases and shifts, Clip's std::min/std::max edge cases (NaN,
min > max), BNLL at large magnitudes, Threshold at equality, Dropout in both phases, and the
errors for impossible parameters.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.errors import LayerError, ShapeError
from modelport.formats.caffe.caffemodel import StoredLayer
from modelport.ir import Blob
from modelport.pipeline import attach_weights, parse_net

F32 = np.float32
SHAPE = (2, 3, 7, 9)


def _run(layer: str, x: np.ndarray, weights: list[np.ndarray] | None = None,
         phase: str = "test", allow_missing: bool = False) -> np.ndarray:
    dims = " ".join(f"dim: {d}" for d in x.shape)
    text = (f'layer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ {dims} }} }} }}\n'
            f'layer {{ name: "act" bottom: "data" top: "y" {layer} }}')
    net = parse_net(text, phase=phase)
    if weights is not None:
        net = attach_weights(net, [StoredLayer("act", "", tuple(Blob(w) for w in weights))])
    module = build_module(net, allow_missing_weights=allow_missing)
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _data(shape=SHAPE, seed=0, scale=3.0) -> np.ndarray:
    x = (np.random.RandomState(seed).randn(*shape) * scale).astype(F32)
    x.flat[:4] = [0.0, -0.0, 0.5, -0.5]
    return x


def _close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.nanmax(np.abs(ref))))


def caffe_prelu(x: np.ndarray, slope: np.ndarray, shared: bool) -> np.ndarray:
    """prelu_layer.cpp: c = (i / dim) % channels, dim = count(2); one slope when shared."""
    flat = x.reshape(-1)
    channels = x.shape[1]
    dim = math.prod(x.shape[2:])
    out = np.empty_like(flat)
    for i, v in enumerate(flat):
        c = 0 if shared else (i // dim) % channels
        out[i] = max(v, F32(0)) + slope.reshape(-1)[c] * min(v, F32(0))
    return out.reshape(x.shape)


@pytest.mark.parametrize("shape", [(4, 5), (2, 5, 7), (2, 3, 4, 6, 5)])
def test_prelu_per_channel_on_any_rank(shape) -> None:
    x = _data(shape)
    slope = np.random.RandomState(1).uniform(0.05, 0.3, size=shape[1]).astype(F32)
    _close(_run('type: "PReLU"', x, [slope]), caffe_prelu(x, slope, False))


def test_prelu_shared_and_default_filler() -> None:
    x = _data()
    shared = np.array(0.2, F32)  # Caffe's shared slope blob has shape ()
    _close(_run('type: "PReLU" prelu_param { channel_shared: true }', x, [shared]),
           caffe_prelu(x, shared, True))
    # No weights: Caffe fills the slopes with 0.25 when prelu_param has no filler.
    _close(_run('type: "PReLU"', x, allow_missing=True),
           caffe_prelu(x, np.full(3, 0.25, F32), False))


def test_prelu_rejects_wrong_slope_count_and_1d_bottom() -> None:
    with pytest.raises(LayerError, match=r"layer 'act' \(type PReLU\).*shape \(4,\)"):
        _run('type: "PReLU"', _data(), [np.ones(4, F32)])
    with pytest.raises(ShapeError, match="at least 2 axes"):
        _run('type: "PReLU"', _data((7,)), [np.ones(1, F32)])


def test_relu_and_elu_defaults() -> None:
    x = _data()
    _close(_run('type: "ReLU"', x), np.maximum(x, 0) + F32(0) * np.minimum(x, 0))
    ref = np.maximum(x, 0) + F32(1) * (np.exp(np.minimum(x, 0)) - F32(1))
    _close(_run('type: "ELU"', x), ref)


def caffe_power(x: np.ndarray, power: float, scale: float, shift: float) -> np.ndarray:
    """power_layer.cpp: a constant when power*scale == 0, else (shift + scale*x)^power."""
    p, s, t = F32(power), F32(scale), F32(shift)
    if p * s == 0:
        return np.full_like(x, F32(1) if p == 0 else np.power(t, p))
    with np.errstate(invalid="ignore"):
        return np.power(x * s + t, p).astype(F32)


@pytest.mark.parametrize("power,scale,shift", [
    (0.0, 2.0, 3.0),   # power 0: ones, whatever x is
    (3.0, 0.0, 1.5),   # scale 0: shift^power
    (0.5, 1.0, 0.0),   # sqrt: NaN for negative x, as in Caffe
    (-1.0, 0.25, 4.0),
])
def test_power_branches(power, scale, shift) -> None:
    x = _data()
    params = f"power_param {{ power: {power} scale: {scale} shift: {shift} }}"
    ours = _run(f'type: "Power" {params}', x)
    ref = caffe_power(x, power, scale, shift)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    _close(np.nan_to_num(ours), np.nan_to_num(ref))


def caffe_exp(x: np.ndarray, base: float, scale: float, shift: float) -> np.ndarray:
    """exp_layer.cpp: y = base^(shift + scale*x) = outer * exp(inner * x)."""
    log_base = F32(1) if base == -1 else F32(math.log(base))
    inner = log_base * F32(scale)
    outer = F32(1) if shift == 0 else F32(math.exp(shift) if base == -1 else base ** shift)
    return (outer * np.exp(x * inner)).astype(F32)


@pytest.mark.parametrize("base,scale,shift", [(2.0, 3.0, 0.5), (-1.0, 1.0, -1.0),
                                              (10.0, -0.25, 0.0), (0.5, 1.0, 2.0)])
def test_exp(base, scale, shift) -> None:
    x = _data(scale=1.0)
    ours = _run(f'type: "Exp" exp_param {{ base: {base} scale: {scale} shift: {shift} }}', x)
    _close(ours, caffe_exp(x, base, scale, shift))
    # and the mathematical definition, for good measure
    e = math.e if base == -1 else base
    _close(ours, np.power(e, shift + scale * x.astype(np.float64)).astype(F32))


@pytest.mark.parametrize("base,scale,shift", [(2.0, 3.0, 0.0), (-1.0, 0.5, 1.0),
                                              (0.5, 1.0, 0.25)])
def test_log(base, scale, shift) -> None:
    x = np.abs(_data(scale=2.0)) + F32(0.1)
    ours = _run(f'type: "Log" log_param {{ base: {base} scale: {scale} shift: {shift} }}', x)
    base_scale = F32(1) if base == -1 else F32(1) / F32(math.log(base))
    _close(ours, (np.log(x * F32(scale) + F32(shift)) * base_scale).astype(F32))


@pytest.mark.parametrize("layer,match", [
    ('type: "Exp" exp_param { base: -2 }', "strictly positive"),
    ('type: "Exp" exp_param { base: 0 }', "strictly positive"),
    ('type: "Log" log_param { base: 1 }', "base is 1"),
    ('type: "Log" log_param { base: -3 }', "strictly positive"),
    ('type: "Clip" clip_param { min: -1 }', r"clip_param.max is not set"),
    ('type: "Clip"', r"clip_param.min and max is not set"),
    ('type: "Dropout" dropout_param { dropout_ratio: 1 }', r"\[0, 1\)"),
])
def test_impossible_parameters_name_the_layer(layer, match) -> None:
    with pytest.raises(ShapeError, match=rf"layer 'act' \(type \w+\): .*{match}"):
        _run(layer, _data())


def caffe_clip(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """clip_layer.cpp: std::max(min, std::min(x, max)), with std's (b < a) ? b : a order."""
    out = np.empty_like(x)
    lo, hi = F32(low), F32(high)
    for i, v in enumerate(x.reshape(-1)):
        m = hi if hi < v else v
        out.reshape(-1)[i] = m if lo < m else lo
    return out


@pytest.mark.parametrize("low,high", [(-1.0, 2.5), (1.0, -1.0)])  # min > max: Caffe gives min
def test_clip_matches_std_min_max_including_nan(low, high) -> None:
    x = _data()
    x.flat[5] = np.nan
    ours = _run(f'type: "Clip" clip_param {{ min: {low} max: {high} }}', x)
    np.testing.assert_array_equal(ours, caffe_clip(x, low, high))


def test_threshold_is_strict_and_bnll_does_not_overflow() -> None:
    x = _data()
    x.flat[6] = 0.75
    ours = _run('type: "Threshold" threshold_param { threshold: 0.75 }', x)
    np.testing.assert_array_equal(ours, (x > F32(0.75)).astype(F32))
    assert ours.flat[6] == 0
    big = np.array([[-200.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 200.0, 88.0, 89.0]], F32)
    ref = np.where(big > 0, big + np.log1p(np.exp(-big.astype(np.float64))),
                   np.log1p(np.exp(np.minimum(big, 0).astype(np.float64)))).astype(F32)
    ours = _run('type: "BNLL"', big)
    assert np.isfinite(ours).all()
    _close(ours, ref)


def test_swish_sigmoid_tanh_absval() -> None:
    x = _data()
    sig = F32(0.5) * np.tanh(F32(0.5) * x) + F32(0.5)  # Caffe's sigmoid form
    _close(_run('type: "Sigmoid"', x), sig)
    _close(_run('type: "Swish"', x), x * sig)
    sig2 = F32(0.5) * np.tanh(F32(0.5) * (x * F32(0.3))) + F32(0.5)
    _close(_run('type: "Swish" swish_param { beta: 0.3 }', x), x * sig2)
    _close(_run('type: "TanH"', x), np.tanh(x))
    _close(_run('type: "AbsVal"', x), np.abs(x))


def test_dropout_identity_at_test_and_inverted_scaling_in_train() -> None:
    x = _data() + F32(10)  # no zeros in x, so a zero in the output means "dropped"
    np.testing.assert_array_equal(
        _run('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x), x)
    torch.manual_seed(0)
    ours = _run('type: "Dropout" dropout_param { dropout_ratio: 0.25 }', x, phase="train")
    kept = ours != 0
    assert 0.6 < kept.mean() < 0.9
    _close(ours[kept], x[kept] / F32(0.75))


def test_modules_export() -> None:
    """Converted activations are plain torch ops: torch.export reproduces eager output."""
    x = torch.from_numpy(_data())
    layers = ['type: "ReLU" relu_param { negative_slope: 0.2 }', 'type: "Clip" clip_param '
              '{ min: -1 max: 1 }', 'type: "Power" power_param { power: 2 shift: 1 }',
              'type: "BNLL"', 'type: "Exp" exp_param { base: 2 shift: 1 }']
    for layer in layers:
        dims = " ".join(f"dim: {d}" for d in SHAPE)
        net = build_module(parse_net(
            f'layer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ {dims} }} }} }}\n'
            f'layer {{ name: "act" bottom: "data" top: "y" {layer} }}'))
        module = net.layer_module("act")
        exported = torch.export.export(module, (x,)).module()
        torch.testing.assert_close(exported(x * 2), module(x * 2), equal_nan=True)
