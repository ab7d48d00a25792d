"""Running an exported model_keras.py the way a user does: imported from its folder in a fresh
module namespace, `load()`, inputs and outputs moved between Caffe's layout and the layouts
the file declares (INPUT_LAYOUTS, OUTPUT_LAYOUTS, LAYER_TOPS)."""

from __future__ import annotations

import os
import types

import numpy as np

from modelport.backends.keras.registry import find_emitter
from modelport.backends.torch_module import CaffeNet
from modelport.convert import load_generated


def missing_keras_types(module: CaffeNet) -> list[str]:
    """Caffe types of the net's layers (with their form) that no Keras emitter handles yet."""
    out = []
    for layer, key in module.run_order:
        if find_emitter(layer, module._modules[key]) is None and layer.type not in out:
            out.append(layer.type)
    return out


def import_model_keras(folder: str | os.PathLike[str], name: str) -> types.ModuleType:
    """model_keras.py of an export folder, imported in a fresh namespace."""
    return load_generated(os.path.join(os.fspath(folder), "model_keras.py"), name)


def to_keras(array: np.ndarray, layout: str) -> np.ndarray:
    """A Caffe-layout array in a Keras layout ('channels_last': axes (0, 2, ..., 1))."""
    if layout == "channels_last" and array.ndim >= 3:
        return np.ascontiguousarray(np.moveaxis(array, 1, -1))
    return array


def to_caffe(array: np.ndarray, layout: str) -> np.ndarray:
    if layout == "channels_last" and array.ndim >= 3:
        return np.ascontiguousarray(np.moveaxis(array, -1, 1))
    return array


def keras_arrays(namespace: types.ModuleType, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [to_keras(np.asarray(inputs[n], np.float32), layout)
            for n, layout in zip(namespace.INPUT_NAMES, namespace.INPUT_LAYOUTS)]


def run_model(model, arrays: list[np.ndarray]) -> list[np.ndarray]:
    import keras

    out = model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    outs = out if isinstance(out, list | tuple) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]


def final_outputs(namespace: types.ModuleType, model, inputs: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """The model's outputs by Caffe blob name, in Caffe's layout."""
    outs = run_model(model, keras_arrays(namespace, inputs))
    return {n: to_caffe(o, layout)
            for n, layout, o in zip(namespace.OUTPUT_NAMES, namespace.OUTPUT_LAYOUTS, outs)}


def named_blobs(namespace: types.ModuleType, model, inputs: dict[str, np.ndarray]
                ) -> dict[str, np.ndarray]:
    """Every Caffe blob a named Keras layer outputs, by blob name, in Caffe's layout; a blob
    written by several layers (in place) holds the last one's output, as Caffe's net.blobs."""
    import keras

    tensors, where = [], []
    for layer_name, tops in namespace.LAYER_TOPS.items():
        out = model.get_layer(layer_name).output
        outs = out if isinstance(out, list | tuple) else [out]
        for t, (blob, layout) in zip(outs, tops):
            tensors.append(t)
            where.append((blob, layout))
    probe = keras.Model(inputs=model.input, outputs=tensors)
    values = run_model(probe, keras_arrays(namespace, inputs))
    blobs: dict[str, np.ndarray] = {}
    for (blob, layout), value in zip(where, values):
        blobs[blob] = to_caffe(value, layout)
    return blobs
