"""Data layers (ImageData, Data/LMDB, HDF5Data) against real Caffe outputs (golden/transform)
and the HDF5 read order the training goldens document (golden/solver/README.md)."""

from __future__ import annotations

import itertools
import pathlib
import shutil

import cv2
import h5py
import lmdb
import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.errors import ConfigError, LayerError
from modelport.formats.caffe import caffe_pb2
from modelport.layers.registry import layer_types
from modelport.pipeline import parse_net, read_net
from modelport.train.data import (
    data_top_shapes,
    make_batches,
    make_loader,
    net_batches,
    net_data_shapes,
)

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"
TRANSFORM = GOLDEN / "transform"
SOLVER = GOLDEN / "solver"
IMAGES = TRANSFORM / "images"
ORDER = ["img_a.png", "img_b.png", "img_c.jpg", "img_d.png"]
# A JPEG row may differ by one grey level (times the scale) from Caffe's: libjpeg builds differ
# in IDCT / chroma upsampling (golden/transform README). PNG rows must be exact.
JPEG_LEVELS = 1.0


def _check_golden(batch: dict[str, torch.Tensor], case: pathlib.Path, prefix: str,
                  names: list[str], scale: float) -> None:
    ref = np.load(case / f"{prefix}data.npy")
    ours = batch["data"].numpy()
    assert ours.shape == ref.shape and ours.dtype == np.float32
    for i, name in enumerate(names):
        diff = float(np.abs(ours[i] - ref[i]).max())
        allowed = JPEG_LEVELS * scale if name.endswith(".jpg") else 0.0
        assert diff <= allowed + 1e-6 * float(np.abs(ref[i]).max()), f"{name}: {diff}"
    assert np.array_equal(batch["label"].numpy(), np.load(case / f"{prefix}label.npy"))


@pytest.mark.parametrize("case, names, scale", [
    ("imagedata_test", ORDER, 0.017),
    ("imagedata_meanfile", ORDER[:2], 0.017),
    ("imagedata_gray", ORDER, 0.017),
])
def test_imagedata_golden(case: str, names: list[str], scale: float) -> None:
    folder = TRANSFORM / case
    net = read_net(folder / "net.prototxt", "test")
    batch = next(make_batches(net.layers[0], "test", base_dir=folder))
    _check_golden(batch, folder, "", names, scale)


@pytest.mark.parametrize("prefix, proto, scale", [
    ("raw_", "net_raw.prototxt", 1.0),
    ("encoded_", "net_encoded.prototxt", 1 / 256),
])
def test_lmdb_golden(prefix: str, proto: str, scale: float) -> None:
    folder = TRANSFORM / "lmdb_data"
    net = read_net(folder / proto, "test")
    batch = next(make_batches(net.layers[0], "test", base_dir=folder))
    _check_golden(batch, folder, prefix, ORDER, scale)


def test_top_shapes_for_building_the_net() -> None:
    folder = TRANSFORM / "imagedata_test"
    net = read_net(folder / "net.prototxt", "test")
    assert net_data_shapes(net, folder) == {"data": (4, 3, 227, 227), "label": (4,)}
    enc = read_net(TRANSFORM / "lmdb_data" / "net_encoded.prototxt", "test")
    assert data_top_shapes(enc.layers[0], "test", TRANSFORM / "lmdb_data") == {
        "data": (4, 3, 112, 112), "label": (4,)}


def test_data_layers_are_registered_as_sources() -> None:
    assert {"Data", "ImageData", "HDF5Data", "WindowData"} <= set(layer_types(role="data"))


def test_imagedata_net_runs_on_its_batches(tmp_path: pathlib.Path) -> None:
    shutil.copytree(IMAGES, tmp_path / "images")
    (tmp_path / "train.txt").write_text("images/img_b.png 1\nimages/img_a.png 0\n")
    net = parse_net("""
        layer { name: "data" type: "ImageData" top: "data" top: "label"
                transform_param { crop_size: 5 mirror: true mean_value: 100 }
                image_data_param { source: "train.txt" batch_size: 2 new_height: 9
                                   new_width: 11 } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 2 kernel_h: 3 kernel_w: 2
                  weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
    """, phase="train")
    module = build_module(net, net_data_shapes(net, tmp_path), allow_missing_weights=True)
    batch = next(net_batches(net, tmp_path, seed=1))
    assert batch["data"].shape == (2, 3, 5, 5) and batch["label"].tolist() == [1.0, 0.0]
    out = module(**batch)  # the data layer's tops are the module's inputs
    assert isinstance(out, dict) and out["conv"].shape == (2, 2, 3, 4)


# ------------------------------------------------------------------ ImageData TRAIN behaviour

def _image_list(tmp_path: pathlib.Path, n: int, body: str = "") -> object:
    """n distinct 12x10 images whose pixels encode their index, and an ImageData layer."""
    lines = []
    for i in range(n):
        img = np.full((12, 10, 3), i * 10, dtype=np.uint8)
        img[:, :, 0] = np.arange(10, dtype=np.uint8)[None, :]  # column index in blue
        img[:, :, 1] = np.arange(12, dtype=np.uint8)[:, None]  # row index in green
        cv2.imwrite(str(tmp_path / f"im{i}.png"), img)
        lines.append(f"im{i}.png {i}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    net = parse_net(f"""
        layer {{ name: "data" type: "ImageData" top: "data" top: "label"
                 transform_param {{ crop_size: 4 mirror: true }}
                 image_data_param {{ source: "list.txt" batch_size: 3 {body} }} }}
    """, phase="train")
    return net.layers[0]


def test_train_crops_and_mirrors_are_random_and_seeded(tmp_path: pathlib.Path) -> None:
    layer = _image_list(tmp_path, 5)
    batches = list(itertools.islice(make_batches(layer, "train", tmp_path, seed=7), 40))
    again = list(itertools.islice(make_batches(layer, "train", tmp_path, seed=7), 40))
    other = next(make_batches(layer, "train", tmp_path, seed=8))
    assert all(torch.equal(a["data"], b["data"]) for a, b in zip(batches, again))
    assert not torch.equal(batches[0]["data"], other["data"])
    offsets, mirrors = set(), 0
    for b in batches:
        for item in b["data"].numpy():
            cols, rows = item[0, 0], item[1, :, 0]
            mirrored = cols[0] > cols[-1]
            mirrors += mirrored
            offsets.add((int(rows[0]), int(min(cols[0], cols[-1]))))
            assert np.array_equal(np.sort(cols), np.arange(cols.min(), cols.min() + 4))
    # Rand(H - crop + 1) x Rand(W - crop + 1) = 9 x 7 offsets; mirror is a fair coin.
    # 120 draws over 63 offsets cover ~55 of them on average.
    assert offsets <= {(h, w) for h in range(9) for w in range(7)} and len(offsets) > 40
    assert 35 < mirrors < 85
    labels = torch.cat([b["label"] for b in batches]).tolist()
    assert labels == [float(k % 5) for k in range(120)]  # sequential with wrap-around


def test_shuffle_permutes_every_pass_and_rand_skip_starts_inside(tmp_path: pathlib.Path) -> None:
    layer = _image_list(tmp_path, 6, "shuffle: true")
    labels = torch.cat([b["label"] for b in itertools.islice(
        make_batches(layer, "train", tmp_path, seed=3), 8)]).tolist()
    passes = [labels[i:i + 6] for i in range(0, 24, 6)]
    assert all(sorted(p) == [0.0, 1, 2, 3, 4, 5] for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # reshuffled after each pass
    skip_layer = _image_list(tmp_path, 6, "rand_skip: 5")
    starts = {next(make_batches(skip_layer, "train", tmp_path, seed=s))["label"][0].item()
              for s in range(40)}
    assert starts <= {0.0, 1, 2, 3, 4} and len(starts) > 2


def test_dataloader_workers_give_the_same_batches(tmp_path: pathlib.Path) -> None:
    layer = _image_list(tmp_path, 5, "shuffle: true")
    direct = list(itertools.islice(make_batches(layer, "train", tmp_path, seed=11), 6))
    loader = make_loader(layer, "train", tmp_path, seed=11, num_workers=2)
    pooled = list(itertools.islice(iter(loader), 6))
    for a, b in zip(direct, pooled):
        assert torch.equal(a["data"], b["data"]) and torch.equal(a["label"], b["label"])


# ------------------------------------------------------------------ HDF5Data read order

def _hdf5_layer(source: str, batch: int, tops: str = 'top: "data" top: "label"',
                extra: str = "") -> object:
    return parse_net(f"""
        layer {{ name: "h5" type: "HDF5Data" {tops} {extra}
                 hdf5_data_param {{ source: "{source}" batch_size: {batch} }} }}
    """, phase="train").layers[0]


@pytest.mark.parametrize("batch", [4, 6])  # 16 rows: 6 makes batches straddle the wrap
def test_hdf5_sequential_with_wraparound_as_solver_readme(batch: int) -> None:
    case = SOLVER / "sgd_step_lrmult"
    with h5py.File(case / "train.h5", "r") as fh:
        data, label = fh["data"][()], fh["label"][()]
    n = data.shape[0]
    stream = make_batches(_hdf5_layer("train_h5_list.txt", batch), "train", case)
    for p in range(9):  # forward pass p uses rows p*batch .. p*batch+batch-1 modulo n
        rows = [(p * batch + i) % n for i in range(batch)]
        b = next(stream)
        assert b["data"].shape == (batch, 3, 8, 8) and b["label"].shape == (batch,)
        assert np.array_equal(b["data"].numpy(), data[rows])
        assert np.array_equal(b["label"].numpy(), label[rows])


def test_hdf5_straddles_files_and_converts_to_float32(tmp_path: pathlib.Path) -> None:
    rows = {"a.h5": 5, "b.h5": 3}
    start = 0
    for name, count in rows.items():
        with h5py.File(tmp_path / name, "w") as fh:
            fh["x"] = np.arange(start, start + count, dtype=np.float64)[:, None] * [1, -1]
            fh["y"] = np.arange(start, start + count, dtype=np.int32)
        start += count
    (tmp_path / "list.txt").write_text("a.h5\n  b.h5  \n")
    layer = _hdf5_layer("list.txt", 3, 'top: "x" top: "y"')
    assert data_top_shapes(layer, "train", tmp_path) == {"x": (3, 2), "y": (3,)}
    got = [next(s) for s in [make_batches(layer, "train", tmp_path)] for _ in range(6)]
    ys = torch.cat([b["y"] for b in got]).tolist()
    assert ys == [float(k % 8) for k in range(18)]
    assert all(b["x"].dtype == torch.float32 for b in got)
    assert torch.equal(got[1]["x"][:, 1], -got[1]["y"])


def test_hdf5_shuffle_visits_every_row_once_per_pass(tmp_path: pathlib.Path) -> None:
    with h5py.File(tmp_path / "d.h5", "w") as fh:
        fh["v"] = np.arange(10, dtype=np.float32)
    (tmp_path / "l.txt").write_text("d.h5\n")
    layer = parse_net("""layer { name: "h5" type: "HDF5Data" top: "v"
        hdf5_data_param { source: "l.txt" batch_size: 5 shuffle: true } }""",
                      phase="train").layers[0]
    vals = torch.cat([next(s)["v"] for s in [make_batches(layer, "train", tmp_path, 4)]
                      for _ in range(6)]).tolist()
    passes = [vals[i:i + 10] for i in range(0, 30, 10)]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert passes[0] != list(range(10)) and len({tuple(p) for p in passes}) > 1


# ------------------------------------------------------------------ errors

def _one_layer(text: str) -> object:
    return parse_net(text, phase="train").layers[0]


def test_window_data_is_refused() -> None:
    layer = _one_layer('layer { name: "w" type: "WindowData" top: "data" top: "label" '
                       'window_data_param { source: "w.txt" batch_size: 2 } }')
    with pytest.raises(LayerError, match="WindowData .* not supported"):
        make_batches(layer)


def test_default_backend_is_leveldb(tmp_path: pathlib.Path) -> None:
    """Without `backend`, Caffe opens a LevelDB: an LMDB folder gets the one-line fix (the
    LevelDB reader itself is tested in test_leveldb.py)."""
    layer = _one_layer('layer { name: "d" type: "Data" top: "data" '
                       'data_param { source: "db" batch_size: 2 } }')
    (tmp_path / "db").mkdir()
    with pytest.raises(LayerError, match="LEVELDB source .* is not a LevelDB"):
        make_batches(layer, base_dir=tmp_path)
    env = lmdb.open(str(tmp_path / "db"))
    env.close()
    with pytest.raises(LayerError, match="add `backend: LMDB`"):
        make_batches(layer, base_dir=tmp_path)


def test_lmdb_float_data_and_bad_records(tmp_path: pathlib.Path) -> None:
    env = lmdb.open(str(tmp_path / "db"))
    with env.begin(write=True) as txn:
        d = caffe_pb2.Datum(channels=2, height=3, width=4, label=7)
        d.float_data.extend(np.linspace(-1, 1, 24).tolist())
        txn.put(b"0", d.SerializeToString())
        txn.put(b"1", b"\xff\xff\xff")
    env.close()
    layer = _one_layer('layer { name: "d" type: "Data" top: "data" top: "label" '
                       'transform_param { scale: 2 } '
                       'data_param { source: "db" backend: LMDB batch_size: 1 } }')
    stream = make_batches(layer, base_dir=tmp_path)
    first = next(stream)
    assert first["label"].tolist() == [7.0]
    expected = (np.linspace(-1, 1, 24).astype(np.float32) * np.float32(2)).reshape(1, 2, 3, 4)
    assert np.array_equal(first["data"].numpy(), expected)
    with pytest.raises(LayerError, match="record '1'.*not a serialized Datum"):
        next(stream)


def test_missing_files_name_the_layer_and_the_fix(tmp_path: pathlib.Path) -> None:
    layer = _one_layer('layer { name: "img" type: "ImageData" top: "data" top: "label" '
                       'image_data_param { source: "nope.txt" batch_size: 1 } }')
    with pytest.raises(LayerError, match="layer 'img'.*'.*nope.txt' does not exist.*base_dir"):
        make_batches(layer, base_dir=tmp_path)
    (tmp_path / "list.txt").write_text("missing.png 0\n")
    layer = _one_layer('layer { name: "img" type: "ImageData" top: "data" top: "label" '
                       'image_data_param { source: "list.txt" batch_size: 1 } }')
    with pytest.raises(LayerError, match="line 1 of .*missing.png' does not exist"):
        next(make_batches(layer, base_dir=tmp_path))
    (tmp_path / "bad.txt").write_text("no_label_here\n")
    layer = _one_layer('layer { name: "img" type: "ImageData" top: "data" top: "label" '
                       'image_data_param { source: "bad.txt" batch_size: 1 } }')
    with pytest.raises(LayerError, match="line 1 .* is not 'path label'"):
        make_batches(layer, base_dir=tmp_path)


def test_items_of_different_sizes_cannot_share_a_batch(tmp_path: pathlib.Path) -> None:
    shutil.copy(IMAGES / "img_a.png", tmp_path)
    shutil.copy(IMAGES / "img_b.png", tmp_path)
    (tmp_path / "list.txt").write_text("img_a.png 0\nimg_b.png 1\n")
    layer = _one_layer('layer { name: "img" type: "ImageData" top: "data" top: "label" '
                       'image_data_param { source: "list.txt" batch_size: 2 } }')
    with pytest.raises(LayerError, match="img_b.png' gives a 3x240x180 item.*first item"):
        next(make_batches(layer, base_dir=tmp_path))


def test_hdf5_errors(tmp_path: pathlib.Path) -> None:
    with h5py.File(tmp_path / "d.h5", "w") as fh:
        fh["data"] = np.zeros((4, 2), dtype=np.float32)
        fh["label"] = np.zeros(3, dtype=np.float32)
    (tmp_path / "l.txt").write_text("d.h5\n")
    with pytest.raises(LayerError, match="no dataset 'target'"):
        make_batches(_hdf5_layer("l.txt", 2, 'top: "data" top: "target"'), base_dir=tmp_path)
    with pytest.raises(LayerError, match="'label' has 3 rows but 'data' has 4"):
        make_batches(_hdf5_layer("l.txt", 2), base_dir=tmp_path)
    with pytest.raises(LayerError, match="does not transform data"):
        make_batches(_hdf5_layer("l.txt", 2, 'top: "data"', "transform_param { scale: 2 }"),
                     base_dir=tmp_path)


def test_seed_must_be_non_negative() -> None:
    folder = TRANSFORM / "imagedata_test"
    layer = read_net(folder / "net.prototxt", "test").layers[0]
    with pytest.raises(ConfigError, match="seed"):
        make_batches(layer, "test", folder, seed=-1)


def test_v1_data_params_act_as_transform_param(tmp_path: pathlib.Path) -> None:
    # V1 nets keep crop_size/mirror/scale/mean_file in data_param; Caffe's upgrade moves them
    # into transform_param.
    from modelport.train.data import effective_transform_param

    net = parse_net('layers { name: "d" type: DATA top: "data" top: "label" data_param { '
                    'source: "db" backend: LMDB batch_size: 2 crop_size: 5 mirror: true '
                    'scale: 0.5 } }', phase="train")
    param = effective_transform_param(net.layers[0])
    assert (param.crop_size, param.mirror, param.scale) == (5, True, 0.5)
    assert not param.HasField("mean_file")


def test_image_list_paths_may_contain_spaces(tmp_path: pathlib.Path) -> None:
    # Caffe 1.0 splits each line at its last space, so "my image.png 3" is path + label.
    shutil.copy(IMAGES / "img_d.png", tmp_path / "my image.png")
    (tmp_path / "list.txt").write_text("my image.png 3\r\n")
    layer = _one_layer('layer { name: "img" type: "ImageData" top: "data" top: "label" '
                       'transform_param { crop_size: 100 } '
                       'image_data_param { source: "list.txt" batch_size: 2 is_color: false } }')
    batch = next(make_batches(layer, "test", tmp_path))
    assert batch["label"].tolist() == [3.0, 3.0] and batch["data"].shape == (2, 1, 100, 100)
    img = cv2.imread(str(IMAGES / "img_d.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(batch["data"][0, 0].numpy(), img[25:125, 35:135].astype(np.float32))


def test_lmdb_loader_workers_open_their_own_environment() -> None:
    folder = TRANSFORM / "lmdb_data"
    layer = read_net(folder / "net_raw.prototxt", "test").layers[0]
    direct = list(itertools.islice(make_batches(layer, "test", folder), 3))
    pooled = list(itertools.islice(iter(make_loader(layer, "test", folder, num_workers=2)), 3))
    for a, b in zip(direct, pooled):
        assert torch.equal(a["data"], b["data"]) and torch.equal(a["label"], b["label"])
    assert torch.equal(direct[0]["data"], direct[1]["data"])  # 4 records, batch 4: wraps


def test_net_batches_merge_every_data_layer(tmp_path: pathlib.Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as fh:
        fh["x"] = np.arange(6, dtype=np.float32)
    with h5py.File(tmp_path / "b.h5", "w") as fh:
        fh["y"] = -np.arange(4, dtype=np.float32)
    (tmp_path / "a.txt").write_text("a.h5")
    (tmp_path / "b.txt").write_text("b.h5")
    net = parse_net("""
        layer { name: "a" type: "HDF5Data" top: "x"
                hdf5_data_param { source: "a.txt" batch_size: 4 } }
        layer { name: "b" type: "HDF5Data" top: "y"
                hdf5_data_param { source: "b.txt" batch_size: 3 } }
    """, phase="train")
    stream = net_batches(net, tmp_path)
    first, second = next(stream), next(stream)
    assert first["x"].tolist() == [0, 1, 2, 3] and first["y"].tolist() == [0, -1, -2]
    assert second["x"].tolist() == [4, 5, 0, 1] and second["y"].tolist() == [-3, 0, -1]
    loader = make_loader(net.layers[0], "train", tmp_path)
    assert next(iter(loader))["x"].tolist() == next(iter(loader))["x"].tolist() == [0, 1, 2, 3]


def test_preprocess_for_layer_follows_the_test_pipeline() -> None:
    from modelport.train.data import preprocess_for_layer

    for case in ("imagedata_test", "imagedata_meanfile", "imagedata_gray"):
        folder = TRANSFORM / case
        layer = read_net(folder / "net.prototxt", "test").layers[0]
        ref = np.load(folder / "data.npy")
        out = preprocess_for_layer(IMAGES / "img_b.png", layer, folder)  # b is row 1 everywhere
        assert out.shape == (1, *ref.shape[1:])
        assert np.array_equal(out[0], ref[1]), case
    raw = read_net(TRANSFORM / "lmdb_data" / "net_encoded.prototxt", "test").layers[0]
    ref = np.load(TRANSFORM / "lmdb_data" / "encoded_data.npy")
    assert np.array_equal(preprocess_for_layer(IMAGES / "img_d.png", raw)[0], ref[3])
