"""LRN, BatchNorm, Scale, Bias and MVN against numpy re-derivations of Caffe's C++ and against
the real-Caffe BatchNorm training trace (tests/golden/solver/batchnorm_train).

The numpy references follow the loops of lrn_layer.cpp, pooling_layer.cpp, batch_norm_layer.cpp,
scale_layer.cpp, bias_layer.cpp and mvn_layer.cpp, in float64, independently of modelport.
"""

from __future__ import annotations

import json
import pathlib

import h5py
import numpy as np
import pytest
import torch

from golden_support import GOLDEN, assert_blob_close
from modelport.backends.torch_module import build_module
from modelport.errors import ShapeError, WeightError
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Blob, Net
from modelport.layers.base import ConvertContext
from modelport.layers.registry import lookup
from modelport.pipeline import load_net, parse_net

RNG = np.random.RandomState(1234)


def one_layer_net(body: str, shapes: dict[str, tuple[int, ...]],
                  blobs: list[np.ndarray] | None = None, phase: str = "test") -> Net:
    """A net of Input layers for `shapes` followed by one layer (`body`), with `blobs`."""
    inputs = "".join(
        f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
        + " ".join(f"dim: {d}" for d in s) + " } } }\n"
        for n, s in shapes.items())
    net = parse_net(inputs + body, phase=phase)
    if blobs is not None:
        last = net.layers[-1]
        layers = net.layers[:-1] + (last.with_blobs(tuple(Blob(b) for b in blobs)),)
        net = Net(net.name, layers, net.source, net.phase, net.notes)
    return net


def run(net: Net, **inputs: np.ndarray) -> np.ndarray:
    module = build_module(net)
    with torch.no_grad():
        blobs = module.forward_blobs(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return blobs[net.layers[-1].tops[0]].numpy()


# ---- LRN -------------------------------------------------------------------------------------


def lrn_across_reference(x: np.ndarray, size: int, alpha: float, beta: float,
                         k: float) -> np.ndarray:
    """CrossChannelForward_cpu: running sum over a zero-padded channel window."""
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    pre = (size - 1) // 2
    padded = np.zeros((c + size - 1, h, w))
    scale = np.full(x.shape, k, dtype=np.float64)
    for i in range(n):
        padded[pre : pre + c] = x[i] ** 2
        for j in range(size):
            scale[i, 0] += alpha / size * padded[j]
        for ch in range(1, c):
            scale[i, ch] = scale[i, ch - 1] + alpha / size * (
                padded[ch + size - 1] - padded[ch - 1])
    return x * scale ** -beta


def lrn_within_reference(x: np.ndarray, size: int, alpha: float, beta: float) -> np.ndarray:
    """WithinChannelForward: AVE pooling of x^2 (kernel size, pad (size-1)/2, stride 1; the
    divisor is the window clipped to [-pad, H+pad)), then (1 + alpha*avg)^-beta * x."""
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    pad = (size - 1) // 2
    sq = x**2
    avg = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            hs, ws = i - pad, j - pad
            he, we = min(hs + size, h + pad), min(ws + size, w + pad)
            count = (he - hs) * (we - ws)
            window = sq[:, :, max(hs, 0) : min(he, h), max(ws, 0) : min(we, w)]
            avg[:, :, i, j] = window.sum(axis=(2, 3)) / count
    return x * (1 + alpha * avg) ** -beta


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.75, 2.0),
                                               (7, 2.0, 0.6, 0.5), (1, 0.3, 1.2, 1.5)])
def test_lrn_across_channels_matches_caffe_loop(size, alpha, beta, k) -> None:
    x = RNG.randn(2, 6, 5, 7).astype(np.float32) * 2
    net = one_layer_net(
        f'layer {{ name: "lrn" type: "LRN" bottom: "x" top: "y" lrn_param {{ '
        f"local_size: {size} alpha: {alpha} beta: {beta} k: {k} }} }}",
        {"x": x.shape})
    ref = lrn_across_reference(x, size, alpha, beta, k)
    assert_blob_close("y", run(net, x=x), ref.astype(np.float32))


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_within_channel_pools_with_caffe_divisor_and_ignores_k(size) -> None:
    x = RNG.randn(2, 3, 6, 9).astype(np.float32) * 3
    outs = []
    for k in (1.0, 7.0):
        net = one_layer_net(
            f'layer {{ name: "lrn" type: "LRN" bottom: "x" top: "y" lrn_param {{ '
            f"norm_region: WITHIN_CHANNEL local_size: {size} alpha: 0.8 beta: 0.75 k: {k} }} }}",
            {"x": x.shape})
        outs.append(run(net, x=x))
    ref = lrn_within_reference(x, size, 0.8, 0.75).astype(np.float32)
    assert_blob_close("y", outs[0], ref)
    np.testing.assert_array_equal(outs[0], outs[1])  # Caffe's Power layer uses shift 1, not k
    # The divisor is always size^2 here: a plain mean over zero-padded windows agrees.
    assert np.abs(ref).max() > 0.1


def test_lrn_rejects_even_size_and_non_4d() -> None:
    with pytest.raises(ShapeError, match="must be odd"):
        build_module(one_layer_net(
            'layer { name: "lrn" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 4 } }',
            {"x": (1, 3, 4, 5)}))
    with pytest.raises(ShapeError, match="4-D"):
        build_module(one_layer_net(
            'layer { name: "lrn" type: "LRN" bottom: "x" top: "y" }', {"x": (3, 4, 5)}))


# ---- BatchNorm -------------------------------------------------------------------------------


def bn_global_reference(x: np.ndarray, blobs: list[np.ndarray], eps: float) -> np.ndarray:
    factor = 0.0 if blobs[2][0] == 0 else 1.0 / float(blobs[2][0])
    c = x.shape[1]
    shape = (1, c) + (1,) * (x.ndim - 2)
    mean = (blobs[0].astype(np.float64) * factor).reshape(shape)
    var = (blobs[1].astype(np.float64) * factor).reshape(shape)
    return (x - mean) / np.sqrt(var + eps)


def bn_blobs(c: int, factor: float) -> list[np.ndarray]:
    mean = RNG.randn(c).astype(np.float32)
    var = RNG.uniform(0.5, 2, c).astype(np.float32)
    return [mean * np.float32(factor), var * np.float32(factor),
            np.array([factor], np.float32)]


@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (3, 5), (2, 3, 7), (2, 3, 2, 4, 5)])
@pytest.mark.parametrize("factor", [0.5, 0.0])
def test_batchnorm_global_stats(shape, factor) -> None:
    x = RNG.randn(*shape).astype(np.float32)
    blobs = bn_blobs(shape[1], factor)
    net = one_layer_net(
        'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" '
        "batch_norm_param { use_global_stats: true eps: 0.001 } }", {"x": shape}, blobs)
    assert_blob_close("y", run(net, x=x), bn_global_reference(x, blobs, 1e-3).astype(np.float32))


def test_batchnorm_default_stats_follow_phase() -> None:
    """use_global_stats unset: stored stats in TEST, batch stats in TRAIN (Caffe's default)."""
    x = RNG.randn(4, 3, 5, 2).astype(np.float32) + 3
    blobs = bn_blobs(3, 2.0)
    body = 'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" }'
    test_out = run(one_layer_net(body, {"x": x.shape}, blobs, phase="test"), x=x)
    assert_blob_close("y", test_out, bn_global_reference(x, blobs, 1e-5).astype(np.float32))
    train_out = run(one_layer_net(body, {"x": x.shape}, blobs, phase="train"), x=x)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    assert_blob_close("y", train_out, ((x64 - mean) / np.sqrt(var + 1e-5)).astype(np.float32))


def test_batchnorm_train_updates_blobs_like_caffe_on_a_small_case() -> None:
    """maf*blob + batch stat (unbiased variance, m = N*H*W), scale_factor = maf*sf + 1."""
    x = RNG.randn(3, 2, 4, 5).astype(np.float32)
    blobs = bn_blobs(2, 1.7)
    net = one_layer_net(
        'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" '
        "batch_norm_param { use_global_stats: false moving_average_fraction: 0.8 } }",
        {"x": x.shape}, blobs, phase="train")
    module = build_module(net)
    with torch.no_grad():
        module(torch.from_numpy(x))
    bn = module.layer_module("bn")
    assert bn.caffe_blob_names == ("mean", "variance", "scale_factor")
    got = [t.numpy() for t in bn.caffe_blobs()]
    x64 = x.astype(np.float64)
    m = 3 * 4 * 5
    mean = x64.mean(axis=(0, 2, 3))
    var = ((x64 - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(got[0], 0.8 * blobs[0] + mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], 0.8 * blobs[1] + m / (m - 1) * var, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], [0.8 * 1.7 + 1], rtol=1e-6)


@pytest.mark.parametrize("use_global_stats", [False, True])
def test_batchnorm_backward_matches_caffe_formula(use_global_stats) -> None:
    """Backward_cpu: global stats give dy / sqrt(var + eps); batch stats give
    (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps), means over N*H*W per channel."""
    x = RNG.randn(3, 2, 4, 5).astype(np.float32)
    dy = RNG.randn(*x.shape).astype(np.float32)
    blobs = bn_blobs(2, 0.5)
    flag = str(use_global_stats).lower()
    net = one_layer_net('layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" '
                        f"batch_norm_param {{ use_global_stats: {flag} }} }}",
                        {"x": x.shape}, blobs, phase="train")
    xt = torch.from_numpy(x).requires_grad_(True)
    y = build_module(net)(xt)
    y.backward(torch.from_numpy(dy))
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    axes = (0, 2, 3)
    if use_global_stats:
        var = (blobs[1].astype(np.float64) / 0.5).reshape(1, 2, 1, 1)
        ref = dy64 / np.sqrt(var + 1e-5)
    else:
        mean = x64.mean(axis=axes, keepdims=True)
        var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
        y64 = (x64 - mean) / np.sqrt(var + 1e-5)
        ref = (dy64 - dy64.mean(axis=axes, keepdims=True)
               - (dy64 * y64).mean(axis=axes, keepdims=True) * y64) / np.sqrt(var + 1e-5)
    assert xt.grad is not None
    assert_blob_close("dx", xt.grad.numpy(), ref.astype(np.float32))


def test_batchnorm_rejects_learned_statistics_and_bad_blobs() -> None:
    body = ('layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" '
            "param { lr_mult: 0 } param { lr_mult: 1 } param { lr_mult: 0 } }")
    with pytest.raises(ShapeError, match="lr_mult"):
        build_module(one_layer_net(body, {"x": (2, 3, 4, 5)}, bn_blobs(3, 1.0)))
    body = 'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" }'
    with pytest.raises(WeightError, match="shape"):
        build_module(one_layer_net(body, {"x": (2, 4, 4, 5)}, bn_blobs(3, 1.0)))


BN_TRAIN = GOLDEN / "solver" / "batchnorm_train"


def _golden_train_forward(weights: pathlib.Path, rows: np.ndarray, labels: np.ndarray,
                          ) -> tuple[dict[str, list[np.ndarray]], float]:
    """Forward the batchnorm_train TRAIN net on `rows`: our BatchNorm/Scale/Pooling/Convolution
    converters; ReLU, InnerProduct and the softmax loss written out in torch/numpy here."""
    net = load_net(BN_TRAIN / "train.prototxt", weights, phase="train")

    def convert(name: str, *shapes: tuple[int, ...]):
        layer = net.layer(name)
        spec = lookup(layer.type)
        assert spec is not None
        return spec.convert(layer, ConvertContext(layer, shapes, caffe_pb2.TRAIN))

    def inner_product(name: str, x: torch.Tensor) -> torch.Tensor:
        blobs = net.layer(name).blobs
        y = x.reshape(x.shape[0], -1) @ torch.tensor(blobs[0].data).T
        return y + torch.tensor(blobs[1].data) if len(blobs) > 1 else y

    x = torch.from_numpy(rows)
    conv1 = convert("conv1", tuple(x.shape))(x)
    bn1 = convert("bn1", tuple(conv1.shape))
    h = torch.relu(convert("scale1", tuple(conv1.shape))(bn1(conv1)))
    h = convert("pool1", tuple(h.shape))(h)
    ip1 = inner_product("ip1", h)
    bn2 = convert("bn2", tuple(ip1.shape))
    h = torch.relu(convert("scale2", tuple(ip1.shape))(bn2(ip1)))
    logits = inner_product("ip2", h).double().numpy()
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(len(labels)), labels.astype(int)].mean()
    stats = {name: [t.numpy().copy() for t in module.caffe_blobs()]
             for name, module in (("bn1", bn1), ("bn2", bn2))}
    return stats, float(loss)


@pytest.mark.parametrize("iteration", [0, 1, 2])
def test_batchnorm_train_matches_caffe_trace(iteration) -> None:
    """Iteration k runs on the weights after k updates (init / iter_k.caffemodel, which also
    holds the BN blobs after k forward passes) and rows 8k..8k+7: the BN blobs Caffe recorded
    after that forward pass, and its loss, must come out."""
    trace = json.loads((BN_TRAIN / "trace.json").read_text())
    weights = BN_TRAIN / ("init.caffemodel" if iteration == 0 else f"iter_{iteration}.caffemodel")
    with h5py.File(BN_TRAIN / "train.h5", "r") as f:
        data, label = f["data"][:], f["label"][:]
    idx = (np.arange(8) + 8 * iteration) % len(data)
    with torch.no_grad():
        stats, loss = _golden_train_forward(weights, data[idx], label[idx])
    for name in ("bn1", "bn2"):
        ref = trace["bn"][iteration][name]
        mean, variance, scale_factor = stats[name]
        np.testing.assert_allclose(mean, ref["mean"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(variance, ref["variance"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(scale_factor, [ref["scale_factor"]], rtol=1e-6)
    np.testing.assert_allclose(loss, trace["loss"][iteration], rtol=1e-5 if iteration == 0
                               else 1e-4)


# ---- Scale and Bias --------------------------------------------------------------------------


def broadcast_ref(x: np.ndarray, operand: np.ndarray, axis: int) -> np.ndarray:
    """Caffe's outer/scale/inner loop: operand index d repeats over outer and inner dims."""
    outer = int(np.prod(x.shape[:axis]))
    inner = int(np.prod(x.shape[axis + operand.ndim :]))
    return np.broadcast_to(operand.reshape(1, -1, 1),
                           (outer, operand.size, inner)).reshape(x.shape)


@pytest.mark.parametrize("axis,num_axes,covered", [
    (1, 1, (1, 2)), (1, 2, (1, 3)), (-2, 1, (2, 3)), (0, -1, (0, 4)), (2, -1, (2, 4)),
    (1, 0, (0, 0)), (-4, 3, (0, 3)),
])
@pytest.mark.parametrize("bias_term", [False, True])
def test_scale_learned_blob_axes(axis, num_axes, covered, bias_term) -> None:
    shape = (2, 3, 4, 5)
    x = RNG.randn(*shape).astype(np.float32)
    blob_shape = shape[covered[0] : covered[1]]
    gamma = np.asarray(RNG.uniform(0.5, 1.5, blob_shape), np.float32)
    beta = np.asarray(RNG.randn(*blob_shape), np.float32)
    net = one_layer_net(
        f'layer {{ name: "scale" type: "Scale" bottom: "x" top: "y" scale_param {{ axis: {axis} '
        f"num_axes: {num_axes} bias_term: {str(bias_term).lower()} }} }}",
        {"x": shape}, [gamma, beta] if bias_term else [gamma])
    first = covered[0] if blob_shape else 0
    ref = x * broadcast_ref(x, gamma, first)
    if bias_term:
        ref = ref + broadcast_ref(x, beta, first)
    assert_blob_close("y", run(net, x=x), ref)


@pytest.mark.parametrize("bias_term", [False, True])
def test_scale_second_bottom(bias_term) -> None:
    x = RNG.randn(2, 3, 4, 5).astype(np.float32)
    s = RNG.randn(3, 4).astype(np.float32)
    beta = RNG.randn(3, 4).astype(np.float32)
    net = one_layer_net(
        'layer { name: "scale" type: "Scale" bottom: "x" bottom: "s" top: "y" '
        f"scale_param {{ axis: 1 bias_term: {str(bias_term).lower()} }} }}",
        {"x": x.shape, "s": s.shape}, [beta] if bias_term else None)
    module = build_module(net)
    assert module.layer_module("scale").caffe_blob_names == (("bias",) if bias_term else ())
    ref = x * broadcast_ref(x, s, 1) + (broadcast_ref(x, beta, 1) if bias_term else 0)
    assert_blob_close("y", run(net, x=x, s=s), ref)


def test_scale_filler_default_is_one_when_weights_missing() -> None:
    net = one_layer_net('layer { name: "scale" type: "Scale" bottom: "x" top: "y" '
                        "scale_param { bias_term: true } }", {"x": (2, 3, 4)})
    module = build_module(net, allow_missing_weights=True)
    scale = module.layer_module("scale")
    np.testing.assert_array_equal(scale.weight.detach().numpy(), np.ones(3, np.float32))
    np.testing.assert_array_equal(scale.bias.detach().numpy(), np.zeros(3, np.float32))


@pytest.mark.parametrize("axis,num_axes,covered", [(1, 1, (1, 2)), (0, 2, (0, 2)),
                                                   (-1, -1, (3, 4)), (2, 0, (0, 0))])
def test_bias_learned_blob(axis, num_axes, covered) -> None:
    shape = (2, 3, 4, 5)
    x = RNG.randn(*shape).astype(np.float32)
    b = np.asarray(RNG.randn(*shape[covered[0] : covered[1]]), np.float32)
    net = one_layer_net(
        f'layer {{ name: "bias" type: "Bias" bottom: "x" top: "y" bias_param {{ axis: {axis} '
        f"num_axes: {num_axes} }} }}", {"x": shape}, [b])
    ref = x + broadcast_ref(x, b, covered[0] if b.ndim else 0)
    assert_blob_close("y", run(net, x=x), ref)


def test_bias_second_bottom_and_mismatch() -> None:
    x = RNG.randn(2, 3, 4, 5).astype(np.float32)
    b = RNG.randn(2, 3).astype(np.float32)
    net = one_layer_net('layer { name: "bias" type: "Bias" bottom: "x" bottom: "b" top: "y" '
                        "bias_param { axis: 0 } }", {"x": x.shape, "b": b.shape})
    assert_blob_close("y", run(net, x=x, b=b), x + broadcast_ref(x, b, 0))
    bad = one_layer_net('layer { name: "bias" type: "Bias" bottom: "x" bottom: "b" top: "y" }',
                        {"x": x.shape, "b": b.shape})
    with pytest.raises(ShapeError, match="does not match"):
        build_module(bad)
    too_long = one_layer_net('layer { name: "scale" type: "Scale" bottom: "x" top: "y" '
                             "scale_param { axis: 2 num_axes: 3 } }", {"x": x.shape})
    with pytest.raises(ShapeError, match="runs past"):
        build_module(too_long)


# ---- MVN -------------------------------------------------------------------------------------


def mvn_reference(x: np.ndarray, normalize_variance: bool, across_channels: bool,
                  eps: float) -> np.ndarray:
    x = x.astype(np.float64)
    groups = x.shape[0] if across_channels else x.shape[0] * x.shape[1]
    flat = x.reshape(groups, -1)
    out = flat - flat.mean(axis=1, keepdims=True)
    if normalize_variance:
        out = out / (np.sqrt((out**2).mean(axis=1, keepdims=True)) + eps)
    return out.reshape(x.shape)


@pytest.mark.parametrize("normalize_variance", [True, False])
@pytest.mark.parametrize("across_channels", [True, False])
@pytest.mark.parametrize("eps", [1e-9, 0.5])
def test_mvn(normalize_variance, across_channels, eps) -> None:
    x = (RNG.randn(2, 3, 4, 5) * 2 + 1).astype(np.float32)
    net = one_layer_net(
        f'layer {{ name: "m" type: "MVN" bottom: "x" top: "y" mvn_param {{ '
        f"normalize_variance: {str(normalize_variance).lower()} "
        f"across_channels: {str(across_channels).lower()} eps: {eps} }} }}", {"x": x.shape})
    ref = mvn_reference(x, normalize_variance, across_channels, eps)
    assert_blob_close("y", run(net, x=x), ref.astype(np.float32))
    if normalize_variance and eps == 0.5:
        # eps on the variance instead of the std would be a different number.
        wrong = mvn_reference(x, False, across_channels, eps)
        groups = 2 if across_channels else 6
        var = (wrong.reshape(groups, -1) ** 2).mean(axis=1, keepdims=True)
        wrong = (wrong.reshape(groups, -1) / np.sqrt(var + eps)).reshape(x.shape)
        assert np.abs(run(net, x=x) - wrong).max() > 1e-2


def test_mvn_two_axis_bottom() -> None:
    x = RNG.randn(3, 7).astype(np.float32)
    net = one_layer_net('layer { name: "m" type: "MVN" bottom: "x" top: "y" }', {"x": x.shape})
    assert_blob_close("y", run(net, x=x), mvn_reference(x, True, False, 1e-9).astype(np.float32))


# ---- every converter documents itself ----------------------------------------------------------


@pytest.mark.parametrize("type_name", ["LRN", "BatchNorm", "Scale", "Bias", "MVN"])
def test_converters_are_documented(type_name) -> None:
    spec = lookup(type_name)
    assert spec is not None and spec.family == "norm"
    doc = spec.convert.__doc__ or ""
    assert "src/caffe/layers/" in doc and spec.convert.__name__.startswith("convert_")
