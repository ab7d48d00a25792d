"""Feature extraction: Caffe's TEST transform (vs real Caffe goldens), the .npz layout, resuming
from partial chunks, and the `modelport features` command."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from transfer_nets import tiny_net

from modelport.backends.torch_module import build_module
from modelport.cli import main
from modelport.errors import ConfigError, FormatError
from modelport.formats.caffe.writer import write_caffemodel, write_prototxt
from modelport.transfer import features as F

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "transform"


def _golden_list(case: str) -> F.ImageList:
    return F.read_image_list(GOLDEN / case / "list.txt", root=str(GOLDEN / "images"))


def test_preprocess_matches_caffe_imagedata_mean_values() -> None:
    images = _golden_list("imagedata_test")
    assert images.labels == (0, 1, 2, 3)
    pre = F.Preprocess(size=(227, 227), resize=(256, 256), mean_values=(104, 117, 123),
                       scale=0.017)
    ours = np.stack([pre(p) for p in images.paths])
    ref = np.load(GOLDEN / "imagedata_test" / "data.npy")
    assert ours.shape == ref.shape == (4, 3, 227, 227)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_preprocess_matches_caffe_imagedata_mean_file() -> None:
    images = _golden_list("imagedata_meanfile")
    pre = F.Preprocess(size=(227, 227), resize=(256, 256),
                       mean_file=str(GOLDEN / "imagedata_meanfile" / "mean.binaryproto"),
                       scale=0.017)
    ours = np.stack([pre(p) for p in images.paths])
    ref = np.load(GOLDEN / "imagedata_meanfile" / "data.npy")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_preprocess_gray_and_errors(tmp_path: Path) -> None:
    gray = F.Preprocess(size=(227, 227), resize=(256, 256), mean_values=(117,), scale=0.017,
                        color=False)
    images = _golden_list("imagedata_test")
    ref = np.load(GOLDEN / "imagedata_gray" / "data.npy")
    ours = np.stack([gray(p) for p in images.paths[: ref.shape[0]]])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(FormatError, match="bad.png.: OpenCV cannot decode"):
        gray(str(bad))
    with pytest.raises(ConfigError, match="smaller than the 300x300 crop"):
        F.Preprocess(size=(300, 300), resize=(256, 256))(images.paths[0])


def _write_images(folder: Path, count: int) -> list[str]:
    """`count` small colour PNGs of different sizes (11x8 .. ), h != w."""
    rng = np.random.RandomState(7)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img = rng.randint(0, 256, size=(11 + i, 8 + 2 * i, 3), dtype=np.uint8)
        path = folder / f"img_{i:02d}.png"
        cv2.imwrite(str(path), img)
        paths.append(str(path))
    return paths


@pytest.fixture()
def tiny_files(tmp_path: Path) -> tuple[str, str]:
    net = tiny_net()
    proto, weights = tmp_path / "tiny.prototxt", tmp_path / "tiny.caffemodel"
    write_prototxt(proto, net)
    write_caffemodel(weights, net)
    return str(proto), str(weights)


def _reference(paths: list[str], pre: F.Preprocess) -> dict[str, np.ndarray]:
    module = build_module(tiny_net(), {"data": (len(paths), 3, 9, 7)})
    with torch.no_grad():
        out = module.forward_blobs(torch.from_numpy(np.stack([pre(p) for p in paths])))
    return {k: v.numpy() for k, v in out.items()}


def test_npz_layout_rows_in_image_order(tmp_path: Path, tiny_files: tuple[str, str]) -> None:
    paths = _write_images(tmp_path / "imgs", 5)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"imgs/{os.path.basename(p)} {i % 3}\n"
                               for i, p in enumerate(reversed(paths))))
    images = F.read_image_list(listing)
    args = {"resize": (12, 10), "mean_values": (100.0, 110.0, 120.0), "scale": 0.02}
    out = tmp_path / "feats.npz"
    res = F.extract_from_files(*tiny_files, ["fc6", "conv2", "relu7"], images, str(out), args,
                               batch_size=2, chunk_size=2)
    assert res.blobs == ["fc6", "conv2", "fc7"]  # a layer name means its first top
    with np.load(out, allow_pickle=False) as data:
        assert sorted(data.files) == ["conv2", "fc6", "fc7", "labels", "paths"]
        assert data["paths"].dtype.kind == "U"
        assert list(data["paths"]) == list(images.paths)
        assert data["labels"].dtype == np.int64 and list(data["labels"]) == [0, 1, 2, 0, 1]
        assert data["fc6"].shape == (5, 6) and data["fc6"].dtype == np.float32
        assert data["conv2"].shape == (5, 5 * 5 * 4)  # flattened N x (C*H*W), Caffe order
        ref = _reference(list(images.paths), F.Preprocess(size=(9, 7), **args))
        np.testing.assert_allclose(data["fc6"], ref["fc6"], atol=1e-5)
        np.testing.assert_allclose(data["conv2"], ref["conv2"].reshape(5, -1), atol=1e-5)
        np.testing.assert_allclose(data["fc7"], ref["fc7"], atol=1e-5)  # after relu7 (in place)
        assert (data["fc7"] >= 0).all()
    assert not (tmp_path / "feats.npz.parts").exists()


def test_spatial_pooling_and_folder_input(tmp_path: Path, tiny_files: tuple[str, str]) -> None:
    paths = _write_images(tmp_path / "imgs" / "sub", 3)
    images = F.read_image_list(tmp_path / "imgs")
    assert list(images.paths) == paths and images.labels is None
    out = tmp_path / "pooled.npz"
    F.extract_from_files(*tiny_files, ["conv1"], images, str(out), {}, spatial="avg")
    ref = _reference(paths, F.Preprocess(size=(9, 7)))
    feats = F.load_features(out)
    assert set(feats) == {"conv1", "paths"}
    np.testing.assert_allclose(feats["conv1"], ref["conv1"].mean(axis=(2, 3)), rtol=1e-5)
    F.extract_from_files(*tiny_files, ["conv1"], images, str(out), {}, spatial="max")
    np.testing.assert_allclose(F.load_features(out)["conv1"], ref["conv1"].max(axis=(2, 3)),
                               rtol=1e-5)


def test_resume_reuses_finished_chunks(tmp_path: Path, tiny_files: tuple[str, str]) -> None:
    images = F.ImageList(tuple(_write_images(tmp_path / "imgs", 7)))
    out = tmp_path / "f.npz"

    class Interrupt(Exception):
        pass

    def stop_after_four(done: int, total: int) -> None:
        if done >= 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        F.extract_from_files(*tiny_files, ["fc6"], images, str(out), {}, batch_size=1,
                             chunk_size=2, progress=stop_after_four)
    assert not out.exists()  # nothing partial at the destination
    parts = sorted(os.listdir(tmp_path / "f.npz.parts"))
    assert parts == ["chunk_00000.npz", "chunk_00001.npz", "manifest.json"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    # Mark the two finished chunks with values the net cannot produce (fc6 is after relu6, so
    # >= 0): a resume that recomputes them instead of reusing them is seen.
    for name in parts[:2]:
        with np.load(tmp_path / "f.npz.parts" / name, allow_pickle=False) as data:
            rows = data["fc6"].shape
        with open(tmp_path / "f.npz.parts" / name, "wb") as fh:
            np.savez(fh, fc6=np.full(rows, -1.0, np.float32))
    res = F.extract_from_files(*tiny_files, ["fc6"], images, str(out), {}, batch_size=1,
                               chunk_size=2)
    assert (res.reused_chunks, res.computed_chunks) == (2, 2)
    resumed = F.load_features(out)["fc6"]
    assert resumed.shape == (7, 6)
    np.testing.assert_array_equal(resumed[:4], -1.0)  # chunks 0 and 1: reused as stored
    fresh = tmp_path / "fresh.npz"
    F.extract_from_files(*tiny_files, ["fc6"], images, str(fresh), {}, batch_size=3)
    ref = F.load_features(fresh)["fc6"]
    assert (ref >= 0).all() and ref.max() > 0
    # Chunks 2 and 3 were recomputed at batch size 1, the reference at batch size 3: BLAS
    # kernels group the sums differently per batch size (AVX-512/AMX CPUs differ in the last
    # bits), so they agree to the project tolerance, not bit for bit.
    allowed = 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(resumed[4:] - ref[4:]).max()) <= allowed
    # Different settings: the old chunks are not reused.
    with pytest.raises(Interrupt):
        F.extract_from_files(*tiny_files, ["fc6"], images, str(out), {}, batch_size=1,
                             chunk_size=2, progress=stop_after_four)
    res = F.extract_from_files(*tiny_files, ["fc6"], images, str(out), {"scale": 0.5},
                               batch_size=1, chunk_size=2)
    assert (res.reused_chunks, res.computed_chunks) == (0, 4)


def test_bad_requests(tmp_path: Path, tiny_files: tuple[str, str]) -> None:
    images = F.ImageList(tuple(_write_images(tmp_path / "imgs", 1)))
    with pytest.raises(ConfigError, match="no blob or layer named 'fc9'.*'fc8'"):
        F.extract_from_files(*tiny_files, ["fc9"], images, str(tmp_path / "x.npz"), {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no images found"):
        F.read_image_list(tmp_path / "empty")
    with pytest.raises(ConfigError, match="requested twice"):
        F.extract_from_files(*tiny_files, ["fc6", "fc6"], images, str(tmp_path / "x.npz"), {})


def test_features_command(tmp_path: Path, tiny_files: tuple[str, str],
                          capsys: pytest.CaptureFixture[str]) -> None:
    _write_images(tmp_path / "imgs", 4)
    out = tmp_path / "cli.npz"
    code = main(["features", *tiny_files, "--layers", "fc6,fc7", "--images",
                 str(tmp_path / "imgs"), "-o", str(out), "--batch-size", "3",
                 "--resize", "12,10", "--mean", "104,117,123", "--scale", "0.5"])
    assert code == 0
    assert "fc6 4x6, fc7 4x8" in capsys.readouterr().out
    feats = F.load_features(out)
    assert feats["fc6"].shape == (4, 6) and len(feats["paths"]) == 4
    code = main(["features", *tiny_files, "--layers", "fc6", "--images", str(tmp_path / "imgs"),
                 "-o", str(tmp_path / "y.npz"), "--mean", "1,2"])
    assert code == 2
    assert "2 mean values for 3 channels" in capsys.readouterr().err
    assert not (tmp_path / "y.npz").exists()
