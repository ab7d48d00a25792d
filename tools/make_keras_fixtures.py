"""Write tests/fixtures/keras/ with real Keras 3 + TensorFlow (run once; the files are committed).

    KERAS_BACKEND=tensorflow .venv/bin/python tools/make_keras_fixtures.py [folder]

One small Functional model (`build_model`) with Conv2D with and without bias,
BatchNormalization, DepthwiseConv2D (depth_multiplier 2), SeparableConv2D, a nested
Sequential block (Conv2D + BatchNormalization), Conv2DTranspose, more Conv2Ds and two Dense
layers: 15 entries in `model.layers`, 13 weighted leaf layers, so positions 10..14 exist and
sort before 2 as strings. Every variable is set to seeded random values (moving variances
positive), so no zero or one hides a swapped variable. Saved as:

- `model.weights.h5`  `model.save_weights` (Keras 3 layout)
- `model.keras`       `model.save` (zip: config.json + model.weights.h5 + metadata.json)
- `ckpt/`             `tf.train.Checkpoint(model=model).write` (TF2 object-based) + the
                      `checkpoint` state file
- `ckpt_opt/`         the same with the optimizer: `tf.train.Checkpoint(model=model,
                      optimizer=adam)` after `adam.build(model.trainable_variables)`; every
                      trainable variable is then stored under its shortest path,
                      `optimizer/_trainable_variables/<k>`, not under the model
- `keras2_model.h5`   Keras 3's legacy `.h5` writer (`model.save("x.h5")`,
                      keras.src.legacy.saving.legacy_h5_format), which writes the Keras 2 layout:
                      model_config + model_weights/<layer>/<weight> with layer_names and
                      weight_names attributes. tf_keras is not installed; this is Keras's own
                      code writing that layout, not a hand-made imitation.
- `keras2_weights.h5` the same module's `save_weights_to_hdf5_group` (Keras 2 weights-only).
- `keras2_style_ckpt/` a TF2 object checkpoint tracked the way tf.keras (Keras 2) models
                      track their layers: `layer-<i>` for model.layers[i] and the same object
                      again as `layer_with_weights-<j>`, the model itself as the root (what
                      tf.keras `model.save_weights(prefix)` writes). tf_keras is not installed,
                      so this one is hand-made: tf.Module objects holding tf.Variables named by
                      the Keras 3 variable paths (a DepthwiseConv2D's kernel is `kernel`, where
                      tf.keras said `depthwise_kernel`), written by TensorFlow's own
                      tf.train.Checkpoint.
- `dtypes.weights.h5` a two-layer model with a bfloat16 and a float16 Dense (Keras 3 stores
                      bfloat16 as 2-byte opaque data with a `dtype` attribute), with
                      `dtypes_expected.json` / `.npz` (bit patterns as uint16).
- `expected.json` + `expected.npz`: Keras's own view, taken from `model.layers[i].weights`
  (nested models expanded into their layers): per weighted leaf layer its path name, class,
  position in model.layers, and per variable its Keras name (`variable.path`), shape, dtype
  and value. Nothing here comes from modelport's readers.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT / "tests" / "fixtures" / "keras"


def build_model(seed: int = 0) -> Any:
    """The fixture model, every variable set to seeded random values."""
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((9, 7, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", name="conv_a")(inp)
    x = layers.Conv2D(5, (3, 2), padding="valid", use_bias=False, name="conv_b")(x)
    x = layers.BatchNormalization(name="bn_b")(x)
    x = layers.ReLU(name="relu_b")(x)
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = layers.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    block = keras.Sequential([layers.Conv2D(6, 1, name="blk_conv"),
                              layers.BatchNormalization(name="blk_bn")], name="block")
    x = block(x)
    x = layers.Conv2DTranspose(3, 3, strides=2, name="deconv")(x)
    x = layers.Conv2D(4, 3, strides=2, name="c1")(x)
    x = layers.Conv2D(4, 3, name="c2")(x)
    x = layers.Conv2D(4, 1, name="c3")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(8, name="fc1")(x)
    x = layers.Dense(3, use_bias=False, name="fc2")(x)
    model = keras.Model(inp, x, name="small")
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.standard_normal(tuple(w.shape)).astype("float32")
        if w.path.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        w.assign(value)
    return model


def leaf_layers(model: Any) -> list[tuple[int, str, Any]]:
    """(position in model.layers, path name, layer) of every weighted leaf layer, nested
    models expanded in their own layers' order."""
    out: list[tuple[int, str, Any]] = []

    def visit(layer: Any, index: int, outer: str | None) -> None:
        name = f"{outer}/{layer.name}" if outer else layer.name
        inner = getattr(layer, "layers", None)
        if inner is not None and hasattr(layer, "get_layer"):
            for sub in inner:
                visit(sub, index, name)
        elif layer.weights:
            out.append((index, name, layer))

    for i, layer in enumerate(model.layers):
        visit(layer, i, None)
    return out


def write_keras2_style_checkpoint(model: Any, folder: pathlib.Path) -> None:
    """`keras2_style_ckpt/` of the module docstring."""
    import tensorflow as tf

    def children(layers: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        weighted = 0
        for i, layer in enumerate(layers):  # tf.keras _layer_checkpoint_dependencies' order
            child = mirror(layer)
            if layer.weights:
                out[f"layer_with_weights-{weighted}"] = child
                weighted += 1
            out[f"layer-{i}"] = child
        return out

    def mirror(layer: Any) -> Any:
        module = tf.Module(name=layer.name)
        inner = getattr(layer, "layers", None)
        if inner is not None and hasattr(layer, "get_layer"):
            for name, child in children(inner).items():
                setattr(module, name, child)
        else:
            for w in layer.weights:
                setattr(module, w.path.rsplit("/", 1)[-1],
                        tf.Variable(w.numpy(), name=w.path))
        return module

    root = tf.train.Checkpoint(**children(model.layers))
    ckpt = folder / "keras2_style_ckpt"
    ckpt.mkdir(exist_ok=True)
    root.write(str(ckpt / "weights"))
    tf.compat.v1.train.update_checkpoint_state(str(ckpt), "weights")


def expected(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keras's own description of the weights (module docstring): json, npz arrays."""
    import keras
    import numpy as np

    layers_json = []
    arrays: dict[str, Any] = {}
    for n, (index, name, layer) in enumerate(leaf_layers(model)):
        variables = []
        for j, w in enumerate(layer.weights):
            key = f"L{n:02d}_{j}"
            value = np.asarray(keras.ops.convert_to_numpy(w))
            arrays[key] = value
            variables.append({"keras_name": w.path.rsplit("/", 1)[-1], "path": w.path,
                              "shape": list(value.shape), "dtype": str(value.dtype),
                              "npz": key})
        layers_json.append({"name": name, "class_name": type(layer).__name__,
                            "index": index, "variables": variables})
    meta = {"keras": keras.__version__, "backend": keras.backend.backend(),
            "model_layers": [layer.name for layer in model.layers], "layers": layers_json}
    return meta, arrays


def write_dtypes(folder: pathlib.Path, seed: int = 0) -> None:
    """`dtypes.weights.h5` and its expected files (module docstring)."""
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((4,), name="x")
    y = layers.Dense(3, dtype="bfloat16", name="d_bf16")(inp)
    y = layers.Dense(2, dtype="float16", name="d_f16")(y)
    model = keras.Model(inp, y, name="dtypes")
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.standard_normal(tuple(w.shape)).astype("float32"))
    model.save_weights(folder / "dtypes.weights.h5")
    meta = []
    arrays = {}
    for layer in model.layers:
        for j, w in enumerate(layer.weights):
            value = np.asarray(keras.ops.convert_to_numpy(w))
            key = f"{layer.name}_{j}"
            arrays[key] = value.view(np.uint16)
            meta.append({"layer": layer.name, "keras_name": w.path.rsplit("/", 1)[-1],
                         "dtype": str(value.dtype), "shape": list(value.shape), "npz": key})
    (folder / "dtypes_expected.json").write_text(json.dumps(meta, indent=1) + "\n")
    np.savez(folder / "dtypes_expected.npz", **arrays)


def write_all(model: Any, folder: pathlib.Path) -> None:
    """Every file of the module docstring, into `folder`."""
    import h5py
    import numpy as np
    import tensorflow as tf
    from keras.src.legacy.saving import legacy_h5_format

    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / "model.weights.h5")
    model.save(folder / "model.keras")
    ckpt = folder / "ckpt"
    ckpt.mkdir(exist_ok=True)
    tf.train.Checkpoint(model=model).write(str(ckpt / "model"))
    tf.compat.v1.train.update_checkpoint_state(str(ckpt), "model")
    import keras
    adam = keras.optimizers.Adam()
    adam.build(model.trainable_variables)
    ckpt_opt = folder / "ckpt_opt"
    ckpt_opt.mkdir(exist_ok=True)
    tf.train.Checkpoint(model=model, optimizer=adam).write(str(ckpt_opt / "model"))
    tf.compat.v1.train.update_checkpoint_state(str(ckpt_opt), "model")
    legacy_h5_format.save_model_to_hdf5(model, str(folder / "keras2_model.h5"),
                                        include_optimizer=False)
    with h5py.File(folder / "keras2_weights.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    write_keras2_style_checkpoint(model, folder)
    write_dtypes(folder)
    meta, arrays = expected(model)
    (folder / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")
    np.savez(folder / "expected.npz", **arrays)


def main(argv: list[str]) -> None:
    folder = pathlib.Path(argv[1]) if len(argv) > 1 else DEFAULT_FOLDER
    write_all(build_model(), folder)
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:>8}  {p.relative_to(folder)}")


if __name__ == "__main__":
    main(sys.argv)
