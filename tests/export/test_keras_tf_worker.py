"""The TensorFlow child process of the SavedModel / TFLite exports (modelport.export.keras_tf
and keras_tf_worker), on hand-written Keras models whose outputs numpy computes here.

All TensorFlow cases run in ONE child (TF is imported once). The model files are written by
this test: a `model_keras.py` whose `load(path)` reads plain float32 arrays (`np.load`, no
pickle) into Dense layers, so the reference is `x @ W + b` in numpy, not Keras.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from modelport.errors import ModelportError
from modelport.export.keras_tf import (
    TensorFlowCase,
    require_tensorflow,
    run_tensorflow,
)
from modelport.optional import MissingDependencyError

# 12 Dense outputs: Keras names a signature's outputs output_0 ... output_12, which sort as text
# as output_0, output_1, output_10, ...: the order must come from the numbers. A second, 4-D
# input is channels-last in Keras (declared so, like model_keras.py does) and its ReLU output
# too: the child moves both between the layouts.
N_OUT = 12
NAMES = [f"fc{i}" for i in range(N_OUT)] + ["img_relu"]

MODEL = textwrap.dedent(f'''\
    import keras
    import numpy as np

    INPUT_NAMES = ("data.x", "img")
    INPUT_LAYOUTS = ("caffe", "channels_last")
    OUTPUT_NAMES = {tuple(NAMES)!r}
    OUTPUT_LAYOUTS = ("caffe",) * {N_OUT} + ("channels_last",)
    LAYER_TOPS = {{name: ((name, layout),) for name, layout in zip(OUTPUT_NAMES, OUTPUT_LAYOUTS)}}


    def build():
        x = keras.Input((6,), name="data.x")  # TF sanitises this argument name to data_x
        img = keras.Input((5, 7, 3), name="img")
        outs = [keras.layers.Dense(i + 1, name=f"fc{{i}}")(x) for i in range({N_OUT})]
        return keras.Model([x, img], outs + [keras.layers.ReLU(name="img_relu")(img)])


    def load(weights=None):
        model = build()
        arrays = np.load(weights, allow_pickle=False)
        for i in range({N_OUT}):
            model.get_layer(f"fc{{i}}").set_weights([arrays[f"w{{i}}"], arrays[f"b{{i}}"]])
        return model
''')


def write_model(folder, seed: int) -> dict[str, np.ndarray]:
    folder.mkdir()
    (folder / "model_keras.py").write_text(MODEL)
    rs = np.random.RandomState(seed)
    arrays = {}
    for i in range(N_OUT):
        arrays[f"w{i}"] = rs.standard_normal((6, i + 1)).astype(np.float32)
        arrays[f"b{i}"] = rs.standard_normal(i + 1).astype(np.float32)
    with open(folder / "model.weights.h5", "wb") as fh:  # the name the exporter passes
        np.savez(fh, **arrays)
    return arrays


@pytest.fixture(scope="module")
def tf_results(tmp_path_factory):
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed (extra 'tensorflow')")
    root = tmp_path_factory.mktemp("tfworker")
    weights = write_model(root / "dense", seed=3)
    broken = root / "broken"
    broken.mkdir()
    (broken / "model_keras.py").write_text("def load(weights=None):\n"
                                           "    raise ValueError('planted\\nfailure')\n")
    rs = np.random.RandomState(4)
    inputs = {"img": rs.standard_normal((2, 3, 5, 7)).astype(np.float32),  # N C H W
              "data.x": rs.standard_normal((2, 6)).astype(np.float32)}
    cases = [
        TensorFlowCase("dense", str(root / "dense"), inputs, blobs=True,
                       saved_model=str(root / "sm"), tflite=str(root / "m.tflite")),
        TensorFlowCase("broken", str(broken), inputs),
    ]
    return inputs, weights, run_tensorflow(cases, root / "work"), root


@pytest.mark.slow
def test_keras_savedmodel_and_tflite_outputs_by_name_in_caffe_layout(tf_results) -> None:
    inputs, w, results, root = tf_results
    dense = results[0]
    assert dense.error is None
    x = inputs["data.x"].astype(np.float64)
    expected = {f"fc{i}": x @ w[f"w{i}"] + w[f"b{i}"] for i in range(N_OUT)}
    expected["img_relu"] = np.maximum(inputs["img"], 0)  # back in N C H W
    for what in ("outputs", "blobs", "saved_model", "tflite"):
        got = getattr(dense, what)
        assert list(got) == NAMES, what
        for name, e in expected.items():
            assert got[name].shape == e.shape, (what, name)
            assert np.abs(got[name] - e).max() <= 1e-4 * max(1.0, np.abs(e).max()), (what, name)
    assert (root / "sm" / "saved_model.pb").is_file()
    assert (root / "m.tflite").stat().st_size > 0


@pytest.mark.slow
def test_a_failing_case_is_one_line_and_spares_the_others(tf_results) -> None:
    _, _, results, _ = tf_results
    assert results[0].error is None
    assert results[1].error == "ValueError: planted failure"


def test_missing_tensorflow_is_the_optional_message(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # find_spec then finds nothing
    with pytest.raises(MissingDependencyError) as info:
        require_tensorflow()
    msg = str(info.value)
    assert "\n" not in msg
    assert "needs tensorflow-cpu, which is not installed" in msg
    assert "pip install 'modelport[tensorflow]'" in msg
    with pytest.raises(ModelportError):
        run_tensorflow([], tmp_path)
