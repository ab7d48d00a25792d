"""Keras weight files and TF2 object checkpoints read into a WeightSource with layers.

The fixtures in tests/fixtures/keras/ were written once by real Keras 3.15 + TensorFlow 2.21
(tools/make_keras_fixtures.py); expected.json / expected.npz are Keras's own
`model.layers[i].weights`. Every format is checked for layer names, order, model.layers
positions, class names, roles, dtypes and bit-exact values. The slow test builds the model
afresh with TensorFlow (a subprocess, KERAS_BACKEND=tensorflow) and checks newly written files.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile
from typing import Any

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="the Keras readers need h5py (extra tf)")

from modelport.errors import FormatError  # noqa: E402
from modelport.formats.tf.h5_order import creation_order  # noqa: E402
from modelport.formats.tf.open import open_weights  # noqa: E402
from modelport.formats.tf.source import WeightSource  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "keras"
FILES = {
    "keras3-weights-h5": "model.weights.h5",
    "keras-archive": "model.keras",
    "tf2-object-checkpoint": "ckpt",
    "keras2-model": "keras2_model.h5",
    "keras2-weights": "keras2_weights.h5",
    "keras2-style-checkpoint": "keras2_style_ckpt",
    "checkpoint-with-optimizer": "ckpt_opt",
}
# What each file knows: class names, user names, configs.
KNOWS_CLASS = {"keras3-weights-h5", "keras-archive", "keras2-model"}
KNOWS_CONFIG = {"keras-archive", "keras2-model"}


def load_expected(folder: pathlib.Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta = json.loads((folder / "expected.json").read_text())
    with np.load(folder / "expected.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return meta, arrays


def expected_role(layer: dict[str, Any], var: dict[str, Any], kind: str) -> str:
    """Keras's variable name is the role, except that a DepthwiseConv2D's `kernel` is called
    `depthwise_kernel` whenever the reader knows the class (keras_layers' docstring)."""
    name = var["keras_name"]
    knows = kind in KNOWS_CLASS
    if name == "kernel" and layer["class_name"] == "DepthwiseConv2D" and knows:
        return "depthwise_kernel"
    return name


def check_source(source: WeightSource, kind: str, folder: pathlib.Path) -> None:
    meta, arrays = load_expected(folder)
    want = meta["layers"]
    assert source.layers is not None
    assert [layer.name for layer in source.layers] == [w["name"] for w in want]
    assert [layer.index for layer in source.layers] == [w["index"] for w in want]
    for got, exp in zip(source.layers, want, strict=True):
        if kind in KNOWS_CLASS:
            assert got.class_name == exp["class_name"], got.name
        else:
            assert got.class_name == "", got.name
        assert bool(got.config) == (kind in KNOWS_CONFIG), got.name
        if got.config:
            assert got.config["name"] == exp["name"].rsplit("/", 1)[-1]
        assert len(got.variables) == len(exp["variables"]), got.name
        for var, ev in zip(got.variables, exp["variables"], strict=True):
            ref = arrays[ev["npz"]]
            assert var.role == expected_role(exp, ev, kind), (got.name, var.name)
            assert var.layer == got.name
            assert str(var.value.dtype) == ev["dtype"] == str(ref.dtype)
            assert var.shape == tuple(ev["shape"])
            assert var.value.tobytes() == ref.tobytes(), (got.name, var.name)
            assert source.variables[var.name] is var
    assert len(source.variables) == sum(len(w["variables"]) for w in want)


@pytest.mark.parametrize("kind", list(FILES))
def test_fixture_reads_as_keras_wrote_it(kind: str) -> None:
    source = open_weights(FIXTURES / FILES[kind])
    assert source.kind == {"keras2-model": "keras2-h5", "keras2-weights": "keras2-h5",
                           "keras2-style-checkpoint": "tf2-object-checkpoint",
                           "checkpoint-with-optimizer": "tf2-object-checkpoint"}.get(kind, kind)
    check_source(source, kind, FIXTURES)


def test_names_come_from_where_the_file_keeps_them() -> None:
    names = {kind: open_weights(FIXTURES / f).names_from for kind, f in FILES.items()}
    assert names == {"keras3-weights-h5": "h5 name attributes", "keras-archive": "config.json",
                     "tf2-object-checkpoint": "object graph",
                     "keras2-model": "h5 layer_names", "keras2-weights": "h5 layer_names",
                     "keras2-style-checkpoint": "object graph",
                     "checkpoint-with-optimizer": "object graph"}


def test_weights_h5_without_name_attributes_is_matched_by_position(tmp_path) -> None:
    """Keras 3 before the `name` attributes kept only class-based group names: the order must
    still be model.layers order (not h5py's sorted order), names say "positions"."""
    path = tmp_path / "old.weights.h5"
    shutil.copy(FIXTURES / "model.weights.h5", path)
    with h5py.File(path, "r+") as f:
        f.visititems(lambda n, o: o.attrs.__delitem__("name") if "name" in o.attrs else None)
    source = open_weights(path)
    meta, _ = load_expected(FIXTURES)
    assert source.names_from == "positions"
    keys = [layer.variables[0].name.split("/vars/")[0] for layer in source.layers or []]
    assert keys == ["layers/conv2d", "layers/conv2d_1", "layers/batch_normalization",
                    "layers/depthwise_conv2d", "layers/separable_conv2d",
                    "layers/sequential/layers/conv2d",
                    "layers/sequential/layers/batch_normalization", "layers/conv2d_transpose",
                    "layers/conv2d_2", "layers/conv2d_3", "layers/conv2d_4", "layers/dense",
                    "layers/dense_1"]
    assert [layer.class_name for layer in source.layers or []] == [
        w["class_name"] for w in meta["layers"]]
    assert all(layer.index is None for layer in source.layers or [])


def test_h5py_sorted_order_is_the_trap_and_the_heap_order_is_keras_order() -> None:
    path = FIXTURES / "model.weights.h5"
    meta, _ = load_expected(FIXTURES)
    with h5py.File(path, "r") as f, open(path, "rb") as fh:
        def read(offset: int, length: int) -> bytes:
            fh.seek(offset)
            return fh.read(length)
        sorted_names = [f["layers"][k]["vars"].attrs["name"] for k in f["layers"]]
        order = creation_order(f["layers"], read)
        assert order is not None
        ordered_names = [f["layers"][k]["vars"].attrs["name"] for k in order]
    assert sorted_names != meta["model_layers"]
    assert ordered_names == meta["model_layers"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_tf_keras_weight_names_with_device_suffix(tmp_path) -> None:
    """tf.keras names a weight `conv_a/kernel:0` and a nested model's weights by the inner
    layer only (`blk_conv/kernel:0` in group `block`): the same file rewritten with those
    names reads into the same layers and roles."""
    path = tmp_path / "tf_keras.h5"
    with h5py.File(FIXTURES / "keras2_weights.h5", "r") as src, h5py.File(path, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for layer in map(_text, src.attrs["layer_names"]):
            group = dst.create_group(layer)
            names = []
            for w in map(_text, src[layer].attrs["weight_names"]):
                rel = w[len(layer) + 1:] if w.startswith(layer + "/") else w
                new = (rel if "/" in rel else f"{layer}/{rel}") + ":0"
                group[new] = src[layer][w][()]
                names.append(new.encode())
            group.attrs["weight_names"] = np.array(names)
    source = open_weights(path)
    check_source(source, "keras2-weights", FIXTURES)
    assert "block/blk_conv/kernel:0" in source.variables


def test_checkpoint_keys_do_not_say_the_owner() -> None:
    """With the optimizer saved, a kernel's key is its shortest path,
    optimizer/_trainable_variables/<k>: the layer comes from the object graph, and the
    optimizer's own state is left out with a note."""
    source = open_weights(FIXTURES / "ckpt_opt")
    conv_a = (source.layers or [])[0]
    assert conv_a.name == "conv_a"
    assert conv_a.variables[0].name.startswith("optimizer/_trainable_variables/")
    assert any(n.startswith("not read: ") and "optimizer" in n for n in source.notes)


def test_checkpoint_positions_sort_by_integer() -> None:
    source = open_weights(FIXTURES / "ckpt")
    keys = [layer.variables[0].name for layer in source.layers or []]
    positions = [int(k.split("/")[2]) for k in keys]
    assert positions == sorted(positions) and max(positions) >= 10
    assert sorted(keys) != keys  # as strings, 10..14 would sort before 2


def test_bfloat16_and_float16_keep_their_dtype_and_bits() -> None:
    pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes (extra tf)")
    source = open_weights(FIXTURES / "dtypes.weights.h5")
    want = json.loads((FIXTURES / "dtypes_expected.json").read_text())
    with np.load(FIXTURES / "dtypes_expected.npz", allow_pickle=False) as npz:
        bits = {k: npz[k] for k in npz.files}
    got = [(layer.name, var) for layer in source.layers or [] for var in layer.variables]
    assert [(name, var.role) for name, var in got] == [(w["layer"], w["keras_name"])
                                                       for w in want]
    for (_, var), w in zip(got, want, strict=True):
        assert str(var.value.dtype) == w["dtype"]
        assert var.shape == tuple(w["shape"])
        assert var.value.view(np.uint16).tobytes() == bits[w["npz"]].tobytes()


# ------------------------------------------------------------------------------ bad input


def one_line_error(path: pathlib.Path, *fragments: str) -> str:
    with pytest.raises(FormatError) as info:
        open_weights(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def test_hdf5_that_is_not_keras(tmp_path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(6.0).reshape(2, 3)
        f["group/y"] = np.ones(4, "int32")
    one_line_error(path, "not Keras weights")


@pytest.mark.parametrize("size", [0, 100, 3000, 40000])
def test_truncated_h5(tmp_path, size: int) -> None:
    path = tmp_path / "cut.weights.h5"
    path.write_bytes((FIXTURES / "model.weights.h5").read_bytes()[:size])
    one_line_error(path)


def test_zip_that_is_not_a_keras_archive(tmp_path) -> None:
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
    one_line_error(path, "not a .keras archive", "model.weights.h5")


def test_sharded_keras_weights_are_refused_by_name(tmp_path) -> None:
    path = tmp_path / "model.weights.json"
    path.write_text(json.dumps({"metadata": {}, "weight_map": {}}))
    one_line_error(path, "sharded Keras 3 weights")


def test_keras_suffix_that_is_not_a_zip(tmp_path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(b"not a zip at all")
    one_line_error(path, "not a zip")


def _rewrite_config(src: pathlib.Path, dst: pathlib.Path, edit: Any) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(info, data)


def test_keras_config_naming_a_layer_the_weights_lack(tmp_path) -> None:
    def add_conv(config: dict[str, Any]) -> None:
        layers = config["config"]["layers"]
        ghost = json.loads(json.dumps(next(e for e in layers if e["name"] == "c3")))
        ghost["name"] = ghost["config"]["name"] = "ghost"
        layers.append(ghost)
    path = tmp_path / "ghost.keras"
    _rewrite_config(FIXTURES / "model.keras", path, add_conv)
    one_line_error(path, "'ghost'", "layers/conv2d_5")


def test_keras_config_missing_a_layer_the_weights_have(tmp_path) -> None:
    def drop_fc2(config: dict[str, Any]) -> None:
        config["config"]["layers"] = [e for e in config["config"]["layers"]
                                      if e["name"] != "fc2"]
    path = tmp_path / "short.keras"
    _rewrite_config(FIXTURES / "model.keras", path, drop_fc2)
    one_line_error(path, "layers/dense_1", "does not name")


def test_keras_config_that_is_not_json(tmp_path) -> None:
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(FIXTURES / "model.keras") as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, b"{nope" if info.filename == "config.json" else zin.read(info))
    one_line_error(path, "config.json is not JSON")


def test_keras_archive_declared_size_checked_before_reading(tmp_path, monkeypatch) -> None:
    """A zip bomb declares its size: refused against the memory limit before inflating."""
    monkeypatch.setenv("MODELPORT_MEMORY_LIMIT", "20K")
    path = tmp_path / "big.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\0" * 10_000_000)
    assert path.stat().st_size < 50_000
    one_line_error(path, "model.weights.h5 declares 10.0 MB", "more than the 20.0 KB")


@pytest.mark.parametrize("name", ["model.weights.h5", "keras2_model.h5", "model.keras"])
def test_flipped_bytes_read_or_fail_in_one_line(tmp_path, name: str) -> None:
    """Random byte flips (fixed seed): each read either succeeds (HDF5 keeps no checksum of
    raw data) or is one FormatError line; nothing else escapes."""
    import random

    data = (FIXTURES / name).read_bytes()
    rng = random.Random(11)
    path = tmp_path / name
    outcomes = set()
    for _ in range(60):
        mutated = bytearray(data)
        for _ in range(rng.choice([1, 2, 8])):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        path.write_bytes(bytes(mutated))
        try:
            open_weights(path)
            outcomes.add("read")
        except FormatError as exc:
            assert "\n" not in str(exc)
            outcomes.add("error")
    assert "error" in outcomes


def test_keras_archive_damaged_member(tmp_path) -> None:
    path = tmp_path / "damaged.keras"
    raw = bytearray((FIXTURES / "model.keras").read_bytes())
    at = raw.find(b"\x89HDF")
    raw[at + 2000:at + 2100] = b"\xff" * 100  # CRC mismatch inside the stored weights
    path.write_bytes(bytes(raw))
    one_line_error(path)


# ------------------------------------------------------------------- against real Keras + TF

FRESH = """
import sys, pathlib
sys.path.insert(0, {tools!r})
import make_keras_fixtures as m
m.write_all(m.build_model(seed=7), pathlib.Path({folder!r}))
"""


@pytest.mark.slow
def test_fresh_model_from_tensorflow(tmp_path) -> None:
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed (extra tensorflow)")
    pytest.importorskip("keras", reason="Keras 3 is not installed (extra keras)")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    code = FRESH.format(tools=str(ROOT / "tools"), folder=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _, fresh = load_expected(tmp_path)
    _, shipped = load_expected(FIXTURES)
    assert fresh["L00_0"].tobytes() != shipped["L00_0"].tobytes()  # another seed: new values
    for kind, name in FILES.items():
        check_source(open_weights(tmp_path / name), kind, tmp_path)


# ------------------------------------------------------------------------- the small pieces


def test_roles_follow_each_class_build_order() -> None:
    from modelport.formats.tf.keras_layers import class_from_group, roles, to_snake_case

    assert roles("Conv2D", 2) == ["kernel", "bias"]
    assert roles("Conv2D", 1) == ["kernel"]
    assert roles("DepthwiseConv2D", 2) == ["depthwise_kernel", "bias"]
    assert roles("SeparableConv2D", 2) == ["depthwise_kernel", "pointwise_kernel"]
    assert roles("BatchNormalization", 3, {"scale": False}) == [
        "beta", "moving_mean", "moving_variance"]
    assert roles("BatchNormalization", 3, {"center": False}) == [
        "gamma", "moving_mean", "moving_variance"]
    assert roles("BatchNormalization", 3) == [None, None, None]  # gamma or beta: unknown
    assert roles("BatchNormalization", 2) == ["moving_mean", "moving_variance"]
    assert roles("LSTM", 3) == ["kernel", "recurrent_kernel", "bias"]
    assert roles("MyLayer", 2) == [None, None]
    # the group names real Keras 3 files use (see the fixtures)
    assert [to_snake_case(c) for c in ("Conv2DTranspose", "ReLU", "PReLU", "DepthwiseConv2D")
            ] == ["conv2d_transpose", "re_lu", "p_re_lu", "depthwise_conv2d"]
    assert class_from_group("conv2d_transpose_3") == "Conv2DTranspose"
    assert class_from_group("batch_normalization_12") == "BatchNormalization"
    assert class_from_group("my_block") == ""


def test_unreadable_creation_order_falls_back_to_counters(monkeypatch) -> None:
    import modelport.formats.tf.h5_order as h5_order

    monkeypatch.setattr(h5_order, "_heap_names", lambda *a: None)
    source = open_weights(FIXTURES / "model.weights.h5")
    assert any("order across classes is unknown" in n for n in source.notes)
    convs = [layer.variables[0].name.split("/vars/")[0] for layer in source.layers or []
             if layer.variables[0].name.startswith("layers/conv2d")]
    assert convs == ["layers/conv2d", "layers/conv2d_1", "layers/conv2d_2", "layers/conv2d_3",
                     "layers/conv2d_4", "layers/conv2d_transpose"]


def test_tracked_creation_order_is_used_as_is(tmp_path) -> None:
    path = tmp_path / "tracked.h5"
    with h5py.File(path, "w", track_order=True) as f:
        for name in ("zeta", "alpha", "conv2d_10", "conv2d_2"):
            f.create_group(name)
    with h5py.File(path, "r") as f, open(path, "rb") as fh:
        assert creation_order(f, lambda o, n: (fh.seek(o), fh.read(n))[1]) == [
            "zeta", "alpha", "conv2d_10", "conv2d_2"]
