"""`modelport convert`: the files it writes, what they contain, and the library entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from golden_support import GOLDEN, assert_blob_close, caffe_cases
from modelport.cli import main
from modelport.convert import convert, load_generated, sha256_file

CASES = {c.name: c for c in caffe_cases()}


def test_cli_writes_the_four_files(tmp_path, capsys) -> None:
    case = CASES["batchnorm_scale"]
    mean = GOLDEN / "caffe" / "mean_binaryproto" / "mean.binaryproto"
    out = tmp_path / "out"
    rc = main(["convert", str(case.prototxt), str(case.caffemodel), "-o", str(out),
               "--mean", str(mean)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".modelport", "conversion.json", "mean.npy", "model.py", "model.safetensors"]
    assert "converted" in capsys.readouterr().out
    # mean.npy: Caffe's blobproto_to_array(...)[0], loadable without pickle
    expected = np.load(GOLDEN / "caffe" / "mean_binaryproto" / "expected.npy")
    np.testing.assert_array_equal(np.load(out / "mean.npy", allow_pickle=False), expected)
    # safetensors keys are Caffe layer names; BatchNorm's statistics are included
    state = load_file(out / "model.safetensors")
    net = case.net()
    for layer in net.layers:
        for i, blob in enumerate(layer.blobs):
            matches = [k for k in state if k.split(".")[0] == layer.name]
            assert matches, f"no state-dict key for layer {layer.name}"
            if layer.type == "BatchNorm":
                key = f"{layer.name}.{('mean', 'variance', 'scale_factor')[i]}"
                np.testing.assert_array_equal(state[key].numpy().reshape(blob.data.shape),
                                              blob.data)
    report = json.loads((out / "conversion.json").read_text())
    assert report["sources"]["prototxt"]["sha256"] == sha256_file(case.prototxt)
    assert report["sources"]["caffemodel"]["sha256"] == sha256_file(case.caffemodel)
    assert report["sources"]["mean"]["sha256"] == sha256_file(mean)
    assert report["modelport_version"]
    layers = {la["name"]: la for la in report["layers"]}
    ref = case.blobs()
    for la in report["layers"]:
        for top, shape in zip(la["tops"], la["top_shapes"]):
            if top in ref:
                assert tuple(shape) == ref[top].shape
    assert layers["data"]["type"] == "Input" and layers["data"]["module"] is None
    assert report["modules"] == {la.name: la.name for la in net.layers if la.type != "Input"}
    assert [i["name"] for i in report["inputs"]] == list(case.inputs())


def test_input_shape_override_and_generated_model(tmp_path) -> None:
    case = CASES["conv_hw"]
    out = tmp_path / "o"
    assert main(["convert", str(case.prototxt), str(case.caffemodel), "-o", str(out),
                 "--input-shape", "data=1,3,17,12"]) == 0
    report = json.loads((out / "conversion.json").read_text())
    assert report["inputs"][0]["shape"] == [1, 3, 17, 12]
    gen = load_generated(out / "model.py")
    assert gen.Net.input_shapes == {"data": (1, 3, 17, 12)}
    net = gen.load()
    x = torch.randn(1, 3, 17, 12)
    live = convert(case.prototxt, case.caffemodel, tmp_path / "o2",
                   input_shapes={"data": (1, 3, 17, 12)}).module
    assert torch.equal(net(x), live(x))


def test_convert_into_existing_folder_replaces_only_its_files(tmp_path) -> None:
    case = CASES["conv_basic"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "model.py").write_text("old")
    convert(case.prototxt, case.caffemodel, out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "model.py").read_text().startswith('"""conv_basic')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind


def test_python_m_modelport_convert_matches_caffe(tmp_path) -> None:
    case = CASES["pool_ave_pad"]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "modelport", "convert", str(case.prototxt),
                           str(case.caffemodel), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    net = load_generated(out / "model.py").load()
    blobs = net.forward_blobs(torch.from_numpy(case.inputs()["data"]))
    for name, ref in case.blobs().items():
        if name in blobs:
            assert_blob_close(name, blobs[name].numpy(), ref)


def test_progress_reports_reading_the_weights(tmp_path) -> None:
    case = CASES["ip_axis"]
    calls: list[tuple[int, int]] = []
    convert(case.prototxt, case.caffemodel, tmp_path / "out",
            progress=lambda done, total: calls.append((done, total)))
    size = case.caffemodel.stat().st_size
    assert calls and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_demo_preprocessing_gives_the_golden_nsfw_input() -> None:
    """The demo's Caffe preprocessing of skimage's photos is exactly what was fed to Caffe."""
    from modelport.demo import caffe_preprocess, load_photos
    from modelport.zoo import NSFW_MEAN_BGR

    batch = np.stack([caffe_preprocess(img, NSFW_MEAN_BGR) for img in load_photos().values()])
    np.testing.assert_array_equal(batch, np.load(GOLDEN / "caffe" / "nsfw" / "inputs" / "data.npy"))
