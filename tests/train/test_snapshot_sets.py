"""Snapshot sets are complete or ignored (issue 15 item 3), and shared params survive
snapshot, resume, convert and load() (issue 16 item 2).

A set is safetensors, caffemodel, solverstate, then the feedstate, which records the others'
sha256 and completes the set. The kill -9 trials are in tests/test_kill9.py."""

from __future__ import annotations

import json
import pathlib
import shutil

import h5py
import numpy as np
import pytest
import torch

from modelport.cli import main
from modelport.convert import convert, load_generated
from modelport.errors import ConfigError
from modelport.train.snapshot import check_snapshot_set, latest_snapshot
from modelport.train.solver import Solver
from modelport.weights_file import read_safetensors

SOLVER_GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "solver"


pytestmark = pytest.mark.usefixtures("one_thread")


def _case(tmp: pathlib.Path, case: str = "sgd_step_lrmult") -> pathlib.Path:
    dst = tmp / case
    dst.mkdir()
    for p in (SOLVER_GOLDEN / case).iterdir():
        if p.suffix in (".prototxt", ".h5", ".txt", ".caffemodel") and \
                not p.name.startswith("iter_"):
            shutil.copy(p, dst / p.name)
    return dst


def _solver(folder: pathlib.Path, prefix: pathlib.Path) -> Solver:
    s = Solver(folder / "solver.prototxt", workdir=folder, weights=folder / "init.caffemodel")
    s.param.snapshot_prefix = str(prefix)
    return s


def _weights(s: Solver) -> list[torch.Tensor]:
    return [p.tensor.detach().clone() for p in s.params] + [h.clone() for h in s.history]


def test_set_is_written_manifest_last_and_checked(tmp_path: pathlib.Path) -> None:
    folder = _case(tmp_path)
    s = _solver(folder, tmp_path / "s")
    s.step(2)
    s.snapshot()
    state = tmp_path / "s_iter_2.solverstate"
    manifest = json.loads((tmp_path / "s_iter_2.feedstate.json").read_text())
    assert manifest["format"] == "modelport-feedstate-2"
    assert sorted(manifest["files"]) == ["caffemodel", "safetensors", "solverstate"]
    assert manifest["files"]["caffemodel"]["file"] == "s_iter_2.caffemodel"
    assert check_snapshot_set(state) is None
    # a caffemodel from another iteration (a mix of two sets) is refused
    s.step(2)
    s.snapshot()
    shutil.copy(tmp_path / "s_iter_4.caffemodel", tmp_path / "s_iter_2.caffemodel")
    assert check_snapshot_set(state) == ("s_iter_2.caffemodel is not the file "
                                         "s_iter_2.feedstate.json records")
    resumed = Solver(folder / "solver.prototxt", workdir=folder)
    resumed.param.snapshot_prefix = str(tmp_path / "s")
    with pytest.raises(ConfigError, match=r"s_iter_2.solverstate: incomplete snapshot set .*"
                                          r"Fix: resume from the latest complete set, .*"
                                          r"s_iter_4.solverstate"):
        resumed.restore(state)
    assert resumed.iter == 0  # nothing restored


def test_interrupted_set_is_refused_on_the_command_line(tmp_path: pathlib.Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _case(tmp_path)
    monkeypatch.chdir(folder)
    assert main(["train", "solver.prototxt", "--weights", "init.caffemodel", "--max-iter", "2",
                 "--no-progress", "--quiet"]) == 0
    (folder / "snap_iter_2.feedstate.json").unlink()  # killed before the manifest
    capsys.readouterr()
    assert main(["train", "solver.prototxt", "--resume", "snap_iter_2.solverstate",
                 "--no-progress", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "snap_iter_2.solverstate: incomplete snapshot set " \
        "(snap_iter_2.safetensors was written but not snap_iter_2.feedstate.json" in err[0]
    assert "Fix: start again without --resume" in err[0]


def test_auto_resume_takes_the_latest_complete_set(tmp_path: pathlib.Path) -> None:
    folder = _case(tmp_path)
    whole = _solver(folder, tmp_path / "whole")
    whole.step(6)
    part = _solver(folder, tmp_path / "s")
    part.step(2)
    part.snapshot()
    part.step(2)
    part.snapshot()
    (tmp_path / "s_iter_4.feedstate.json").unlink()  # the set of iteration 4 is incomplete
    path, skipped = latest_snapshot(str(tmp_path / "s"))
    assert path == str(tmp_path / "s_iter_2.solverstate")
    assert [pathlib.Path(p).name for p, _ in skipped] == ["s_iter_4.solverstate"]
    resumed = Solver(folder / "solver.prototxt", workdir=folder)
    resumed.param.snapshot_prefix = str(tmp_path / "s")
    resumed.param.max_iter = 6
    resumed.param.snapshot_after_train = False
    resumed.solve(resume="auto")
    assert resumed.iter == 6
    for a, b in zip(_weights(resumed), _weights(whole)):
        assert torch.equal(a, b)
    # no snapshot at all: auto starts at iteration 0
    fresh = _solver(folder, tmp_path / "none")
    assert fresh.latest_snapshot() is None


def test_cli_auto_resume_with_weights_starts_from_them(tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _case(tmp_path)
    monkeypatch.chdir(folder)
    argv = ["train", "solver.prototxt", "--weights", "init.caffemodel", "--resume", "auto",
            "--no-progress", "--quiet"]
    def train_iters() -> list[int]:  # the metrics CSV of the last run
        rows = (folder / "snap_metrics.csv").read_text().splitlines()
        return [int(r.split(",")[0]) for r in rows[1:] if ",train," in r]

    assert main(argv + ["--max-iter", "2"]) == 0  # nothing to resume: from the weights
    assert train_iters() == [0, 1]
    assert main(argv + ["--max-iter", "4"]) == 0  # resumes iteration 2
    assert train_iters() == [2, 3]


def test_stale_temporary_files_are_removed(tmp_path: pathlib.Path) -> None:
    folder = _case(tmp_path)
    stale = tmp_path / ".s_iter_7.caffemodel.k2j3h4.tmp"
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other_iter_7.caffemodel.k2j3h4.tmp"
    other.write_bytes(b"not ours")
    s = _solver(folder, tmp_path / "s")
    s.step(1)
    s.snapshot()
    assert not stale.exists() and other.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")
                and p.name.startswith(".s_")]


SIAMESE = """
name: "siamese_small"
layer { name: "pairs" type: "HDF5Data" top: "pair_data" top: "sim"
  hdf5_data_param { source: "pairs.txt" batch_size: 4 } }
layer { name: "slice_pair" type: "Slice" bottom: "pair_data" top: "data" top: "data_p"
  slice_param { slice_dim: 1 slice_point: 1 } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  param { name: "ip1_w" lr_mult: 1 } param { name: "ip1_b" lr_mult: 2 }
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "feat" type: "InnerProduct" bottom: "ip1" top: "feat"
  param { name: "feat_w" lr_mult: 1 } param { name: "feat_b" lr_mult: 2 }
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "ip1_p" type: "InnerProduct" bottom: "data_p" top: "ip1_p"
  param { name: "ip1_w" lr_mult: 1 } param { name: "ip1_b" lr_mult: 2 }
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "relu1_p" type: "ReLU" bottom: "ip1_p" top: "ip1_p" }
layer { name: "feat_p" type: "InnerProduct" bottom: "ip1_p" top: "feat_p"
  param { name: "feat_w" lr_mult: 1 } param { name: "feat_b" lr_mult: 2 }
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "ContrastiveLoss" bottom: "feat" bottom: "feat_p" bottom: "sim"
  top: "loss" contrastive_loss_param { margin: 1 } }
"""


def _siamese(tmp: pathlib.Path) -> pathlib.Path:
    folder = tmp / "siamese"
    folder.mkdir()
    rs = np.random.RandomState(16)
    with h5py.File(folder / "pairs.h5", "w") as fh:
        fh["pair_data"] = rs.randn(12, 2, 3, 3).astype(np.float32)
        fh["sim"] = (rs.rand(12) > 0.5).astype(np.float32)
    (folder / "pairs.txt").write_text("pairs.h5\n")
    (folder / "train.prototxt").write_text(SIAMESE)
    (folder / "solver.prototxt").write_text(
        'net: "train.prototxt" base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 '
        'weight_decay: 0.001 max_iter: 6 snapshot: 3 snapshot_prefix: "sia" random_seed: 5\n')
    return folder


def test_shared_params_snapshot_resume_convert_and_load(tmp_path: pathlib.Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _siamese(tmp_path)
    whole = Solver(folder / "solver.prototxt", workdir=folder)
    whole.param.snapshot = 0
    whole.step(6)
    first = Solver(folder / "solver.prototxt", workdir=folder)
    assert len(first.params) == 4  # ip1_w, ip1_b, feat_w, feat_b: shared ones once
    first.step(3)  # snapshots at iteration 3 (snapshot: 3)
    st = folder / "sia_iter_3.safetensors"
    tensors, meta = read_safetensors(st)
    assert json.loads(meta["modelport.aliases"]) == {
        "feat_p.bias": "feat.bias", "feat_p.weight": "feat.weight",
        "ip1_p.bias": "ip1.bias", "ip1_p.weight": "ip1.weight"}
    assert torch.equal(tensors["ip1_p.weight"], first.net.module.layer_module("ip1").weight)
    resumed = Solver(folder / "solver.prototxt", workdir=folder)
    resumed.restore(folder / "sia_iter_3.solverstate")
    resumed.step(3)  # and snapshots again at iteration 6
    for a, b in zip(_weights(resumed), _weights(whole)):
        assert torch.equal(a, b)
    # the command line: train, resume (auto), snapshot with shared params
    monkeypatch.chdir(folder)
    assert main(["train", "solver.prototxt", "--resume", "auto", "--max-iter", "9",
                 "--no-progress", "--quiet"]) == 0
    assert check_snapshot_set(folder / "sia_iter_9.solverstate") is None
    # convert the snapshot's caffemodel (a deploy view of the net) and load() it
    deploy = SIAMESE.split('layer { name: "slice_pair"')[1]
    deploy = ('name: "siamese_small"\ninput: "pair_data" input_shape { dim: 4 dim: 2 dim: 3 '
              'dim: 3 }\nlayer { name: "slice_pair"' + deploy.split('layer { name: "loss"')[0])
    (folder / "deploy.prototxt").write_text(deploy)
    result = convert(folder / "deploy.prototxt", folder / "sia_iter_9.caffemodel",
                     tmp_path / "out")
    model = load_generated(tmp_path / "out" / "model.py").load()
    x = torch.from_numpy(np.random.RandomState(1).randn(4, 2, 3, 3).astype(np.float32))
    ours, live = model(x), result.module(x)
    for name in ("feat", "feat_p"):
        assert torch.equal(ours[name], live[name])
    assert torch.equal(model.state_dict()["ip1_p.weight"], model.state_dict()["ip1.weight"])


def _deploy(folder: pathlib.Path) -> pathlib.Path:
    body = SIAMESE.split('layer { name: "slice_pair"')[1].split('layer { name: "loss"')[0]
    path = folder / "deploy.prototxt"
    path.write_text('name: "siamese_small"\ninput: "pair_data" input_shape { dim: 4 dim: 2 '
                    'dim: 3 dim: 3 }\nlayer { name: "slice_pair"' + body)
    return path


def _weights_file(path: pathlib.Path, deploy: pathlib.Path, blobs: dict) -> None:
    from modelport.formats.caffe.writer import write_caffemodel
    from modelport.ir import Net
    from modelport.pipeline import load_net

    net = load_net(deploy)
    kept = Net(net.name, tuple(la for la in net.layers if la.name in blobs or not
                               la.param.param), net.source, net.phase, net.notes)
    write_caffemodel(path, kept, blobs=blobs)


def test_convert_loads_shared_params_as_caffe(tmp_path: pathlib.Path) -> None:
    """Caffe's shared blob is one memory: a twin the caffemodel lacks gets the owner's values,
    and when both are stored the later one in the file wins (net.cpp AppendParam ShareData,
    then CopyTrainedLayersFrom in file order)."""
    folder = _siamese(tmp_path)
    deploy = _deploy(folder)
    rs = np.random.RandomState(3)
    w1, b1 = rs.randn(5, 9).astype(np.float32), rs.randn(5).astype(np.float32)
    w2, b2 = rs.randn(2, 5).astype(np.float32), rs.randn(2).astype(np.float32)
    x = torch.from_numpy(rs.randn(4, 2, 3, 3).astype(np.float32))
    # only the owners stored (weights trained without the twins)
    _weights_file(folder / "owners.caffemodel", deploy, {"ip1": [w1, b1], "feat": [w2, b2]})
    model = convert(deploy, folder / "owners.caffemodel", tmp_path / "a").module
    out = model(x)
    twin = model(torch.flip(x, dims=[1]).contiguous())  # the pair swapped: feat <-> feat_p
    torch.testing.assert_close(out["feat_p"], twin["feat"], rtol=1e-6, atol=1e-6)
    assert np.array_equal(model.layer_module("ip1_p").weight.detach().numpy(), w1)
    # both stored with different values: the later (ip1_p, feat_p) wins for both
    v1 = w1 + 1
    _weights_file(folder / "both.caffemodel", deploy,
                  {"ip1": [w1, b1], "feat": [w2, b2], "ip1_p": [v1, b1], "feat_p": [w2, b2]})
    model = convert(deploy, folder / "both.caffemodel", tmp_path / "b").module
    for name in ("ip1", "ip1_p"):
        assert np.array_equal(model.layer_module(name).weight.detach().numpy(), v1), name
    gen = load_generated(tmp_path / "b" / "model.py").load()
    assert torch.equal(gen.state_dict()["ip1.weight"], torch.from_numpy(v1))


def test_training_from_weights_of_the_twins_only(tmp_path: pathlib.Path) -> None:
    """--weights with only the sharing layers stored: the owner gets their values too."""
    folder = _siamese(tmp_path)
    deploy = _deploy(folder)
    rs = np.random.RandomState(4)
    w1, b1 = rs.randn(5, 9).astype(np.float32), rs.randn(5).astype(np.float32)
    w2, b2 = rs.randn(2, 5).astype(np.float32), rs.randn(2).astype(np.float32)
    _weights_file(folder / "twins.caffemodel", deploy, {"ip1_p": [w1, b1], "feat_p": [w2, b2]})
    s = Solver(folder / "solver.prototxt", workdir=folder, weights=folder / "twins.caffemodel")
    assert np.array_equal(s.net.module.layer_module("ip1").weight.detach().numpy(), w1)
    assert s.net.module.layer_module("ip1").weight is s.net.module.layer_module("ip1_p").weight
