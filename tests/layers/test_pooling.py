"""Pooling and SPP against a direct numpy transcription of Caffe's PoolingLayer::Forward_cpu loops.

The goldens (pool_max_ceil, pool_ave_pad, pool_global) cover the common cases; these add the
shapes they do not: non-square kernels/strides/pads, pad 0 with kernel < stride (a last window
starting past the image, which Caffe keeps), FLOOR rounding in both dialects, the mask top.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.errors import ShapeError
from modelport.pipeline import parse_net

FLT_MAX = np.float32(3.4028234663852886e38)


def caffe_pool_reference(x, method, kernel, stride, pad, ceil=True):
    """Caffe 1.0 pooling_layer.cpp Reshape + Forward_cpu, loop for loop."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    rnd = math.ceil if ceil else math.floor
    oh = int(rnd((h + 2 * ph - kh) / sh)) + 1
    ow = int(rnd((w + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= w + pw:
            ow -= 1
    out = np.zeros((n, c, oh, ow), np.float32)
    mask = np.full((n, c, oh, ow), -1, np.float32)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if method == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                best = np.full((n, c), -FLT_MAX, np.float32)
                arg = np.full((n, c), -1, np.float32)
                for a in range(hs, he):
                    for b in range(ws, we):
                        better = x[:, :, a, b] > best
                        best = np.where(better, x[:, :, a, b], best)
                        arg = np.where(better, a * w + b, arg)
                out[:, :, i, j], mask[:, :, i, j] = best, arg
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws = max(hs, 0), max(ws, 0)
                he, we = min(he, h), min(we, w)
                total = np.zeros((n, c), np.float32)
                for a in range(hs, he):
                    for b in range(ws, we):
                        total += x[:, :, a, b]
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[:, :, i, j] = total / np.float32(size)
    return out, mask


def _pool_net(params: str, shape=(2, 3, 7, 9), tops: str = 'top: "p"'):
    dims = " ".join(f"dim: {d}" for d in shape)
    text = f"""
    layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}
    layer {{ name: "pool" type: "Pooling" bottom: "data" {tops} pooling_param {{ {params} }} }}
    """
    return build_module(parse_net(text))


CASES = [
    ("MAX", (3, 2), (2, 3), (1, 0), True),
    ("AVE", (3, 2), (2, 3), (1, 1), True),
    ("MAX", (1, 1), (3, 4), (0, 0), True),  # pad 0, kernel < stride: windows past the image
    ("AVE", (1, 2), (3, 4), (0, 0), True),
    ("MAX", (3, 3), (2, 2), (1, 1), False),
    ("AVE", (2, 4), (3, 2), (1, 2), False),
]


@pytest.mark.parametrize(("method", "kernel", "stride", "pad", "ceil"), CASES,
                         ids=[f"{m}-k{k}-s{s}-p{p}-{'ceil' if c else 'floor'}"
                              for m, k, s, p, c in CASES])
@pytest.mark.parametrize("dialect", ["round_mode", "ceil_mode"])
def test_pooling_matches_caffe_loops(method, kernel, stride, pad, ceil, dialect) -> None:
    rounding = ""
    if not ceil:
        rounding = "round_mode: FLOOR" if dialect == "round_mode" else "ceil_mode: false"
    params = (f"pool: {method} kernel_h: {kernel[0]} kernel_w: {kernel[1]} "
              f"stride_h: {stride[0]} stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} "
              f"{rounding}")
    x = np.random.RandomState(0).randn(2, 3, 7, 9).astype(np.float32)
    ref, _ = caffe_pool_reference(x, method, kernel, stride, pad, ceil)
    net = _pool_net(params)
    ours = net(torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_max_pool_mask_top_matches_caffe_argmax() -> None:
    x = np.random.RandomState(1).randn(2, 3, 7, 9).astype(np.float32)
    ref, ref_mask = caffe_pool_reference(x, "MAX", (3, 2), (2, 3), (1, 1))
    net = _pool_net("pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad: 1",
                    tops='top: "p" top: "mask"')
    out = net(torch.from_numpy(x))
    np.testing.assert_array_equal(out["p"].numpy(), ref)
    np.testing.assert_array_equal(out["mask"].numpy(), ref_mask)


def test_kernel_larger_than_input_names_the_layer() -> None:
    with pytest.raises(ShapeError, match=r"layer 'pool' \(type Pooling\): kernel 5x5 is larger"):
        _pool_net("pool: MAX kernel_size: 5", shape=(1, 2, 3, 4))


def test_pad_not_smaller_than_kernel_is_rejected() -> None:
    with pytest.raises(ShapeError, match="pad"):
        _pool_net("pool: MAX kernel_size: 2 pad: 2")


def test_stochastic_pooling_uses_caffe_gpu_test_rule() -> None:
    x = np.random.RandomState(2).rand(2, 3, 7, 9).astype(np.float32) + 0.1
    net = _pool_net("pool: STOCHASTIC kernel_size: 3 stride: 2")
    ours = net(torch.from_numpy(x)).numpy()
    oh, ow = ours.shape[2:]
    ref = np.zeros_like(ours)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * 2 : min(i * 2 + 3, 7), j * 2 : min(j * 2 + 3, 9)]
            ref[:, :, i, j] = (win**2).sum((2, 3)) / (np.float32(1.1754944e-38) + win.sum((2, 3)))
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_spp_levels_concatenate_like_caffe() -> None:
    x = np.random.RandomState(3).randn(2, 3, 7, 9).astype(np.float32)
    text = """
    layer { name: "data" type: "Input" top: "data"
            input_param { shape { dim: 2 dim: 3 dim: 7 dim: 9 } } }
    layer { name: "spp" type: "SPP" bottom: "data" top: "spp"
            spp_param { pyramid_height: 3 pool: MAX } }
    """
    ours = build_module(parse_net(text))(torch.from_numpy(x)).numpy()
    parts = []
    for level in range(3):
        bins = 2**level
        kh, kw = -(-7 // bins), -(-9 // bins)
        ph, pw = (kh * bins - 7 + 1) // 2, (kw * bins - 9 + 1) // 2
        pooled, _ = caffe_pool_reference(x, "MAX", (kh, kw), (kh, kw), (ph, pw))
        parts.append(pooled.reshape(2, -1))
    np.testing.assert_array_equal(ours, np.concatenate(parts, axis=1))
