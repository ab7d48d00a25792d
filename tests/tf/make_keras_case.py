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


def conv_transpose_op() -> keras.Model:
    """Conv2DTranspose with output_padding (SAME odd and even kernels, VALID stride 3) and a
    dilated SAME one: Keras's output size rule, not torch's symmetric crop."""
    x = inp = keras.Input((4, 5, 3))
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1, name="up_op")(x)
    x = L.Conv2DTranspose(3, 2, strides=2, padding="same", output_padding=1, name="up_even")(x)
    x = L.Conv2DTranspose(2, (3, 4), strides=(3, 2), padding="valid", output_padding=(2, 0),
                          name="up_valid_op")(x)
    x = L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same", name="up_dilated")(x)
    return keras.Model(inp, x, name="conv_transpose_op")


def conv1d() -> keras.Model:
    """The 1-D layers: Conv1D SAME stride 2 on an odd length, causal with dilation, padding,
    SAME max / average pools, DepthwiseConv1D, SeparableConv1D, Conv1DTranspose with
    output_padding, UpSampling1D, Cropping1D, BatchNorm, Flatten of an (L, C) map + Dense."""
    x = inp = keras.Input((23, 3))
    x = L.Conv1D(4, 3, strides=2, padding="same", name="c_same")(x)  # 12
    x = L.Conv1D(4, 3, padding="causal", dilation_rate=2, name="c_causal")(x)
    x = L.ZeroPadding1D((1, 2), name="zpad")(x)  # 15
    x = L.MaxPooling1D(3, strides=2, padding="same", name="maxpool")(x)  # 8
    x = L.AveragePooling1D(2, strides=1, padding="same", name="avgpool")(x)
    x = L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", name="dw")(x)  # 8 x 8
    x = L.SeparableConv1D(5, 3, padding="valid", name="sep")(x)  # 6 x 5
    x = L.Conv1DTranspose(4, 3, strides=2, padding="same", output_padding=1, name="up")(x)
    x = L.UpSampling1D(2, name="upsample")(x)  # 24
    x = L.Cropping1D((1, 3), name="crop")(x)  # 20 x 4
    x = L.BatchNormalization(name="bn")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(3, name="fc")(x)
    return keras.Model(inp, x, name="conv1d")


def conv3d() -> keras.Model:
    """The 3-D layers: Conv3D SAME stride 2 on odd sizes, ZeroPadding3D, SAME max / average
    pools, Conv3DTranspose with and without output_padding, UpSampling3D, Cropping3D, VALID
    Conv3D, BatchNorm, GlobalAveragePooling3D + Dense."""
    x = inp = keras.Input((5, 6, 7, 2))
    x = L.Conv3D(3, (3, 2, 3), strides=2, padding="same", name="c_same")(x)  # 3x3x4
    x = L.ZeroPadding3D(((0, 1), (1, 0), (1, 1)), name="zpad")(x)  # 4x4x6
    x = L.MaxPooling3D(2, strides=1, padding="same", name="maxpool")(x)
    x = L.AveragePooling3D((2, 3, 2), strides=2, padding="same", name="avgpool")(x)  # 2x2x3
    x = L.Conv3DTranspose(3, 3, strides=2, padding="same", output_padding=(1, 0, 1),
                          name="up_op")(x)  # 4x3x6
    x = L.Conv3DTranspose(2, 2, strides=(1, 2, 1), padding="same", name="up")(x)  # 4x6x6
    x = L.UpSampling3D((1, 2, 1), name="upsample")(x)  # 4x12x6
    x = L.Cropping3D(((1, 0), (2, 1), (0, 1)), name="crop")(x)  # 3x9x5
    x = L.Conv3D(3, 2, name="c_valid")(x)  # 2x8x4
    x = L.BatchNormalization(name="bn")(x)
    x = L.GlobalAveragePooling3D(name="gap")(x)
    x = L.Dense(2, name="fc")(x)
    return keras.Model(inp, x, name="conv3d")


def settings2d() -> keras.Model:
    """Settings beside the common ones: dilation, a SAME average pool, bilinear and nearest
    upsampling, cropping, LayerNormalization over channels and Dense on a 4-D map (both on the
    last axis), a BatchNorm with neither center nor scale, global average pooling."""
    x = inp = keras.Input((8, 9, 3))
    x = L.Conv2D(4, 3, dilation_rate=2, padding="same", name="c_dilated")(x)
    x = L.AveragePooling2D(3, strides=2, padding="same", name="avgpool")(x)  # 4x5
    x = L.UpSampling2D(2, interpolation="bilinear", name="up_bilinear")(x)  # 8x10
    x = L.Cropping2D(((1, 0), (0, 2)), name="crop")(x)  # 7x8
    x = L.ZeroPadding2D(((1, 2), (0, 1)), name="zpad")(x)  # 10x9
    x = L.LayerNormalization(name="ln")(x)
    x = L.Dense(5, name="dense_4d")(x)
    x = L.UpSampling2D((1, 2), name="up_nearest")(x)  # 10x18
    x = L.Conv2D(3, 2, strides=2, use_bias=False, name="c_nobias")(x)  # 5x9
    x = L.BatchNormalization(center=False, scale=False, name="bn_bare")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, x, name="settings2d")


def channels_first() -> keras.Model:
    """A data_format="channels_first" model (input NCHW): SAME conv with stride 2, BatchNorm on
    axis 1, a SAME max pool, Flatten (already (c, h, w)) + Dense. The conv's output width (6)
    is not its filter count (4): with them equal, TF 2.21's CPU conv adds a channels_first
    bias along the width (seen here, not a modelport matter)."""
    x = inp = keras.Input((3, 9, 11))
    x = L.Conv2D(4, 3, strides=2, padding="same", data_format="channels_first", name="conv")(x)
    x = L.BatchNormalization(axis=1, name="bn")(x)  # 5x6
    x = L.MaxPooling2D(2, padding="same", data_format="channels_first", name="pool")(x)  # 3x3
    x = L.Flatten(data_format="channels_first", name="flatten")(x)
    x = L.Dense(3, name="fc")(x)
    return keras.Model(inp, x, name="channels_first")


def mobilenet() -> keras.Model:
    """Keras's own MobileNet (alpha 0.25, 10 classes, a 64x96 input, logits): 27 convs and 27
    BatchNorms, stride-2 depthwise convs after ZeroPadding2D((0, 1), (0, 1)). Live runs only
    (about 1 MB a file, too big to ship)."""
    return keras.applications.MobileNet(input_shape=(64, 96, 3), alpha=0.25, weights=None,
                                        classes=10, classifier_activation=None)


CASES: dict[str, Callable[[], keras.Model]] = {
    f.__name__: f for f in (conv_pad, stride2_odd, bn_nobias, depthwise_separable,
                            flatten_dense, inception, conv_transpose, conv_transpose_op,
                            conv1d, conv3d, settings2d, channels_first)
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
