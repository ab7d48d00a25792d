"""Every golden case through the command line: `modelport convert` writes a model whose
generated source reproduces Caffe's blobs, and `modelport verify` against Caffe's dump exits 0."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from golden_support import assert_blob_close, caffe_cases
from modelport.cli import main
from modelport.convert import load_generated
from verify.verify_support import golden_caffemodel

CASES = [c for c in caffe_cases() if c.name != "nsfw"]  # nsfw: tests/test_nsfw.py


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_convert_cli_output_matches_caffe(case, tmp_path) -> None:
    weights = golden_caffemodel(case, tmp_path)
    out = tmp_path / "out"
    assert main(["convert", str(case.prototxt), str(weights), "-o", str(out)]) == 0
    model = load_generated(out / "model.py").load()
    inputs = {k: torch.from_numpy(v) for k, v in case.inputs().items()}
    with torch.no_grad():
        ours = model.forward_blobs(**inputs)
    ref = case.blobs()
    compared = 0
    for name, ref_blob in ref.items():
        if name in ours:
            assert_blob_close(name, ours[name].numpy().astype(np.float32), ref_blob)
            compared += 1
    outputs = [o["name"] for o in json.loads((out / "conversion.json").read_text())["outputs"]]
    assert all(o in ours for o in outputs) and compared >= len(outputs)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verify_cli_against_caffe_dump_exits_0(case, tmp_path) -> None:
    weights = golden_caffemodel(case, tmp_path)
    report = tmp_path / "report.json"
    rc = main(["verify", str(case.prototxt), str(weights), "--reference",
               str(case.path / "blobs"), "--json", str(report), "--quiet"])
    data = json.loads(report.read_text())
    assert rc == 0 and data["passed"] is True, data.get("first_divergent")
    assert len(data["blobs"]) >= len(case.inputs())


OPTIMIZE_CASES = [c for c in CASES if c.name in ("batchnorm_scale", "caffenet", "inplace_chain",
                                                 "activations", "conv_basic")]


@pytest.mark.parametrize("case", OPTIMIZE_CASES, ids=[c.name for c in OPTIMIZE_CASES])
def test_convert_optimize_cli_output_matches_caffe(case, tmp_path) -> None:
    """`convert --optimize`: the generated model has the folded layers' modules gone, and every
    blob it still computes (the outputs among them) is Caffe's."""
    weights = golden_caffemodel(case, tmp_path)
    out = tmp_path / "out"
    assert main(["convert", str(case.prototxt), str(weights), "-o", str(out),
                 "--optimize"]) == 0
    conversion = json.loads((out / "conversion.json").read_text())
    optimized = conversion["optimized"]
    gone = {n for names in optimized["folded"].values() for n in names} | \
        {n for names in optimized["merged"].values() for n in names} | \
        set(optimized["fused_relu"].values()) | set(optimized["dropped"])
    assert {entry["name"] for entry in conversion["layers"] if entry["module"] is None} >= gone
    if case.name in ("caffenet", "inplace_chain", "batchnorm_scale"):
        assert gone, optimized
    model = load_generated(out / "model.py").load()
    assert not gone & set(model._modules)
    inputs = {k: torch.from_numpy(v) for k, v in case.inputs().items()}
    with torch.no_grad():
        ours = model.forward_blobs(**inputs)
    ref = case.blobs()
    for name in [o["name"] for o in conversion["outputs"]]:
        assert_blob_close(name, ours[name].numpy().astype(np.float32), ref[name])
    for name, value in ours.items():
        if name in ref:
            assert_blob_close(name, value.numpy().astype(np.float32), ref[name])
