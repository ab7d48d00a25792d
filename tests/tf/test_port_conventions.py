"""The name conventions without files: Keras 2 `:0` names, float16 / bfloat16 values, TF-slim
separable scopes, LayerNormalization's epsilon, Embedding, and verify_tf's output keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modelport.errors import ConfigError
from modelport.formats.tf.source import KerasLayer, TFVariable, WeightSource
from modelport.tf import PortError, port_weights
from modelport.tf.twins import SeparableConv2d
from modelport.tf.verify_tf import verify_tf


class Dense1(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense_1 = nn.Linear(3, 2)


def test_keras2_names_and_half_precision_values() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes ([tf] extra)")
    kernel = np.arange(6, dtype=np.float16).reshape(3, 2) / 4
    bias = np.array([0.5, -1.25], dtype=ml_dtypes.bfloat16)
    m = Dense1()
    report = port_weights({"dense_1/kernel:0": kernel, "dense_1/bias:0": bias}, m)
    assert report.ok and report.row("dense_1/kernel:0").target == "dense_1.weight"
    assert m.dense_1.weight.dtype == torch.float32
    assert np.array_equal(m.dense_1.weight.detach().numpy(), kernel.astype(np.float32).T)
    assert m.dense_1.bias.tolist() == [0.5, -1.25]


def test_slim_separable_scope() -> None:
    rng = np.random.default_rng(0)
    dw, pw, b = (rng.standard_normal(s).astype(np.float32)
                 for s in ((3, 3, 4, 2), (1, 1, 8, 5), (5,)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.Sep = SeparableConv2d(4, 5, 3, depth_multiplier=2)

    m = Net()
    report = port_weights({"Net/Sep/depthwise_weights": dw, "Net/Sep/pointwise_weights": pw,
                           "Net/Sep/biases": b}, m)
    assert report.row("Net/Sep/depthwise_weights").target == "Sep.depthwise.weight"
    assert report.row("Net/Sep/pointwise_weights").target == "Sep.pointwise.weight"
    assert report.row("Net/Sep/biases").target == "Sep.pointwise.bias"
    # TF's depthwise output channel i*mult + m is torch's out channel i*mult + m (group i)
    w = m.Sep.depthwise.weight.detach().numpy()
    assert np.array_equal(w[2 * 2 + 1, 0], dw[:, :, 2, 1])
    assert np.array_equal(m.Sep.pointwise.weight.detach().numpy()[:, :, 0, 0], pw[0, 0].T)


def test_layernorm_epsilon_and_embedding() -> None:
    gamma, beta = np.full(6, 2.0, np.float32), np.full(6, 0.5, np.float32)
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    variables = {"ln/gamma": TFVariable("ln/gamma", gamma, "ln", "gamma"),
                 "ln/beta": TFVariable("ln/beta", beta, "ln", "beta"),
                 "emb/embeddings": TFVariable("emb/embeddings", table, "emb", "embeddings")}
    layers = [KerasLayer("emb", "Embedding", {}, [variables["emb/embeddings"]], 1),
              KerasLayer("ln", "LayerNormalization", {"epsilon": 1e-3},
                         [variables["ln/gamma"], variables["ln/beta"]], 2)]
    src = WeightSource(Path("mem"), "keras-archive", variables, layers, "config.json")

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(4, 3)
            self.ln = nn.LayerNorm(6)

    with pytest.raises(PortError, match=r"'ln.eps': module eps 1e-05 but the source's epsilon "
                                        r"is 0\.001"):
        port_weights(src, Net())
    m = Net()
    port_weights(src, m, set_eps=True)
    assert m.ln.eps == 1e-3 and m.ln.weight.tolist() == [2.0] * 6
    assert np.array_equal(m.emb.weight.detach().numpy(), table)


class TwoOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, y.mean((2, 3))


def test_verify_tf_output_keys_and_nhwc() -> None:
    m = TwoOut()
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 2)).astype(np.float32)  # NHWC
    with torch.no_grad():
        y, pooled = m(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    refs = {"output:0": y.numpy().transpose(0, 2, 3, 1), "output:1": pooled.numpy()}
    report = verify_tf(m, x, refs)
    assert report.passed and [r.blob for r in report.rows] == ["output:0", "output:1"]
    refs["output:1"] = refs["output:1"] + 1e-3  # beyond 1e-4 * max(1, max|ref|)
    bad = verify_tf(m, x, refs)
    assert not bad.passed and bad.first_divergent is not None
    assert bad.first_divergent.blob == "output:1"
    with pytest.raises(ConfigError, match="no such output"):
        verify_tf(m, x, {"output:2": pooled.numpy()})


def test_report_table_escapes_control_characters() -> None:
    report = port_weights({"a\x1b[2J/kernel": np.ones((2, 2), np.float32)}, nn.Linear(2, 2),
                          strict=False)
    text = str(report)
    assert "\x1b" not in text and "a\\x1b[2J/kernel" in text
    assert "1 variable ported" in text and "1 problem" in text and "MISSING" in text


def test_channels_first_keras_needs_no_row_reorder() -> None:
    """Keras kernels are HWIO whatever data_format says; a channels_first model's Flatten()
    reads (c, h, w) (flatten_shapes={}: the Dense after it is only transposed)."""
    rng = np.random.default_rng(2)
    k = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    d = rng.standard_normal((4 * 5 * 6, 3)).astype(np.float32)
    conv = TFVariable("conv/kernel", k, "conv", "kernel")
    dense = TFVariable("fc/kernel", d, "fc", "kernel")
    src = WeightSource(Path("mem"), "keras-archive", {v.name: v for v in (conv, dense)}, [
        KerasLayer("conv", "Conv2D", {"data_format": "channels_first", "use_bias": False},
                   [conv], 1),
        KerasLayer("fc", "Dense", {"use_bias": False}, [dense], 3)], "config.json")

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(120, 3, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.flatten(self.conv(x)))

    m = Net()
    # the file cannot say whether its Flatten permuted to (h, w, c): refused without the shape
    with pytest.raises(ConfigError, match=r"channels_first and nn.Linear 'fc' reads a flatten"):
        port_weights(src, m, sample_input=torch.zeros(1, 2, 5, 6))
    report = port_weights(src, m, sample_input=torch.zeros(1, 2, 5, 6), flatten_shapes={})
    assert report.row("fc/kernel").layout == "(in,out) -> (out,in)"
    assert any("channels_first" in n for n in report.notes)
    assert np.array_equal(m.fc.weight.detach().numpy(), d.T)


def test_bfloat16_module_and_tied_weights() -> None:
    kernel = np.arange(6, dtype=np.float32).reshape(3, 2) / 8  # exact in bfloat16
    m = Dense1().to(torch.bfloat16)
    port_weights({"dense_1/kernel": kernel, "dense_1/bias": np.ones(2, np.float32)}, m)
    assert m.dense_1.weight.dtype == torch.bfloat16
    assert torch.equal(m.dense_1.weight.float(), torch.from_numpy(kernel.T.copy()))

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(4, 3)
            self.out = nn.Linear(3, 4, bias=False)
            self.out.weight = self.emb.weight  # one tensor, two keys

    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    tied = Tied()
    report = port_weights({"emb/embeddings": table}, tied, {r"^emb/embeddings$": "emb.weight"})
    assert report.row("emb/embeddings").status == "ported"
    assert report.row("out.weight").reason == "tied: the same tensor as 'emb.weight'"
    assert np.array_equal(tied.out.weight.detach().numpy(), table)


def test_prelu_alpha_shared_over_space_only() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p_re_lu = nn.PReLU(3)

    alpha = np.array([[[0.1, 0.2, 0.3]]], np.float32)  # shared_axes=[1, 2]: (1, 1, C)
    m = Net()
    report = port_weights({"p_re_lu/alpha": alpha}, m)
    assert report.row("p_re_lu/alpha").layout == "1x1x3 -> per channel"
    assert np.allclose(m.p_re_lu.weight.detach().numpy(), [0.1, 0.2, 0.3])
    with pytest.raises(PortError, match=r"'p_re_lu/alpha' \(4x5x3\) -> 'p_re_lu.weight' "
                                        r"expects 3"):
        port_weights({"p_re_lu/alpha": np.ones((4, 5, 3), np.float32)}, Net())


def test_flatten_of_1d_map_reordered_but_a_sequence_is_not() -> None:
    """A Conv1D (L, C) map flattened into a Dense: rows (l, c) -> (c, l); the same 3-D flatten
    in a model without a 1-D conv is an (N, T, D) sequence kept as is."""
    rng = np.random.default_rng(3)
    k = rng.standard_normal((3, 2, 4)).astype(np.float32)  # Conv1D (k, in, out)
    d = rng.standard_normal((5 * 4, 3)).astype(np.float32)

    class Net(nn.Module):
        def __init__(self, conv: bool) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 3, bias=False) if conv else None
            self.fc = nn.Linear(20, 3, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc((self.conv(x) if self.conv is not None else x).flatten(1))

    conv_v, dense_v = TFVariable("c/kernel", k, "c", "kernel"), TFVariable("fc/kernel", d, "fc",
                                                                           "kernel")
    src = WeightSource(Path("mem"), "keras-archive", {"c/kernel": conv_v, "fc/kernel": dense_v},
                       [KerasLayer("c", "Conv1D", {}, [conv_v], 1),
                        KerasLayer("fc", "Dense", {}, [dense_v], 3)], "config.json")
    m = Net(conv=True)
    report = port_weights(src, m, mapping={"^c/": "conv/"}, sample_input=torch.zeros(1, 2, 7))
    assert "channels-last 5x4 flatten -> channels-first" in report.row("fc/kernel").layout
    want = d.reshape(5, 4, 3).transpose(1, 0, 2).reshape(20, 3).T
    assert np.array_equal(m.fc.weight.detach().numpy(), want)
    seq = WeightSource(Path("mem"), "keras-archive", {"fc/kernel": dense_v},
                       [KerasLayer("fc", "Dense", {}, [dense_v], 1)], "config.json")
    m2 = Net(conv=False)
    report2 = port_weights(seq, m2, sample_input=torch.zeros(1, 5, 4))
    assert report2.row("fc/kernel").layout == "(in,out) -> (out,in)"
    assert any("taken as a sequence" in n for n in report2.notes)
