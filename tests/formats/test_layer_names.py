"""Layer names as Caffe treats them (issue 16 item 1, issue 15 item 4): names may repeat
(net.cpp only indexes them; CopyTrainedLayersFrom fills the FIRST layer of a name), while a top
written by two layers not in place is refused ("Top blob 't' produced by multiple sources",
Net::AppendTop)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module, module_keys
from modelport.convert import convert, load_generated
from modelport.errors import LayerError, WeightError
from modelport.formats.caffe.caffemodel import StoredLayer
from modelport.ir import Blob
from modelport.pipeline import attach_weights, parse_net


def _ip(name: str, bottom: str, top: str, n: int, neuron: str | None = None) -> str:
    text = f"""
layer {{
  name: "{name}"
  type: "InnerProduct"
  bottom: "{bottom}"
  top: "{top}"
  param {{
    lr_mult: 1
    decay_mult: 1
  }}
  param {{
    lr_mult: 1
    decay_mult: 0
  }}
  inner_product_param {{
    num_output: {n}
    weight_filler {{
      type: "gaussian"
      std: 1
      sparse: 15
    }}
    bias_filler {{
      type: "constant"
      value: 0
    }}
  }}
}}"""
    if neuron:
        text += f"""
layer {{
  name: "{neuron}"
  type: "Sigmoid"
  bottom: "{top}"
  top: "{neuron}"
}}"""
    return text


def _data(phase: str, stage: str | None, source: str) -> str:
    stage_line = f'\n    stage: "{stage}"' if stage else ""
    return f"""
layer {{
  name: "data"
  type: "Data"
  top: "data"
  include {{
    phase: {phase}{stage_line}
  }}
  transform_param {{
    scale: 0.0039215684
  }}
  data_param {{
    source: "{source}"
    batch_size: 100
    backend: LMDB
  }}
}}"""


# BVLC's examples/mnist/mnist_autoencoder.prototxt, layer for layer: its two loss layers are
# both named "loss" (SigmoidCrossEntropyLoss, then EuclideanLoss with loss_weight 0).
MNIST_AUTOENCODER = 'name: "MNISTAutoencoder"' + "".join([
    _data("TRAIN", None, "examples/mnist/mnist_train_lmdb"),
    _data("TEST", "test-on-train", "examples/mnist/mnist_train_lmdb"),
    _data("TEST", "test-on-test", "examples/mnist/mnist_test_lmdb"),
    """
layer {
  name: "flatdata"
  type: "Flatten"
  bottom: "data"
  top: "flatdata"
}""",
    _ip("encode1", "data", "encode1", 1000, "encode1neuron"),
    _ip("encode2", "encode1neuron", "encode2", 500, "encode2neuron"),
    _ip("encode3", "encode2neuron", "encode3", 250, "encode3neuron"),
    _ip("encode4", "encode3neuron", "encode4", 30),
    _ip("decode4", "encode4", "decode4", 250, "decode4neuron"),
    _ip("decode3", "decode4neuron", "decode3", 500, "decode3neuron"),
    _ip("decode2", "decode3neuron", "decode2", 1000, "decode2neuron"),
    _ip("decode1", "decode2neuron", "decode1", 784),
    """
layer {
  name: "loss"
  type: "SigmoidCrossEntropyLoss"
  bottom: "decode1"
  bottom: "flatdata"
  top: "cross_entropy_loss"
  loss_weight: 1
}
layer {
  name: "decode1neuron"
  type: "Sigmoid"
  bottom: "decode1"
  top: "decode1neuron"
}
layer {
  name: "loss"
  type: "EuclideanLoss"
  bottom: "decode1neuron"
  bottom: "flatdata"
  top: "l2_error"
  loss_weight: 0
}
"""])


def _autoencoder(phase: str = "train"):
    net = parse_net(MNIST_AUTOENCODER, "mnist_autoencoder.prototxt", phase=phase,
                    stages=("test-on-test",) if phase == "test" else ())
    torch.manual_seed(0)
    return net, build_module(net, {"data": (2, 1, 28, 28)}, allow_missing_weights=True)


def test_mnist_autoencoder_with_two_layers_named_loss_builds_and_runs() -> None:
    net, module = _autoencoder()
    assert [lay.name for lay in net.layers].count("loss") == 2
    losses = [key for lay, key in module.run_order if lay.name == "loss"]
    assert losses == ["loss", "loss_1"]
    assert module.layer_keys["loss"] == "loss"  # a name selects the first layer
    assert module.layer_module("loss") is module._modules["loss"]
    second = [lay for lay, _ in module.run_order if lay.name == "loss"][1]
    assert module.layer_module(second) is module._modules["loss_1"]
    x = torch.rand(2, 1, 28, 28)
    blobs = module.forward_blobs(x)
    target = x.reshape(2, -1)
    logits, prob = blobs["decode1"], blobs["decode1neuron"]
    # Caffe: EuclideanLoss = sum((a - b)^2) / 2N; SigmoidCrossEntropyLoss (BATCH_SIZE) = sum / N
    l2 = ((prob - target) ** 2).sum() / 4
    xent = (torch.clamp(logits, min=0) - logits * target
            + torch.log1p(torch.exp(-logits.abs()))).sum() / 2
    assert torch.allclose(blobs["l2_error"], l2, rtol=1e-5)
    assert torch.allclose(blobs["cross_entropy_loss"], xent, rtol=1e-5)


def test_mnist_autoencoder_learnable_params_count_each_layer_once() -> None:
    from modelport.train.param_groups import learnable_params

    _net, module = _autoencoder()
    params = learnable_params(module)
    assert len(params) == 16  # 8 InnerProduct layers x (weight, bias); no loss layer twice
    assert len({id(p.tensor) for p in params}) == 16


TWO_IPS = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "a"
        inner_product_param { num_output: 3 weight_filler { type: "constant" value: 7 } } }
layer { name: "ip" type: "InnerProduct" bottom: "a" top: "b"
        inner_product_param { num_output: 3 weight_filler { type: "constant" value: 7 } } }
"""


def _stored(value: float) -> StoredLayer:
    return StoredLayer("ip", "InnerProduct", (Blob(np.full((3, 3), value, np.float32)),
                                              Blob(np.zeros(3, np.float32))))


def test_convert_says_which_module_each_same_named_layer_became(tmp_path) -> None:
    proto = tmp_path / "two.prototxt"
    proto.write_text(TWO_IPS)
    result = convert(proto, None, tmp_path / "out", allow_missing_weights=True)
    report = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert [(lay["name"], lay["module"]) for lay in report["layers"]] == [
        ("in", None), ("ip", "ip"), ("ip", "ip_1")]
    assert report["repeated_layer_names"] == {"ip": ["ip", "ip_1"]}
    assert report["modules"] == {"ip": "ip"}
    generated = load_generated(tmp_path / "out" / "model.py").load()
    assert sorted(generated.state_dict()) == ["ip.bias", "ip.weight", "ip_1.bias",
                                              "ip_1.weight"]
    x = torch.randn(2, 3)
    with torch.no_grad():
        assert torch.equal(generated(x), result.module(x))


def test_weights_go_to_the_first_layer_of_a_name_as_in_caffe() -> None:
    net = attach_weights(parse_net(TWO_IPS), [_stored(1.0)])
    assert len(net.layers[1].blobs) == 2 and not net.layers[2].blobs
    module = build_module(net, allow_missing_weights=True)
    first, second = (module._modules[k] for _, k in module.run_order)
    assert torch.all(first.weight == 1.0)
    assert torch.all(second.weight == 7.0)  # the filler: Caffe copies nothing into it
    with pytest.raises(WeightError) as err:
        build_module(net)
    assert "'ip'" in str(err.value) and "first layer of its name" in str(err.value)


def test_a_name_repeated_in_the_weights_file_leaves_its_last_blobs() -> None:
    # CopyTrainedLayersFrom copies every stored layer into the first net layer of its name,
    # so the last one stays.
    net = attach_weights(parse_net(TWO_IPS), [_stored(1.0), _stored(2.0)])
    assert float(net.layers[1].blobs[0].data[0, 0]) == 2.0
    assert not net.layers[2].blobs


@pytest.mark.parametrize("tops", [
    # two layers write 'a', neither in place
    ('layer { name: "r1" type: "ReLU" bottom: "x" top: "a" }\n'
     'layer { name: "r2" type: "Sigmoid" bottom: "x" top: "a" }', ("r1", "r2")),
    # top 0 names bottom 1: not in place in Caffe (only top i == bottom i is)
    ('layer { name: "r1" type: "ReLU" bottom: "x" top: "a" }\n'
     'layer { name: "sum" type: "Eltwise" bottom: "x" bottom: "a" top: "a" }', ("r1", "sum")),
    # an input blob written again by another layer
    ('layer { name: "r1" type: "ReLU" bottom: "x" top: "y" }\n'
     'layer { name: "r2" type: "ReLU" bottom: "y" top: "x" }', ("in", "r2")),
])
def test_a_top_produced_by_two_layers_is_refused_as_caffe_does(tops) -> None:
    text, (first, second) = tops
    with pytest.raises(LayerError) as err:
        parse_net('layer { name: "in" type: "Input" top: "x" '
                  "input_param { shape { dim: 2 dim: 3 } } }\n" + text)
    msg = str(err.value)
    assert f"layer '{second}'" in msg and f"layer '{first}'" in msg
    assert "produced by multiple sources" in msg and "Fix:" in msg


def test_in_place_layers_are_still_accepted() -> None:
    net = parse_net('layer { name: "in" type: "Input" top: "x" '
                    "input_param { shape { dim: 2 dim: 3 } } }\n"
                    'layer { name: "r1" type: "ReLU" bottom: "x" top: "x" }\n'
                    'layer { name: "d" type: "Dropout" bottom: "x" top: "x" }\n')
    assert [lay.name for lay in net.layers] == ["in", "r1", "d"]


def test_module_keys_keep_plain_names_and_make_the_rest_safe() -> None:
    names = ["conv1", "inception_3a/1x1", "a.b", "loss", "loss", "loss_1", "forward",
             "class", 'q"x', "é", ""]
    keys = module_keys(names)
    assert keys[:2] == ["conv1", "inception_3a/1x1"]
    assert keys[2] == "a_b" and keys[3] == "loss" and keys[5] == "loss_1"
    assert keys[4] not in ("loss", "loss_1") and keys[4].startswith("loss_")
    assert keys[6] == "forward_" and keys[7] == "class_" and keys[8] == "q_x"
    assert keys[9] == "_" and len(set(keys)) == len(keys)


AUTOENCODER_SOLVER = """net: "{net}"
test_state: {{ stage: 'test-on-train' }}
test_iter: 1
test_state: {{ stage: 'test-on-test' }}
test_iter: 1
test_interval: 2
test_compute_loss: true
base_lr: 0.01
lr_policy: "step"
gamma: 0.1
stepsize: 10000
display: 1
max_iter: 3
weight_decay: 0.0005
snapshot: 10000
snapshot_prefix: "{prefix}"
momentum: 0.9
solver_mode: GPU
"""


def _mnist_like_lmdb(path, count: int = 100, seed: int = 0) -> None:
    import lmdb

    from modelport.formats.caffe import caffe_pb2

    rs = np.random.RandomState(seed)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i in range(count):
            datum = caffe_pb2.Datum(channels=1, height=28, width=28, label=i % 10,
                                    data=rs.randint(0, 256, 784).astype(np.uint8).tobytes())
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


@pytest.mark.slow
def test_mnist_autoencoder_trains_with_its_two_loss_layers(tmp_path) -> None:
    """BVLC's net and solver, paths and iteration counts edited only."""
    from modelport.train.solver import Solver

    for name in ("mnist_train_lmdb", "mnist_test_lmdb"):
        _mnist_like_lmdb(tmp_path / name, seed=len(name))
    net_text = MNIST_AUTOENCODER.replace("examples/mnist/", f"{tmp_path}/")
    (tmp_path / "mnist_autoencoder.prototxt").write_text(net_text)
    (tmp_path / "solver.prototxt").write_text(AUTOENCODER_SOLVER.format(
        net=tmp_path / "mnist_autoencoder.prototxt", prefix=tmp_path / "mnist_autoencoder"))
    torch.manual_seed(0)
    solver = Solver(tmp_path / "solver.prototxt", workdir=tmp_path)
    assert len(solver.params) == 16
    before = solver.net.module.layer_module("encode1").weight.detach().clone()
    solver.solve()
    assert solver.iter == 3
    assert not torch.equal(before, solver.net.module.layer_module("encode1").weight)
    keys = [k for lay, k in solver.net.module.run_order if lay.name == "loss"]
    assert keys == ["loss", "loss_1"]


def test_verify_tells_same_named_layers_apart() -> None:
    from modelport.verify import Reference, ReferenceOutput, verify

    module = build_module(parse_net(TWO_IPS), allow_missing_weights=True)

    class Perturbed(Reference):
        def run(self, ir, inputs):
            with torch.no_grad():
                blobs = {k: v.numpy().copy()
                         for k, v in module.forward_blobs(torch.from_numpy(inputs["x"])).items()}
            blobs["b"] += 1.0  # only the second 'ip' layer's top differs
            return ReferenceOutput(blobs=blobs)

    report = verify(module, Perturbed())
    assert report.row("a").passed and not report.row("b").passed
    d = report.first_divergent
    assert d is not None and d.blob == "b" and d.verdict.startswith("introduced here")


def test_split_blobs_of_same_named_layers_are_each_their_own() -> None:
    """Caffe's implicit Split tops are named after the blob and the producer
    (`a_ip_0_split_0`); two producers named `ip` each get theirs."""
    text = TWO_IPS + """
layer { name: "s1" type: "ReLU" bottom: "a" top: "c" }
layer { name: "s2" type: "ReLU" bottom: "b" top: "d" }
layer { name: "s3" type: "Sigmoid" bottom: "b" top: "e" }
"""
    module = build_module(parse_net(text), allow_missing_weights=True)
    blobs = module.forward_blobs(torch.randn(2, 3), include_splits=True)
    for blob in ("a", "b"):
        for k in (0, 1):
            assert torch.equal(blobs[f"{blob}_ip_0_split_{k}"], blobs[blob]), (blob, k)
