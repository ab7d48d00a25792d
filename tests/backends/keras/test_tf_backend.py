"""Every golden case of a real Caffe 1.0, exported to Keras 3 (on the torch backend, as
`modelport export --keras` does here) and run on the **TensorFlow backend**: final outputs and
every blob that survives as a named Keras layer output match Caffe's blobs within
1e-4 * max(1, max|ref|). CaffeNet and a BatchNorm case also go through a TF SavedModel
(`model.export`, reloaded with `tf.saved_model.load`) and a TFLite round trip.

TensorFlow is imported once: a module fixture exports every case on the torch backend, then ONE
TensorFlow-backend child process (modelport.export.keras_tf_worker) runs them all and writes
the results. Cases the torch-backend sweep skips (a type without an emitter yet) are skipped
here with the same reason.
"""

from __future__ import annotations

import pytest
from keras_test_support import missing_keras_types

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.errors import ModelportError
from modelport.export.keras import export_keras
from modelport.export.keras_tf import TensorFlowCase, run_tensorflow

pytestmark = pytest.mark.slow  # one TensorFlow process, CaffeNet's 60M parameters

CASES = [c for c in caffe_cases() if c.name != "nsfw"]  # nsfw: test_tf_backend_nsfw.py
ROUND_TRIP = ("caffenet", "batchnorm_scale")


@pytest.fixture(scope="module")
def tf_sweep(tmp_path_factory):
    """{case name: (TensorFlowResult, net)} and {case name: skip reason}."""
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed (extra 'tensorflow')")
    root = tmp_path_factory.mktemp("tf_backend")
    jobs, nets, skipped = [], {}, {}
    for case in CASES:
        net = build_module(case.net())
        missing = missing_keras_types(net)
        if missing:
            skipped[case.name] = f"type {missing[0]}: emitter not yet registered"
            continue
        out = root / case.name
        try:
            export_keras(net, out / "keras", inputs=case.inputs())  # torch backend, checked
        except ModelportError as exc:  # the torch-backend sweep fails on it: reported there
            skipped[case.name] = f"the torch-backend Keras export fails: {exc}"
            continue
        trip = case.name in ROUND_TRIP
        jobs.append(TensorFlowCase(case.name, str(out / "keras"), case.inputs(), blobs=True,
                                   saved_model=str(out / "saved_model") if trip else None,
                                   tflite=str(out / "model.tflite") if trip else None))
        nets[case.name] = net
    results = run_tensorflow(jobs, root / "work")
    return {r.name: (r, nets[r.name]) for r in results}, skipped


def _result(tf_sweep, name):
    done, skipped = tf_sweep
    if name in skipped:
        pytest.skip(skipped[name])
    result, net = done[name]
    assert result.error is None, result.error
    return result, net


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tf_backend_outputs_and_named_blobs_match_caffe(tf_sweep, case) -> None:
    result, net = _result(tf_sweep, case.name)
    ref = case.blobs()
    assert list(result.outputs) == list(net.output_names)
    for name, value in result.outputs.items():
        assert_blob_close(name, value, ref[name])
    produced = {t for layer, _ in net.run_order for t in layer.tops}
    assert produced <= set(result.blobs), sorted(produced - set(result.blobs))
    compared = sorted(produced & set(ref))
    assert compared
    for name in compared:
        assert_blob_close(name, result.blobs[name], ref[name])


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_saved_model_and_tflite_round_trips_match_caffe(tf_sweep, name) -> None:
    result, net = _result(tf_sweep, name)
    case = next(c for c in CASES if c.name == name)
    ref = case.blobs()
    for what in ("saved_model", "tflite"):
        got = getattr(result, what)
        assert list(got) == list(net.output_names), what
        for blob, value in got.items():
            assert_blob_close(f"{what}:{blob}", value, ref[blob])
