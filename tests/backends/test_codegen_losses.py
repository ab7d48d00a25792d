"""model.py for every registered loss/metric layer type (modelport.layers.loss): `convert` of a
small TEST net ending in the layer writes a model.py whose outputs (and input gradients) equal
the live module's bit for bit. The generic emitter copies the layer class and its modelport
base classes (LossModule, SoftmaxLoss) once each, bases first."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pytest
import torch

from modelport.backends.torch_module import build_module
from modelport.convert import convert, load_generated
from modelport.errors import UnsupportedLayerError
from modelport.layers import loss as loss_layers
from modelport.layers.base import CaffeModule
from modelport.layers.registry import layer_types, lookup, register_layer, unregister_layer
from modelport.pipeline import parse_net
from modelport.schema import caffe_pb2

N, K = 4, 5


def _input(name: str, *dims: int) -> str:
    shape = " ".join(f"dim: {d}" for d in dims)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
            f"input_param {{ shape {{ {shape} }} }} }}\n")


def _labels() -> torch.Tensor:
    return torch.tensor([0.0, 3.0, 4.0, 1.0])


def _scores() -> torch.Tensor:
    return torch.randn(N, K, generator=torch.Generator().manual_seed(1))


# type -> list of (case id, prototxt body after the inputs, inputs)
def _cases() -> list[tuple[str, str, str, dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    two = _input("x", N, K) + _input("label", N)
    xl = {"x": _scores(), "label": _labels()}
    h = torch.rand(K, K, generator=g)
    feats = _input("a", N, 3) + _input("b", N, 3) + _input("sim", N)
    pairs = {"a": torch.randn(N, 3, generator=g), "b": torch.randn(N, 3, generator=g),
             "sim": torch.tensor([1.0, 0.0, 0.0, 1.0])}
    return [
        ("SoftmaxWithLoss", "plain", two + 'layer { name: "loss" type: "SoftmaxWithLoss" '
         'bottom: "x" bottom: "label" top: "loss" }', xl),
        ("SoftmaxWithLoss", "ignore_prob", two + 'layer { name: "loss" type: "SoftmaxWithLoss" '
         'bottom: "x" bottom: "label" top: "loss" top: "prob" '
         "loss_param { ignore_label: 3 normalization: FULL } }", xl),
        ("EuclideanLoss", "plain", _input("x", N, K) + _input("y", N, K)
         + 'layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "y" top: "loss" }',
         {"x": _scores(), "y": torch.randn(N, K, generator=g)}),
        ("SigmoidCrossEntropyLoss", "ignore", _input("x", N, K) + _input("t", N, K)
         + 'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" '
         'top: "loss" loss_param { ignore_label: -1 } }',
         {"x": _scores() * 4, "t": torch.tensor([0.0, 1.0, -1.0, 0.5, 1.0] * N).reshape(N, K)}),
        ("HingeLoss", "L1", two + 'layer { name: "loss" type: "HingeLoss" bottom: "x" '
         'bottom: "label" top: "loss" }', xl),
        ("HingeLoss", "L2", two + 'layer { name: "loss" type: "HingeLoss" bottom: "x" '
         'bottom: "label" top: "loss" hinge_loss_param { norm: L2 } }', xl),
        ("InfogainLoss", "third_bottom", two + _input("h", K, K)
         + 'layer { name: "loss" type: "InfogainLoss" bottom: "x" bottom: "label" bottom: "h" '
         'top: "loss" top: "prob" }', {**xl, "h": h}),
        ("InfogainLoss", "source", two + 'layer { name: "loss" type: "InfogainLoss" bottom: "x" '
         'bottom: "label" top: "loss" infogain_loss_param { source: "H.binaryproto" } }', xl),
        ("MultinomialLogisticLoss", "plain", two + 'layer { name: "loss" '
         'type: "MultinomialLogisticLoss" bottom: "x" bottom: "label" top: "loss" }',
         {"x": torch.softmax(_scores(), 1), "label": _labels()}),
        ("ContrastiveLoss", "plain", feats + 'layer { name: "loss" type: "ContrastiveLoss" '
         'bottom: "a" bottom: "b" bottom: "sim" top: "loss" '
         "contrastive_loss_param { margin: 2 } }", pairs),
        ("ContrastiveLoss", "legacy", feats + 'layer { name: "loss" type: "ContrastiveLoss" '
         'bottom: "a" bottom: "b" bottom: "sim" top: "loss" '
         "contrastive_loss_param { margin: 2 legacy_version: true } }", pairs),
        ("Accuracy", "top3_per_class", two + 'layer { name: "acc" type: "Accuracy" bottom: "x" '
         'bottom: "label" top: "acc" top: "per_class" '
         "accuracy_param { top_k: 3 ignore_label: 4 } }", xl),
    ]


def _loss_types() -> list[str]:
    """Every registered type whose converter lives in modelport.layers.loss."""
    return [t for t in layer_types()
            if lookup(t).convert.__module__ == loss_layers.__name__]  # type: ignore[union-attr]


CASES = _cases()


def test_every_loss_type_has_a_case() -> None:
    types = _loss_types()
    assert set(loss_layers.LOSS_LAYER_TYPES) | {"Accuracy"} <= set(types)
    assert sorted({c[0] for c in CASES}) == sorted(types)


def _write_infogain(path: pathlib.Path, h: torch.Tensor) -> None:
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 1, K, K])
    blob.data.extend(h.reshape(-1).tolist())
    path.write_bytes(blob.SerializeToString())


@pytest.mark.parametrize(("type_name", "case_id", "body", "inputs"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_loss_model_py_matches_live_module(type_name: str, case_id: str, body: str,
                                           inputs: dict[str, torch.Tensor],
                                           tmp_path: pathlib.Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # Caffe opens infogain_loss_param.source relative to the cwd
    _write_infogain(tmp_path / "H.binaryproto",
                    torch.rand(K, K, generator=torch.Generator().manual_seed(7)))
    text = f'name: "{type_name}_{case_id}"\n' + body
    proto = tmp_path / "net.prototxt"
    proto.write_text(text)
    convert(proto, None, tmp_path / "out", phase="test", allow_missing_weights=True)
    src = (tmp_path / "out" / "model.py").read_text()
    assert f"class {type_name}(" in src
    gen = load_generated(tmp_path / "out" / "model.py").load()
    live = build_module(parse_net(text, str(proto)), allow_missing_weights=True)
    assert not gen.training and not live.training

    def run(net: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[torch.Tensor | None]]:
        xs = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
        blobs = net.forward_blobs(**xs)  # type: ignore[operator]
        first = blobs[live.output_names[0]]
        grads: list[torch.Tensor | None] = [None] * len(xs)
        if first.requires_grad:
            grads = list(torch.autograd.grad(first, list(xs.values()), allow_unused=True))
        return {k: v.detach() for k, v in blobs.items()}, grads

    ours, our_grads = run(gen)
    theirs, their_grads = run(live)
    assert ours.keys() == theirs.keys()
    for k, t in theirs.items():
        assert torch.equal(ours[k], t), (k, ours[k], t)
    for mine, ref in zip(our_grads, their_grads, strict=True):
        assert (mine is None) == (ref is None)
        if ref is not None:
            assert mine is not None and torch.equal(mine, ref)
    assert float(np.abs(theirs[live.output_names[0]].numpy()).max()) > 0  # a real value


def test_shared_bases_are_written_once_before_their_subclasses(tmp_path: pathlib.Path) -> None:
    """SoftmaxWithLoss, InfogainLoss (both SoftmaxLoss) and Accuracy (LossModule) in one net."""
    text = ('name: "three"\n' + _input("x", N, K) + _input("label", N) + _input("h", K, K)
            + 'layer { name: "sm" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" '
            'top: "sm" }\n'
            'layer { name: "ig" type: "InfogainLoss" bottom: "x" bottom: "label" bottom: "h" '
            'top: "ig" }\n'
            'layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "acc" }\n')
    proto = tmp_path / "net.prototxt"
    proto.write_text(text)
    convert(proto, None, tmp_path / "out", phase="test", allow_missing_weights=True)
    src = (tmp_path / "out" / "model.py").read_text()
    heads = ["class LossModule(nn.Module):", "class SoftmaxLoss(LossModule):",
             "class SoftmaxWithLoss(SoftmaxLoss):", "class InfogainLoss(SoftmaxLoss):",
             "class Accuracy(LossModule):"]
    for head in heads:
        assert src.count(head) == 1, head
    assert src.index(heads[0]) < src.index(heads[1]) < min(src.index(h) for h in heads[2:4])
    gen = load_generated(tmp_path / "out" / "model.py").load()
    live = build_module(parse_net(text, str(proto)), allow_missing_weights=True)
    xs: dict[str, Any] = {"x": _scores(), "label": _labels(), "h": torch.rand(K, K)}
    ours, theirs = gen.forward_blobs(**xs), live.forward_blobs(**xs)
    for k, t in theirs.items():
        assert torch.equal(ours[k], t), k


class _ForeignBase(torch.nn.Module):
    def scale(self) -> float:
        return 2.0


class _ForeignLoss(CaffeModule, _ForeignBase):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum() * self.scale()


def test_a_loss_class_with_a_foreign_base_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    @register_layer("MyForeignLoss", replace=True, role="train")
    def convert_foreign(layer: object, ctx: object) -> CaffeModule:
        """Fork layer for this test: a loss whose class mixes in a non-modelport base."""
        return _ForeignLoss()

    proto = tmp_path / "net.prototxt"
    proto.write_text(_input("x", N, K)
                     + 'layer { name: "odd" type: "MyForeignLoss" bottom: "x" top: "odd" }\n')
    try:
        with pytest.raises(UnsupportedLayerError,
                           match=r"layer 'odd' \(type MyForeignLoss\).*_ForeignLoss.*Fix:"):
            convert(proto, None, tmp_path / "out", phase="test", allow_missing_weights=True)
        assert not (tmp_path / "out").exists()
    finally:
        unregister_layer("MyForeignLoss")


def test_bvlc_siamese_train_test_converts(tmp_path: pathlib.Path) -> None:
    """BVLC's mnist_siamese_train_test (TEST phase, ending in ContrastiveLoss): model.py gives
    the live module's loss bit for bit."""
    net = pathlib.Path(__file__).parents[1] / "train" / "bvlc" / "mnist_siamese_train_test.prototxt"
    shapes = {"pair_data": (2, 2, 28, 28), "sim": (2,)}
    convert(net, None, tmp_path / "out", phase="test", input_shapes=shapes,
            allow_missing_weights=True)
    gen = load_generated(tmp_path / "out" / "model.py").load()
    from modelport.caffe import load

    live = load(net, None, phase="test", input_shapes=shapes, allow_missing_weights=True)
    live.load_state_dict(gen.state_dict())  # the same (randomly filled) weights
    g = torch.Generator().manual_seed(3)
    xs: dict[str, Any] = {"pair_data": torch.rand(2, 2, 28, 28, generator=g),
                          "sim": torch.tensor([1.0, 0.0])}
    with torch.no_grad():
        ours, theirs = gen.forward_blobs(**xs), live.forward_blobs(**xs)
    assert torch.equal(ours["loss"], theirs["loss"]) and float(theirs["loss"]) > 0
