"""SSD family export: the head (Normalize, Permute, Flatten, PriorBox, Concat, Softmax) and
DetectionOutput (per-class NMS lowered to ONNX NonMaxSuppression, TopK, ...) become standard
ONNX ops, and ONNX Runtime matches both the live module and OpenCV's cv2.dnn (an independent
implementation of these Caffe-fork layers) on the same prototxt + caffemodel. Adaptive NMS
(eta < 1) has no ONNX equivalent and is refused."""

from __future__ import annotations

import importlib.util
import pathlib
import re
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from golden_support import assert_blob_close
from modelport.backends.torch_module import build_module
from modelport.caffe import load
from modelport.errors import ModelportError
from modelport.export.common import ExportError
from modelport.export.onnx import export_onnx
from modelport.export.torchscript import export_torchscript
from modelport.formats.caffe import caffe_pb2

HEAD = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]
DET = "detection_out"


def _layer_tests() -> ModuleType:
    # The SSD layer tests' two-scale head (prototxt + random-weight caffemodel writer).
    path = pathlib.Path(__file__).parent.parent / "layers" / "test_ssd.py"
    spec = importlib.util.spec_from_file_location("ssd_layer_tests", path)
    if spec is None or spec.loader is None or not path.exists():
        pytest.skip("tests/layers/test_ssd.py (the tiny SSD net) is not there")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def tiny_ssd(tmp_path):
    return _layer_tests().write_ssd(tmp_path)


def write_variant(tmp: pathlib.Path, share_location: bool = True, eta: float | None = None,
                  **params: object) -> tuple[pathlib.Path, pathlib.Path]:
    """The tiny SSD with other detection_output_param values (None drops a field) and,
    without share_location, per-class loc convolutions with new random weights."""
    tests = _layer_tests()
    proto, weights = tests.write_ssd(tmp)
    text = proto.read_text()
    for key, value in params.items():
        pattern = rf"(?<![a-z_]){key}: \S+"
        if re.search(pattern, text):
            text = re.sub(pattern, "" if value is None else f"{key}: {value}", text)
        elif value is not None:
            text = text.replace("code_type:", f"{key}: {value} code_type:")
    if eta is not None:
        text = text.replace("nms_param {", f"nms_param {{ eta: {eta}")
    if not share_location:
        text = text.replace("share_location: true", "share_location: false")
        classes = tests.NUM_CLASSES
        for f, p in (("conv1", 4), ("conv2", 6)):
            text, n = re.subn(rf'(name: "{f}_loc" type: "Convolution"[^}}]*num_output: )'
                              rf"{4 * p}\b", rf"\g<1>{4 * p * classes}", text)
            assert n == 1
        param = caffe_pb2.NetParameter()
        param.ParseFromString(weights.read_bytes())
        rs = np.random.RandomState(11)
        for layer in param.layer:
            if layer.name.endswith("_loc"):
                for blob in layer.blobs:
                    shape = [int(d) for d in blob.shape.dim]
                    shape[0] *= classes
                    del blob.shape.dim[:]
                    blob.shape.dim.extend(shape)
                    del blob.data[:]
                    blob.data.extend((rs.randn(*shape) * 0.2).astype(np.float32).ravel())
        weights.write_bytes(param.SerializeToString())
    proto.write_text(text)
    return proto, weights


def images(batch: int, seed: int = 9) -> np.ndarray:
    return np.random.RandomState(seed).uniform(-1, 1, (batch, 3, 32, 40)).astype(np.float32)


def eager(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.forward_blobs(torch.from_numpy(x))[DET].numpy()


def opencv(proto: pathlib.Path, weights: pathlib.Path, x: np.ndarray) -> np.ndarray:
    """cv2.dnn's DetectionOutput rows, put in Caffe's order (image, label, descending score;
    OpenCV lists an image's rows by descending score after keep_top_k). OpenCV pads its top
    to batch x keep_top_k rows with zero rows (label 0 is the background here): dropped."""
    cv2 = pytest.importorskip("cv2")
    cvnet = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setInput(x)
    rows = cvnet.forward(DET).reshape(-1, 7)
    rows = rows[np.any(rows != 0, axis=1)]
    return rows[np.lexsort((-rows[:, 2], rows[:, 1], rows[:, 0]))]


def test_ssd_head_exports_to_standard_ops_matching_opencv(tiny_ssd, tmp_path) -> None:
    cv2 = pytest.importorskip("cv2")
    proto, weights = tiny_ssd
    net = load(proto, weights)
    x = np.random.RandomState(3).uniform(-1, 1, net.blob_shapes["data"]).astype(np.float32)
    path = tmp_path / "head.onnx"
    export_onnx(net, path, inputs={"data": x}, outputs=HEAD)
    model = onnx.load(str(path))
    assert {n.domain for n in model.graph.node} <= {""}
    session = ort.InferenceSession(str(path))
    got = dict(zip(HEAD, session.run(HEAD, {"data": x})))
    cvnet = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    cvnet.setInput(x)
    ref = dict(zip(HEAD, cvnet.forward(HEAD)))
    for name in HEAD:
        assert_blob_close(name, got[name].reshape(ref[name].shape), ref[name])


# keep_top_k 30 binds in both images of images(2) (the layer tests check that against cv2).
# Per case: detection_output_param changes, and whether OpenCV can run it (it has no
# CORNER_SIZE, wants a 1-channel prior blob with variance_encoded_in_target, and mishandles
# keep_top_k -1).
CASES: dict[str, tuple[dict[str, object], bool]] = {
    "default": ({}, True),
    "per_class_locations": ({"share_location": False}, True),
    "keep_top_k_not_binding_no_top_k": (
        {"keep_top_k": 500, "top_k": None, "nms_threshold": 0.3}, True),
    "tight_top_k_corner": (
        {"top_k": 3, "keep_top_k": 7, "code_type": "CORNER", "confidence_threshold": 0.26},
        True),
    "corner_size_in_target_no_keep_top_k": (
        {"code_type": "CORNER_SIZE", "keep_top_k": -1, "share_location": False,
         "variance_encoded_in_target": "true"}, False),
}


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("case", sorted(CASES))
def test_detection_output_exports_matching_module_and_opencv(case, opset, tmp_path) -> None:
    params, with_opencv = CASES[case]
    proto, weights = write_variant(tmp_path, **params)  # type: ignore[arg-type]
    net = load(proto, weights)
    path = tmp_path / "ssd.onnx"
    # export_onnx itself checks ONNX Runtime against the module at batch 2 (two inputs) and 3.
    model, report = export_onnx(net, path, inputs={"data": images(2)}, opset=opset,
                                dynamic_batch=True)
    assert report.checked_batches == [2, 3]
    assert {n.domain for n in model.graph.node} <= {""}
    ops = {n.op_type for n in model.graph.node}
    assert {"NonMaxSuppression", "TopK"} <= ops
    saved = onnx.load(str(path))
    [out] = saved.graph.output
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert dims == [1, 1, "num_detections", 7]
    assert saved.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    session = ort.InferenceSession(str(path))
    for x in (images(2), images(3, seed=21), images(1, seed=4)):
        [got] = session.run([DET], {"data": x})
        ours = eager(net, x)
        assert got.shape == ours.shape
        assert_blob_close(DET, got, ours)
        if with_opencv:
            ref = opencv(proto, weights, x)
            assert got.shape[2] == ref.shape[0]
            assert_blob_close(DET, got[0, 0], ref)
    if case == "default":
        got = session.run([DET], {"data": images(2)})[0]
        assert got.shape == (1, 1, 60, 7), "keep_top_k 30 should bind in both images"
        assert len(set(got[0, 0, :, 1].tolist())) > 1, "several classes should be detected"


@pytest.mark.parametrize("opset", [17, 18])
def test_no_detection_gives_one_minus_one_row_per_image(opset, tmp_path) -> None:
    proto, weights = write_variant(tmp_path, confidence_threshold=0.99)
    net = load(proto, weights)
    path = tmp_path / "ssd.onnx"
    export_onnx(net, path, inputs={"data": images(2)}, opset=opset, dynamic_batch=True)
    session = ort.InferenceSession(str(path))
    for batch in (1, 3):
        x = images(batch, seed=batch)
        [got] = session.run([DET], {"data": x})
        # Caffe's detection_output_layer.cpp: no detection in the batch -> [i, -1 x 6] rows.
        expected = np.full((1, 1, batch, 7), -1, np.float32)
        expected[0, 0, :, 0] = np.arange(batch)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(eager(net, x), expected)
        # OpenCV finds nothing either (it writes zero rows instead of Caffe's -1 rows).
        assert opencv(proto, weights, x).shape == (0, 7)


# Five priors, CORNER code: boxes 0 and 1 overlap with IoU exactly 0.5 (in float too); box 2
# is inverted (xmax < xmin) and is box 3 with its x corners swapped, box 4 touches box 3.
PRIORS = np.array([[0.0, 0.0, 0.75, 0.25], [0.25, 0.0, 1.0, 0.25], [0.5, 0.5, 0.25, 0.75],
                   [0.25, 0.5, 0.5, 0.75], [0.5, 0.5, 1.0, 1.0]], np.float32)
# Image 0: ties at 0.6 inside class 1 and across classes 1 and 2; image 1: nothing above 0.15.
CONF = np.array([[[0.0, 0.6, 0.6], [0.0, 0.6, 0.1], [0.0, 0.9, 0.2], [0.0, 0.8, 0.6],
                  [0.0, 0.6, 0.05]],
                 [[0.9, 0.05, 0.05]] * 5], np.float32)


def hand_net(params: str, tests: ModuleType):
    return build_module(tests.detection_net(3, f"code_type: CORNER {params}", 5, num=2))


def hand_inputs() -> dict[str, np.ndarray]:
    variances = np.full((5, 4), 0.1, np.float32)
    prior = np.stack([PRIORS.reshape(-1), variances.reshape(-1)])[None]
    return {"loc": np.zeros((2, 20), np.float32), "conf": CONF.reshape(2, -1), "prior": prior}


def rows(image: int, label: int, picks: list[int]) -> list[list[float]]:
    return [[image, label, float(CONF[image, i, label]), *PRIORS[i]] for i in picks]


# By hand (Caffe: stable descending score order, keep when IoU <= nms_threshold; an inverted
# box overlaps nothing; keep_top_k by score, ties in label then NMS order).
HAND = {
    # class 1 order 2, 3, 0, 1, 4 keeps all (0-1 is exactly 0.5); class 2 keeps 0, 3, 2; the
    # best 4 of the 8: 0.9, 0.8, then the 0.6 ties in label-then-NMS order: class 1's 0 and 1.
    "keep_top_k: 4 confidence_threshold: 0.15 nms_param { nms_threshold: 0.5 }":
        rows(0, 1, [2, 3, 0, 1]),
    # 0.49: box 1 goes (IoU 0.5 with box 0).
    "keep_top_k: 4 confidence_threshold: 0.15 nms_param { nms_threshold: 0.49 }":
        rows(0, 1, [2, 3, 0, 4]),
    # top_k 4 before NMS: class 1's 4th of the 0.6 ties (box 4) is dropped.
    "confidence_threshold: 0.15 nms_param { nms_threshold: 0.5 top_k: 4 }":
        rows(0, 1, [2, 3, 0, 1]) + rows(0, 2, [0, 3, 2]),
    # background 2: classes 0 and 1; image 1's class 0 ties at 0.9 everywhere: prior order,
    # and nothing overlaps by more than 0.5.
    "background_label_id: 2 confidence_threshold: 0.5 nms_param { nms_threshold: 0.5 }":
        rows(0, 1, [2, 3, 0, 1, 4]) + rows(1, 0, [0, 1, 2, 3, 4]),
}


@pytest.mark.parametrize("opset", [11, 17, 18])
@pytest.mark.parametrize("params", sorted(HAND))
def test_detection_output_ties_exact_overlap_inverted_boxes(params, opset, tmp_path) -> None:
    tests = _layer_tests()
    net = hand_net(params, tests)
    feed = hand_inputs()
    path = tmp_path / "det.onnx"
    # The self-check also runs reversed inputs (reversed priors: many inverted boxes). (No
    # dynamic batch: the prior input has batch 1, the others 2.)
    export_onnx(net, path, inputs=feed, opset=opset)
    [got] = ort.InferenceSession(str(path)).run(["det"], feed)
    expected = np.array(HAND[params], np.float32)[None, None]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    with torch.no_grad():
        ours = net.forward_blobs(**{k: torch.from_numpy(v) for k, v in feed.items()})["det"]
    np.testing.assert_array_equal(got, ours.numpy())


@pytest.mark.parametrize("opset", [11, 18])
@pytest.mark.parametrize("num_classes,params", [
    (1, "confidence_threshold: 0.15"),                # the background is the only class
    (3, "nms_param { nms_threshold: 0.5 top_k: 0 }"),  # no candidate
    (3, "keep_top_k: 0"),                              # nothing kept
])
def test_settings_that_detect_nothing(num_classes, params, opset, tmp_path) -> None:
    tests = _layer_tests()
    net = build_module(tests.detection_net(num_classes, f"code_type: CORNER {params}", 5,
                                           num=2))
    feed = hand_inputs()
    feed["conf"] = CONF[..., :num_classes].reshape(2, -1)
    path = tmp_path / "det.onnx"
    export_onnx(net, path, inputs=feed, opset=opset)
    session = ort.InferenceSession(str(path))
    assert sorted(i.name for i in session.get_inputs()) == sorted(feed)
    [got] = session.run(["det"], feed)
    np.testing.assert_array_equal(got, [[[[0] + [-1] * 6, [1] + [-1] * 6]]])


@pytest.mark.parametrize("opset", [17, 18])
def test_adaptive_nms_is_refused_naming_the_layer(opset, tmp_path) -> None:
    proto, weights = write_variant(tmp_path, eta=0.9)
    net = load(proto, weights)
    path = tmp_path / "ssd.onnx"
    with pytest.raises(ExportError, match=r"layer 'detection_out' \(type DetectionOutput\).*"
                                          r"eta 0\.9.*Fix:"):
        export_onnx(net, path, inputs={"data": images(2)}, opset=opset)
    assert not path.exists()
    # The head alone (no DetectionOutput run) still exports.
    export_onnx(net, path, inputs={"data": images(2)}, opset=opset, outputs=HEAD)
    assert path.exists()


def test_detection_output_needs_opset_11(tiny_ssd, tmp_path) -> None:
    net = load(*tiny_ssd)
    path = tmp_path / "ssd.onnx"
    with pytest.raises(ExportError, match=r"detection_out.*opset 11"):
        export_onnx(net, path, inputs={"data": images(2)}, opset=10)
    assert not path.exists()


def test_torchscript_still_refuses_detection_output(tiny_ssd, tmp_path) -> None:
    # A trace would bake one input's NMS decisions into the graph: refused, nothing written.
    net = load(*tiny_ssd)
    ts = tmp_path / "full.pt"
    with pytest.raises(ModelportError):
        export_torchscript(net, ts, inputs={"data": images(2)})
    assert not ts.exists()
