"""The same ports against models real TensorFlow builds now (one subprocess per session, see
conftest.keras_cases), outputs compared with TF's under the project tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
from port_cases import AMBIGUOUS, CASES, FORMATS, port_and_verify

pytestmark = pytest.mark.slow  # the one TensorFlow subprocess takes ~10 s


@pytest.mark.parametrize(("case", "fmt"),
                         [(c, f) for c in CASES for f in FORMATS if (c, f) not in AMBIGUOUS])
def test_live_case_ports_and_matches_tf(keras_cases: Path, case: str, fmt: str) -> None:
    report, parity = port_and_verify(keras_cases / case, fmt)
    assert report.ok and report.applied, str(report)
    assert parity.passed, parity.summary()
