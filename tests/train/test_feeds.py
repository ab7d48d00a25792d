"""The solver's HDF5Data feed: Caffe's row order across files with wrap-around (golden README,
'HDF5Data order'), the multi-solver shard (offset % world == rank), and save/restore."""

from __future__ import annotations

import pathlib

import h5py
import numpy as np
import pytest

from modelport.formats.caffe import caffe_pb2
from modelport.pipeline import parse_net
from modelport.train.feeds import HDF5Feed, resolve_against


@pytest.fixture()
def two_files(tmp_path: pathlib.Path) -> pathlib.Path:
    rows = np.arange(8, dtype=np.float32)
    for name, part in (("a.h5", rows[:5]), ("b.h5", rows[5:])):
        with h5py.File(tmp_path / name, "w") as fh:
            fh["data"] = np.stack([part, part * 10], axis=1)  # 2 values per row
            fh["label"] = part
    (tmp_path / "list.txt").write_text("a.h5\n  b.h5\n")
    return tmp_path


def feed(folder: pathlib.Path, phase: int = caffe_pb2.TRAIN, rank: int = 0,
         world: int = 1) -> HDF5Feed:
    layer = parse_net('layer { name: "d" type: "HDF5Data" top: "data" top: "label" '
                      'hdf5_data_param { source: "list.txt" batch_size: 3 } }',
                      phase="train").layers[0]
    return HDF5Feed(layer, resolve_against(str(folder)), phase, rank, world)


def test_rows_in_order_across_files_and_the_wrap(two_files: pathlib.Path) -> None:
    f = feed(two_files)
    assert f.shapes() == {"data": (3, 2), "label": (3,)}
    got = [f.next_batch()["label"].tolist() for _ in range(4)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 0], [1, 2, 3]]
    assert f.next_batch()["data"].tolist() == [[4, 40], [5, 50], [6, 60]]


@pytest.mark.parametrize("rank", [0, 1])
def test_train_shard_per_process(two_files: pathlib.Path, rank: int) -> None:
    f = feed(two_files, rank=rank, world=2)
    got = [f.next_batch()["label"].tolist() for _ in range(2)]
    stream = [r for r in list(range(8)) * 2]
    mine = [stream[k] for k in range(len(stream)) if k % 2 == rank]
    assert got == [mine[:3], mine[3:6]]
    # TEST nets are never sharded (Caffe's Skip keeps every row in TEST)
    t = feed(two_files, phase=caffe_pb2.TEST, rank=rank, world=2)
    assert t.next_batch()["label"].tolist() == [0, 1, 2]


def test_state_restore_continues_the_stream(two_files: pathlib.Path) -> None:
    a = feed(two_files)
    for _ in range(3):
        a.next_batch()
    saved = a.state()
    expected = [a.next_batch()["label"].tolist() for _ in range(3)]
    b = feed(two_files)
    b.restore(saved)
    assert [b.next_batch()["label"].tolist() for _ in range(3)] == expected
    c = feed(two_files)
    c.skip(3)
    assert c.next_batch()["label"].tolist() == expected[0]
