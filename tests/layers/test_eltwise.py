"""Eltwise against a numpy transcription of Caffe 1.0's EltwiseLayer::Forward_cpu.

The `eltwise` golden covers PROD/SUM/MAX of three 2x3x4x5 bottoms; these add two-bottom SUM with
negative coefficients, MAX with ties and NaN (Caffe's `a > b ? a : b` order), and the errors Caffe
raises in LayerSetUp/Reshape (coeff count, coeff with PROD, shape mismatch, one bottom).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.errors import ShapeError
from modelport.pipeline import parse_net

F32 = np.float32


def _run(params: str, arrays: list[np.ndarray]) -> np.ndarray:
    lines = []
    for i, a in enumerate(arrays):
        dims = " ".join(f"dim: {d}" for d in a.shape)
        lines.append(f'layer {{ name: "in{i}" type: "Input" top: "in{i}" '
                     f'input_param {{ shape {{ {dims} }} }} }}')
    bottoms = " ".join(f'bottom: "in{i}"' for i in range(len(arrays)))
    lines.append(f'layer {{ name: "elt" type: "Eltwise" {bottoms} top: "y" {params} }}')
    module = build_module(parse_net("\n".join(lines)))
    with torch.no_grad():
        return module(*[torch.from_numpy(a) for a in arrays]).numpy()


def caffe_eltwise(op: str, arrays: list[np.ndarray], coeffs: list[float] | None = None,
                  ) -> np.ndarray:
    """eltwise_layer.cpp Forward_cpu, element by element."""
    flat = [a.reshape(-1) for a in arrays]
    out = np.empty_like(flat[0])
    for i in range(out.size):
        if op == "PROD":
            v = flat[0][i] * flat[1][i]
            for a in flat[2:]:
                v = v * a[i]
        elif op == "SUM":
            v = F32(0)
            for a, c in zip(flat, coeffs or [1.0] * len(flat)):
                v = F32(c) * a[i] + v  # caffe_axpy
        else:
            v = flat[0][i] if flat[0][i] > flat[1][i] else flat[1][i]
            for a in flat[2:]:
                if a[i] > v:
                    v = a[i]
        out[i] = v
    return out.reshape(arrays[0].shape)


def _bottoms(n: int, shape=(2, 3, 5, 4)) -> list[np.ndarray]:
    rs = np.random.RandomState(n)
    return [rs.randn(*shape).astype(F32) for _ in range(n)]


def test_sum_with_two_negative_coefficients() -> None:
    arrays = _bottoms(2)
    ours = _run("eltwise_param { operation: SUM coeff: 0.5 coeff: -3 }", arrays)
    np.testing.assert_allclose(ours, caffe_eltwise("SUM", arrays, [0.5, -3.0]), rtol=1e-6,
                               atol=1e-6)


def test_prod_of_four_on_3d() -> None:
    arrays = _bottoms(4, (3, 4, 6))
    ours = _run("eltwise_param { operation: PROD }", arrays)
    np.testing.assert_allclose(ours, caffe_eltwise("PROD", arrays), rtol=1e-6, atol=1e-7)


def test_max_ties_and_nan_follow_caffe_comparison_order() -> None:
    arrays = _bottoms(3)
    arrays[1].flat[:5] = arrays[0].flat[:5]  # ties
    arrays[0].flat[7] = np.nan  # first bottom NaN: Caffe takes the second
    arrays[2].flat[9] = np.nan  # a later NaN never wins
    ours = _run("eltwise_param { operation: MAX }", arrays)
    ref = caffe_eltwise("MAX", arrays)
    assert not np.isnan(ref).any()
    np.testing.assert_array_equal(ours, ref)


def test_max_ignores_coefficients_like_caffe() -> None:
    arrays = _bottoms(2)
    ours = _run("eltwise_param { operation: MAX coeff: 2 coeff: 3 }", arrays)
    np.testing.assert_array_equal(ours, caffe_eltwise("MAX", arrays))


@pytest.mark.parametrize("params,arrays,match", [
    ("eltwise_param { coeff: 1 coeff: 2 }", _bottoms(3), "2 coeff values for 3 bottoms"),
    ("eltwise_param { operation: PROD coeff: 1 coeff: 2 }", _bottoms(2), "only allowed with"),
    ("", [np.zeros((2, 3, 5, 4), F32), np.zeros((2, 3, 4, 5), F32)],
     r"bottom 'in1' has shape \(2, 3, 4, 5\).*identical"),
    ("", [np.zeros((2, 3, 5, 4), F32), np.zeros((3, 5, 4), F32)], "identical"),
    ("", _bottoms(1), "at least 2 bottom"),
])
def test_errors_name_the_layer(params, arrays, match) -> None:
    with pytest.raises(ShapeError, match=rf"layer 'elt' \(type Eltwise\): .*{match}"):
        _run(params, arrays)
