"""port_weights refuses what it cannot do right, says why, and leaves the module alone; the
parity check catches a planted wrong layout. Shipped fixtures only: no TensorFlow needed."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from port_cases import FIXTURES, TWINS, BnNoBias, FlattenDense, sample
from torch import nn

from modelport.errors import ConfigError, ModelportError
from modelport.formats.tf.open import open_weights
from modelport.formats.tf.source import TFVariable
from modelport.tf import PortError, port_weights
from modelport.tf.twins import Conv2dSame
from modelport.tf.verify_tf import verify_tf


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class WrongFlattenDense(FlattenDense):
    """fc2 with 4 outputs instead of 3, and a module the Keras model does not have."""

    def __init__(self) -> None:
        super().__init__()
        self.fc2 = nn.Linear(6, 4)
        self.extra = nn.Linear(3, 3)


def test_strict_names_leftover_missing_and_mismatch_and_changes_nothing() -> None:
    d = FIXTURES / "flatten_dense"
    src = open_weights(d / "model.keras")
    stray = TFVariable("stray/kernel", np.ones((2, 2), np.float32))
    src = dataclasses.replace(src, variables={**src.variables, stray.name: stray})
    twin = WrongFlattenDense()
    before = _state(twin)
    with pytest.raises(PortError) as err:
        port_weights(src, twin, sample_input=sample(d))
    msg = str(err.value)
    assert "\n" not in msg
    assert "leftover variable 'stray/kernel' (2x2)" in msg
    assert "'extra.weight' (3x3) got nothing" in msg and "'extra.bias' (3)" in msg
    fc2 = err.value.report.row("fc2.weight")
    assert fc2.status == "mismatch" and fc2.shape == (6, 3) and fc2.target_shape == (4, 6)
    assert "-> 'fc2.weight' expects 4x6" in msg and "unchanged" in msg
    assert _same(before, _state(twin))  # nothing half-ported
    assert not err.value.report.applied


def test_not_strict_ports_what_fits_and_lists_the_rest() -> None:
    d = FIXTURES / "flatten_dense"
    twin = WrongFlattenDense()
    report = port_weights(d / "model.keras", twin, strict=False, sample_input=sample(d))
    assert report.applied and not report.ok
    statuses = {r.target or r.variable: r.status for r in report.rows}
    assert statuses["conv.weight"] == statuses["fc1.weight"] == "ported"
    assert statuses["fc2.weight"] == "mismatch" and statuses["extra.weight"] == "missing"
    ref = open_weights(d / "model.keras").layers[0].variables[0].value  # conv kernel, HWIO
    assert np.array_equal(twin.conv.weight.detach().numpy(), ref.transpose(3, 2, 0, 1))
    text = str(report)
    assert "MISMATCH" in text and "MISSING" in text and "module NOT changed" not in text


def test_eps_mismatch_is_a_problem_unless_set_or_allowed() -> None:
    d = FIXTURES / "bn_nobias"
    twin = BnNoBias(eps=(1e-5, 1e-5, 1e-5))  # torch's default, not Keras's 1e-3 / 1e-2
    with pytest.raises(PortError, match=r"module eps 1e-05 but the source's epsilon "
                                        r"is 0\.001") as err:
        port_weights(d / "model.keras", twin)
    assert {r.target for r in err.value.report.of("eps")} == {"bn_a.eps", "bn_b.eps", "bn_c.eps"}
    assert twin.bn_a.eps == 1e-5

    kept = port_weights(d / "model.keras", twin, allow_eps_mismatch=True)
    assert kept.ok and "allow_eps_mismatch" in kept.row("bn_b.eps").reason
    assert not verify_tf(twin, d / "input.npy", d / "output.npy").passed  # the eps matters

    fixed = BnNoBias(eps=(1e-5, 1e-5, 1e-5))
    report = port_weights(d / "model.keras", fixed, set_eps=True)
    assert (fixed.bn_a.eps, fixed.bn_b.eps, fixed.bn_c.eps) == (1e-3, 1e-2, 1e-3)
    assert "1e-05 -> 0.01 (set_eps=True)" in report.row("bn_b.eps").reason
    assert verify_tf(fixed, d / "input.npy", d).passed


def test_planted_wrong_layouts_fail_the_parity_check() -> None:
    d = FIXTURES / "flatten_dense"
    twin = FlattenDense()
    port_weights(d / "model.keras", twin, flatten_shapes={})  # no NHWC -> NCHW row re-order
    parity = verify_tf(twin, d / "input.npy", d)
    assert not parity.passed
    assert parity.row("conv").passed and not parity.row("fc1").passed
    assert parity.first_divergent is not None and parity.first_divergent.layer == "fc1"

    d = FIXTURES / "conv_pad"
    flipped = TWINS["conv_pad"]()
    report = port_weights(d / "model.keras", flipped, flip_kernels=True)
    assert "flipped" in report.row("conv_same.1.weight").layout
    assert not verify_tf(flipped, d / "input.npy", d).passed


def test_flatten_without_shape_is_refused_and_flatten_shapes_by_layer_name_works() -> None:
    d = FIXTURES / "flatten_dense"
    twin = FlattenDense()
    before = _state(twin)
    with pytest.raises(ConfigError, match=r"nn\.Flatten 'flatten'.*sample_input="):
        port_weights(d / "model.keras", twin)
    assert _same(before, _state(twin))
    report = port_weights(d / "model.keras", twin, flatten_shapes={"fc1": (5, 4, 4)})
    assert "rows NHWC 5x4x4" in report.row("fc1.weight").layout
    assert verify_tf(twin, d / "input.npy", d).passed


class InceptionByPosition(nn.Module):
    """The inception twin under other names: only structure (model.layers order) can fill it."""

    def __init__(self, swap: bool = False) -> None:
        super().__init__()
        first, second = (nn.Conv2d(4, 3, 1), nn.Conv2d(4, 2, 1))
        self.convs = nn.ModuleList([first, second] if swap else [second, first])
        self.mid = Conv2dSame(2, 4, 3)
        self.pool_conv = nn.Conv2d(4, 2, 1)
        self.out = Conv2dSame(9, 5, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.mid(self.convs[0](x))
        b0 = self.convs[1](x)
        pooled = torch.nn.functional.max_pool2d(
            torch.nn.functional.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, 1)
        return self.out(torch.cat([b0, b1, self.pool_conv(pooled)], 1))


@pytest.mark.parametrize("fmt", ["model.keras", "ckpt"])
def test_structure_follows_model_layers_order(fmt: str) -> None:
    d = FIXTURES / "inception"
    twin = InceptionByPosition()
    report = port_weights(d / fmt, twin)
    assert all("structure: model.layers order" in r.rule for r in report.ported)
    assert any("model.layers order" in n for n in report.notes)
    parity = verify_tf(twin, d / "input.npy", d, names=report)  # Keras names -> our modules
    assert parity.passed, parity.summary()
    assert {(r.blob, r.layer) for r in parity.compared} == {
        ("b1_1x1", "convs.0"), ("b0_1x1", "convs.1"), ("b1_3x3", "mid"),
        ("b2_1x1", "pool_conv"), ("head", "out"), ("output", "output")}

    wrong = InceptionByPosition(swap=True)  # b0 registered before b1: 3 vs 2 channels
    before = _state(wrong)
    with pytest.raises(PortError, match=r"structural matching stopped here"):
        port_weights(d / fmt, wrong)
    assert _same(before, _state(wrong))


def test_weights_h5_bn_without_center_needs_rules() -> None:
    """A Keras 3 .weights.h5 has no config: a 3-variable BatchNorm (center=False or
    scale=False) is ambiguous; the refusal names it, explicit rename rules resolve it."""
    d = FIXTURES / "bn_nobias"
    with pytest.raises(PortError, match=r"layers/batch_normalization_1/vars/0.*role in the "
                                        r"layer is unknown"):
        port_weights(d / "model.weights.h5", BnNoBias())
    rules = {r"^layers/batch_normalization_1/vars/0$": "bn_b/gamma",
             r"^layers/batch_normalization_1/vars/1$": "bn_b/moving_mean",
             r"^layers/batch_normalization_1/vars/2$": "bn_b/moving_variance",
             r"^layers/batch_normalization_2/vars/0$": "bn_c/beta",
             r"^layers/batch_normalization_2/vars/1$": "bn_c/moving_mean",
             r"^layers/batch_normalization_2/vars/2$": "bn_c/moving_variance"}
    twin = BnNoBias()
    report = port_weights(d / "model.weights.h5", twin, rules)
    assert report.row("layers/batch_normalization_1/vars/1").target == "bn_b.running_mean"
    assert "rule r'^layers/batch_normalization_1/vars/1$'" in \
        report.row("layers/batch_normalization_1/vars/1").rule
    assert report.row("bn_b.bias").status == "filled"
    assert verify_tf(twin, d / "input.npy", d).passed


def test_rule_to_a_state_key_wins_over_names() -> None:
    d = FIXTURES / "conv_pad"
    twin = TWINS["conv_pad"]()
    src = open_weights(d / "model.keras")
    kernel = src.layers[0].variables[0].name  # conv_same's kernel
    # send conv_same's bias somewhere it does not fit: the rule is obeyed, and fails loudly
    with pytest.raises(PortError, match=r"-> 'conv_valid.bias' expects 6"):
        port_weights(src, twin, {r"^conv_same/bias$": "conv_valid.bias"})
    report = port_weights(src, copy.deepcopy(twin), [(r"^conv_same/kernel$", "conv_same.1.weight")])
    assert report.row(kernel).rule.startswith("rule r'^conv_same/kernel$'")


def test_bad_mapping_and_source_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"mapping rule '\(' is not a valid regex"):
        port_weights({}, nn.Linear(2, 2), {"(": "x"})
    with pytest.raises(ConfigError, match=r"mapping rule .*: give \(regex, replacement\)"):
        port_weights({}, nn.Linear(2, 2), {"a": 3})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"must be a torch.nn.Module, not dict"):
        port_weights({}, {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"flatten_shapes\['fc'\] = 'abc' must be \(H, W, C\)"):
        port_weights({}, nn.Linear(2, 2), flatten_shapes={"fc": "abc"})
    with pytest.raises(ConfigError, match=r"running the module on sample_input failed"):
        port_weights({}, nn.Linear(2, 2), sample_input=torch.zeros(3, 5))
    with pytest.raises(ModelportError, match="source must be a path"):
        port_weights(42, nn.Linear(2, 2))
    with pytest.raises(ModelportError, match="no TensorFlow checkpoint"):
        port_weights(FIXTURES / "nope", nn.Linear(2, 2))


class FunctionalFlatten(FlattenDense):
    """torch.flatten in forward (no nn.Flatten module), optionally of a map permuted to NHWC."""

    def __init__(self, nhwc: bool = False) -> None:
        super().__init__()
        del self.flatten
        self.nhwc = nhwc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = torch.flatten(y.permute(0, 2, 3, 1).contiguous() if self.nhwc else y, 1)
        return self.fc2(torch.relu(self.fc1(y)))


def test_functional_flatten_is_traced_and_an_nhwc_flatten_is_left_alone() -> None:
    d = FIXTURES / "flatten_dense"
    twin = FunctionalFlatten()
    with pytest.raises(ConfigError, match=r"a convolution before a Dense \(nn\.Linear 'fc1'\)"):
        port_weights(d / "model.keras", twin)
    report = port_weights(d / "model.keras", twin, sample_input=sample(d))
    assert "rows NHWC 5x4x4" in report.row("fc1.weight").layout
    assert verify_tf(twin, d / "input.npy", d / "output.npy").passed

    nhwc = FunctionalFlatten(nhwc=True)  # flattens as Keras does: no re-order
    report = port_weights(d / "model.keras", nhwc, sample_input=sample(d))
    assert report.row("fc1.weight").layout == "(in,out) -> (out,in)"
    assert verify_tf(nhwc, d / "input.npy", d / "output.npy").passed


def test_a_bias_the_source_lacks_is_named_with_the_fix() -> None:
    """Seed 002's trap: a conv bias before BatchNorm that the checkpoint does not have."""
    d = FIXTURES / "bn_nobias"
    twin = BnNoBias()
    twin.conv_c = nn.Conv2d(5, 4, 1, bias=True)
    with pytest.raises(PortError, match=r"'conv_c.bias' \(4\) got nothing: its layer 'conv_c' "
                                        r"has no bias \(use_bias=False\)\. Fix: build 'conv_c' "
                                        r"with bias=False"):
        port_weights(d / "model.keras", twin)
