"""`modelport features` on the real open_nsfw ResNet and real photos, against real Caffe's blobs
(tests/golden/caffe/nsfw: the same images, preprocessed as in its case.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from golden_support import CAFFE_CASES
from modelport.cli import main
from modelport.transfer.features import load_features
from modelport.zoo import fetch_nsfw

pytestmark = [pytest.mark.network, pytest.mark.slow]
CASE = CAFFE_CASES / "nsfw"


def test_nsfw_features_match_caffe(tmp_path: Path) -> None:
    prototxt, caffemodel = fetch_nsfw()
    listing = tmp_path / "photos.txt"
    names = ["astronaut.png", "chelsea.png", "coffee.png"]  # the golden batch order
    listing.write_text("".join(f"{CASE / 'images' / n}\n" for n in names))
    out = tmp_path / "nsfw.npz"
    code = main(["features", prototxt, caffemodel, "--layers", "pool,eltwise_stage3_block2",
                 "--images", str(listing), "-o", str(out), "--batch-size", "2",
                 "--chunk-size", "2", "--resize", "256", "--mean", "104,117,123", "-q"])
    assert code == 0
    feats = load_features(out)
    assert [Path(p).name for p in feats["paths"]] == names
    for blob in ("pool", "eltwise_stage3_block2"):
        ref = np.load(CASE / "blobs" / f"{blob}.npy").reshape(3, -1)
        assert feats[blob].shape == ref.shape
        allowed = 1e-4 * max(1.0, float(np.abs(ref).max()))
        assert float(np.abs(feats[blob] - ref).max()) <= allowed, blob


def test_transfer_on_real_backbone_and_real_digits(tmp_path: Path) -> None:
    """`modelport transfer` end to end: open_nsfw features of scikit-learn's real digits."""
    import json

    from modelport.transfer.datasets import digits_folder

    prototxt, caffemodel = fetch_nsfw()
    digits_folder(str(tmp_path / "digits"), train=50, test=30, seed=0)
    out = tmp_path / "run"
    code = main(["transfer", prototxt, caffemodel, "--layers", "eltwise_stage3_block1,pool",
                 "--spatial", "avg", "--data", str(tmp_path / "digits"), "-o", str(out),
                 "--resize", "256", "--mean", "104,117,123", "--epochs", "100", "-q"])
    assert code == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["widths"] == [1024, 1024]
    acc = {r["name"]: r["test_accuracy"] for r in summary["results"]}
    assert len(acc) == 7 and all(a is not None for a in acc.values())
    assert acc["Softmax pool"] > 0.3  # 10 classes: chance is 0.1
    assert (out / "gates.png").stat().st_size > 10_000
