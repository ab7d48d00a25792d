"""--resume continues exactly: 10 iterations in one run == 5, snapshot, resume, 5 more (bit for
bit: weights, BatchNorm sums, history, losses), and the CLI writes Caffe's snapshot files."""

from __future__ import annotations

import pathlib
import shutil

import pytest
import torch

from modelport.cli import main
from modelport.errors import ConfigError, FormatError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.caffemodel import read_caffemodel
from modelport.train.snapshot import read_solverstate
from modelport.train.solver import Solver

SOLVER_GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "solver"


pytestmark = pytest.mark.usefixtures("one_thread")


def _case_copy(case: str, tmp: pathlib.Path) -> pathlib.Path:
    dst = tmp / case
    dst.mkdir()
    for name in ("solver.prototxt", "train.prototxt", "test.prototxt", "train.h5", "test.h5",
                 "train_h5_list.txt", "test_h5_list.txt", "init.caffemodel"):
        if (SOLVER_GOLDEN / case / name).exists():
            shutil.copy(SOLVER_GOLDEN / case / name, dst / name)
    return dst


def _state(solver: Solver) -> list[torch.Tensor]:
    out = [p.tensor.detach().clone() for p in solver.params]
    out += [h.clone() for h in solver.history]
    return out


@pytest.mark.parametrize("case, hdf5", [("batchnorm_train", False),
                                        ("sgd_multistep_itersize_clip", False),
                                        ("adam_poly", False), ("test_accuracy", False),
                                        ("batchnorm_train", True), ("adadelta", True)])
def test_resume_is_bit_exact(case: str, hdf5: bool, tmp_path: pathlib.Path) -> None:
    folder = _case_copy(case, tmp_path)
    whole = Solver(folder / "solver.prototxt", workdir=folder, weights=folder / "init.caffemodel")
    whole.param.snapshot_prefix = str(tmp_path / "whole")
    whole.step(10)

    first = Solver(folder / "solver.prototxt", workdir=folder, weights=folder / "init.caffemodel")
    first.param.snapshot_prefix = str(tmp_path / "part")
    ext = ".h5" if hdf5 else ""
    if hdf5:  # Caffe's snapshot_format: HDF5 (.caffemodel.h5 + .solverstate.h5)
        first.param.snapshot_format = caffe_pb2.SolverParameter.HDF5
    first.step(5)
    files = first.snapshot()
    assert [pathlib.Path(f).name for f in files] == [
        f"part_iter_5.caffemodel{ext}", f"part_iter_5.solverstate{ext}",
        "part_iter_5.safetensors"]
    assert (tmp_path / "part_iter_5.feedstate.json").exists()

    resumed = Solver(folder / "solver.prototxt", workdir=folder)  # no --weights: from the state
    resumed.restore(tmp_path / f"part_iter_5.solverstate{ext}")
    assert resumed.iter == 5 and resumed.current_step == first.current_step
    resumed.step(5)

    assert resumed.iter == whole.iter == 10
    assert resumed.current_step == whole.current_step
    for a, b in zip(_state(resumed), _state(whole)):
        assert torch.equal(a, b)
    assert [r.loss for r in resumed.records] == [r.loss for r in whole.records[5:]]
    if whole.test_nets:
        # the test at iteration 5 runs in both (test_interval 5), on the same weights
        ours = [t for t in resumed.tests if t.iter == 5][0]
        ref = [t for t in whole.tests if t.iter == 5][0]
        assert {k: float(v) for k, v in ours.outputs.items()} == \
               {k: float(v) for k, v in ref.outputs.items()}


def test_resume_without_feedstate_restarts_data_like_caffe(tmp_path: pathlib.Path) -> None:
    folder = _case_copy("sgd_step_lrmult", tmp_path)
    first = Solver(folder / "solver.prototxt", workdir=folder, weights=folder / "init.caffemodel")
    first.param.snapshot_prefix = str(tmp_path / "s")
    first.step(3)
    first.snapshot()
    # Caffe's own snapshot: the caffemodel and solverstate only (a modelport set without its
    # feedstate would be an interrupted one, refused: see test_snapshot_sets.py)
    (tmp_path / "s_iter_3.feedstate.json").unlink()
    (tmp_path / "s_iter_3.safetensors").unlink()
    resumed = Solver(folder / "solver.prototxt", workdir=folder)
    resumed.restore(tmp_path / "s_iter_3.solverstate")
    feed = resumed.net.feeds[0][1]
    assert feed.state()["offset"] == 0  # type: ignore[index]  # Caffe restarts its data layers


def test_cli_train_writes_caffe_snapshots(tmp_path: pathlib.Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _case_copy("test_accuracy", tmp_path)
    monkeypatch.chdir(folder)
    assert main(["train", "solver.prototxt", "--weights", "init.caffemodel", "--max-iter", "4",
                 "--no-progress", "--quiet"]) == 0
    stored = read_caffemodel(str(folder / "snap_iter_4.caffemodel"))
    assert [s.name for s in stored if s.blobs] == ["ip1", "ip2", "ip3"]
    state = read_solverstate(folder / "snap_iter_4.solverstate")
    assert state.iter == 4 and state.learned_net == "snap_iter_4.caffemodel"
    assert len(state.history) == 6
    rows = (folder / "snap_metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:5] == ["iter", "phase", "total_loss", "smoothed_loss", "lr"]
    assert sum(1 for r in rows if ",train," in r) == 4
    assert sum(1 for r in rows if ",test0," in r) == 1  # iteration 0 (no test at 4)
    # resume to 6 from the CLI: the weights come from the state's learned_net
    assert main(["train", "solver.prototxt", "--resume", "snap_iter_4.solverstate",
                 "--max-iter", "6", "--no-progress", "--quiet"]) == 0
    assert read_solverstate(folder / "snap_iter_6.solverstate").iter == 6


def test_cli_errors_are_one_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _case_copy("test_accuracy", tmp_path)
    monkeypatch.chdir(folder)
    assert main(["train", "solver.prototxt", "--resume", "missing.solverstate",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("modelport: error:") and "missing.solverstate" in err[-1]
    (folder / "bad.prototxt").write_text('net: "train.prototxt"\nlr_policy: "cosine"\n')
    with pytest.raises(ConfigError, match="unknown lr_policy 'cosine'"):
        Solver(folder / "bad.prototxt", workdir=folder)
    (folder / "bad2.prototxt").write_text('net: "nothere.prototxt"\nlr_policy: "fixed"\n')
    with pytest.raises(FormatError, match="nothere.prototxt"):
        Solver(folder / "bad2.prototxt", workdir=folder)


def test_stop_request_finishes_iteration_and_snapshots(tmp_path: pathlib.Path) -> None:
    """Caffe's SIGINT 'stop': the current iteration completes, then Solve() snapshots."""
    from modelport.train.reporting import Reporter

    folder = _case_copy("test_accuracy", tmp_path)

    class StopAt2(Reporter):
        def iteration(self, it: int, *args: object, **kwargs: object) -> None:
            if it == 2:
                solver._on_sigint(2, None)

    solver = Solver(folder / "solver.prototxt", workdir=folder,
                    weights=folder / "init.caffemodel", reporter=StopAt2())
    solver.param.snapshot_prefix = str(tmp_path / "stop")
    solver.solve()
    assert solver.iter == 3
    assert read_solverstate(tmp_path / "stop_iter_3.solverstate").iter == 3
    with pytest.raises(KeyboardInterrupt):
        solver._on_sigint(2, None)


def test_dummy_data_and_propagate_down(tmp_path: pathlib.Path) -> None:
    """DummyData feeds a train net; propagate_down: false stops the gradient into a bottom."""
    net = """
name: "dummy"
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 4 dim: 6 } shape { dim: 4 dim: 3 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 0.5 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "a"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "b" bottom: "y" top: "loss"
  propagate_down: %s propagate_down: false }
"""
    for flag in ("true", "false"):
        (tmp_path / "net.prototxt").write_text(net % flag)
        (tmp_path / "s.prototxt").write_text('net: "net.prototxt" base_lr: 0.1 '
                                             'lr_policy: "fixed" random_seed: 3')
        solver = Solver(tmp_path / "s.prototxt", workdir=tmp_path)
        batch = solver.net.feeds[0][1].next_batch()
        assert tuple(batch["x"].shape) == (4, 6) and torch.equal(batch["y"],
                                                                 torch.full((4, 3), 0.5))
        before = solver.net.module.layer_module("a").weight.detach().clone()
        solver.step(1)
        moved = not torch.equal(before, solver.net.module.layer_module("a").weight.detach())
        assert moved == (flag == "true")


@pytest.mark.parametrize("case", ["adam_poly", "sgd_multistep_itersize_clip"])
def test_solverstate_writer_is_byte_identical_to_caffe(case: str, tmp_path: pathlib.Path) -> None:
    from modelport.train.snapshot import write_solverstate

    ref = SOLVER_GOLDEN / case / "iter_10.solverstate"
    write_solverstate(tmp_path / "x.solverstate", read_solverstate(ref))
    assert (tmp_path / "x.solverstate").read_bytes() == ref.read_bytes()


def test_hdf5_weights_file_as_weights(tmp_path: pathlib.Path) -> None:
    """A .caffemodel.h5 (Net::ToHDF5 layout: data/<layer>/<i>) initialises like the .caffemodel."""
    import h5py

    folder = _case_copy("batchnorm_train", tmp_path)
    ref = Solver(folder / "solver.prototxt", workdir=folder, weights=folder / "init.caffemodel")
    with h5py.File(tmp_path / "init.caffemodel.h5", "w") as fh:
        data = fh.create_group("data")
        for stored in read_caffemodel(str(folder / "init.caffemodel")):
            group = data.create_group(stored.name)
            for i, blob in enumerate(stored.blobs):
                group.create_dataset(str(i), data=blob.data)
    ours = Solver(folder / "solver.prototxt", workdir=folder,
                  weights=tmp_path / "init.caffemodel.h5")
    for a, b in zip(ours.params, ref.params):
        assert torch.equal(a.tensor.detach(), b.tensor.detach()), a.layer
