"""Data layers over LevelDB (Caffe's default `backend`), read through plyvel.

The golden case: the Datums Caffe's own Data layer read from an LMDB (golden/transform/lmdb_data)
are copied into a LevelDB, and the LEVELDB layer must give Caffe's blobs. The siamese case
writes a LevelDB as BVLC's convert_mnist_siamese_data does (keys `%08d`, 2-channel 28x28 uint8
Datums, label = same class) and trains a siamese net from it.
"""

from __future__ import annotations

import itertools
import pathlib
import sys

import lmdb
import numpy as np
import pytest
import torch

from modelport.errors import LayerError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.prototxt import read_net_text
from modelport.pipeline import parse_net
from modelport.train.data import make_batches, make_loader
from modelport.train.data_leveldb import close_all
from modelport.train.data_lmdb import LmdbRecords
from modelport.train.solver import Solver

plyvel = pytest.importorskip(
    "plyvel", reason="plyvel (LevelDB binding, in the `data` extra) is not installed: "
                     "pip install 'modelport[data]'")

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "transform" / "lmdb_data"


def _lmdb_records(path: pathlib.Path) -> list[tuple[bytes, bytes]]:
    # Through the data layer's own per-process environment: lmdb refuses a second open of one
    # environment in a process, and another test in this worker may have read this golden LMDB.
    records = LmdbRecords(str(path))
    out = []
    for key in records.keys():
        value = records.get(key)
        assert value is not None
        out.append((key, value))
    return out


def _write_leveldb(path: pathlib.Path, records: list[tuple[bytes, bytes]]) -> None:
    db = plyvel.DB(str(path), create_if_missing=True, error_if_exists=True)
    for key, value in records:
        db.put(key, value)
    db.close()


def _data_layer(source: str, batch: int, extra: str = "", backend: str = "") -> object:
    return parse_net(f"""
        layer {{ name: "d" type: "Data" top: "data" top: "label" {extra}
                 data_param {{ source: "{source}" batch_size: {batch} {backend} }} }}
    """, phase="train").layers[0]


@pytest.mark.parametrize("prefix, folder", [("raw_", "lmdb_raw"),
                                            ("encoded_", "lmdb_encoded")])
def test_leveldb_gives_caffes_blobs(tmp_path: pathlib.Path, prefix: str, folder: str) -> None:
    """The Datums of Caffe's golden LMDB, moved to a LevelDB, give Caffe's batch."""
    _write_leveldb(tmp_path / "db", _lmdb_records(GOLDEN / folder))
    net_file = "net_raw.prototxt" if prefix == "raw_" else "net_encoded.prototxt"
    param = read_net_text(str(GOLDEN / net_file)).message
    assert isinstance(param, caffe_pb2.NetParameter)
    lp = param.layer[0]
    lp.data_param.source = "db"
    lp.data_param.ClearField("backend")  # Caffe's default: LEVELDB
    layer = parse_net(str(param), phase="test").layers[0]
    batch = next(make_batches(layer, "test", base_dir=tmp_path))
    ref = np.load(GOLDEN / f"{prefix}data.npy")
    assert batch["data"].shape == ref.shape
    # The raw Datums are decoded by arithmetic only: exact. The encoded ones hold one JPEG,
    # decoded by this machine's libjpeg (one grey level, see golden/transform's README).
    diff = np.abs(batch["data"].numpy() - ref)
    assert float(diff.max()) <= (0.0 if prefix == "raw_" else 1.0 / 256 + 1e-7)
    assert np.array_equal(batch["label"].numpy(), np.load(GOLDEN / f"{prefix}label.npy"))


def _datum(value: int, label: int) -> bytes:
    pixels = np.full((1, 3, 2), value, dtype=np.uint8)
    return caffe_pb2.Datum(channels=1, height=3, width=2, data=pixels.tobytes(),
                           label=label).SerializeToString()


def test_key_order_is_bytewise_and_wraps(tmp_path: pathlib.Path) -> None:
    keys = [b"b", b"10", b"9", b"a", b"\xff", b"00000002"]
    _write_leveldb(tmp_path / "db", [(k, _datum(i, i)) for i, k in enumerate(keys)])
    stream = make_batches(_data_layer("db", 4), base_dir=tmp_path)
    labels = torch.cat([next(stream)["label"] for _ in range(3)]).tolist()
    order = [keys.index(k) for k in sorted(keys)]  # LevelDB's bytewise comparator
    assert labels == [float(order[i % len(keys)]) for i in range(12)]


def test_locked_or_read_only_leveldb_is_read_from_a_snapshot(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_leveldb(tmp_path / "db", [(b"%08d" % i, _datum(i, i)) for i in range(5)])
    holder = plyvel.DB(str(tmp_path / "db"))  # LevelDB admits one opener at a time
    try:
        batch = next(make_batches(_data_layer("db", 5), base_dir=tmp_path))
        assert batch["label"].tolist() == [0.0, 1, 2, 3, 4]
    finally:
        holder.close()
    close_all()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".modelport-leveldb-")]
    assert leftovers == []
    # A read-only folder (LevelDB cannot create its LOCK file): as root, whom permissions do
    # not stop, the binding's refusal is simulated.
    from modelport.train import data_leveldb

    real = data_leveldb.require_plyvel()
    original = str(tmp_path / "db")

    class ReadOnly:
        IOError = real.IOError
        Error = real.Error

        @staticmethod
        def DB(path: str, **kwargs: object) -> object:  # noqa: N802 - plyvel's name
            if path == original:
                raise real.IOError(f"IO error: {path}/LOCK: Permission denied")
            return real.DB(path, **kwargs)

    monkeypatch.setattr(data_leveldb, "require_plyvel", lambda: ReadOnly)
    batch = next(make_batches(_data_layer("db", 2), base_dir=tmp_path))
    assert batch["label"].tolist() == [0.0, 1.0]
    snapshots = [p for p in tmp_path.iterdir() if p.name.startswith(".modelport-leveldb-")]
    assert len(snapshots) == 1
    close_all()
    assert not snapshots[0].exists()


@pytest.mark.slow
def test_loader_workers_read_the_same_leveldb(tmp_path: pathlib.Path) -> None:
    _write_leveldb(tmp_path / "db", [(b"%08d" % i, _datum(3 * i, i)) for i in range(7)])
    layer = _data_layer("db", 3, "transform_param { scale: 0.5 }")
    direct = list(itertools.islice(make_batches(layer, "train", tmp_path), 5))
    pooled = list(itertools.islice(iter(make_loader(layer, "train", tmp_path,
                                                    num_workers=2)), 5))
    for a, b in zip(direct, pooled):
        assert torch.equal(a["data"], b["data"]) and torch.equal(a["label"], b["label"])
    close_all()


def test_leveldb_errors_name_the_layer_and_the_fix(tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayerError, match="layer 'd'.*'.*empty' is not a LevelDB.*Fix: source"):
        make_batches(_data_layer("empty", 2), base_dir=tmp_path)
    with pytest.raises(LayerError, match="LEVELDB source '.*nowhere' is not a directory"):
        make_batches(_data_layer("nowhere", 2), base_dir=tmp_path)
    lmdb.open(str(tmp_path / "lm")).close()
    with pytest.raises(LayerError, match="holds an LMDB.*Fix: add `backend: LMDB`"):
        make_batches(_data_layer("lm", 2), base_dir=tmp_path)
    _write_leveldb(tmp_path / "ldb", [(b"0", _datum(1, 1)), (b"1", b"\xff\xff\xff")])
    with pytest.raises(LayerError, match="holds no data.mdb but a LevelDB.*backend: LEVELDB"):
        make_batches(_data_layer("ldb", 2, backend="backend: LMDB"), base_dir=tmp_path)
    stream = make_batches(_data_layer("ldb", 1), base_dir=tmp_path)
    assert next(stream)["label"].tolist() == [1.0]
    with pytest.raises(LayerError, match="record '1' of LevelDB .* is not a serialized Datum"):
        next(stream)
    monkeypatch.setitem(sys.modules, "plyvel", None)  # as if the binding were not installed
    with pytest.raises(LayerError, match=r"needs the plyvel package.*pip install "
                                         r"'modelport\[data\]'"):
        make_batches(_data_layer("ldb", 1), base_dir=tmp_path)
    close_all()


# ------------------------------------------------------------------ a siamese net from LevelDB

def _siamese_leveldb(path: pathlib.Path, n: int, seed: int) -> list[caffe_pb2.Datum]:
    """Pairs of 28x28 'digits' as convert_mnist_siamese_data writes them: key %08d, a
    2-channel Datum (the two images), label 1 when both have the same class."""
    rng = np.random.default_rng(seed)
    protos = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    db = plyvel.DB(str(path), create_if_missing=True, error_if_exists=True)
    datums = []
    for item in range(n):
        ci, cj = rng.integers(0, 3, 2)
        noise = rng.integers(0, 40, (2, 28, 28))
        pair = np.stack([protos[ci], protos[cj]]).astype(np.int64)
        pixels = np.clip(pair + noise, 0, 255).astype(np.uint8)
        datum = caffe_pb2.Datum(channels=2, height=28, width=28, data=pixels.tobytes(),
                                label=int(ci == cj))
        db.put(b"%08d" % item, datum.SerializeToString())
        datums.append(datum)
    db.close()
    return datums


SIAMESE_NET = """
name: "siamese_leveldb"
layer { name: "pair_data" type: "Data" top: "pair_data" top: "sim"
  include { phase: TRAIN } transform_param { scale: 0.00390625 }
  data_param { source: "train_leveldb" batch_size: 8 } }
layer { name: "pair_data" type: "Data" top: "pair_data" top: "sim"
  include { phase: TEST } transform_param { scale: 0.00390625 }
  data_param { source: "test_leveldb" batch_size: 5 } }
layer { name: "slice_pair" type: "Slice" bottom: "pair_data" top: "data" top: "data_p"
  slice_param { slice_dim: 1 slice_point: 1 } }
layer { name: "feat" type: "InnerProduct" bottom: "data" top: "feat"
  param { name: "feat_w" lr_mult: 1 } param { name: "feat_b" lr_mult: 2 }
  inner_product_param { num_output: 2 weight_filler { type: "xavier" }
                        bias_filler { type: "constant" } } }
layer { name: "feat_p" type: "InnerProduct" bottom: "data_p" top: "feat_p"
  param { name: "feat_w" lr_mult: 1 } param { name: "feat_b" lr_mult: 2 }
  inner_product_param { num_output: 2 weight_filler { type: "xavier" }
                        bias_filler { type: "constant" } } }
layer { name: "loss" type: "ContrastiveLoss" bottom: "feat" bottom: "feat_p" bottom: "sim"
  top: "loss" contrastive_loss_param { margin: 1 } }
"""

SIAMESE_SOLVER = """
net: "siamese.prototxt"
test_iter: 2 test_interval: 5 base_lr: 0.01 momentum: 0.9 weight_decay: 0
lr_policy: "inv" gamma: 0.0001 power: 0.75 display: 0 max_iter: 10
snapshot: 0 snapshot_after_train: false random_seed: 3 solver_mode: CPU
"""


def _contrastive(a: np.ndarray, b: np.ndarray, sim: np.ndarray, margin: float) -> float:
    """Caffe's ContrastiveLoss: sum(y d^2 + (1-y) max(margin - d, 0)^2) / 2N."""
    d = np.sqrt(((a - b) ** 2).sum(axis=1))
    per = np.where(sim > 0, d ** 2, np.maximum(margin - d, 0.0) ** 2)
    return float(per.sum() / (2 * len(sim)))


def test_siamese_net_trains_from_leveldb(tmp_path: pathlib.Path) -> None:
    train = _siamese_leveldb(tmp_path / "train_leveldb", 24, seed=0)
    _siamese_leveldb(tmp_path / "test_leveldb", 10, seed=1)
    (tmp_path / "siamese.prototxt").write_text(SIAMESE_NET)
    (tmp_path / "solver.prototxt").write_text(SIAMESE_SOLVER)
    solver = Solver(tmp_path / "solver.prototxt", workdir=tmp_path)
    w = solver.net.module.state_dict()["feat.weight"].double().numpy()
    bias = solver.net.module.state_dict()["feat.bias"].double().numpy()
    solver.solve()
    assert solver.iter == 10 and [t.iter for t in solver.tests] == [0, 5, 10]
    # Iteration 0 read records 00000000..00000007: its loss, from the Datums themselves.
    batch = np.stack([np.frombuffer(d.data, np.uint8).reshape(2, 28, 28) for d in train[:8]])
    x = batch.astype(np.float32) * np.float32(0.00390625)
    feats = [x[:, c].reshape(8, -1).astype(np.float64) @ w.T + bias for c in (0, 1)]
    sim = np.array([d.label for d in train[:8]], dtype=np.float64)
    expected = _contrastive(feats[0], feats[1], sim, 1.0)
    assert abs(solver.records[0].loss - expected) <= 1e-5 * max(1.0, expected)
    # The shared blobs are one tensor, so both branches moved together.
    sd = solver.net.module.state_dict()
    assert torch.equal(sd["feat.weight"], sd["feat_p.weight"])
    assert all(np.isfinite(r.loss) for r in solver.records)
    close_all()
