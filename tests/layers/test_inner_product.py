"""InnerProduct and Embed against numpy re-derivations of Caffe 1.0's forward passes.

The `ip_axis` and `embed` goldens cover axis 1/2, transpose, no bias, and a 2-D index input;
these add negative and last axes, transpose with axis 2, legacy 4-D weight blobs, Embed on 3-D
input with truncation of non-integer values, and the errors: weight shape mismatch (naming the
layer), missing num_output/input_dim, indices outside the table.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.errors import LayerError, ShapeError, WeightError
from modelport.formats.caffe.caffemodel import StoredLayer
from modelport.ir import Blob
from modelport.pipeline import attach_weights, parse_net

F32 = np.float32
SHAPE = (2, 3, 4, 5)


def _module(layer: str, shape: tuple[int, ...], blobs: list[Blob]):
    dims = " ".join(f"dim: {d}" for d in shape)
    text = (f'layer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ {dims} }} }} }}\n'
            f'layer {{ name: "fc" bottom: "data" top: "y" {layer} }}')
    net = attach_weights(parse_net(text), [StoredLayer("fc", "", tuple(blobs))])
    return build_module(net)


def _run(layer: str, x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    module = _module(layer, x.shape, [Blob(w) for w in weights])
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def caffe_inner_product(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, axis: int,
                        transpose: bool) -> np.ndarray:
    """inner_product_layer.cpp: M = count(0, axis), K = count(axis); top = M x N gemm."""
    axis %= x.ndim
    m, k = math.prod(x.shape[:axis]), math.prod(x.shape[axis:])
    flat = x.reshape(m, k).astype(np.float64)
    y = flat @ (w if transpose else w.T)
    if b is not None:
        y = y + b
    return y.reshape(x.shape[:axis] + (y.shape[1],)).astype(F32)


def _randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape).astype(F32)


@pytest.mark.parametrize("axis", [-1, 3, -2, 0])
def test_axis_choices(axis) -> None:
    x = _randn(*SHAPE)
    k = math.prod(SHAPE[axis % 4:])
    w, b = _randn(7, k, seed=1), _randn(7, seed=2)
    ours = _run(f'type: "InnerProduct" inner_product_param {{ num_output: 7 axis: {axis} }}',
                x, [w, b])
    np.testing.assert_allclose(ours, caffe_inner_product(x, w, b, axis, False), rtol=1e-5,
                               atol=1e-5)


def test_transpose_with_axis_2_and_no_bias() -> None:
    x = _randn(*SHAPE)
    w = _randn(20, 6, seed=3)  # K x N when transpose
    ours = _run('type: "InnerProduct" inner_product_param { num_output: 6 axis: 2 '
                'transpose: true bias_term: false }', x, [w])
    assert ours.shape == (2, 3, 6)
    np.testing.assert_allclose(ours, caffe_inner_product(x, w, None, 2, True), rtol=1e-5,
                               atol=1e-5)


def test_legacy_4d_weight_blobs_are_accepted() -> None:
    x = _randn(*SHAPE)
    w, b = _randn(6, 60, seed=4), _randn(6, seed=5)
    module = _module('type: "InnerProduct" inner_product_param { num_output: 6 }', SHAPE,
                     [Blob(w.reshape(1, 1, 6, 60), legacy_4d=True),
                      Blob(b.reshape(1, 1, 1, 6), legacy_4d=True)])
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, caffe_inner_product(x, w, b, 1, False), rtol=1e-5,
                               atol=1e-5)


def test_weight_shape_mismatch_names_the_layer() -> None:
    x = _randn(*SHAPE)
    with pytest.raises(WeightError, match=r"layer 'fc' \(type InnerProduct\): blob 0 .*"
                                          r"\(6, 59\).*\(6, 60\)"):
        _run('type: "InnerProduct" inner_product_param { num_output: 6 }', x,
             [_randn(6, 59), _randn(6)])
    # transpose: true expects K x N, so an N x K blob is rejected too
    with pytest.raises(WeightError, match=r"layer 'fc'.*\(60, 6\)"):
        _run('type: "InnerProduct" inner_product_param { num_output: 6 transpose: true }', x,
             [_randn(6, 60), _randn(6)])
    with pytest.raises(WeightError, match=r"layer 'fc'.*1 blobs.*needs 2"):
        _run('type: "InnerProduct" inner_product_param { num_output: 6 }', x, [_randn(6, 60)])


def test_missing_num_output_and_bad_axis() -> None:
    x = _randn(*SHAPE)
    with pytest.raises(ShapeError, match="num_output is not set"):
        _run('type: "InnerProduct"', x, [_randn(6, 60)])
    with pytest.raises(ShapeError, match="axis 4 is out of range"):
        _run('type: "InnerProduct" inner_product_param { num_output: 6 axis: 4 }', x,
             [_randn(6, 1)])


def caffe_embed(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """embed_layer.cpp: top row n = weight[static_cast<int>(bottom[n])] (+ bias)."""
    flat = x.reshape(-1)
    out = np.stack([w[int(v)] for v in flat])  # int() truncates toward zero like static_cast
    if b is not None:
        out = out + b
    return out.reshape(x.shape + (w.shape[1],))


def test_embed_on_3d_input_truncates_like_static_cast() -> None:
    rs = np.random.RandomState(6)
    x = rs.randint(0, 9, size=(2, 3, 4)).astype(F32)
    x.flat[:3] = [2.7, 8.999, -0.5]  # Caffe's release build truncates these: 2, 8, 0
    w, b = _randn(9, 5, seed=7), _randn(5, seed=8)
    ours = _run('type: "Embed" embed_param { input_dim: 9 num_output: 5 }', x, [w, b])
    assert ours.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(ours, caffe_embed(x, w, b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [9.0, -1.0, 1e6])
def test_embed_index_out_of_range_names_the_layer(bad) -> None:
    x = np.zeros((2, 5), F32)
    x[1, 3] = bad
    with pytest.raises(LayerError, match=rf"layer 'fc' \(type Embed\): input value "
                                         rf"{int(bad)} is outside.*0..8"):
        _run('type: "Embed" embed_param { input_dim: 9 num_output: 5 bias_term: false }', x,
             [_randn(9, 5)])


def test_embed_parameter_errors() -> None:
    x = np.zeros((2, 5), F32)
    with pytest.raises(ShapeError, match="input_dim is not set"):
        _run('type: "Embed" embed_param { num_output: 5 }', x, [_randn(9, 5), _randn(5)])
    with pytest.raises(WeightError, match=r"layer 'fc' \(type Embed\).*\(5, 9\).*\(9, 5\)"):
        _run('type: "Embed" embed_param { input_dim: 9 num_output: 5 }', x,
             [_randn(5, 9), _randn(5)])


def test_export_reproduces_eager() -> None:
    x = torch.from_numpy(_randn(*SHAPE))
    module = _module('type: "InnerProduct" inner_product_param { num_output: 6 axis: 2 '
                     'transpose: true }', SHAPE, [Blob(_randn(20, 6)), Blob(_randn(6))])
    ip = module.layer_module("fc")
    exported = torch.export.export(ip, (x,)).module()
    torch.testing.assert_close(exported(x * 3), ip(x * 3))


def test_embed_exports_and_checks_only_in_eager() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 8.0]])
    module = _module('type: "Embed" embed_param { input_dim: 9 num_output: 5 }', (2, 3),
                     [Blob(_randn(9, 5)), Blob(_randn(5))])
    embed = module.layer_module("fc")
    exported = torch.export.export(embed, (x,)).module()
    torch.testing.assert_close(exported(x.flip(0)), embed(x.flip(0)))
    with pytest.raises(LayerError, match="input value 9"):
        embed(x + 1)
