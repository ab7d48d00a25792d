"""Softmax, Reduction and ArgMax against numpy transcriptions of Caffe 1.0's Forward_cpu.

The goldens (softmax_axis, tile_reduction_argmax) use random data without ties on a 4-D blob;
these add negative axes, 2-D/3-D/5-D bottoms (ArgMax's top keeps at least 3 axes), ties (Caffe's
partial_sort with greater<pair> puts the higher index first), and the parameter errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.errors import ShapeError
from modelport.pipeline import parse_net

F32 = np.float32


def _module(layer: str, shape: tuple[int, ...]):
    dims = " ".join(f"dim: {d}" for d in shape)
    text = (f'layer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ {dims} }} }} }}\n'
            f'layer {{ name: "op" bottom: "data" top: "y" {layer} }}')
    return build_module(parse_net(text))


def _run(layer: str, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return _module(layer, x.shape)(torch.from_numpy(x)).numpy()


def _randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape).astype(F32)


def caffe_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """softmax_layer.cpp: subtract the max over `axis`, exp, divide by the sum."""
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(F32)


@pytest.mark.parametrize("axis", [-1, 0, 3, -3])
def test_softmax_axes(axis) -> None:
    x = _randn(2, 3, 4, 5) * F32(5)
    ours = _run(f'type: "Softmax" softmax_param {{ axis: {axis} }}', x)
    np.testing.assert_allclose(ours, caffe_softmax(x, axis), rtol=1e-5, atol=1e-6)


def test_softmax_default_axis_is_channels_not_last() -> None:
    x = _randn(2, 3, 4, 5)
    np.testing.assert_allclose(_run('type: "Softmax"', x), caffe_softmax(x, 1), rtol=1e-5,
                               atol=1e-6)


def caffe_reduction(x: np.ndarray, op: str, axis: int, coeff: float) -> np.ndarray:
    """reduction_layer.cpp: num = count(0, axis) rows of dim = count(axis) values each."""
    axis %= x.ndim
    num, dim = math.prod(x.shape[:axis]), math.prod(x.shape[axis:])
    rows = x.reshape(num, dim).astype(np.float64)
    c = F32(coeff) / F32(dim) if op == "MEAN" else F32(coeff)
    out = np.empty(num, np.float64)
    for i in range(num):
        if op in ("SUM", "MEAN"):
            out[i] = rows[i].sum()
        elif op == "ASUM":
            out[i] = np.abs(rows[i]).sum()
        else:
            out[i] = (rows[i] * rows[i]).sum()
    return (out * c).astype(F32).reshape(x.shape[:axis])


@pytest.mark.parametrize("op,axis,coeff", [("SUM", -1, 1.0), ("ASUM", 3, 2.0),
                                           ("SUMSQ", -2, 1.0), ("MEAN", 0, 3.0),
                                           ("MEAN", -1, 1.0)])
def test_reduction(op, axis, coeff) -> None:
    x = _randn(2, 3, 4, 5)
    ours = _run(f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} '
                f'coeff: {coeff} }}', x)
    ref = caffe_reduction(x, op, axis, coeff)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_reduction_axis_out_of_range() -> None:
    with pytest.raises(ShapeError, match=r"layer 'op' \(type Reduction\): axis 4 is out"):
        _run('type: "Reduction" reduction_param { axis: 4 }', _randn(2, 3, 4, 5))


def caffe_argmax(x: np.ndarray, top_k: int, out_max_val: bool, axis: int | None,
                 ) -> np.ndarray:
    """argmax_layer.cpp Reshape + Forward_cpu, index arithmetic as written there."""
    bottom = x.reshape(-1)
    if axis is not None:
        axis %= x.ndim
        shape = list(x.shape)
        shape[axis] = top_k
        dim = x.shape[axis]
        axis_dist = math.prod(x.shape[axis:]) // dim
    else:
        shape = [1] * max(x.ndim, 3)
        shape[0], shape[2] = x.shape[0], top_k
        if out_max_val:
            shape[1] = 2
        dim = math.prod(x.shape[1:])
        axis_dist = 1
    top = np.zeros(math.prod(shape), F32)
    for i in range(x.size // dim):
        pairs = [(bottom[(i // axis_dist * dim + j) * axis_dist + i % axis_dist], j)
                 for j in range(dim)]
        pairs.sort(reverse=True)  # std::greater on (value, index): ties -> higher index first
        for j in range(top_k):
            if out_max_val:
                if axis is not None:
                    top[(i // axis_dist * top_k + j) * axis_dist + i % axis_dist] = pairs[j][0]
                else:
                    top[2 * i * top_k + j] = pairs[j][1]
                    top[2 * i * top_k + top_k + j] = pairs[j][0]
            else:
                top[(i // axis_dist * top_k + j) * axis_dist + i % axis_dist] = pairs[j][1]
    return top.reshape(shape)


def _with_ties(*shape: int) -> np.ndarray:
    # values from a small set, so every row has many ties
    return np.random.RandomState(3).randint(-2, 3, size=shape).astype(F32)


ARGMAX_CASES = [
    ((2, 3, 4, 5), 1, False, None),
    ((2, 3, 4, 5), 3, True, None),
    ((4, 6), 2, True, None),           # 2-D bottom: top is 4 x 2 x 2 (3 axes)
    ((2, 3, 2, 3, 2), 2, False, None),  # 5-D bottom: top N x 1 x k x 1 x 1
    ((2, 3, 4, 5), 2, False, 1),
    ((2, 3, 4, 5), 3, True, -1),
    ((2, 3, 4, 5), 2, True, 0),
    ((3, 7), 7, False, 1),             # full sort
]


@pytest.mark.parametrize("shape,top_k,out_max_val,axis", ARGMAX_CASES)
def test_argmax_with_ties(shape, top_k, out_max_val, axis) -> None:
    x = _with_ties(*shape)
    params = f"top_k: {top_k} out_max_val: {str(out_max_val).lower()}"
    if axis is not None:
        params += f" axis: {axis}"
    ours = _run(f'type: "ArgMax" argmax_param {{ {params} }}', x)
    ref = caffe_argmax(x, top_k, out_max_val, axis)
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


def test_argmax_tie_goes_to_higher_index() -> None:
    x = np.array([[1.0, 5.0, 2.0, 5.0, 5.0, 0.0]], F32)
    ours = _run('type: "ArgMax" argmax_param { top_k: 4 }', x)
    np.testing.assert_array_equal(ours.reshape(-1), [4, 3, 1, 2])


@pytest.mark.parametrize("params,match", [
    ("top_k: 61", r"top_k 61 is larger than the 60 values per sample"),
    ("top_k: 4 axis: 1", r"top_k 4 is larger than axis 1"),
    ("top_k: 0", "top_k must be at least 1"),
    ("axis: -5", "axis -5 is out of range"),
])
def test_argmax_errors(params, match) -> None:
    with pytest.raises(ShapeError, match=rf"layer 'op' \(type ArgMax\): {match}"):
        _run(f'type: "ArgMax" argmax_param {{ {params} }}', _randn(2, 3, 4, 5))


def test_argmax_and_reduction_export() -> None:
    x = torch.from_numpy(_with_ties(2, 3, 4, 5))
    for layer in ('type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }',
                  'type: "ArgMax" argmax_param { top_k: 2 axis: 2 }',
                  'type: "Reduction" reduction_param { operation: SUMSQ axis: 1 }'):
        module = _module(layer, tuple(x.shape)).layer_module("op")
        exported = torch.export.export(module, (x,)).module()
        torch.testing.assert_close(exported(x.flip(1)), module(x.flip(1)))


@pytest.mark.parametrize("params,axis", [("top_k: 3 out_max_val: true", None),
                                         ("top_k: 2 axis: 1", 1)])
def test_argmax_onnx_keeps_caffe_tie_order(params, axis) -> None:
    """Exported to ONNX (TopK, whose spec breaks ties by the lower index), ArgMax still puts the
    higher index first among equal values, as Caffe does."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import io
    import warnings

    x = _with_ties(2, 3, 4, 5)
    module = _module(f'type: "ArgMax" argmax_param {{ {params} }}', x.shape).layer_module("op")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), buf, dynamo=False)
    assert any(n.op_type == "TopK" for n in onnx.load_from_string(buf.getvalue()).graph.node)
    session = ort.InferenceSession(buf.getvalue())
    x2 = _with_ties(2, 3, 4, 5)[::-1].copy()
    (out,) = session.run(None, {session.get_inputs()[0].name: x2})
    top_k = int(params.split()[1])
    np.testing.assert_array_equal(out, caffe_argmax(x2, top_k, "out_max_val" in params, axis))
