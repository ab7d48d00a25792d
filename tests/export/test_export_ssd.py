"""SSD family export: the head (Normalize, Permute, Flatten, PriorBox, Concat, Softmax) becomes
standard ONNX ops and ONNX Runtime matches OpenCV's cv2.dnn (an independent implementation of
these Caffe-fork layers) on the same prototxt + caffemodel; DetectionOutput's data-dependent NMS
cannot be a static graph and is refused rather than baked in."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from golden_support import assert_blob_close
from modelport.caffe import load
from modelport.errors import ModelportError
from modelport.export.onnx import export_onnx
from modelport.export.torchscript import export_torchscript

HEAD = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]


@pytest.fixture()
def tiny_ssd(tmp_path):
    # The SSD layer tests' two-scale head (prototxt + random-weight caffemodel).
    path = pathlib.Path(__file__).parent.parent / "layers" / "test_ssd.py"
    spec = importlib.util.spec_from_file_location("ssd_layer_tests", path)
    if spec is None or spec.loader is None or not path.exists():
        pytest.skip("tests/layers/test_ssd.py (the tiny SSD net) is not there")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_ssd(tmp_path)


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


def test_detection_output_is_refused_not_baked_in(tiny_ssd, tmp_path) -> None:
    proto, weights = tiny_ssd
    net = load(proto, weights)
    x = np.random.RandomState(3).uniform(-1, 1, net.blob_shapes["data"]).astype(np.float32)
    for opset in (17, 18):
        path = tmp_path / f"full{opset}.onnx"
        with pytest.raises(ModelportError):
            export_onnx(net, path, inputs={"data": x}, opset=opset)
        assert not path.exists()
    ts = tmp_path / "full.pt"
    with pytest.raises(ModelportError):
        export_torchscript(net, ts, inputs={"data": x})
    assert not ts.exists()
