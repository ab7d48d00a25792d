"""Replaying Caffe's random streams in nets and solvers (Solver(rng="caffe"), --caffe-rng).

References are real Caffe runs (../shared/golden/rng): Dropout tops over consecutive TRAIN
forwards, data-layer batches (crops, mirrors, shuffle order, rand_skip) and a 20-iteration SGD
run with Data crop + mirror and Dropout, whose loss and final weights must match.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.caffe_rng import CaffeRNG
from modelport.errors import ConfigError, ModelportError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.prototxt import read_net_text
from modelport.pipeline import net_from_param
from modelport.train import Solver
from modelport.train.caffe_replay import init_module, init_net
from modelport.train.feeds import make_feed, resolve_against
from modelport.train.solver import PhaseNet

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden" / "rng"
TRAIN_CASE = GOLDEN / "train" / "train_sgd_dropout"

pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason="golden/rng not available")


def _net_param(path: Path) -> caffe_pb2.NetParameter:
    msg = read_net_text(str(path)).message
    assert isinstance(msg, caffe_pb2.NetParameter)
    return msg


def _bits(a: Any) -> bytes:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32)).tobytes()


# ------------------------------------------------------------------------------------ Dropout
@pytest.mark.parametrize("case", ["dropout_r05_ones", "dropout_r03_r07_two_layers"])
def test_dropout_tops_over_consecutive_forwards_equal_caffe(case: str) -> None:
    folder = GOLDEN / "dropout" / case
    meta = json.loads((folder / "case.json").read_text())
    ir = net_from_param(_net_param(folder / "net.prototxt"), case, caffe_pb2.TRAIN)
    inputs = {d["bottom"]: torch.from_numpy(np.load(folder / d["input_file"]))
              for d in meta["dropout_layers"]}
    module = build_module(ir, {k: tuple(v.shape) for k, v in inputs.items()})
    rng = CaffeRNG(meta["seed"])
    init_module(module, rng, caffe_pb2.TRAIN)
    for k in range(meta["n_forward"]):
        blobs = module.forward_blobs(**inputs)  # type: ignore[arg-type]
        for d in meta["dropout_layers"]:
            ref = np.load(folder / f"forward_{k}__{d['layer']}.npy")
            assert _bits(blobs[d["layer"]].numpy()) == _bits(ref), (k, d["layer"])
    assert rng.consumed == meta["draws_consumed"]
    assert rng.raw(8).tolist() == meta["stream_after"]


def test_dropout_at_test_and_without_caffe_rng_draws_nothing() -> None:
    folder = GOLDEN / "dropout" / "dropout_r05_ones"
    x = torch.from_numpy(np.load(folder / "input_data.npy"))
    ir = net_from_param(_net_param(folder / "net.prototxt"), "t", caffe_pb2.TEST)
    module = build_module(ir, {"data": tuple(x.shape)})
    rng = CaffeRNG(0)
    init_module(module, rng, caffe_pb2.TEST)
    assert torch.equal(module.forward_blobs(data=x)["drop"], x) and rng.consumed == 0


# ------------------------------------------------------------------------------------ data
def _phase_net(folder: Path, phase: int, seed: int) -> tuple[PhaseNet, CaffeRNG]:
    """The net of a golden data case with its feeds, set up on Caffe's stream of `seed`."""
    ir = net_from_param(_net_param(folder / "net.prototxt"), folder.name, phase)
    resolve = resolve_against(str(folder))
    feeds = [(layer, make_feed(layer, resolve, phase)) for layer in ir.layers
             if layer.type in ("Data", "ImageData")]
    net = PhaseNet(ir, feeds, torch.device("cpu"))
    rng = CaffeRNG(seed)
    init_net(net, rng, phase)
    return net, rng


DATA_CASES = ["data_lmdb_train_crop_mirror", "data_lmdb_test_mirror",
              "imagedata_shuffle_crop_mirror", "mixed_data_imagedata_dropout"]


@pytest.mark.parametrize("case", DATA_CASES)
def test_data_layer_batches_equal_caffe(case: str) -> None:
    # Crop offsets, mirrors, the ImageData shuffle (reshuffled after every pass) and rand_skip,
    # and in the mixed net the filler and Dropout draws that follow the data layers' seeds.
    pytest.importorskip("lmdb")
    pytest.importorskip("cv2")
    folder = GOLDEN / "data" / case
    meta = json.loads((folder / "case.json").read_text())
    phase = caffe_pb2.TRAIN if meta["phase"] == "TRAIN" else caffe_pb2.TEST
    net, rng = _phase_net(folder, phase, meta["seed"])
    tops = sorted({f.split("__")[1][:-4] for f in meta["files"] if f.startswith("batch_0__")})
    for k in range(meta["n_batches"]):
        _, blobs = net.forward()
        for top in tops:
            ref = np.load(folder / f"batch_{k}__{top}.npy")
            got = blobs[top].detach().numpy()
            assert got.shape == ref.shape, (k, top)
            if top in ("ip", "drop"):
                # A 784-term float dot product: BLAS and torch sum in different orders, so
                # these agree to float rounding; the Dropout mask itself must be Caffe's.
                allowed = 1e-6 * max(1.0, float(np.abs(ref).max()))
                assert np.abs(got - ref).max() <= allowed, (k, top)
                assert np.array_equal(got == 0, ref == 0), (k, top)
            else:
                assert _bits(got) == _bits(ref), (k, top)
        if "drop" in blobs:
            kept = blobs["drop"] != 0
            assert torch.equal(blobs["drop"][kept], blobs["ip"][kept] * 2)
    if "draws_consumed_total" in meta:
        assert rng.consumed == meta["draws_consumed_total"]
    else:
        assert rng.consumed == meta["draws_consumed_by_data_layers"]


def test_data_replay_fails_with_the_seed_off_by_one() -> None:
    pytest.importorskip("lmdb")
    folder = GOLDEN / "data" / "data_lmdb_train_crop_mirror"
    net, _ = _phase_net(folder, caffe_pb2.TRAIN, 1702)
    _, blobs = net.forward()
    assert _bits(blobs["data"].numpy()) != _bits(np.load(folder / "batch_0__data.npy"))


# ------------------------------------------------------------------------------------ solver
def _solver(**kw: Any) -> Solver:
    return Solver(TRAIN_CASE / "solver.prototxt", workdir=TRAIN_CASE, rng="caffe", **kw)


def _first_divergent(solver: Solver, losses: list[float], upto: int,
                     skip_before: int | None = None) -> int | None:
    """Step `solver` one iteration at a time; the first whose loss is not within 1e-5
    relative of Caffe's (`skip_before=k`: drop one global draw before iteration k)."""
    for k in range(upto):
        if k == skip_before:
            assert solver.caffe_rng is not None
            solver.caffe_rng.discard(1)
        solver.step(1)
        got = solver.records[-1].loss
        if abs(got - losses[k]) > 1e-5 * abs(losses[k]):
            return k
    return None


@pytest.mark.slow
@pytest.mark.parametrize("weights", [None, "init.caffemodel"])
def test_training_run_replays_caffe_loss_and_final_weights(weights: str | None) -> None:
    # Caffe's fillers draw even when --weights overwrites them, so both runs are Caffe's run.
    pytest.importorskip("lmdb")
    trace = json.loads((TRAIN_CASE / "trace.json").read_text())
    case = json.loads((TRAIN_CASE / "case.json").read_text())
    solver = _solver(weights=str(TRAIN_CASE / weights) if weights else None)
    assert solver.caffe_rng is not None
    assert solver.caffe_rng.consumed == case["global_stream"]["draws_consumed_by_solver_init"]
    for p in solver.params:  # the fillers' output (or the same values from init.caffemodel)
        ref = np.load(TRAIN_CASE / "init" / f"{p.layer}__{p.blob}.npy")
        assert _bits(p.tensor.detach().numpy()) == _bits(ref), p.layer
    assert _first_divergent(solver, trace["loss"], case["n_iter"]) is None
    assert [r.lr for r in solver.records] == pytest.approx(trace["lr"], rel=1e-7)
    for p in solver.params:
        ref = np.load(TRAIN_CASE / "final" / f"{p.layer}__{p.blob}.npy")
        diff = np.abs(p.tensor.detach().numpy() - ref).max()
        assert diff <= 1e-4 * max(1.0, float(np.abs(ref).max())), (p.layer, p.blob, diff)
    assert solver.caffe_rng.consumed == case["global_stream"]["draws_consumed_after_20_iterations"]
    tests = {t["iter"]: t["outputs"] for t in trace["test_log"]}
    for record in solver.tests:
        for name, value in tests[record.iter].items():
            assert float(record.outputs[name]) == pytest.approx(value, abs=1e-5)


@pytest.mark.slow
def test_training_replay_breaks_at_the_first_affected_iteration() -> None:
    pytest.importorskip("lmdb")
    losses = json.loads((TRAIN_CASE / "trace.json").read_text())["loss"]
    param = caffe_pb2.SolverParameter()
    from google.protobuf import text_format

    text_format.Parse((TRAIN_CASE / "solver.prototxt").read_text(), param)
    param.random_seed += 1  # seed off by one: other fillers, crops and masks from iteration 0
    off = Solver(param, workdir=TRAIN_CASE, rng="caffe")
    assert _first_divergent(off, losses, 1) == 0
    # One Bernoulli draw skipped before iteration 4: 0..3 still match, 4 does not.
    assert _first_divergent(_solver(), losses, 6, skip_before=4) == 4


def test_caffe_rng_refuses_what_cannot_be_replayed(tmp_path: Path) -> None:
    param = caffe_pb2.SolverParameter()
    from google.protobuf import text_format

    text_format.Parse((TRAIN_CASE / "solver.prototxt").read_text(), param)
    param.random_seed = -1
    with pytest.raises(ConfigError, match="urandom"):
        Solver(param, workdir=TRAIN_CASE, rng="caffe")
    param.random_seed = 5
    with pytest.raises(ConfigError, match="one process"):
        Solver(param, workdir=TRAIN_CASE, rng="caffe", rank=0, world=2)
    with pytest.raises(ModelportError, match="Fix:"):
        Solver(param, workdir=TRAIN_CASE, rng="numpy")


@pytest.mark.slow
def test_cli_caffe_rng_writes_caffes_final_weights(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # `modelport train solver.prototxt --caffe-rng` in a copy of the case (it snapshots).
    pytest.importorskip("lmdb")
    import re
    import shutil

    from modelport.cli import main
    from modelport.formats.caffe.caffemodel import read_caffemodel

    for name in ("solver.prototxt", "train.prototxt", "lmdb_train", "lmdb_test"):
        src = TRAIN_CASE / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name)
        else:
            shutil.copy(src, tmp_path / name)
    code = main(["train", str(tmp_path / "solver.prototxt"), "--caffe-rng", "--workdir",
                 str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    losses = [float(m) for m in re.findall(r"Iteration \d+ \(.*?\), loss = ([-0-9.e+]+)", err)]
    trace = json.loads((TRAIN_CASE / "trace.json").read_text())["loss"]
    assert len(losses) == len(trace)
    assert losses == pytest.approx(trace, rel=1e-5)  # printed with 6 digits
    layers = {lay.name: lay for lay in read_caffemodel(str(tmp_path / "snap_iter_20.caffemodel"))}
    for layer in ("conv1", "ip1", "ip2"):
        for i, blob in enumerate(layers[layer].blobs):
            ref = np.load(TRAIN_CASE / "final" / f"{layer}__{i}.npy")
            got = np.asarray(blob.data).reshape(ref.shape)
            assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def _hdf5_solver(tmp_path: Path, shuffle: bool) -> caffe_pb2.SolverParameter:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = np.arange(24, dtype=np.float32).reshape(6, 4)
        f["label"] = np.arange(6, dtype=np.float32)
    (tmp_path / "list.txt").write_text(str(tmp_path / "d.h5") + "\n")
    from google.protobuf import text_format

    text = f"""
    random_seed: 3 base_lr: 0.1 lr_policy: "fixed" max_iter: 2 display: 0
    net_param {{
      layer {{ name: "d" type: "HDF5Data" top: "data" top: "label"
              hdf5_data_param {{ source: "{tmp_path / 'list.txt'}" batch_size: 2
                                 shuffle: {'true' if shuffle else 'false'} }} }}
      layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
              inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" }} }} }}
      layer {{ name: "drop" type: "Dropout" bottom: "ip" top: "drop" }}
      layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "drop" bottom: "label"
              top: "loss" }}
    }}"""
    return text_format.Parse(text, caffe_pb2.SolverParameter())


def test_hdf5_shuffle_is_refused_and_plain_hdf5_takes_no_draws(tmp_path: Path) -> None:
    with pytest.raises(ModelportError, match="std::random_shuffle"):
        Solver(_hdf5_solver(tmp_path, True), workdir=tmp_path, rng="caffe")
    solver = Solver(_hdf5_solver(tmp_path, False), workdir=tmp_path, rng="caffe")
    # HDF5DataLayer draws nothing; the ip weight is the first thing Caffe fills.
    assert solver.caffe_rng is not None and solver.caffe_rng.consumed > 0
    expected = CaffeRNG(3).gaussian(0.0, 1.0, 8)
    assert _bits(solver.params[0].tensor.detach().numpy().ravel()) == _bits(expected)
    before = solver.caffe_rng.consumed
    solver.step(1)
    assert solver.caffe_rng.consumed == before + 4  # one Dropout draw per element of ip (2x2)


def test_caller_fed_data_layers_are_refused(tmp_path: Path) -> None:
    param = _hdf5_solver(tmp_path, False)

    class MyFeed:
        tops: tuple[str, ...] = ("data", "label")

        def shapes(self) -> dict[str, tuple[int, ...]]:
            return {"data": (2, 4), "label": (2,)}

        def next_batch(self) -> dict[str, torch.Tensor]:
            return {"data": torch.zeros(2, 4), "label": torch.zeros(2)}

        def state(self) -> dict[str, Any]:
            return {}

        def restore(self, state: dict[str, Any]) -> None:
            pass

    Solver(param, workdir=tmp_path, feeds={"d": MyFeed()})  # fine without rng="caffe"
    with pytest.raises(ModelportError, match="fed by the caller"):
        Solver(param, workdir=tmp_path, rng="caffe", feeds={"d": MyFeed()})
