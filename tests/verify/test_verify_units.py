"""Unit checks of the parity machinery: the tolerance rule, exact ArgMax indices, NaN/inf and
0-d blobs, classifier agreement, the public API and the ONNX Runtime hook."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from verify_support import convert_or_skip, golden_case

import modelport
from modelport.errors import ConfigError, ModelportError
from modelport.pipeline import parse_net
from modelport.verify import BlobResult, DumpReference, Tolerance, compare_arrays
from modelport.verify.compare import _classifier_agreement


def row() -> BlobResult:
    return BlobResult(blob="b", layer="l", type="T", kind="top", shape=())


def test_tolerance_rule() -> None:
    tol = Tolerance()
    assert tol.rel == 1e-4
    assert tol.allowed(np.array([0.5, -0.25], np.float32)) == pytest.approx(1e-4)
    assert tol.allowed(np.array([3.0, -250.0], np.float32)) == pytest.approx(0.025)
    assert tol.allowed(np.array([np.inf, 2.0, np.nan])) == pytest.approx(2e-4)
    assert tol.allowed(np.zeros((0, 3))) == pytest.approx(1e-4)
    with pytest.raises(ConfigError):
        Tolerance(-1)
    with pytest.raises(AttributeError):
        tol.rel = 1.0  # type: ignore[misc]  # frozen


def test_argmax_indices_are_exact() -> None:
    net = parse_net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "idx" type: "ArgMax" bottom: "data" top: "idx" }
layer { name: "both" type: "ArgMax" bottom: "data" top: "both"
        argmax_param { out_max_val: true top_k: 2 } }
layer { name: "vals" type: "ArgMax" bottom: "data" top: "vals"
        argmax_param { out_max_val: true axis: 1 } }
""")
    tol = Tolerance()
    ref = np.full((2, 1, 1), 30000.0, np.float32)
    assert tol.allowed_for(net.layer("idx"), 0, ref) == 0.0
    # 30000 vs 30001 passes the float rule (allowed 3) but is a different class:
    r = compare_arrays(row(), ref + 1, ref, tol.allowed_for(net.layer("idx"), 0, ref))
    assert not r.passed and r.exact
    mixed = np.array([[[5.0, 7.0]], [[0.5, 0.25]]], np.float32).reshape(1, 2, 2)
    allowed = tol.allowed_for(net.layer("both"), 0, mixed)
    assert allowed[0, 0].tolist() == [0.0, 0.0] and allowed[0, 1, 0] == pytest.approx(1e-4)
    assert tol.allowed_for(net.layer("vals"), 0, ref) == pytest.approx(3.0)


def test_compare_nan_inf_and_scalars() -> None:
    a = np.array([1.0, np.nan, np.inf, 2.0], np.float32)
    r = compare_arrays(row(), a, a.copy(), 1e-4)
    assert r.passed and r.max_abs_diff == 0.0
    b = a.copy()
    b[3] = np.nan
    r = compare_arrays(row(), b, a, 1e-4)
    assert not r.passed and r.mismatched == 1 and r.where == (3,)
    r = compare_arrays(row(), np.array(3.0, np.float32), np.array(3.00001, np.float32), 1e-4)
    assert r.passed and r.shape == () and r.where == ()
    r = compare_arrays(row(), np.zeros((2, 3)), np.zeros((3, 2)), 1e-4)
    assert not r.passed and r.max_abs_diff == float("inf") and "shape" in r.note
    r = compare_arrays(row(), np.array([0.0, 10.0]), np.array([0.0, 10.002]), 1e-3)
    assert not r.passed and r.mismatched_fraction == 0.5
    assert r.max_rel_diff == pytest.approx(0.002 / 10.002, rel=1e-3)
    assert r.cosine == pytest.approx(1.0)


def test_classifier_agreement() -> None:
    ref = np.array([[0.1, 0.6, 0.3, 0, 0, 0.01, 0.02],
                    [0.5, 0.2, 0.1, 0.1, 0.05, 0.04, 0.01]], np.float32)
    ours = ref.copy()
    ours[1, :2] = [0.2, 0.5]  # sample 1: top-1 flips, top-5 set unchanged
    r = row()
    _classifier_agreement(r, ours, ref)
    assert r.top1 == 0.5 and r.top5 == 1.0
    ours[0, 4] = 0.5  # sample 0: class 4 enters the top 5 (and becomes... still not top-1)
    _classifier_agreement(r, ours, ref)
    assert r.top1 == 0.5 and r.top5 == 0.5
    _classifier_agreement(r2 := row(), ref[:, :5], ref[:, :5])
    assert r2.top1 == 1.0 and r2.top5 is None  # K <= 5: top-5 is every class


def test_public_api_modelport_verify() -> None:
    case = golden_case("conv_basic")
    net = convert_or_skip(case)
    report = modelport.verify(net, str(case.path))  # package is callable
    assert report.passed
    from modelport import verify as fn

    assert fn(net, DumpReference(case.path)).passed
    with pytest.raises(ConfigError, match="has shape"):
        modelport.verify(net, DumpReference(case.path), {"data": np.zeros((1, 3, 13, 11))})
    with pytest.raises(ConfigError, match="not inputs"):
        modelport.verify(net, DumpReference(case.path), {"x": np.zeros(1), **case.inputs()})
    with pytest.raises(ConfigError, match="needs the prototxt"):
        modelport.verify(net, "opencv")


def test_random_default_inputs_are_seeded() -> None:
    from modelport.verify.ref_opencv import OpenCVReference

    case = golden_case("conv_basic")
    net = convert_or_skip(case)
    ref = OpenCVReference(case.prototxt, case.caffemodel)
    a = modelport.verify(net, ref, seed=1)
    b = modelport.verify(net, ref, seed=1)
    assert a.passed and a.inputs["data"] == "random standard normal, seed 1"
    assert [r.max_abs_diff for r in a.rows] == [r.max_abs_diff for r in b.rows]


def test_onnx_hook_without_export(monkeypatch) -> None:
    from modelport.verify.ref_onnx import OnnxRuntimeReference

    case = golden_case("conv_basic")
    net = convert_or_skip(case)
    monkeypatch.setitem(sys.modules, "modelport.export", None)
    with pytest.raises(ModelportError, match="ONNX export not available yet"):
        modelport.verify(net, OnnxRuntimeReference(), case.inputs())


@pytest.mark.slow  # the torch.export-based ONNX exporter takes ~10 s
def test_onnxruntime_reference_on_the_export() -> None:
    pytest.importorskip("onnxruntime")
    from modelport.verify.ref_onnx import OnnxRuntimeReference

    try:
        from modelport.export import export_onnx  # noqa: F401
    except ImportError:
        pytest.skip("modelport.export (ONNX export) has not landed yet")
    case = golden_case("inplace_chain")
    net = convert_or_skip(case)
    report = modelport.verify(net, "onnxruntime", case.inputs())
    assert report.passed, report.summary()
    assert [r.blob for r in report.compared] == ["data", "conv1", "conv2"]
    assert isinstance(OnnxRuntimeReference(), OnnxRuntimeReference)


def test_onnx_file_reference(tmp_path) -> None:
    """An ONNX file written by hand (Conv with Caffe's weights, pads and stride): ORT's tensors
    are matched to Caffe blobs by name; a wrong pad is caught as a divergent 'conv'."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    case = golden_case("conv_basic")
    net = convert_or_skip(case)
    weight, bias = (b.data for b in net.net.layer("conv").blobs)

    def write(pads: list[int]) -> str:
        graph = helper.make_graph(
            [helper.make_node("Conv", ["data", "W", "B"], ["conv"], pads=pads, strides=[2, 2],
                              kernel_shape=[3, 3])],
            "conv_basic", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                         [2, 3, 13, 11])],
            [helper.make_tensor_value_info("conv", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        path = tmp_path / f"conv_{''.join(map(str, pads))}.onnx"
        onnx.save(model, path)
        return str(path)

    report = modelport.verify(net, write([1, 1, 1, 1]), case.inputs())
    assert report.passed and [r.blob for r in report.compared] == ["data", "conv"]
    report = modelport.verify(net, write([0, 0, 2, 2]), case.inputs())
    assert report.first_divergent is not None and report.first_divergent.layer == "conv"
