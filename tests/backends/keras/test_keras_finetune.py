"""The exported Keras model is a Keras model to keep working with (seed 004's workflow, on the
torch backend): it trains (`fit` on a tiny batch lowers the loss), `get_layer("fc8")` surgery
gives a new head of another width on the pretrained trunk, and `keras.saving.load_model` of
model.keras (after importing model_keras.py) reproduces Caffe's outputs."""

from __future__ import annotations

import numpy as np
import pytest
from keras_test_support import final_outputs, import_model_keras, keras_arrays, to_caffe

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.caffe import load
from modelport.export.keras import export_keras

# A CaffeNet in miniature: grouped convolutions, ceil-mode pooling with a clipped window,
# LRN, fc6/fc7 with ReLU and Dropout, fc8, Softmax (random weights from Caffe's fillers).
MINI_CAFFENET = """
name: "MiniCaffeNet"
input: "data"
input_shape { dim: 8 dim: 3 dim: 19 dim: 17 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 5 stride: 2
    weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 group: 2
    weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool2" top: "fc6"
  inner_product_param { num_output: 16
    weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6"
  dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
  inner_product_param { num_output: 16
    weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7"
  dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8"
  inner_product_param { num_output: 5
    weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "constant" value: 0 } } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """(model_keras namespace, export folder, Caffe-layout batch, labels)."""
    folder = tmp_path_factory.mktemp("mini")
    prototxt = folder / "net.prototxt"
    prototxt.write_text(MINI_CAFFENET)
    module = load(prototxt, None, allow_missing_weights=True)
    rs = np.random.RandomState(0)
    x = rs.standard_normal((8, 3, 19, 17)).astype(np.float32)
    export_keras(module, folder / "keras", inputs={"data": x})
    labels = rs.randint(0, 5, size=8)
    return import_model_keras(folder / "keras", "model_keras_mini"), folder / "keras", x, labels


def _loss(model, arrays, labels) -> float:
    return float(model.evaluate(arrays, labels, batch_size=len(labels), verbose=0))


@pytest.mark.slow  # Keras's first fit on the torch backend: ~10 s on a loaded machine
def test_the_exported_model_trains(mini) -> None:
    import keras

    namespace, _, x, labels = mini
    keras.utils.set_random_seed(0)
    model = namespace.load()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    arrays = keras_arrays(namespace, {"data": x})[0]
    before = _loss(model, arrays, labels)
    model.fit(arrays, labels, batch_size=8, epochs=15, verbose=0)
    after = _loss(model, arrays, labels)
    assert after < 0.8 * before, (before, after)


def test_fc8_surgery_gives_a_new_head_on_the_pretrained_trunk(mini) -> None:
    import keras

    namespace, _, x, labels = mini
    keras.utils.set_random_seed(1)
    base = namespace.load()
    trunk = keras.Model(base.input, base.get_layer("fc8").input)  # fc7 after relu7, drop7
    for layer in base.layers:
        layer.trainable = layer.name == "fc7"  # fine-tune fc7 and the new fc8 (seed 004)
    scores = keras.layers.Dense(3, name="fc8_new")(base.get_layer("fc8").input)
    head = keras.Model(base.input, keras.layers.Softmax(name="prob_new")(scores))
    arrays = keras_arrays(namespace, {"data": x})[0]
    conv1_before = [np.array(w) for w in base.get_layer("conv1").get_weights()]
    fc7_before = [np.array(w) for w in base.get_layer("fc7").get_weights()]
    features = np.asarray(keras.ops.convert_to_numpy(trunk(arrays, training=False)))
    assert head.output.shape[-1] == 3
    head.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    labels3 = labels % 3
    before = _loss(head, arrays, labels3)
    head.fit(arrays, labels3, batch_size=8, epochs=15, verbose=0)
    assert _loss(head, arrays, labels3) < before
    for w, w0 in zip(base.get_layer("conv1").get_weights(), conv1_before):
        np.testing.assert_array_equal(np.asarray(w), w0)  # frozen: untouched
    assert any(not np.array_equal(np.asarray(w), w0)
               for w, w0 in zip(base.get_layer("fc7").get_weights(), fc7_before))
    # before training the trunk computed the exported fc7 (Caffe's numbers)
    fresh = namespace.load()
    probe = keras.Model(fresh.input, fresh.get_layer("fc8").input)
    np.testing.assert_allclose(np.asarray(keras.ops.convert_to_numpy(probe(arrays))), features,
                               rtol=0, atol=1e-5)


def test_load_model_reproduces_caffe(tmp_path) -> None:
    import keras

    case = next(c for c in caffe_cases() if c.name == "batchnorm_scale")
    module = build_module(case.net())
    export_keras(module, tmp_path / "keras", inputs=case.inputs())
    namespace = import_model_keras(tmp_path / "keras", "model_keras_bn")  # registers its layers
    archived = keras.saving.load_model(tmp_path / "keras" / "model.keras")
    ref = case.blobs()
    outs = archived(keras_arrays(namespace, case.inputs()), training=False)
    outs = outs if isinstance(outs, list | tuple) else [outs]
    for name, layout, out in zip(namespace.OUTPUT_NAMES, namespace.OUTPUT_LAYOUTS, outs):
        assert_blob_close(name, to_caffe(np.asarray(keras.ops.convert_to_numpy(out)), layout),
                          ref[name])
    loaded = final_outputs(namespace, namespace.load(), case.inputs())
    assert sorted(loaded) == sorted(namespace.OUTPUT_NAMES)
    custom = {type(layer).__name__ for layer in archived.layers}
    assert {"CaffeScale", "CaffeScaleBy"} <= custom
