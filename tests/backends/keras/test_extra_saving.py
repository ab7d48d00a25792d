"""runtime_extra's layers in the files a Keras export writes, and in training.

`export_keras` writes model_keras.py, model.weights.h5 and model.keras; after importing
model_keras.py (which registers the custom layers as `modelport>...`), `keras.saving.load_model`
must rebuild the archive with the same function as `load()`, and the model must train on the
torch backend: `fit` lowers the loss and moves the custom layers' own weights (PReLU's slopes,
Normalize's scales, the deconvolution kernel).
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
from test_extra_emitters import layer, module_of  # noqa: E402

from modelport.convert import load_generated  # noqa: E402
from modelport.export.keras import export_keras  # noqa: E402

BODY = (layer("conv", "Convolution", "data", "c", "convolution_param { num_output: 4 "
              "kernel_size: 3 pad: 1 }")
        + layer("prelu", "PReLU", "c", "p")
        + layer("norm", "Normalize", "p", "n", "norm_param { across_spatial: false "
                "channel_shared: false }")
        + layer("deconv", "Deconvolution", "n", "d", "convolution_param { num_output: 2 "
                "kernel_size: 3 stride: 2 pad: 1 group: 2 }")
        + layer("mvn", "MVN", "d", "v")
        + layer("swish", "Swish", "v", "s", "swish_param { beta: 0.5 }")
        + layer("am", "ArgMax", "s", "am", "argmax_param { axis: 1 }")
        + layer("ip", "InnerProduct", "s", "ip", "inner_product_param { num_output: 3 }"))
SHAPE = (4, 3, 6, 5)


def exported(tmp_path):
    module = module_of(BODY, {"data": SHAPE})
    out = tmp_path / "keras"
    export_keras(module, out)
    return out, load_generated(os.path.join(out, "model_keras.py"), "model_keras_extra")


def test_archive_reloads_with_the_same_function(tmp_path) -> None:
    out, namespace = exported(tmp_path)
    source = (out / "model_keras.py").read_text()
    assert "class CaffeDeconvolution" in source and "class CaffeNormalize" in source
    model = namespace.load()
    archive = keras.saving.load_model(out / "model.keras")
    x = np.random.RandomState(3).randn(*SHAPE).astype(np.float32).transpose(0, 2, 3, 1)
    ours = [keras.ops.convert_to_numpy(t) for t in model(x)]
    again = [keras.ops.convert_to_numpy(t) for t in archive(x)]
    assert [a.shape for a in ours] == [a.shape for a in again] == [(4, 11, 9, 1), (4, 3)]
    for a, b in zip(ours, again):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert {type(lay).__name__ for lay in archive.layers} >= {
        "CaffePReLU", "CaffeNormalize", "CaffeDeconvolution", "CaffeMVN", "CaffeSwish",
        "CaffeArgMax"}


def test_fine_tuning_moves_the_custom_weights_and_lowers_the_loss(tmp_path) -> None:
    _, namespace = exported(tmp_path)
    full = namespace.load()
    model = keras.Model(full.inputs, full.get_layer("ip").output)
    rs = np.random.RandomState(4)
    x = rs.randn(*SHAPE).astype(np.float32).transpose(0, 2, 3, 1)
    y = rs.randn(SHAPE[0], 3).astype(np.float32)
    before = {n: [w.copy() for w in model.get_layer(n).get_weights()]
              for n in ("prelu", "norm", "deconv")}
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    first = float(model.evaluate(x, y, verbose=0))
    model.fit(x, y, epochs=8, batch_size=4, verbose=0)
    assert float(model.evaluate(x, y, verbose=0)) < 0.7 * first
    for name, weights in before.items():
        after = model.get_layer(name).get_weights()
        assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(after, weights)), name
