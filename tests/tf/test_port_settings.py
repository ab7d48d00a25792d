"""The settings check: a Keras config the twin's torch module does not share is refused by
layer and setting (`modelport.tf.settings`); the equivalences it accepts hold numerically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from port_cases import FIXTURES
from torch import nn

from modelport.formats.tf.source import KerasLayer, TFVariable, WeightSource
from modelport.tf import PortError, port_weights
from modelport.tf.twins import Conv1dSame, ConvTranspose2dSame


def one_layer(class_name: str, config: dict[str, Any], **arrays: np.ndarray) -> WeightSource:
    vs = [TFVariable(f"layer/{role}", value, "layer", role) for role, value in arrays.items()]
    return WeightSource(Path("mem"), "keras-archive", {v.name: v for v in vs},
                        [KerasLayer("layer", class_name, config, vs, 1)], "config.json")


class One(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer


RNG = np.random.default_rng(5)
K33 = RNG.standard_normal((3, 3, 2, 4)).astype(np.float32)
T33 = RNG.standard_normal((3, 3, 4, 2)).astype(np.float32)  # transposed: (H, W, out, in)


def test_conv2d_transpose_output_padding_needs_kerass_rule() -> None:
    cfg = {"padding": "same", "strides": [2, 2], "output_padding": [1, 1],
           "dilation_rate": [1, 1]}
    src = one_layer("Conv2DTranspose", cfg, kernel=T33)
    # torch's padding=1, output_padding=1 has Keras's size (2n) but crops 1 before, Keras 0
    with pytest.raises(PortError, match=r"layer 'layer' \(padding='same', output_padding="
                                        r"\(1, 1\)\) crops 0 before.*ConvTranspose2dSame"):
        port_weights(src, One(nn.ConvTranspose2d(2, 4, 3, 2, padding=1, output_padding=1,
                                                 bias=False)))
    with pytest.raises(PortError, match=r"output_padding=\(1, 1\), 'layer' "
                                        r"\(ConvTranspose2dSame\) padding='same'\. Fix"):
        port_weights(src, One(ConvTranspose2dSame(2, 4, 3, 2, bias=False)))
    report = port_weights(src, One(ConvTranspose2dSame(2, 4, 3, 2, bias=False,
                                                       output_padding=1)))
    assert report.ok


def test_plain_conv_transpose_accepted_only_where_it_equals_keras() -> None:
    """k=4, s=2 'same': torch's padding=1 crops as TF does for every size (accepted, and the
    outputs agree); k=3, s=2 'same' has no symmetric torch form (refused)."""
    t44 = RNG.standard_normal((4, 4, 4, 2)).astype(np.float32)
    src = one_layer("Conv2DTranspose", {"padding": "same", "strides": [2, 2]}, kernel=t44)
    plain = One(nn.ConvTranspose2d(2, 4, 4, 2, padding=1, bias=False))
    assert port_weights(src, plain).ok
    twin = One(ConvTranspose2dSame(2, 4, 4, 2, bias=False))
    port_weights(src, twin)
    for h, w in ((5, 6), (4, 7)):
        x = torch.randn(1, 2, h, w)
        assert torch.allclose(plain.layer(x), twin.layer(x), atol=1e-5), (h, w)
    src3 = one_layer("Conv2DTranspose", {"padding": "same", "strides": [2, 2]}, kernel=T33)
    with pytest.raises(PortError, match="crops 0 before"):
        port_weights(src3, One(nn.ConvTranspose2d(2, 4, 3, 2, padding=1, bias=False)))


@pytest.mark.parametrize(("config", "module", "match"), [
    ({"strides": [2, 2], "padding": "valid"}, nn.Conv2d(2, 4, 3, bias=False),
     r"strides \(2, 2\), 'layer' \(Conv2d\) stride \(1, 1\)"),
    ({"dilation_rate": [2, 2], "padding": "valid"}, nn.Conv2d(2, 4, 3, bias=False),
     r"dilation_rate \(2, 2\)"),
    ({"strides": [2, 2], "padding": "same"}, nn.Conv2d(2, 4, 3, 2, padding=1, bias=False),
     r"pads 'same' as TF .* pads \(1, 1\) on both sides at stride \(2, 2\)"),
    ({"padding": "valid"}, nn.Conv2d(2, 4, 3, padding=1, bias=False),
     r"pads 'valid', 'layer' \(Conv2d\) pads \(1, 1\)\. Fix: padding=0"),
    ({"padding": "same"}, nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect", bias=False),
     r"padding_mode='zeros'"),
])
def test_conv_settings_refused(config: dict[str, Any], module: nn.Module, match: str) -> None:
    with pytest.raises(PortError, match=match):
        port_weights(one_layer("Conv2D", config, kernel=K33), One(module))


def test_symmetric_padding_accepted_at_stride_one_and_check_can_be_off() -> None:
    src = one_layer("Conv2D", {"padding": "same", "strides": [1, 1]}, kernel=K33)
    assert port_weights(src, One(nn.Conv2d(2, 4, 3, padding=1, bias=False))).ok
    src2 = one_layer("Conv2D", {"padding": "same", "strides": [2, 2]}, kernel=K33)
    report = port_weights(src2, One(nn.Conv2d(2, 4, 3, 2, padding=1, bias=False)),
                          check_settings=False)
    assert report.ok


def test_causal_conv1d_needs_a_causal_twin() -> None:
    k = RNG.standard_normal((3, 2, 4)).astype(np.float32)
    src = one_layer("Conv1D", {"padding": "causal", "dilation_rate": [2]}, kernel=k)
    with pytest.raises(PortError, match=r"pads 'causal', 'layer' \(Conv1dSame\) pads 'same'"):
        port_weights(src, One(Conv1dSame(2, 4, 3, dilation=2, bias=False)))
    with pytest.raises(PortError, match=r"pads 'causal'.*twins.Conv1dSame"):
        port_weights(src, One(nn.Conv1d(2, 4, 3, dilation=2, padding=2, bias=False)))
    assert port_weights(src, One(Conv1dSame(2, 4, 3, padding="causal", dilation=2,
                                            bias=False))).ok


def bn_source(axis: Any) -> WeightSource:
    v = {r: RNG.uniform(0.5, 2, 4).astype(np.float32)
         for r in ("gamma", "beta", "moving_mean", "moving_variance")}
    return one_layer("BatchNormalization", {"axis": axis, "epsilon": 1e-3}, **v)


def test_batchnorm_axis_must_be_the_channel_axis() -> None:
    ok = [bn_source(-1), bn_source(3), bn_source([3])]
    for src in ok:
        assert port_weights(src, One(nn.BatchNorm2d(4, eps=1e-3))).ok
    with pytest.raises(PortError, match=r"normalizes axis 1, not the channel axis of the "
                                        r"channels-last 4-D tensor"):
        port_weights(bn_source(1), One(nn.BatchNorm2d(4, eps=1e-3)))
    assert port_weights(bn_source(1), One(nn.BatchNorm1d(4, eps=1e-3))).ok  # (N, C) after Dense
    assert port_weights(bn_source(1), One(nn.BatchNorm2d(4, eps=1e-3)),
                        check_settings=False).ok


def test_layernorm_rms_scaling_refused() -> None:
    src = one_layer("LayerNormalization", {"rms_scaling": True, "epsilon": 1e-3},
                    gamma=np.ones(4, np.float32))
    with pytest.raises(PortError, match="rms_scaling=True"):
        port_weights(src, One(nn.LayerNorm(4, eps=1e-3, bias=False)))


def test_shipped_output_padding_model_refused_onto_a_twin_without_it() -> None:
    """The real Keras file (tests/fixtures/tf_port/conv_transpose_op): before the check, a
    twin without output_padding took these weights silently and computed other sizes."""
    pytest.importorskip("h5py", reason="Keras files need h5py (pip install 'modelport[tf]')")
    from port_cases import ConvTransposeOp

    twin = ConvTransposeOp()
    twin.up_op = ConvTranspose2dSame(3, 4, 3, 2, "same")
    before = twin.up_even.weight.detach().clone()
    with pytest.raises(PortError, match=r"layer 'up_op' has padding='same', output_padding="
                                        r"\(1, 1\)"):
        port_weights(FIXTURES / "conv_transpose_op" / "model.keras", twin,
                     sample_input=torch.zeros(1, 3, 4, 5))
    assert torch.equal(twin.up_even.weight, before)  # nothing written
