"""Net surgery: cut / replace / freeze / lr presets change exactly what they should; frozen blobs
get no update; an exported prototxt + caffemodel (or safetensors) reloads to the same outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transfer_nets import tiny_input, tiny_net

from modelport import caffe
from modelport.backends.torch_module import build_module
from modelport.errors import ConfigError, LayerError
from modelport.fillers import fill
from modelport.formats.caffe import caffe_pb2
from modelport.pipeline import read_net
from modelport.transfer import surgery
from modelport.transfer.surgery import Surgery

WEIGHTED = ("conv1", "conv2", "fc6", "fc7", "fc8")


def _run(net, x: np.ndarray) -> dict[str, np.ndarray]:
    module = build_module(net)
    with torch.no_grad():
        blobs = module.forward_blobs(torch.from_numpy(x))
    return {k: v.numpy() for k, v in blobs.items()}


def _same_layer(a, b) -> bool:
    return (a.param.SerializeToString() == b.param.SerializeToString()
            and len(a.blobs) == len(b.blobs)
            and all(np.array_equal(x.data, y.data) for x, y in zip(a.blobs, b.blobs)))


def test_cut_drops_exactly_the_later_layers() -> None:
    net = tiny_net()
    cut = surgery.cut(net, after="fc7")
    assert [lay.name for lay in cut.layers] == ["data", "conv1", "relu1", "conv2", "relu2",
                                                 "fc6", "relu6", "fc7"]
    assert cut.output_names() == ("fc7",)
    x = tiny_input()
    full, part = _run(net, x), _run(cut, x)
    # relu7 (in place on fc7) was cut away: fc7 is the pre-ReLU value, which has negatives.
    w, b = net.layer("fc7").blobs
    np.testing.assert_allclose(part["fc7"], full["fc6"] @ w.data.T + b.data, atol=1e-5)
    assert (part["fc7"] < 0).any()
    np.testing.assert_array_equal(surgery.cut(net, after="relu7").layers[-1].name, "relu7")
    assert set(part) == {"data", "conv1", "conv2", "fc6", "fc7"}


def test_unknown_layer_name_suggests_close_ones() -> None:
    with pytest.raises(ConfigError, match="no layer named 'fc9'.*'fc8'"):
        surgery.cut(tiny_net(), after="fc9")


def test_replace_reinitialises_one_layer_from_caffe_fillers() -> None:
    net = tiny_net()
    new = surgery.replace(net, "fc8", num_output=7, filler={"type": "gaussian", "std": 0.5},
                          bias_filler={"type": "constant", "value": 0.25}, seed=11)
    for old_layer, new_layer in zip(net.layers, new.layers):
        if old_layer.name != "fc8":
            assert _same_layer(old_layer, new_layer), old_layer.name
    fc8 = new.layer("fc8")
    assert fc8.param.inner_product_param.num_output == 7
    assert fc8.param.inner_product_param.weight_filler.type == "gaussian"
    w, b = (blob.data for blob in fc8.blobs)
    assert w.shape == (7, 8) and b.shape == (7,)
    np.testing.assert_array_equal(b, np.full(7, 0.25, np.float32))
    # The weights are Caffe's gaussian filler drawn from torch's RNG seeded with `seed`.
    torch.manual_seed(11)
    expected = fill(surgery.filler_param({"type": "gaussian", "std": 0.5}), (7, 8))
    np.testing.assert_array_equal(w, expected.numpy())
    again = surgery.replace(net, "fc8", num_output=7, filler="gaussian", seed=11)
    other = surgery.replace(net, "fc8", num_output=7, filler="gaussian", seed=12)
    assert not np.array_equal(again.layer("fc8").blobs[0].data, other.layer("fc8").blobs[0].data)
    out = _run(new, tiny_input())
    assert out["prob"].shape == (2, 7)
    np.testing.assert_allclose(out["prob"].sum(1), 1.0, atol=1e-6)


def test_replace_a_convolution_and_rename() -> None:
    net = tiny_net()
    new = surgery.replace(net, "conv2", num_output=5, filler="xavier", rename="conv2_new")
    layer = new.layers[3]
    assert layer.name == "conv2_new" and layer.tops == ("conv2",)
    assert layer.blobs[0].data.shape == (5, 4, 2, 3)
    # Caffe's xavier (FAN_IN): uniform in +-sqrt(3 / fan_in).
    assert np.abs(layer.blobs[0].data).max() <= np.sqrt(3.0 / (4 * 2 * 3)) + 1e-7
    np.testing.assert_array_equal(layer.blobs[1].data, 0)  # default bias filler: constant 0
    assert _same_layer(new.layer("fc6"), net.layer("fc6"))


def test_replace_rejects_layers_without_num_output() -> None:
    with pytest.raises(LayerError, match="relu6.*num_output"):
        surgery.replace(tiny_net(), "relu6", num_output=3)
    with pytest.raises(ConfigError, match="not a Caffe FillerParameter field"):
        surgery.replace(tiny_net(), "fc8", filler={"type": "gaussian", "sigma": 1})


def test_freeze_sets_lr_mult_zero_through_the_layer() -> None:
    net = tiny_net()
    frozen = surgery.freeze(net, through="conv2")
    for layer in frozen.layers:
        mults = surgery.param_mults(layer)
        if layer.name in ("conv1", "conv2"):
            assert mults == [(0.0, 1.0), (0.0, 1.0)]
            assert [p.lr_mult for p in layer.param.param] == [0.0, 0.0]
        else:
            assert _same_layer(layer, net.layer(layer.name)), layer.name


def test_lr_preset_after_replace_and_freeze() -> None:
    s = Surgery(tiny_net())
    s.replace("fc8", num_output=4, filler={"type": "gaussian", "std": 0.01})
    s.freeze(through="conv1").lr_preset()
    got = {lay.name: surgery.param_mults(lay) for lay in s.net.layers if lay.name in WEIGHTED}
    assert got == {
        "conv1": [(0.0, 1.0), (0.0, 0.0)],
        "conv2": [(1.0, 1.0), (2.0, 0.0)],
        "fc6": [(1.0, 1.0), (2.0, 0.0)],
        "fc7": [(1.0, 1.0), (2.0, 0.0)],
        "fc8": [(10.0, 1.0), (20.0, 0.0)],
    }
    assert s.new_layers == ["fc8"]


def test_frozen_params_get_no_update_and_rates_follow_lr_mult() -> None:
    s = Surgery(tiny_net())
    s.replace("fc8", num_output=4, filler={"type": "gaussian", "std": 0.1})
    s.freeze(through="fc6").lr_preset()
    model = s.module()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    groups = s.param_groups(model, base_lr=0.01)
    assert sorted((g["lr_mult"], g["decay_mult"]) for g in groups) == [
        (1.0, 1.0), (2.0, 0.0), (10.0, 1.0), (20.0, 0.0)]
    opt = torch.optim.SGD(groups, lr=0.01)
    out = model(torch.from_numpy(tiny_input()))
    loss = -torch.log(out[:, 1]).sum()  # prob blob: push class 1
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    opt.step()
    after = model.state_dict()
    for layer in ("conv1", "conv2", "fc6"):
        for attr in ("weight", "bias"):
            key = f"{layer}.{attr}"
            assert torch.equal(after[key], before[key]), key
            assert key not in grads  # requires_grad is off: not even a gradient is computed
    for layer, (lw, lb) in {"fc7": (1, 2), "fc8": (10, 20)}.items():
        for attr, mult in (("weight", lw), ("bias", lb)):
            key = f"{layer}.{attr}"
            torch.testing.assert_close(after[key], before[key] - 0.01 * mult * grads[key],
                                       rtol=0, atol=1e-7)
            assert not torch.equal(after[key], before[key])


def test_export_caffemodel_reloads_to_the_same_outputs(tmp_path: Path) -> None:
    s = Surgery(tiny_net())
    s.replace("fc8", num_output=5, filler="xavier", seed=3).freeze(through="conv2").lr_preset()
    proto, weights = tmp_path / "edited.prototxt", tmp_path / "edited.caffemodel"
    s.export(proto, weights)
    x = torch.from_numpy(tiny_input())
    with torch.no_grad():
        expected = s.module()(x)
        reloaded = caffe.load(proto, weights)(x)
    torch.testing.assert_close(reloaded, expected, rtol=0, atol=0)
    assert expected.shape == (2, 5)
    # The edits are in the prototxt text: num_output and the lr_mult/decay_mult ParamSpecs.
    text = proto.read_text()
    assert "lr_mult: 10" in text and "lr_mult: 20" in text and "num_output: 5" in text
    again = read_net(proto)
    assert [surgery.param_mults(lay) for lay in again.layers] == [
        surgery.param_mults(lay) for lay in s.net.layers]
    assert again.layer("fc8").param.inner_product_param.num_output == 5


def test_export_after_training_and_safetensors(tmp_path: Path) -> None:
    s = Surgery(tiny_net())
    s.replace("fc8", num_output=4, filler="gaussian", seed=1).lr_preset()
    model = s.module()
    opt = torch.optim.SGD(s.param_groups(model, base_lr=0.05), lr=0.05)
    x = torch.from_numpy(tiny_input())
    model(x)[:, 0].sum().backward()
    opt.step()
    s.sync(model).export(tmp_path / "t.prototxt", tmp_path / "t.caffemodel")
    s.export(weights=tmp_path / "t.safetensors")
    with torch.no_grad():
        trained = model(x)
        reloaded = caffe.load(tmp_path / "t.prototxt", tmp_path / "t.caffemodel")(x)
    torch.testing.assert_close(reloaded, trained, rtol=0, atol=0)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "t.safetensors"))
    assert set(state) == set(model.state_dict())
    fresh = build_module(read_net(tmp_path / "t.prototxt"), allow_missing_weights=True)
    fresh.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="unknown weights format"):
        s.export(weights=tmp_path / "t.bin")
    assert not (tmp_path / "t.bin").exists()


def test_param_specs_keep_shared_names_and_batchnorm_stays_fixed() -> None:
    net = tiny_net()
    layer = net.layer("fc7")
    lp = caffe_pb2.LayerParameter()
    lp.CopyFrom(layer.param)
    lp.param.add(name="shared_w", lr_mult=3.0)
    shared = surgery._with_param(layer, lp)
    edited = surgery._set_mults(shared, [(0.0, 1.0), (0.0, 1.0)])
    assert edited.param.param[0].name == "shared_w" and len(edited.param.param) == 2
    bn = caffe_pb2.LayerParameter(name="bn", type="BatchNorm", bottom=["x"], top=["x"])
    from modelport.ir import Layer

    assert surgery.param_mults(Layer("bn", "BatchNorm", ("x",), ("x",), bn)) == [(0.0, 1.0)] * 3


def _train_net(deploy: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """The deploy net as a training net: DummyData instead of Input, SoftmaxWithLoss on fc8."""
    train = caffe_pb2.NetParameter(name="tiny_train")
    dummy = train.layer.add(name="data", type="DummyData", top=["data", "label"])
    dummy.dummy_data_param.shape.add(dim=[2, 3, 9, 7])
    dummy.dummy_data_param.shape.add(dim=[2])
    dummy.dummy_data_param.data_filler.add(type="gaussian", std=50.0)
    dummy.dummy_data_param.data_filler.add(type="constant", value=1.0)
    for lp in deploy.layer:
        if lp.type not in ("Input", "Softmax"):
            train.layer.add().CopyFrom(lp)
    train.layer.add(name="loss", type="SoftmaxWithLoss", bottom=["fc8", "label"], top=["loss"])
    return train


def test_caffe_solver_leaves_frozen_layers_untouched(tmp_path: Path) -> None:
    """One iteration of modelport's Caffe SGD solver (momentum, weight decay) on the exported,
    edited net: frozen layers keep their weights bit for bit, the others move."""
    from modelport.formats.caffe.writer import net_parameter
    from modelport.train.solver import Solver

    s = Surgery(tiny_net())
    s.replace("fc8", num_output=4, filler={"type": "gaussian", "std": 0.3}, seed=5)
    s.freeze(through="conv2").lr_preset()
    weights = tmp_path / "edited.caffemodel"
    s.export(weights=weights)
    param = caffe_pb2.SolverParameter(base_lr=0.05, lr_policy="fixed", momentum=0.9,
                                      weight_decay=0.01, max_iter=1, display=0,
                                      random_seed=3, snapshot_after_train=False)
    param.net_param.CopyFrom(_train_net(net_parameter(s.net)))
    solver = Solver(param, workdir=tmp_path, weights=weights)
    before = {k: [a.copy() for a in v] for k, v in solver.blob_arrays().items()}
    solver.step(1)
    after = solver.blob_arrays()
    for layer in ("conv1", "conv2"):
        for a, b in zip(before[layer], after[layer]):
            np.testing.assert_array_equal(a, b)
    for layer in ("fc6", "fc7", "fc8"):
        assert not np.array_equal(before[layer][0], after[layer][0]), layer
    # fc8's bias: lr_mult 20, decay_mult 0, zero history: w -= base_lr * 20 * grad.
    mults = {p.layer: (p.lr_mult, p.decay_mult) for p in solver.params if p.blob == 1}
    assert mults["fc8"] == (20.0, 0.0) and mults["conv1"] == (0.0, 0.0)


def test_edits_show_in_modelport_inspect(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from modelport.cli import main

    s = Surgery(tiny_net()).replace("fc8", num_output=31, filler="gaussian").cut(after="prob")
    s.cut(after="fc8").export(tmp_path / "cut.prototxt", tmp_path / "cut.caffemodel")
    assert main(["inspect", str(tmp_path / "cut.prototxt"), str(tmp_path / "cut.caffemodel")]) == 0
    out = capsys.readouterr().out
    fc8 = next(line for line in out.splitlines() if "fc8" in line and "InnerProduct" in line)
    assert "2x31" in fc8 and "279" in fc8  # 31 x 8 weights + 31 biases
    assert "prob" not in out and "10 layers" in out
