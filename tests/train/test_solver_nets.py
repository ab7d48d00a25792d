"""Which nets a solver builds (Caffe's Solver::InitTrainNet / InitTestNets): one train_val file
filtered per phase, test_state stages, inline net_param, weight sharing by layer name, and the
learnable-param rules (shared ParamSpec names, BatchNorm's forced lr_mult 0)."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest
import torch
from google.protobuf import text_format

from modelport.errors import ConfigError, LayerError
from modelport.formats.caffe import caffe_pb2
from modelport.train.solver import Solver

SOLVER_GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "solver"
CASE = SOLVER_GOLDEN / "test_accuracy"

TRAIN_VAL = """
name: "train_val"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  include { phase: TRAIN }
  hdf5_data_param { source: "train_h5_list.txt" batch_size: 4 } }
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  include { phase: TEST }
  hdf5_data_param { source: "test_h5_list.txt" batch_size: 4 } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 16 } }
layer { name: "act1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 12 } }
layer { name: "act2" type: "ReLU" bottom: "ip2" top: "ip2" }
layer { name: "ip3" type: "InnerProduct" bottom: "ip2" top: "ip3"
  inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip3" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip3" bottom: "label" top: "accuracy"
  include { phase: TRAIN } }
layer { name: "accuracy_top1" type: "Accuracy" bottom: "ip3" bottom: "label"
  top: "accuracy_top1" include { phase: TEST } }
layer { name: "accuracy_top2" type: "Accuracy" bottom: "ip3" bottom: "label"
  top: "accuracy_top2" accuracy_param { top_k: 2 } include { phase: TEST stage: "top2" } }
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def folder(tmp_path: pathlib.Path) -> pathlib.Path:
    for name in ("train.h5", "test.h5", "train_h5_list.txt", "test_h5_list.txt",
                 "init.caffemodel"):
        shutil.copy(CASE / name, tmp_path / name)
    (tmp_path / "train_val.prototxt").write_text(TRAIN_VAL)
    return tmp_path


SOLVER = """
net: "train_val.prototxt"
test_iter: 2 test_iter: 2
test_state { } test_state { stage: "top2" }
test_interval: 5 base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.0005
max_iter: 10 display: 0
"""


def test_train_val_per_phase_and_test_state(folder: pathlib.Path) -> None:
    (folder / "solver.prototxt").write_text(SOLVER)
    solver = Solver(folder / "solver.prototxt", workdir=folder, weights=folder / "init.caffemodel")
    train_layers = [lay.name for lay in solver.net.ir.layers]
    assert "accuracy" in train_layers and "accuracy_top1" not in train_layers
    assert len(solver.test_nets) == 2
    assert [lay.name for lay in solver.test_nets[0].ir.layers][-1] == "accuracy_top1"
    assert [lay.name for lay in solver.test_nets[1].ir.layers][-1] == "accuracy_top2"
    # the test nets use the train net's tensors (Caffe's ShareTrainedLayersWith)
    for tn in solver.test_nets:
        for name in ("ip1", "ip2", "ip3"):
            assert tn.module.layer_module(name).weight is solver.net.module.layer_module(
                name).weight
    solver.step(6)  # tests at iterations 0 and 5
    # Same nets, data and weights as the real-Caffe test_accuracy case: its test numbers.
    trace = json.loads((CASE / "trace.json").read_text())["test"]
    got = {(t.iter, t.net): t.outputs for t in solver.tests}
    for i, it in enumerate((0, 5)):
        assert float(got[(it, 0)]["accuracy_top1"]) == pytest.approx(
            trace["outputs"]["accuracy_top1"][i], abs=1e-6)
        assert float(got[(it, 1)]["accuracy_top2"]) == pytest.approx(
            trace["outputs"]["accuracy_top2"][i], abs=1e-6)
        assert float(got[(it, 0)]["loss"]) == pytest.approx(trace["outputs"]["loss"][i],
                                                           rel=1e-4)


def test_inline_net_param_equals_file(folder: pathlib.Path) -> None:
    param = caffe_pb2.SolverParameter()
    text_format.Parse(SOLVER.replace('net: "train_val.prototxt"', ""), param)
    text_format.Parse(TRAIN_VAL, param.net_param)
    inline = Solver(param, workdir=folder, weights=folder / "init.caffemodel")
    (folder / "solver.prototxt").write_text(SOLVER)
    from_file = Solver(folder / "solver.prototxt", workdir=folder,
                       weights=folder / "init.caffemodel")
    inline.step(3)
    from_file.step(3)
    assert [r.loss for r in inline.records] == [r.loss for r in from_file.records]


@pytest.mark.parametrize("text, message", [
    ('net: "train_val.prototxt" train_net: "train_val.prototxt" lr_policy: "fixed"',
     "exactly one of"),
    ('net: "train_val.prototxt" lr_policy: "fixed" test_iter: 2',
     "test nets need test_interval"),
    ('train_net: "train_val.prototxt" test_net: "train_val.prototxt" lr_policy: "fixed" '
     "test_interval: 5", "1 test nets but 0 test_iter"),
    ('net: "train_val.prototxt" lr_policy: "fixed" type: "AdaGrad" momentum: 0.9',
     "momentum cannot be used with AdaGrad"),
    ('net: "train_val.prototxt" lr_policy: "fixed" type: "Adamax"', "unknown solver type"),
    ('net: "train_val.prototxt" lr_policy: "fixed" regularization_type: "L3"',
     "regularization_type"),
])
def test_solver_config_errors(folder: pathlib.Path, text: str, message: str) -> None:
    (folder / "bad.prototxt").write_text(text)
    with pytest.raises(ConfigError, match=message):
        Solver(folder / "bad.prototxt", workdir=folder)


def test_legacy_solver_type_enum(folder: pathlib.Path) -> None:
    (folder / "s.prototxt").write_text('net: "train_val.prototxt" lr_policy: "fixed" '
                                       "solver_type: NESTEROV momentum: 0.9")
    solver = Solver(folder / "s.prototxt", workdir=folder)
    assert solver.type == "Nesterov"


SHARED = """
name: "shared"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "train_h5_list.txt" batch_size: 4 } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a"
  param { name: "w" lr_mult: 3 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 10 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b"
  param { name: "w" } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 10 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn" type: "BatchNorm" bottom: "b" top: "b" param { lr_mult: 0 decay_mult: 0 } }
layer { name: "c" type: "InnerProduct" bottom: "b" top: "c"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "c" bottom: "label" top: "loss" }
"""


def test_shared_param_names_and_batchnorm_multipliers(folder: pathlib.Path) -> None:
    (folder / "shared.prototxt").write_text(SHARED)
    (folder / "s.prototxt").write_text('net: "shared.prototxt" lr_policy: "fixed" '
                                       "base_lr: 0.1 momentum: 0.9 weight_decay: 0.01")
    solver = Solver(folder / "s.prototxt", workdir=folder)
    listed = [(p.layer, p.blob, p.lr_mult, p.decay_mult) for p in solver.params]
    # b's weight is a's (Net::AppendParam lists the owner only); BN stats get lr_mult 0 and
    # keep their decay_mult (given 0 for the first, default 1 for the others).
    assert listed == [("a", 0, 3.0, 1.0), ("a", 1, 2.0, 0.0), ("b", 1, 2.0, 0.0),
                      ("bn", 0, 0.0, 0.0), ("bn", 1, 0.0, 1.0), ("bn", 2, 0.0, 1.0),
                      ("c", 0, 1.0, 1.0), ("c", 1, 1.0, 1.0)]
    a = solver.net.module.layer_module("a")
    b = solver.net.module.layer_module("b")
    assert a.weight is b.weight
    before = a.weight.detach().clone()
    solver.step(1)
    assert not torch.equal(before, a.weight.detach())
    assert a.weight is b.weight


def test_batchnorm_lr_mult_refused(folder: pathlib.Path) -> None:
    (folder / "shared.prototxt").write_text(SHARED.replace("param { lr_mult: 0 decay_mult: 0 }",
                                                           "param { lr_mult: 1 }"))
    (folder / "s.prototxt").write_text('net: "shared.prototxt" lr_policy: "fixed"')
    with pytest.raises(LayerError, match="layer 'bn'.*lr_mult"):
        Solver(folder / "s.prototxt", workdir=folder)


def test_frozen_layer_adagrad_history_moves_by_decay_only(folder: pathlib.Path) -> None:
    """lr_mult 0: no gradient, weights never move, but Regularize still feeds the decay term
    into AdaGrad's history: after k updates h = k * (wd * decay_mult * w)^2 (README)."""
    frozen = TRAIN_VAL.replace('layer { name: "ip2" type: "InnerProduct" bottom: "ip1" '
                               'top: "ip2"',
                               'layer { name: "ip2" type: "InnerProduct" bottom: "ip1" '
                               'top: "ip2" param { lr_mult: 0 decay_mult: 2 } '
                               'param { lr_mult: 0 decay_mult: 0 }')
    assert frozen != TRAIN_VAL
    (folder / "train_val.prototxt").write_text(frozen)
    (folder / "s.prototxt").write_text('net: "train_val.prototxt" type: "AdaGrad" '
                                       'base_lr: 0.05 lr_policy: "fixed" weight_decay: 0.01')
    solver = Solver(folder / "s.prototxt", workdir=folder, weights=folder / "init.caffemodel")
    ip2 = solver.net.module.layer_module("ip2")
    w0 = ip2.weight.detach().clone()
    b0 = ip2.bias.detach().clone()
    solver.step(3)
    assert torch.equal(ip2.weight.detach(), w0) and torch.equal(ip2.bias.detach(), b0)
    j = [p.layer for p in solver.params].index("ip2")
    expected = 3 * (0.01 * 2 * w0) ** 2
    torch.testing.assert_close(solver.history[j], expected, rtol=1e-5, atol=1e-12)
    assert torch.count_nonzero(solver.history[j + 1]) == 0  # decay_mult 0 bias: nothing
    assert not solver.params[j].trainable


def test_device_errors() -> None:
    from modelport.train.solver import _device

    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        _device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            _device("cuda")
