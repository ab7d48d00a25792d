"""Acceptance 3: fault injection. Each classic Caffe-porting bug is planted in a correctly
converted net, and `verify` against the real-Caffe dump must name exactly that layer as the first
divergent one, with the error introduced there (not inherited), while everything before it
still passes. A control run without the fault passes, so the checks can both pass and fail.

Faults are planted by mutating the converted module's parameters/attributes or by replacing
its forward with the buggy computation (written from the Caffe layer's own parameters).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from verify_support import convert_or_skip, golden_case

from modelport.verify import DumpReference, ParityReport, verify

SLOW = pytest.mark.slow  # CaffeNet: 61M weights, ~2 s per forward on 2 cores


def check(report: ParityReport, layer: str, blob: str | None = None) -> None:
    """`layer` is the first divergent layer, its error is its own, and all before it pass."""
    assert not report.passed
    d = report.first_divergent
    assert d is not None
    assert d.layer == layer, report.summary()
    assert d.blob == (blob or layer)
    first = next(i for i, r in enumerate(report.rows) if r.compared and not r.passed)
    assert all(r.passed for r in report.rows[:first])
    assert report.rows[first].blob == d.blob
    assert "introduced" in d.verdict, d.verdict
    if d.introduced is not None:
        assert d.introduced > d.allowed
        assert d.inherited is not None and d.inherited <= d.allowed
    # Only the faulty layer introduces error; every later failure is inherited.
    for r in report.rows[first + 1:]:
        if r.compared and not r.passed:
            assert r.verdict.startswith("inherited"), (r.blob, r.verdict)


def run(name: str, net, inputs=None) -> ParityReport:
    return verify(net, DumpReference(golden_case(name).path), inputs)


@pytest.fixture(scope="module")
def caffenet():
    return convert_or_skip(golden_case("caffenet"))


# -- LRN: alpha not divided by local_size -----------------------------------------------------

def lrn_alpha_not_divided(net, monkeypatch, name: str) -> None:
    p = net.net.layer(name).param.lrn_param
    n = p.local_size
    # Caffe: x / (k + alpha/n * sum x^2)^beta. torch's local_response_norm also divides alpha by
    # n, so passing alpha * n gives the bug: x / (k + alpha * sum x^2)^beta.
    monkeypatch.setattr(net.layer_module(name), "forward",
                        lambda x: F.local_response_norm(x, n, p.alpha * n, p.beta, p.k))


def test_lrn_alpha_not_divided_by_local_size(monkeypatch) -> None:
    net = convert_or_skip(golden_case("lrn_across"))
    assert run("lrn_across", net).passed
    lrn_alpha_not_divided(net, monkeypatch, "lrn3")
    check(run("lrn_across", net), "lrn3")


@SLOW
def test_lrn_alpha_bug_in_caffenet(caffenet, monkeypatch) -> None:
    lrn_alpha_not_divided(caffenet, monkeypatch, "norm2")
    check(run("caffenet", caffenet), "norm2")


# -- Pooling: floor instead of Caffe's ceil -----------------------------------------------------

def test_floor_instead_of_ceil_pooling(monkeypatch) -> None:
    net = convert_or_skip(golden_case("pool_ave_pad"))
    assert run("pool_ave_pad", net).passed
    # 14x14, k3 s2 p0: Caffe ceil((14-3)/2)+1 = 7, floor gives 6.
    monkeypatch.setattr(net.layer_module("pool_ave_p0"), "ceil", False)
    report = run("pool_ave_pad", net)
    check(report, "pool_ave_p0")
    row = report.row("pool_ave_p0")
    assert row.shape == (2, 3, 6, 6) and row.ref_shape == (2, 3, 7, 7)
    assert "shape" in report.first_divergent.verdict


def test_floor_pooling_where_floor_equals_ceil_still_passes(monkeypatch) -> None:
    """No false alarm: on 13x13 all three pool_max_ceil windows give the same size either way."""
    net = convert_or_skip(golden_case("pool_max_ceil"))
    for name in ("pool_p0", "pool_p1", "pool_k2_p1_clip"):
        monkeypatch.setattr(net.layer_module(name), "ceil", False)
    assert run("pool_max_ceil", net).passed


# -- Convolution: TF-style asymmetric SAME padding instead of Caffe's symmetric pad -------------

def tf_same_conv(module, x: torch.Tensor) -> torch.Tensor:
    """TensorFlow 'SAME': output ceil(in/stride), total padding split floor before / ceil after."""
    pads = []
    for size, k, s, d in zip(x.shape[2:], module.weight.shape[2:], module.stride,
                             module.dilation):
        out = math.ceil(size / s)
        total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    padded = F.pad(x, (left, right, top, bottom))
    return F.conv2d(padded, module.weight, module.bias, module.stride, 0, module.dilation,
                    module.group)


def test_tf_same_padding_instead_of_symmetric(monkeypatch) -> None:
    # conv_hw: 10x12 input, kernel 3x5, pad 1x2, stride 2x1. Along h TF pads (0, 1), Caffe (1, 1):
    # same output size (5x12), shifted windows.
    net = convert_or_skip(golden_case("conv_hw"))
    assert run("conv_hw", net).passed
    module = net.layer_module("conv")
    monkeypatch.setattr(module, "forward", lambda x: tf_same_conv(module, x))
    report = run("conv_hw", net)
    check(report, "conv")
    assert report.row("conv").shape == report.row("conv").ref_shape == (2, 5, 5, 12)


# -- BatchNorm: the stored scale factor (blob 2) ignored ----------------------------------------

def test_batchnorm_scale_factor_ignored(monkeypatch) -> None:
    net = convert_or_skip(golden_case("batchnorm_scale"))
    assert run("batchnorm_scale", net).passed
    layer = net.net.layer("bn")
    mean = torch.tensor(layer.blobs[0].data.reshape(1, -1, 1, 1))
    var = torch.tensor(layer.blobs[1].data.reshape(1, -1, 1, 1))
    eps = layer.param.batch_norm_param.eps
    assert float(layer.blobs[2].data.ravel()[0]) == 0.5  # so ignoring it changes mean and var
    monkeypatch.setattr(net.layer_module("bn"), "forward",
                        lambda x: (x - mean) / torch.sqrt(var + eps))
    report = run("batchnorm_scale", net)
    check(report, "bn")
    assert not report.row("bn_scale").passed  # the following Scale inherits the error


# -- Convolution: bias dropped -----------------------------------------------------------------

def drop_bias(net, monkeypatch, name: str) -> None:
    module = net.layer_module(name)
    weight, bias = module.caffe_blobs()
    monkeypatch.setattr(bias, "data", torch.zeros_like(bias))


def test_dropped_convolution_bias(monkeypatch) -> None:
    net = convert_or_skip(golden_case("conv_basic"))
    drop_bias(net, monkeypatch, "conv")
    check(run("conv_basic", net), "conv")


@SLOW
def test_dropped_bias_inside_in_place_chain(caffenet, monkeypatch) -> None:
    # conv3 is followed by relu3 in place: the dump holds only conv3 after the ReLU.
    drop_bias(caffenet, monkeypatch, "conv3")
    report = run("caffenet", caffenet)
    check(report, "conv3", "conv3")
    assert report.first_divergent.chain == ("conv3", "relu3")


# -- Input: RGB fed where the net expects BGR ----------------------------------------------------

def test_rgb_instead_of_bgr_names_the_input() -> None:
    case = golden_case("conv_basic")
    net = convert_or_skip(case)
    rgb = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in case.inputs().items()}
    report = run("conv_basic", net, rgb)
    check(report, "data", "data")
    d = report.first_divergent
    assert d.type == "Input" and report.row("data").kind == "input"
    assert "channel order" in d.verdict
    assert d.introduced == d.max_abs_diff and d.inherited == 0.0
    assert report.row("conv").verdict.startswith("inherited")


def test_rgb_input_feeding_split_blobs() -> None:
    """The input's Split copies differ too: copies of the input, so their error is inherited."""
    case = golden_case("pool_max_ceil")
    rgb = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in case.inputs().items()}
    report = run("pool_max_ceil", convert_or_skip(case), rgb)
    check(report, "data", "data")
    split = report.row("data_data_0_split_0")
    assert not split.passed and split.verdict.startswith("inherited: Caffe's Split copy")


@SLOW
def test_rgb_instead_of_bgr_in_caffenet(caffenet) -> None:
    case = golden_case("caffenet")
    rgb = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in case.inputs().items()}
    check(run("caffenet", caffenet, rgb), "data", "data")


# -- InnerProduct: weight transposed ------------------------------------------------------------

def transpose_weight(net, monkeypatch, name: str) -> None:
    """The usual bug: Caffe's row-major num_output x K weight read as K x num_output and
    transposed back (same shape, scrambled values; for a square weight, W.T)."""
    weight = net.layer_module(name).caffe_blobs()[0]
    rows, cols = weight.shape
    monkeypatch.setattr(weight, "data", weight.data.reshape(cols, rows).t().contiguous())


def test_transposed_inner_product_weight(monkeypatch) -> None:
    net = convert_or_skip(golden_case("ip_axis"))
    assert run("ip_axis", net).passed
    transpose_weight(net, monkeypatch, "ip_nobias")  # the last layer: three layers pass first
    report = run("ip_axis", net)
    check(report, "ip_nobias")
    assert all(report.row(b).passed for b in ("ip_axis1", "ip_axis2", "ip_transpose"))


@SLOW
def test_transposed_square_fc7_weight_in_caffenet(caffenet, monkeypatch) -> None:
    transpose_weight(caffenet, monkeypatch, "fc7")  # 4096 x 4096: shape-preserving
    report = run("caffenet", caffenet)
    check(report, "fc7")
    assert report.first_divergent.chain == ("fc7", "relu7", "drop7")
    prob = report.row("prob")
    assert prob.top1 is not None


# -- One perturbed weight (DESIGN.md: checks must be able to fail) -----------------------------

@SLOW
def test_one_perturbed_weight_is_found(caffenet, monkeypatch) -> None:
    report = run("caffenet", caffenet)
    assert report.passed, report.summary()
    weight = caffenet.layer_module("conv4").caffe_blobs()[0]
    bumped = weight.data.clone()
    bumped[7, 11, 1, 2] += 0.05
    monkeypatch.setattr(weight, "data", bumped)
    check(run("caffenet", caffenet), "conv4")


def test_fault_at_a_layer_with_two_bottoms(monkeypatch) -> None:
    """Attribution re-runs a layer on every one of its reference bottoms (Scale with 2)."""
    net = convert_or_skip(golden_case("batchnorm_scale"))
    module = net.layer_module("scale_2bottom")
    original = module.forward
    monkeypatch.setattr(module, "forward", lambda x, s: original(x, s) * 1.01)
    check(run("batchnorm_scale", net), "scale_2bottom")
