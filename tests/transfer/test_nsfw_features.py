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
