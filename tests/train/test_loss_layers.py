"""Loss and Accuracy layers against loop-for-loop numpy transcriptions of Caffe's Forward_cpu
and Backward_cpu (softmax_loss_layer.cpp, euclidean_loss_layer.cpp,
sigmoid_cross_entropy_loss_layer.cpp, hinge_loss_layer.cpp, infogain_loss_layer.cpp,
multinomial_logistic_loss_layer.cpp, contrastive_loss_layer.cpp, accuracy_layer.cpp).
Gradients are compared for a loss_weight of 0.7 (Caffe scales the bottom diff by top diff)."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch

from modelport.errors import LayerError
from modelport.formats.caffe import caffe_pb2
from modelport.layers.base import ConvertContext
from modelport.layers.loss import loss_weights
from modelport.layers.registry import lookup
from modelport.pipeline import parse_net

FLT_MIN = float(np.finfo(np.float32).tiny)
LW = 0.7


def layer_of(text: str):
    return parse_net(f"layer {{ {text} }}", phase="train").layers[0]


def build(text: str, *shapes: tuple[int, ...]):
    layer = layer_of(text)
    spec = lookup(layer.type)
    assert spec is not None and spec.role == "train"
    return spec.convert(layer, ConvertContext(layer, tuple(shapes), caffe_pb2.TRAIN))


def run(module, *arrays: np.ndarray, grad: int | None = 0):
    ts = [torch.tensor(a, requires_grad=(i == grad)) for i, a in enumerate(arrays)]
    out = module(*ts)
    top = out[0] if isinstance(out, tuple) else out
    if grad is None:
        return top.detach().numpy(), None
    (top * LW).backward()
    return top.detach().numpy(), ts[grad].grad.numpy()


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def caffe_normalizer(mode: int, outer: int, inner: int, valid: int) -> float:
    n = {0: outer * inner, 1: valid, 2: outer, 3: 1}[mode]
    return float(max(1, n))


# -- SoftmaxWithLoss ------------------------------------------------------------------------

def softmax_loss_ref(x: np.ndarray, label: np.ndarray, axis: int, ignore: int | None,
                     mode: int) -> tuple[float, np.ndarray]:
    prob = softmax(x, axis)
    outer = int(np.prod(x.shape[:axis]))
    inner = int(np.prod(x.shape[axis + 1:]))
    dim = x.shape[axis]
    p = prob.reshape(outer, dim, inner)
    lab = label.reshape(outer, inner)
    loss, count = 0.0, 0
    diff = p.copy()
    for i in range(outer):
        for j in range(inner):
            v = int(lab[i, j])
            if ignore is not None and v == ignore:
                diff[i, :, j] = 0
                continue
            loss -= math.log(max(p[i, v, j], FLT_MIN))
            diff[i, v, j] -= 1
            count += 1
    norm = caffe_normalizer(mode, outer, inner, count if ignore is not None else outer * inner)
    return loss / norm, (diff * LW / norm).reshape(x.shape)


@pytest.mark.parametrize("mode_text, mode", [
    ("normalization: FULL", 0), ("normalization: VALID", 1), ("normalization: BATCH_SIZE", 2),
    ("normalization: NONE", 3), ("normalize: false", 2), ("normalize: true", 1), ("", 1)])
def test_softmax_with_loss_normalisations(mode_text: str, mode: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 2, 4)).astype(np.float32) * 3
    label = rng.integers(0, 5, size=(3, 1, 2, 4)).astype(np.float32)
    label[0, 0, 1, 2] = label[2, 0, 0, 0] = 255
    mod = build(f'name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
                f"loss_param {{ ignore_label: 255 {mode_text} }}", x.shape, label.shape)
    got, g = run(mod, x, label)
    ref, rg = softmax_loss_ref(x, label, 1, 255, mode)
    assert abs(float(got) - ref) <= 1e-5 * max(1, abs(ref))
    np.testing.assert_allclose(g, rg, atol=1e-6)


def test_softmax_with_loss_axis_and_prob_top() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 6)).astype(np.float32)
    label = rng.integers(0, 6, size=(2, 3)).astype(np.float32)
    mod = build('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
                'top: "prob" softmax_param { axis: 2 }', x.shape, label.shape)
    assert mod.output_shapes([x.shape, label.shape]) == [(), x.shape]
    loss, prob = mod(torch.tensor(x), torch.tensor(label))
    ref, _ = softmax_loss_ref(x, label, 2, None, 1)
    assert abs(float(loss) - ref) <= 1e-5 * max(1, ref)
    np.testing.assert_allclose(prob.numpy(), softmax(x, 2), atol=1e-6)


def test_softmax_with_loss_label_out_of_range() -> None:
    mod = build('name: "cls_loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "l"',
                (2, 3), (2,))
    with pytest.raises(LayerError, match="layer 'cls_loss'.*label 3 is outside 0..2"):
        mod(torch.zeros(2, 3), torch.tensor([0.0, 3.0]))


# -- EuclideanLoss, SigmoidCrossEntropyLoss, HingeLoss ---------------------------------------

def test_euclidean_loss() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 3, 2)).astype(np.float32)
    b = rng.normal(size=(4, 6)).astype(np.float32)
    mod = build('name: "e" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l"',
                a.shape, b.shape)
    got, ga = run(mod, a, b, grad=0)
    diff = a.reshape(4, 6) - b
    assert abs(float(got) - float((diff ** 2).sum() / 4 / 2)) < 1e-5
    np.testing.assert_allclose(ga, (LW * diff / 4).reshape(a.shape), atol=1e-6)
    _, gb = run(mod, a, b, grad=1)
    np.testing.assert_allclose(gb, -LW * diff / 4, atol=1e-6)


def sigmoid_xent_ref(x: np.ndarray, t: np.ndarray, ignore: int | None, mode: int):
    loss, valid = 0.0, 0
    diff = 1 / (1 + np.exp(-x.astype(np.float64))) - t
    for i in range(x.size):
        xi, ti = float(x.flat[i]), float(t.flat[i])
        if ignore is not None and int(ti) == ignore:
            diff.flat[i] = 0
            continue
        pos = 1.0 if xi >= 0 else 0.0
        loss -= xi * (ti - pos) - math.log(1 + math.exp(xi - 2 * xi * pos))
        valid += 1
    outer = x.shape[0]
    norm = caffe_normalizer(mode, outer, x.size // outer, valid if ignore is not None
                            else x.size)
    return loss / norm, diff * LW / norm


@pytest.mark.parametrize("param, ignore, mode", [
    ("", None, 2),  # no normalization/normalize: BATCH_SIZE (not the proto's VALID)
    ("loss_param { ignore_label: -1 normalization: VALID }", -1, 1),
    ("loss_param { normalize: true }", None, 1),
    ("loss_param { normalization: FULL ignore_label: -1 }", -1, 0),
])
def test_sigmoid_cross_entropy(param: str, ignore: int | None, mode: int) -> None:
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3, 7)) * 4).astype(np.float32)
    x[0, 0] = 60.0  # exp overflow territory: Caffe's stable form
    t = rng.uniform(size=(3, 7)).astype(np.float32)
    t[1, 2] = t[2, 5] = -1
    mod = build(f'name: "s" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" '
                f'top: "l" {param}', x.shape, t.shape)
    got, g = run(mod, x, t)
    ref, rg = sigmoid_xent_ref(x, t, ignore, mode)
    assert abs(float(got) - ref) <= 1e-5 * max(1, abs(ref))
    np.testing.assert_allclose(g, rg, atol=1e-6)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss(norm: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    label = np.array([0, 3, 1, 1, 2], np.float32)
    mod = build(f'name: "h" type: "HingeLoss" bottom: "x" bottom: "y" top: "l" '
                f"hinge_loss_param {{ norm: {norm} }}", x.shape, label.shape)
    got, g = run(mod, x, label)
    d = x.copy()
    for i in range(5):
        d[i, int(label[i])] *= -1
    d = np.maximum(0, 1 + d)
    ref = d.sum() / 5 if norm == "L1" else (d * d).sum() / 5
    grad = np.sign(d) if norm == "L1" else 2 * d
    for i in range(5):
        grad[i, int(label[i])] *= -1
    assert abs(float(got) - ref) < 1e-5
    np.testing.assert_allclose(g, grad * LW / 5, atol=1e-6)


# -- InfogainLoss, MultinomialLogisticLoss, ContrastiveLoss ----------------------------------

def infogain_ref(x: np.ndarray, label: np.ndarray, h: np.ndarray):
    prob = softmax(x, 1)
    n, k = x.shape
    loss = 0.0
    diff = np.zeros_like(prob)
    for i in range(n):
        v = int(label[i])
        for j in range(k):
            loss -= h[v, j] * math.log(max(prob[i, j], FLT_MIN))
            diff[i, j] = prob[i, j] * h[v].sum() - h[v, j]
    return loss / n, diff * LW / n


def test_infogain_loss_from_binaryproto_and_third_bottom(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    label = np.array([2, 0, 1, 2], np.float32)
    h = rng.uniform(0, 2, size=(3, 3)).astype(np.float32)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 1, 3, 3])
    blob.data.extend(h.ravel().tolist())
    path = tmp_path / "H.binaryproto"
    path.write_bytes(blob.SerializeToString())
    ref, rg = infogain_ref(x, label, h)
    mod = build(f'name: "i" type: "InfogainLoss" bottom: "x" bottom: "y" top: "l" '
                f'infogain_loss_param {{ source: "{path}" }}', x.shape, label.shape)
    got, g = run(mod, x, label)
    assert abs(float(got) - ref) < 1e-5
    np.testing.assert_allclose(g, rg, atol=1e-6)
    mod3 = build('name: "i" type: "InfogainLoss" bottom: "x" bottom: "y" bottom: "H" top: "l"',
                 x.shape, label.shape, h.shape)
    got3, g3 = run(mod3, x, label, h)
    assert abs(float(got3) - ref) < 1e-5
    np.testing.assert_allclose(g3, rg, atol=1e-6)


def test_multinomial_logistic_loss() -> None:
    prob = np.array([[0.2, 0.7, 0.1], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]], np.float32)
    label = np.array([1, 2, 2], np.float32)
    mod = build('name: "m" type: "MultinomialLogisticLoss" bottom: "p" bottom: "y" top: "l"',
                prob.shape, label.shape)
    got, g = run(mod, prob, label)
    picked = [max(float(prob[i, int(label[i])]), 1e-20) for i in range(3)]
    assert abs(float(got) - sum(-math.log(p) for p in picked) / 3) < 1e-5
    ref = np.zeros_like(prob)
    for i in range(3):
        ref[i, int(label[i])] = -LW / 3 / picked[i]  # Caffe: -scale / max(p, threshold)
    np.testing.assert_allclose(g, ref, rtol=1e-5)


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss(legacy: bool) -> None:
    rng = np.random.default_rng(6)
    a = rng.normal(size=(6, 4, 1, 1)).astype(np.float32) * 0.4
    b = rng.normal(size=(6, 4, 1, 1)).astype(np.float32) * 0.4
    y = np.array([1, 0, 0, 1, 0, 0], np.float32).reshape(6, 1, 1, 1)
    margin = 1.3
    mod = build(f'name: "c" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "y" '
                f'top: "l" contrastive_loss_param {{ margin: {margin} '
                f'legacy_version: {str(legacy).lower()} }}', a.shape, b.shape, y.shape)
    got, ga = run(mod, a, b, y, grad=0)
    diff = (a - b).reshape(6, 4)
    dist_sq = (diff ** 2).sum(1)
    loss, grad = 0.0, np.zeros_like(diff)
    for i in range(6):
        if y.flat[i]:
            loss += dist_sq[i]
            grad[i] = LW / 6 * diff[i]
        elif legacy:
            mdist = margin - dist_sq[i]
            loss += max(mdist, 0)
            if mdist > 0:
                grad[i] = -LW / 6 * diff[i]
        else:
            dist = math.sqrt(dist_sq[i])
            mdist = margin - dist
            loss += max(mdist, 0) ** 2
            if mdist > 0:
                grad[i] = -LW / 6 * mdist / (dist + 1e-4) * diff[i]
    assert abs(float(got) - loss / 6 / 2) < 1e-6
    np.testing.assert_allclose(ga.reshape(6, 4), grad, atol=1e-6)


# -- Accuracy and loss weights ---------------------------------------------------------------

def test_accuracy_top_k_ignore_and_per_class() -> None:
    x = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05], [0.2, 0.2, 0.6],
                  [0.6, 0.3, 0.1]], np.float32)
    label = np.array([2, 0, 0, 1, 7], np.float32)
    mod1 = build('name: "a" type: "Accuracy" bottom: "x" bottom: "y" top: "acc" top: "per" '
                 "accuracy_param { ignore_label: 7 }", x.shape, label.shape)
    acc, per = mod1(torch.tensor(x), torch.tensor(label))
    # row 0: 1 better; row 1: tie 0.3==0.3 but 0.4 better -> 1 better; row 2: 0; row 3: 1
    assert float(acc) == pytest.approx(1 / 4)
    np.testing.assert_allclose(per.numpy(), [1 / 2, 0.0, 0.0])
    mod2 = build('name: "a" type: "Accuracy" bottom: "x" bottom: "y" top: "acc" '
                 "accuracy_param { top_k: 2 ignore_label: 7 }", x.shape, label.shape)
    assert float(mod2(torch.tensor(x), torch.tensor(label))) == pytest.approx(4 / 4)
    with pytest.raises(LayerError, match="top_k 4 is larger than the 3 classes"):
        build('name: "a" type: "Accuracy" bottom: "x" bottom: "y" top: "acc" '
              "accuracy_param { top_k: 4 }", x.shape, label.shape)


def test_loss_weight_defaults() -> None:
    assert loss_weights(layer_of('name: "l" type: "SoftmaxWithLoss" top: "l" top: "p"')) == \
        (1.0, 0.0)
    assert loss_weights(layer_of('name: "a" type: "Accuracy" top: "a"')) == (0.0,)
    assert loss_weights(layer_of('name: "c" type: "InnerProduct" top: "c" loss_weight: 0.3')) \
        == (pytest.approx(0.3),)
    with pytest.raises(LayerError, match="loss_weight"):
        loss_weights(layer_of('name: "l" type: "EuclideanLoss" top: "l" loss_weight: 1 '
                              "loss_weight: 2"))
