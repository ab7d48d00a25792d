"""`modelport transfer`: datasets, the comparison table, JSON, gate heat maps, the command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from transfer_nets import tiny_net

from modelport.cli import main
from modelport.errors import FormatError
from modelport.formats.caffe.writer import write_caffemodel, write_prototxt
from modelport.transfer.datasets import _read_idx, digits_folder, image_folder_dataset
from modelport.transfer.heads import TrainConfig
from modelport.transfer.runner import ExperimentConfig, run_experiment

COLOURS = {"blue": (200, 40, 40), "green": (40, 200, 40), "red": (40, 40, 200)}


def _colour_dataset(root: Path, per_class: int, split: bool) -> None:
    rng = np.random.RandomState(3)
    for s in ("train", "test") if split else ("",):
        for name, bgr in COLOURS.items():
            folder = root / s / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = np.clip(np.array(bgr) + rng.randint(-40, 40, size=(10, 13, 3)), 0, 255)
                cv2.imwrite(str(folder / f"{i}.png"), img.astype(np.uint8))


@pytest.fixture()
def tiny_files(tmp_path: Path) -> tuple[str, str]:
    net = tiny_net()
    proto, weights = tmp_path / "tiny.prototxt", tmp_path / "tiny.caffemodel"
    write_prototxt(proto, net)
    write_caffemodel(weights, net)
    return str(proto), str(weights)


def test_folder_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    _colour_dataset(tmp_path / "d", 10, split=False)
    ds = image_folder_dataset(tmp_path / "d", test_fraction=0.3, seed=1)
    assert ds.classes == ("blue", "green", "red")
    assert len(ds.train.paths) == 21 and len(ds.test.paths) == 9
    assert ds.test.labels is not None and sorted(set(ds.test.labels)) == [0, 1, 2]
    assert not set(ds.train.paths) & set(ds.test.paths)
    assert image_folder_dataset(tmp_path / "d", seed=1) == ds
    assert image_folder_dataset(tmp_path / "d", seed=2).test.paths != ds.test.paths
    small = image_folder_dataset(tmp_path / "d", train_limit=7, test_limit=3, seed=1)
    assert len(small.train.paths) == 7 and list(small.test.labels or ()) == [0, 1, 2]
    with pytest.raises(FormatError, match="at least 2"):
        image_folder_dataset(tmp_path / "d" / "red")


def test_digits_dataset_is_real_and_balanced(tmp_path: Path) -> None:
    ds = digits_folder(str(tmp_path / "digits"), train=30, test=20, seed=0)
    assert len(ds.classes) == 10 and len(ds.train.paths) == 30 and len(ds.test.paths) == 20
    img = cv2.imread(ds.train.paths[0], cv2.IMREAD_UNCHANGED)
    assert img.shape == (8, 8) and img.dtype == np.uint8 and img.max() > 100
    assert not {Path(p).name for p in ds.train.paths} & {Path(p).name for p in ds.test.paths}


def test_read_idx(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
    (tmp_path / "x.idx").write_bytes(header + data.tobytes())
    np.testing.assert_array_equal(_read_idx(str(tmp_path / "x.idx")), data)
    (tmp_path / "bad.idx").write_bytes(header + data.tobytes()[:-1])
    with pytest.raises(FormatError, match="truncated"):
        _read_idx(str(tmp_path / "bad.idx"))


def test_experiment_writes_table_json_and_gate_maps(tmp_path: Path,
                                                    tiny_files: tuple[str, str]) -> None:
    _colour_dataset(tmp_path / "d", 6, split=True)
    ds = image_folder_dataset(tmp_path / "d")
    out = tmp_path / "out"
    cfg = ExperimentConfig(layers=["fc6", "conv2"], spatial="avg",
                           train=TrainConfig(epochs=40, lr=0.05))
    summary = run_experiment(*tiny_files, ds, str(out), cfg)
    names = [r["name"] for r in summary["results"]]
    assert names == ["Softmax fc6", "Softmax conv2", "Ensemble softmax fc6+conv2",
                     "Softmax on average fc6+conv2", "CNN-SVM fc6", "CNN-SVM conv2",
                     "Gated Transfer fc6+conv2"]
    assert summary["widths"] == [6, 5]
    avg = summary["results"][3]
    assert avg["test_accuracy"] is None and "different widths" in avg["note"]
    for r in summary["results"]:
        if r["test_accuracy"] is not None:
            assert 0.0 <= r["test_accuracy"] <= 1.0
    # Colour classes are easy: a softmax on conv2 must beat chance (1/3) clearly (fc6 of the
    # random tiny net is almost all zero after relu6 on raw pixels).
    assert summary["results"][1]["test_accuracy"] > 0.6
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(summary))
    table = (out / "results.md").read_text()
    assert "| Gated Transfer fc6+conv2 | fc6, conv2 |" in table
    assert "| Softmax on average fc6+conv2 (not run: the layers have different widths" in table
    with np.load(out / "gates_test.npz", allow_pickle=False) as g:
        gates = g["gates"]
        assert gates.shape == (18, 2, 6)
        np.testing.assert_allclose(gates.sum(axis=1), 1.0, atol=1e-6)
        assert list(g["layers"]) == ["fc6", "conv2"]
    for name in ("gates.png", "gates_fc6.png", "gates_conv2.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100, name
    assert summary["gates"]["files"] == ["gates.png", "gates_fc6.png", "gates_conv2.png"]
    led = summary["gates"]["share_of_dimensions_led"]
    assert abs(sum(led.values()) - 1.0) < 1e-9
    with np.load(out / "features_test.npz", allow_pickle=False) as f:
        assert f["fc6"].shape == (18, 6) and f["conv2"].shape == (18, 5)


def test_transfer_command(tmp_path: Path, tiny_files: tuple[str, str],
                          capsys: pytest.CaptureFixture[str]) -> None:
    _colour_dataset(tmp_path / "d", 5, split=False)
    code = main(["transfer", *tiny_files, "--layers", "fc6,fc7", "--data", str(tmp_path / "d"),
                 "-o", str(tmp_path / "o"), "--epochs", "20", "--resize", "11,9", "--mean",
                 "104,117,123", "--scale", "0.02"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| Softmax on average fc6+fc7 |" not in out  # widths 6 and 8 differ
    assert "| Gated Transfer fc6+fc7 | fc6, fc7 |" in out
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["config"]["preprocess"]["mean_values"] == [104.0, 117.0, 123.0]
    assert saved["dataset"]["train"] + saved["dataset"]["test"] == 15
    code = main(["transfer", *tiny_files, "--layers", "fc6", "--data", str(tmp_path / "nope"),
                 "-o", str(tmp_path / "o2")])
    assert code == 2 and "no such dataset folder" in capsys.readouterr().err
