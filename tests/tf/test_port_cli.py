"""`modelport tf port` / `modelport tf verify` on a shipped fixture: the report, the written
weights, exit 0 / 1 / 2, and nothing written when the port fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from port_cases import FIXTURES

from modelport.cli import main

TWIN = '''
import torch.nn.functional as F
from torch import nn
from modelport.tf.twins import Conv2dSame


class Twin(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = Conv2dSame(3, 4, 3, stride=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(5 * 4 * 4, 6)
        self.fc2 = nn.Linear(6, OUT)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.flatten(self.conv(x)))))
'''
CASE = FIXTURES / "flatten_dense"


def _twin(tmp_path: Path, out: int = 3) -> str:
    path = tmp_path / "twin.py"
    path.write_text(TWIN.replace("OUT", str(out)))
    return f"{path}:Twin"


def test_port_then_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "twin.safetensors"
    assert main(["tf", "port", str(CASE / "model.keras"), "--twin", _twin(tmp_path),
                 "--sample-shape", "1,3,10,7", "--out", str(weights)]) == 0
    out = capsys.readouterr().out
    assert "rows NHWC 5x4x4" in out and "6 variables ported" in out and weights.exists()
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    assert main(["tf", "verify", "--twin", _twin(tmp_path), "--weights", str(weights),
                 "-i", str(CASE / "input.npy"), "-r", str(CASE), "--report", str(html),
                 "--json", str(js)]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert "fc1" in html.read_text() and '"passed": true' in js.read_text()


def test_verify_fails_on_a_wrong_layout_and_port_fails_cleanly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # no NHWC -> NCHW row re-order: the parity check must fail (exit 1)
    assert main(["tf", "verify", "--twin", _twin(tmp_path), "--source", str(CASE / "model.keras"),
                 "--flatten-shape", "none", "-i", str(CASE / "input.npy"),
                 "-r", str(CASE / "output.npy")]) == 1
    assert "FAILED" in capsys.readouterr().out
    weights = tmp_path / "bad.safetensors"
    assert main(["tf", "port", str(CASE / "model.keras"), "--twin", _twin(tmp_path, out=4),
                 "--sample-shape", "1,3,10,7", "--out", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expects 4x6" in err and not weights.exists()
    assert main(["tf", "port", str(CASE / "model.keras"), "--twin", f"{tmp_path}/no.py:T"]) == 2
    assert "no such file" in capsys.readouterr().err


BN_TWIN = '''
import sys
sys.path.insert(0, "TESTS")
from port_cases import BnNoBias


class Twin(BnNoBias):
    def __init__(self):
        super().__init__(eps=(1e-5, 1e-5, 1e-5))
'''


def test_set_eps_survives_the_weights_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    case = FIXTURES / "bn_nobias"
    twin = tmp_path / "bn_twin.py"
    twin.write_text(BN_TWIN.replace("TESTS", str(Path(__file__).parent)))
    weights = tmp_path / "bn.safetensors"
    assert main(["tf", "port", str(case / "model.keras"), "--twin", f"{twin}:Twin",
                 "--out", str(weights)]) == 2  # eps 1e-5 vs Keras's: refused
    assert "set_eps=True" in capsys.readouterr().err and not weights.exists()
    assert main(["tf", "port", str(case / "model.keras"), "--twin", f"{twin}:Twin",
                 "--set-eps", "--out", str(weights)]) == 0
    assert main(["tf", "verify", "--twin", f"{twin}:Twin", "--weights", str(weights),
                 "-i", str(case / "input.npy"), "-r", str(case)]) == 0
    capsys.readouterr()


def test_a_twin_whose_stride_differs_is_refused_unless_told(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the Keras conv has strides 2; a twin with stride 1 takes the same weights but computes
    # something else: refused by the settings check, ported only with --no-check-settings
    twin = tmp_path / "twin1.py"
    twin.write_text(TWIN.replace("OUT", "3").replace("stride=2", "stride=1"))
    weights = tmp_path / "w.safetensors"
    argv = ["tf", "port", str(CASE / "model.keras"), "--twin", f"{twin}:Twin",
            "--flatten-shape", "none", "--out", str(weights)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "conv" in err and "stride" in err and len(err.splitlines()) == 1, err
    assert not weights.exists()
    assert main([*argv, "--no-check-settings"]) == 0
    assert weights.exists()
