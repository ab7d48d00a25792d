"""Build the Keras 3 (TensorFlow backend) models of the port tests and save each one as a TF2
checkpoint, a `.weights.h5` and a `.keras`, with its input and TF's outputs (NHWC `.npy`).

Run with the TensorFlow backend (the test suite's conftest defaults Keras to torch):

    KERAS_BACKEND=tensorflow .venv/bin/python tests/tf/make_keras_case.py OUT_DIR [CASE ...]

The tests run it once per session into a temporary folder. The shipped fixtures that the
TensorFlow-free tests read are regenerated with

    KERAS_BACKEND=tensorflow .venv/bin/python tests/tf/make_keras_case.py --fixture \
        tests/fixtures/tf_port

(`--fixture` keeps `model.weights.h5` for H5_FIXTURE_CASES only and drops `live.*`, to stay
small).
Every weight is drawn from a seeded generator (moving variances positive), so BatchNorm
statistics and biases are not the trivial 0 / 1 of a fresh layer.

Per case, in OUT_DIR/<case>/: `input.npy` (NHWC), `output.npy` (TF's output, NHWC),
`ckpt.index` + `ckpt.data-00000-of-00001` (tf.train.Checkpoint(model=...).write),
`model.weights.h5`, `model.keras`, `live.json` + `live.npz` (each weighted layer's name,
class, config and `[(w.path, w.numpy())]`, read from the live model), and `layers/<name>.npy`,
each weighted layer's own output.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    sys.exit("run with KERAS_BACKEND=tensorflow")
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

L = keras.layers


def conv_pad() -> keras.Model:
    """SAME and VALID padding, kernels with h != w, a grouped conv."""
    x = inp = keras.Input((9, 11, 3))
    x = L.Conv2D(4, (3, 5), padding="same", name="conv_same")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(6, (2, 3), padding="valid", name="conv_valid")(x)
    x = L.Conv2D(4, 3, padding="same", groups=2, name="conv_grouped")(x)  # AlexNet's groups
    return keras.Model(inp, x, name="conv_pad")


def stride2_odd() -> keras.Model:
    """Stride 2 on odd sizes: TF's odd padding pixel goes bottom / right; a SAME max pool."""
    x = inp = keras.Input((11, 13, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same", name="conv_s2")(x)
    x = L.Conv2D(5, (4, 2), strides=(2, 3), padding="same", name="conv_even_k")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="pool")(x)
    x = L.Conv2D(3, 1, name="conv_1x1")(x)
    return keras.Model(inp, x, name="stride2_odd")


def bn_nobias() -> keras.Model:
    """Conv without bias + BatchNorm (Keras's epsilon 1e-3), and center=False / scale=False."""
    x = inp = keras.Input((8, 10, 3))
    x = L.Conv2D(6, 3, padding="same", use_bias=False, name="conv_a")(x)
    x = L.BatchNormalization(name="bn_a")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(5, 3, padding="same", use_bias=False, name="conv_b")(x)
    x = L.BatchNormalization(center=False, epsilon=1e-2, name="bn_b")(x)
    x = L.Conv2D(4, 1, use_bias=False, name="conv_c")(x)
    x = L.BatchNormalization(scale=False, name="bn_c")(x)
    return keras.Model(inp, x, name="bn_nobias")


def depthwise_separable() -> keras.Model:
    x = inp = keras.Input((9, 12, 3))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", name="dw")(x)
    x = L.SeparableConv2D(7, 3, padding="valid", name="sep_valid")(x)
    x = L.SeparableConv2D(4, (3, 2), padding="same", depth_multiplier=2, name="sep_same")(x)
    return keras.Model(inp, x, name="depthwise_separable")


def flatten_dense() -> keras.Model:
    """Flatten of a non-square NHWC map (5 x 4 x 4) into Dense layers."""
    x = inp = keras.Input((10, 7, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same", name="conv")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(6, name="fc1")(x)
    x = L.ReLU()(x)
    x = L.Dense(3, name="fc2")(x)
    return keras.Model(inp, x, name="flatten_dense")


def inception() -> keras.Model:
    """Branches concatenated on the channel axis (-1 in NHWC, 1 in NCHW)."""
    inp = keras.Input((9, 10, 4))
    b0 = L.Conv2D(3, 1, name="b0_1x1")(inp)
    b1 = L.Conv2D(2, 1, name="b1_1x1")(inp)
    b1 = L.Conv2D(4, 3, padding="same", name="b1_3x3")(b1)
    b2 = L.MaxPooling2D(3, strides=1, padding="same", name="b2_pool")(inp)
    b2 = L.Conv2D(2, 1, name="b2_1x1")(b2)
    x = L.Concatenate(axis=-1, name="concat")([b0, b1, b2])
    x = L.Conv2D(5, 3, strides=2, padding="same", name="head")(x)
    return keras.Model(inp, x, name="inception")


def conv_transpose() -> keras.Model:
    """Conv2DTranspose, SAME and VALID, a kernel smaller than the stride on one axis."""
    x = inp = keras.Input((5, 6, 3))
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="up_same")(x)
    x = L.Conv2DTranspose(3, (2, 4), strides=(2, 3), padding="valid", name="up_valid")(x)
    x = L.Conv2DTranspose(2, (3, 2), strides=2, padding="same", name="up_small_k")(x)
    return keras.Model(inp, x, name="conv_transpose")


def mobilenet() -> keras.Model:
    """Keras's own MobileNet (alpha 0.25, 10 classes, a 64x96 input, logits): 27 convs and 27
    BatchNorms, stride-2 depthwise convs after ZeroPadding2D((0, 1), (0, 1)). Live runs only
    (about 1 MB a file, too big to ship)."""
    return keras.applications.MobileNet(input_shape=(64, 96, 3), alpha=0.25, weights=None,
                                        classes=10, classifier_activation=None)


CASES: dict[str, Callable[[], keras.Model]] = {
    f.__name__: f for f in (conv_pad, stride2_odd, bn_nobias, depthwise_separable,
                            flatten_dense, inception, conv_transpose)
}
LIVE_ONLY: dict[str, Callable[[], keras.Model]] = {"mobilenet": mobilenet}


def randomize(model: keras.Model, rng: np.random.Generator) -> None:
    for layer in model.layers:
        for w in layer.weights:
            shape = tuple(w.shape)
            if w.path.endswith("moving_variance"):
                value = rng.uniform(0.5, 2.0, shape)
            else:
                value = rng.standard_normal(shape) * (0.5 if len(shape) > 1 else 0.3)
            w.assign(value.astype(np.float32))


def build(name: str, out: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = {**CASES, **LIVE_ONLY}[name]()
    randomize(model, rng)
    d = out / name
    (d / "layers").mkdir(parents=True, exist_ok=True)
    x = rng.standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    np.save(d / "input.npy", x)
    np.save(d / "output.npy", np.asarray(model(x), np.float32))
    model.save_weights(d / "model.weights.h5")
    model.save(d / "model.keras")
    tf.train.Checkpoint(model=model).write(str(d / "ckpt"))
    live, arrays = [], {}
    weighted = [layer for layer in model.layers if layer.weights]
    for i, layer in enumerate(model.layers):
        if not layer.weights:
            continue
        names = []
        for j, w in enumerate(layer.weights):
            arrays[f"{i}:{j}"] = w.numpy()
            names.append(w.path)
        live.append({"index": i, "name": layer.name, "class_name": type(layer).__name__,
                     "config": layer.get_config(), "paths": names})
    probe = keras.Model(model.inputs, [layer.output for layer in weighted])
    for layer, value in zip(weighted, probe(x)):
        np.save(d / "layers" / f"{layer.name}.npy", np.asarray(value, np.float32))
    (d / "live.json").write_text(json.dumps(live, indent=1, default=str) + "\n")
    np.savez(d / "live.npz", **arrays)


def slim(out: Path, seed: int) -> None:
    """A TF-slim-style graph saved by tf.compat.v1.train.Saver (TF1 names: `weights`,
    `BatchNorm/{beta,moving_mean,moving_variance}` without gamma as slim's batch_norm defaults
    to scale=False, epsilon 0.001; `biases`; `global_step`; a Momentum slot), the Inception-v4
    checkpoint's traps in small: conv without bias + BN, VALID and SAME with stride 2 on odd
    sizes, an inception-style concat, Flatten of a non-square map + logits.
    Writes out/slim/: model.ckpt.*, input.npy, output.npy."""
    rng = np.random.default_rng(seed)
    d = out / "slim"
    d.mkdir(parents=True, exist_ok=True)
    x_value = rng.standard_normal((1, 15, 11, 3)).astype(np.float32)
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        def var(name: str, shape: tuple[int, ...], positive: bool = False) -> tf.Variable:
            value = rng.uniform(0.5, 2.0, shape) if positive else \
                rng.standard_normal(shape) * (0.5 if len(shape) > 1 else 0.3)
            return v1.get_variable(name, initializer=value.astype(np.float32))

        def conv_bn(x: tf.Tensor, scope: str, k: tuple[int, int], cin: int, cout: int,
                    stride: int, padding: str) -> tf.Tensor:
            w = var(f"{scope}/weights", (*k, cin, cout))
            y = tf.nn.conv2d(x, w, strides=stride, padding=padding)
            beta = var(f"{scope}/BatchNorm/beta", (cout,))
            mean = var(f"{scope}/BatchNorm/moving_mean", (cout,))
            variance = var(f"{scope}/BatchNorm/moving_variance", (cout,), positive=True)
            y = tf.nn.batch_normalization(y, mean, variance, beta, None, 0.001)
            return tf.nn.relu(y)

        x = v1.placeholder(tf.float32, x_value.shape)
        net = conv_bn(x, "Net/Conv2d_1a_3x3", (3, 3), 3, 8, 2, "VALID")  # 7 x 5
        b0 = conv_bn(net, "Net/Mixed_3a/Branch_0/Conv2d_0a_1x1", (1, 1), 8, 4, 1, "SAME")
        b1 = tf.nn.max_pool2d(net, 3, 1, "SAME")
        b1 = conv_bn(b1, "Net/Mixed_3a/Branch_1/Conv2d_0b_1x1", (1, 1), 8, 3, 1, "SAME")
        net = tf.concat([b0, b1], axis=3)
        net = conv_bn(net, "Net/Conv2d_2a_3x3", (3, 2), 7, 6, 2, "SAME")  # 4 x 3 x 6
        flat = tf.reshape(net, (1, -1))
        w = var("Net/Logits/weights", (int(flat.shape[1]), 5))
        b = var("Net/Logits/biases", (5,))
        logits = tf.matmul(flat, w) + b
        v1.get_variable("Net/Logits/weights/Momentum", initializer=np.zeros(w.shape, np.float32))
        v1.train.get_or_create_global_step()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            y = sess.run(logits, {x: x_value})
            v1.train.Saver().save(sess, str(d / "model.ckpt"), write_meta_graph=False,
                                  write_state=False)
    np.save(d / "input.npy", x_value)
    np.save(d / "output.npy", np.asarray(y, np.float32))


def same_pad_sweep(out: Path) -> None:
    """tf.nn.conv2d / max_pool2d with padding="SAME" over sizes, kernels, strides and
    dilations (h != w everywhere): out/same_pad_sweep.npz, one x / w / y triple per setting."""
    rng = np.random.default_rng(99)
    arrays: dict[str, np.ndarray] = {}
    settings = []
    for n in (5, 6, 7, 8):
        for k in (1, 2, 3, 4):
            for s in (1, 2, 3):
                for d in (1, 2):
                    if d > 1 and s > 1:
                        continue  # TF's conv2d refuses dilation with stride
                    i = len(settings)
                    x = rng.standard_normal((1, n, n + 3, 2)).astype(np.float32)
                    w = rng.standard_normal((k, k % 3 + 1, 2, 3)).astype(np.float32)
                    y = tf.nn.conv2d(x, w, strides=s, padding="SAME", dilations=d)
                    arrays[f"x{i}"], arrays[f"w{i}"], arrays[f"y{i}"] = x, w, np.asarray(y)
                    arrays[f"p{i}"] = np.asarray(tf.nn.max_pool2d(x, (k, k % 3 + 1), s, "SAME"))
                    settings.append((n, k, s, d))
    arrays["settings"] = np.array(settings, np.int64)
    np.savez(out / "same_pad_sweep.npz", **arrays)


# The shipped fixtures keep `.weights.h5` only for these cases (the `.keras` archive holds the
# same HDF5 for every case): a few hundred KB in all.
H5_FIXTURE_CASES = ("bn_nobias", "inception")


def main(argv: list[str]) -> None:
    fixture = "--fixture" in argv
    args = [a for a in argv if a != "--fixture"]
    out = Path(args[0])
    names = args[1:] or list(CASES)
    names = [n for n in names if n not in LIVE_ONLY]
    for name in names:
        build(name, out, seed=list(CASES).index(name))
        if fixture:  # the readers' files only; live.* is for the in-session TF tests
            for extra in ("live.json", "live.npz") + (
                    () if name in H5_FIXTURE_CASES else ("model.weights.h5",)):
                (out / name / extra).unlink()
    if len(args) == 1:
        slim(out, seed=len(CASES))
    if not fixture and len(args) == 1:
        same_pad_sweep(out)
        for i, name in enumerate(LIVE_ONLY):
            build(name, out, seed=len(CASES) + 1 + i)
    print("built", ", ".join(names), "in", out)


if __name__ == "__main__":
    main(sys.argv[1:])
