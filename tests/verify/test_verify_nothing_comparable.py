"""verify with the default OpenCV reference on nets whose every layer cv2.dnn lacks: the layers
are listed as skipped (exit 0, "nothing comparable"), and Embed's random input is a valid index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from golden_support import CAFFE_CASES
from modelport.backends.torch_module import build_module
from modelport.cli import main
from modelport.pipeline import load_net
from modelport.verify import random_inputs


@pytest.mark.parametrize("case, layers", [
    ("embed", {"embed", "embed_nobias"}),
    ("tile_reduction_argmax", {"tile_c", "tile_w", "red_sum_all", "red_sum", "red_asum",
                               "red_sumsq", "red_mean", "argmax", "argmax_top2_val",
                               "argmax_axis1", "argmax_axis1_top2_val"}),
])
def test_every_layer_skipped_is_listed_not_an_error(case: str, layers: set[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = CAFFE_CASES / case
    out = tmp_path / "r.json"
    code = main(["verify", str(folder / "net.prototxt"), str(folder / "weights.caffemodel"),
                 "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "belongs to this net" not in captured.err + captured.out
    assert "nothing comparable" in captured.out and "NOTHING COMPARED" in captured.out
    report = json.loads(out.read_text())
    assert {s["layer"] for s in report["skipped"]} == layers
    assert all("cv2.dnn has no Caffe" in s["reason"] for s in report["skipped"])
    assert [b["kind"] for b in report["blobs"] if b["passed"] and b["max_abs_diff"] is not None
            ] == ["input"]
    assert report["summary"].startswith("nothing but the inputs could be compared")


def test_embed_random_input_indexes_the_table() -> None:
    folder = CAFFE_CASES / "embed"
    net = build_module(load_net(folder / "net.prototxt", folder / "weights.caffemodel"))
    ids = random_inputs(net, seed=0)["ids"]
    assert ids.shape == (2, 5) and ids.dtype == np.float32
    assert (ids == np.round(ids)).all() and ids.min() >= 0 and ids.max() <= 6
    assert len(np.unique(ids)) > 1
    with torch.no_grad():
        blobs = net.forward_blobs(ids=torch.from_numpy(ids))  # in range: runs
    assert blobs["embed"].shape == (2, 5, 4)
