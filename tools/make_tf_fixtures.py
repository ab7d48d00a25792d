"""Make the TensorFlow checkpoint fixtures of tests/fixtures/tf/ with real TensorFlow (run once).

    KERAS_BACKEND=tensorflow .venv/bin/python tools/make_tf_fixtures.py

writes, each a few KB:

- `slim/`: a TF1 `tf.compat.v1.train.Saver(sharded=True)` checkpoint with TF-slim names
  (`InceptionV4/Conv2d_1a_3x3/weights`, `.../BatchNorm/moving_mean`, ...), variables placed on
  two CPU devices so that two `.data-0000N-of-00002` shards are written (checked), every dtype
  a Saver stores (float16/32/64, bfloat16, int8..int64, uint8..uint64, bool, complex64/128,
  string, with NaN, infinities, -0.0 and subnormals), a zero-element tensor, and two
  partitioned variables (`fixed_size_partitioner(3)` along axis 0, and along axis 1);
  the `checkpoint` file names the prefix relatively.
- `tf2/`: a TF2 `tf.train.Checkpoint` of a tiny `tf.Module` and a tiny Keras model
  (Conv2D + BatchNormalization + Dense), with the object graph `_CHECKPOINTABLE_OBJECT_GRAPH`.
- `variant/`: a TF2 checkpoint holding a tf.data iterator's state (a DT_VARIANT tensor, which
  numpy cannot hold) beside a float variable.

`python tools/make_tf_fixtures.py slim tf2 variant` (the default: all) remakes only those named.

Beside each checkpoint, `expected.npz` + `expected.json` hold what *TensorFlow's own reader*
returns (`tf.train.load_checkpoint(prefix).get_tensor(name)` for every name of
`tf.train.list_variables`): the JSON lists names, dtypes and shapes in list_variables order;
the npz holds the values under `v<i>` (bfloat16 stored as its uint16 bits; strings are in the
JSON as hex, since npz cannot hold object arrays without pickle). Tests compare modelport's
reader against these when TensorFlow is absent, and against TensorFlow itself when present.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "tf"


def _special_floats(dtype: type, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    values = rng.standard_normal(int(np.prod(shape))).astype(dtype)
    info = np.finfo(dtype)
    specials = [np.nan, np.inf, -np.inf, -0.0, info.tiny / 4, info.max]
    values[:len(specials)] = np.array(specials, dtype=dtype)
    return values.reshape(shape)


def _sliced(full: np.ndarray) -> object:
    """A v1 initializer giving each partition its own part of `full`."""
    import tensorflow as tf

    def init(shape: list[int], dtype: object = None, partition_info: object = None) -> object:
        offsets = getattr(partition_info, "var_offset", None) or [0] * len(shape)
        part = full[tuple(slice(o, o + n) for o, n in zip(offsets, shape))]
        return tf.constant(part, dtype=dtype)

    return init


def make_slim() -> pathlib.Path:
    """The TF1 Saver checkpoint (two shards, partitioned variables, every dtype)."""
    import tensorflow as tf

    rng = np.random.default_rng(11)
    folder = OUT / "slim"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    graph = tf.Graph()
    v1 = tf.compat.v1
    with graph.as_default():
        with tf.device("/cpu:0"), v1.variable_scope("InceptionV4"):
            with v1.variable_scope("Conv2d_1a_3x3"):
                v1.get_variable("weights", initializer=_special_floats(np.float32, (3, 2, 3, 4),
                                                                       rng))
                with v1.variable_scope("BatchNorm"):
                    v1.get_variable("beta", initializer=rng.standard_normal(4).astype("f4"))
                    v1.get_variable("moving_mean",
                                    initializer=rng.standard_normal(4).astype("f4"))
                    v1.get_variable("moving_variance",
                                    initializer=rng.uniform(0.5, 2, 4).astype("f4"))
            with v1.variable_scope("Mixed_5a"):
                v1.get_variable("Branch_0/Conv2d_0a_1x1/weights",
                                initializer=_special_floats(np.float16, (1, 1, 4, 6), rng))
                v1.get_variable("Branch_1/Conv2d_0a_1x1/weights",
                                initializer=tf.constant(rng.standard_normal((1, 1, 4, 2)),
                                                        dtype=tf.bfloat16))
            v1.get_variable("AuxLogits/Conv2d_1b_1x1/weights",
                            initializer=_special_floats(np.float64, (1, 1, 4, 3), rng))
            v1.get_variable("AuxLogits/empty", initializer=np.zeros((0, 3), np.float32))
        with tf.device("/cpu:1"):
            with v1.variable_scope("InceptionV4/Logits/Logits"):
                v1.get_variable("weights", shape=[7, 5], dtype=tf.float32,
                                initializer=v1.random_normal_initializer(seed=3),
                                partitioner=v1.fixed_size_partitioner(3))
                v1.get_variable("biases", initializer=rng.standard_normal(5).astype("f4"))
            v1.get_variable("global_step", initializer=np.int64(2**40 + 3))
            with v1.variable_scope("extras"):
                v1.get_variable("table", shape=[4, 6], dtype=tf.int64,
                                initializer=_sliced(rng.integers(-2**62, 2**62, (4, 6))),
                                partitioner=v1.fixed_size_partitioner(3, axis=1))
                v1.get_variable("int8", initializer=rng.integers(-128, 128, (2, 3), "i1"))
                v1.get_variable("int16", initializer=rng.integers(-2**15, 2**15, (3,), "i2"))
                v1.get_variable("int32", initializer=rng.integers(-2**31, 2**31, (2, 2), "i4"))
                v1.get_variable("uint8", initializer=rng.integers(0, 256, (5,), "u1"))
                v1.get_variable("uint16", initializer=rng.integers(0, 2**16, (3,), "u2"))
                v1.get_variable("uint32", initializer=rng.integers(0, 2**32, (3,), "u4"))
                v1.get_variable("uint64", initializer=np.array([0, 2**64 - 1, 12345], "u8"))
                v1.get_variable("bool", initializer=np.array([True, False, False, True, True]))
                v1.get_variable("complex64", initializer=(rng.standard_normal(3)
                                                          + 1j * rng.standard_normal(3))
                                .astype("c8"))
                v1.get_variable("complex128", initializer=(rng.standard_normal((2, 1))
                                                           + 1j * rng.standard_normal((2, 1))))
                v1.get_variable("labels", dtype=tf.string, initializer=tf.constant(
                    [b"background", b"", "caf\u00e9".encode(), b"\x00\xff\x01", b"x" * 200]))
                v1.get_variable("name", dtype=tf.string, initializer=tf.constant(b"inception_v4"))
        saver = v1.train.Saver(sharded=True, save_relative_paths=True)
        config = v1.ConfigProto(device_count={"CPU": 2})
        with v1.Session(graph=graph, config=config) as sess:
            sess.run(v1.global_variables_initializer())
            prefix = saver.save(sess, str(folder / "model.ckpt"), global_step=3,
                                write_meta_graph=False)
    shards = sorted(p.name for p in folder.glob("model.ckpt-3.data-*"))
    if shards != ["model.ckpt-3.data-00000-of-00002", "model.ckpt-3.data-00001-of-00002"]:
        raise SystemExit(f"expected two shards, TensorFlow wrote {shards}")
    return pathlib.Path(prefix)


def make_tf2() -> pathlib.Path:
    """The TF2 object checkpoint of a tf.Module and a small Keras model."""
    import keras
    import tensorflow as tf

    folder = OUT / "tf2"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    keras.utils.set_random_seed(5)

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="dense")
            self.w = tf.Variable(tf.random.normal((3, 2), seed=1), name="w")
            self.b = tf.Variable(tf.zeros((2,), tf.float64), name="b")

    model = keras.Sequential([
        keras.Input((5, 4, 3)),
        keras.layers.Conv2D(4, (3, 2), padding="same", use_bias=False, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, name="logits"),
    ])
    # Non-trivial BatchNorm statistics (not the initial zeros / ones).
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.linspace(-1, 1, 4).astype("f4"))
    bn.moving_variance.assign(np.linspace(0.5, 2, 4).astype("f4"))
    ckpt = tf.train.Checkpoint(module=Dense(), model=model,
                               step=tf.Variable(7, dtype=tf.int64))
    prefix = ckpt.write(str(folder / "ckpt-1"))
    tf.compat.v1.train.update_checkpoint_state(str(folder), "ckpt-1")
    return pathlib.Path(prefix)


def make_variant() -> pathlib.Path:
    """A TF2 checkpoint with a dataset iterator's state (DT_VARIANT) and a float variable."""
    import tensorflow as tf

    folder = OUT / "variant"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    iterator = iter(tf.data.Dataset.range(10))
    next(iterator)
    ckpt = tf.train.Checkpoint(data=iterator, v=tf.Variable([1.5, -2.0, 0.25]))
    return pathlib.Path(ckpt.write(str(folder / "ckpt-1")))


def write_expected(prefix: pathlib.Path) -> None:
    """TensorFlow's own reading of every variable, beside the checkpoint."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    records = []
    arrays: dict[str, np.ndarray] = {}
    for i, (name, shape) in enumerate(tf.train.list_variables(str(prefix))):
        dtype = reader.get_variable_to_dtype_map()[name]
        record: dict[str, object] = {"name": name, "shape": list(shape),
                                     "tf_dtype": dtype.name}
        records.append(record)
        if dtype == tf.variant:
            continue  # numpy cannot hold it (TF's own get_tensor refuses it too)
        raw = reader.get_tensor(name)  # a string scalar comes back as bytes
        value = np.asarray(raw, dtype=object) if isinstance(raw, bytes) else np.asarray(raw)
        record["dtype"] = str(value.dtype)
        if value.dtype == object:
            record["hex"] = [bytes(v).hex() for v in value.reshape(-1)]
        elif value.dtype.name == "bfloat16":
            arrays[f"v{i}"] = value.view(np.uint16)
            record["npz"] = f"v{i}"
        else:
            arrays[f"v{i}"] = value
            record["npz"] = f"v{i}"
    folder = prefix.parent
    np.savez(folder / "expected.npz", **arrays)
    text = json.dumps({"prefix": prefix.name, "tensorflow": tf.__version__,
                       "variables": records}, indent=1)
    (folder / "expected.json").write_text(text + "\n")


def main(argv: list[str]) -> int:
    makers = {"slim": make_slim, "tf2": make_tf2, "variant": make_variant}
    chosen = argv or list(makers)
    unknown = sorted(set(chosen) - set(makers))
    if unknown:
        raise SystemExit(f"unknown fixtures {unknown}; choose from {sorted(makers)}")
    for name in chosen:
        prefix = makers[name]()
        write_expected(prefix)
        for path in sorted(prefix.parent.iterdir()):
            print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
