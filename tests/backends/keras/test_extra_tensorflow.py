"""The nets of test_extra_emitters on the TensorFlow backend, and in the TensorFlow files.

Each net is exported on the torch backend (`export_keras`, self-checked), then ONE
TensorFlow-backend child process (modelport.export.keras_tf's worker) loads every
model_keras.py, returns every named layer output, and writes and reloads a SavedModel and a
TFLite file. Everything must match the PyTorch module's blobs within the project tolerance
(ArgMax indices exactly). TensorFlow traces the layers with a free (None) batch axis, which the
torch backend never shows: a layer that reads the batch size as a number fails here, and so
does an op TFLite lacks (grouped CONV_3D, hence CaffeGroupConvolution).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402
from test_extra_emitters import NETS, TOL, module_of  # noqa: E402

from modelport.backends.keras.view import check_inputs, view_of  # noqa: E402
from modelport.export.keras import export_keras  # noqa: E402
from modelport.export.keras_tf import TensorFlowCase, run_tensorflow  # noqa: E402


def within(ref: np.ndarray, got: np.ndarray, allowed: float | np.ndarray) -> bool:
    if got.shape != ref.shape:
        return False
    return bool((np.abs(got.astype(np.float64) - ref) <= allowed).all())


@pytest.mark.slow
def test_nets_on_tensorflow_saved_model_and_tflite(tmp_path) -> None:
    pytest.importorskip("tensorflow", reason="tensorflow-cpu (extra 'tensorflow') is not "
                        "installed: the TensorFlow backend cannot be checked")
    jobs, expected = [], {}
    for name, (builder, _) in NETS.items():
        body, shapes, inputs = builder()
        module = module_of(body, shapes)
        arrays = check_inputs(view_of(module), inputs)
        export_keras(module, tmp_path / name / "keras", inputs=arrays)
        with torch.no_grad():
            blobs = module.forward_blobs(**{k: torch.from_numpy(v) for k, v in arrays.items()})
        allowed = {}
        for layer, _ in module.run_order:
            for j, top in enumerate(layer.tops):
                allowed[top] = TOL.allowed_for(layer, j, blobs[top].numpy())
        expected[name] = ({k: v.numpy() for k, v in blobs.items()}, allowed,
                          list(module.output_names))
        jobs.append(TensorFlowCase(name, str(tmp_path / name / "keras"), arrays, blobs=True,
                                   saved_model=str(tmp_path / name / "saved_model"),
                                   tflite=str(tmp_path / name / "model.tflite")))
    results = run_tensorflow(jobs, tmp_path / "work")
    bad = []
    for result in results:
        if result.error:
            bad.append(f"{result.name}: {result.error}")
            continue
        blobs, allowed, outputs = expected[result.name]
        assert set(result.blobs) >= set(allowed) - set(outputs) and result.blobs
        for top, value in result.blobs.items():
            if top in allowed and not within(blobs[top], value, allowed[top]):
                bad.append(f"{result.name}: blob {top} (TensorFlow backend)")
        for kind in ("outputs", "saved_model", "tflite"):
            got = getattr(result, kind)
            assert sorted(got) == sorted(outputs), (result.name, kind)
            bad += [f"{result.name}: output {n} ({kind})" for n in outputs
                    if not within(blobs[n], got[n], allowed[n])]
    assert not bad, bad
