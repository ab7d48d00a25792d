"""A TF1 Saver checkpoint with TF-slim names (the Inception-v4 checkpoint's traps in small:
BatchNorm without gamma after every bias-free conv, VALID / SAME stride 2 on odd sizes, a
concat, Flatten of a 4x3 map into the logits, global_step and a Momentum slot) ported by name
and compared with TF's output: from the shipped fixture, and live from TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest
from port_cases import FIXTURES, Slim, sample

from modelport.tf import port_weights
from modelport.tf.verify_tf import verify_tf


def check_slim(d: Path) -> None:
    twin = Slim()
    report = port_weights(d / "model.ckpt", twin, bn_eps=0.001, sample_input=sample(d))
    assert report.ok, str(report)
    row = report.row("Net/Mixed_3a/Branch_1/Conv2d_0b_1x1/BatchNorm/moving_variance")
    assert row.target == "Mixed_3a.Branch_1.Conv2d_0b_1x1.bn.running_var"
    assert row.rule.startswith("name 'Net/Mixed_3a/Branch_1/Conv2d_0b_1x1/BatchNorm'")
    assert report.row("Net/Conv2d_2a_3x3/weights").target == "Conv2d_2a_3x3.conv.weight"
    assert "rows NHWC 4x3x6" in report.row("Net/Logits/weights").layout
    assert report.row("Conv2d_1a_3x3.bn.weight").status == "filled"  # slim: scale=False
    assert report.row("global_step").status == "ignored"
    assert report.row("Net/Logits/weights/Momentum").status == "ignored"
    parity = verify_tf(twin, d / "input.npy", d / "output.npy")
    assert parity.passed, parity.summary()

    unknown = port_weights(d / "model.ckpt", Slim(), sample_input=sample(d))
    eps_rows = [r for r in unknown.rows if r.target.endswith(".eps")]
    assert len(eps_rows) == 4 and all("pass bn_eps=" in r.reason for r in eps_rows)


def test_slim_fixture() -> None:
    check_slim(FIXTURES / "slim")


@pytest.mark.slow
def test_slim_live(keras_cases: Path) -> None:
    check_slim(keras_cases / "slim")
