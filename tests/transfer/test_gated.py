"""Gate maths of the Gated Transfer Network (paper eqs. 1-3) and the feature heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelport.errors import ConfigError
from modelport.transfer import heads
from modelport.transfer.gated import GatedTransfer


def _features(n: int, dims: list[int], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g) for d in dims]


@pytest.mark.parametrize("dims", [[6], [6, 6], [6, 6, 6], [5, 9, 7]])
def test_gates_sum_to_one_across_layers(dims: list[int]) -> None:
    torch.manual_seed(1)
    gtn = GatedTransfer(dims, num_classes=4)
    r = gtn.gates(_features(3, dims))
    assert r.shape == (3, len(dims), gtn.width)
    torch.testing.assert_close(r.sum(dim=1), torch.ones(3, gtn.width), rtol=0, atol=1e-6)
    assert (r > 0).all()


def test_gates_follow_the_paper_equations() -> None:
    """z_i = sigmoid(W_i x_i + b) with b shared, r = softmax over layers, g = sum r_i x_i."""
    torch.manual_seed(2)
    dims = [7, 7]
    gtn = GatedTransfer(dims, num_classes=3)
    xs = _features(5, dims, seed=3)
    w = [g.weight.detach().numpy().astype(np.float64) for g in gtn.gate]
    b = gtn.gate_bias.detach().numpy().astype(np.float64) + 0.3
    with torch.no_grad():
        gtn.gate_bias.add_(0.3)
    x = [t.numpy().astype(np.float64) for t in xs]
    z = np.stack([1 / (1 + np.exp(-(xi @ wi.T + b))) for xi, wi in zip(x, w)], axis=1)
    r = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    g = (r * np.stack(x, axis=1)).sum(axis=1)
    wc = gtn.classifier.weight.detach().numpy().astype(np.float64)
    bc = gtn.classifier.bias.detach().numpy().astype(np.float64)
    with torch.no_grad():
        np.testing.assert_allclose(gtn.gates(xs).numpy(), r, atol=1e-6)
        np.testing.assert_allclose(gtn(xs).numpy(), g @ wc.T + bc, atol=1e-5)


def test_one_layer_gtn_is_a_softmax_classifier() -> None:
    torch.manual_seed(4)
    gtn = GatedTransfer([8], num_classes=5)
    (x,) = _features(6, [8], seed=5)
    lin = torch.nn.Linear(8, 5)
    with torch.no_grad():
        gtn.classifier.weight.copy_(lin.weight)
        gtn.classifier.bias.copy_(lin.bias)
        # Whatever the gate weights, one layer's softmax-normalised gate is exactly 1.
        gtn.gate[0].weight.normal_(0, 3)
        assert torch.equal(gtn.gates([x]), torch.ones(6, 1, 8))
        torch.testing.assert_close(gtn([x]), lin(x), rtol=0, atol=1e-6)


def test_different_widths_get_a_learned_projection() -> None:
    gtn = GatedTransfer([4, 10, 6], num_classes=2)
    assert gtn.width == 10
    assert isinstance(gtn.project[1], torch.nn.Identity)
    assert isinstance(gtn.project[0], torch.nn.Linear) and gtn.project[0].weight.shape == (10, 4)
    assert GatedTransfer([4, 10], num_classes=2, width=3).project[1].weight.shape == (3, 10)
    out = gtn(_features(2, [4, 10, 6]))
    assert out.shape == (2, 2)
    out.sum().backward()
    assert gtn.project[0].weight.grad is not None and gtn.gate_bias.grad is not None


def test_wrong_inputs_are_config_errors() -> None:
    gtn = GatedTransfer([4, 5], num_classes=2)
    with pytest.raises(ConfigError, match="2 layers"):
        gtn(_features(2, [4]))
    with pytest.raises(ConfigError, match=r"expected \(batch, 5\)"):
        gtn(_features(2, [4, 6]))
    with pytest.raises(ConfigError):
        GatedTransfer([], num_classes=2)


def _toy(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Two 'layers': layer 0 separates classes 0/1, layer 1 separates 0/2; neither alone all."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    a = rng.randn(n, 6).astype(np.float32) * 0.3
    b = rng.randn(n, 6).astype(np.float32) * 0.3
    a[:, 0] += (y == 1) * 2.0
    b[:, 1] += (y == 2) * 2.0
    return [a, b], y


def test_heads_learn_and_combining_layers_helps() -> None:
    train, ytr = _toy(90, 0)
    test, yte = _toy(60, 1)
    cfg = heads.TrainConfig(epochs=150, lr=0.05, weight_decay=0.0)
    one = heads.SoftmaxHead("softmax a", layer=0, cfg=cfg).fit(train, ytr)
    gated = heads.GatedHead("gtn", layers=(0, 1), cfg=cfg).fit(train, ytr)
    avg = heads.AverageHead("avg", layers=(0, 1), cfg=cfg).fit(train, ytr)
    ens = heads.EnsembleHead("ens", layers=(0, 1), cfg=cfg).fit(train, ytr)
    svm = heads.SVMHead("svm", layer=0).fit(train, ytr)
    # One layer cannot tell class 0 from class 2 (chance on that pair), both layers can.
    assert one.accuracy(test, yte) < 0.8
    for head in (gated, avg, ens):
        assert head.accuracy(test, yte) > 0.95, head.name
    assert svm.accuracy(test, yte) < 0.8
    assert gated.losses[-1] < gated.losses[0]
    r = gated.gates(test)
    assert r.shape == (60, 2, 6)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-6)
    p = ens.predict_proba(test)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_average_head_needs_equal_widths() -> None:
    with pytest.raises(ConfigError, match="different widths"):
        heads.AverageHead("avg", layers=(0, 1)).fit(
            [np.zeros((4, 3), np.float32), np.zeros((4, 5), np.float32)], np.array([0, 1, 0, 1]))


def test_standardizer_uses_training_statistics() -> None:
    rng = np.random.RandomState(0)
    train = [rng.randn(50, 3).astype(np.float32) * 4 + 2]
    std = heads.Standardizer.fit(train)
    z = std(train)[0]
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-3)
    shifted = std([train[0] + 1])[0]
    np.testing.assert_allclose(shifted.mean(0), 1 / std.stds[0], atol=1e-4)
