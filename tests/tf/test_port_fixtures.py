"""Port the shipped TF / Keras fixtures (made by real TensorFlow, tests/tf/make_keras_case.py)
into their PyTorch twins and compare with TF's stored outputs: no TensorFlow needed."""

from __future__ import annotations

import pytest
from port_cases import AMBIGUOUS, CASES, FILES, FIXTURES, FORMATS, port_and_verify

# every file the fixture maker shipped (make_keras_case.py --fixture: .weights.h5 for two cases)
PAIRS = [(c, f) for c in CASES for f in FORMATS
         if (FIXTURES / c / FILES[f]).exists() and (c, f) not in AMBIGUOUS]


@pytest.mark.parametrize(("case", "fmt"), PAIRS)
def test_fixture_case_ports_and_matches_tf(case: str, fmt: str) -> None:
    report, parity = port_and_verify(FIXTURES / case, fmt)
    assert report.ok and report.applied, str(report)
    assert not report.of("leftover") and not report.of("missing")
    assert parity.passed, parity.summary()
    compared = [r.blob for r in parity.compared]
    assert "output" in compared and len(compared) >= 2  # the output and weighted layers
