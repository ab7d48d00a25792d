"""Acceptance 5: `modelport verify` exit status 0 / 1 / 2, its JSON (schema-valid) and HTML files,
and the input options (.npy batches, images with Caffe's preprocessing, seeded random)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from verify_support import golden_case

import modelport
from modelport.cli import main

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = json.loads((pathlib.Path(modelport.__file__).parent / "verify" / "report.schema.json")
                    .read_text())
CASE = golden_case("conv_basic")
NET = [str(CASE.prototxt), str(CASE.caffemodel)]


def run(*args: str) -> int:
    return main(["verify", *NET, *args])


def tampered_dump(tmp_path: pathlib.Path) -> pathlib.Path:
    dump = tmp_path / "dump"
    shutil.copytree(CASE.path / "blobs", dump)
    conv = np.load(dump / "conv.npy")
    conv[1, 2, 3, 4] += 0.01
    np.save(dump / "conv.npy", conv)
    return dump


def test_exit_0_and_reports(tmp_path, capsys) -> None:
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    assert run("--reference", str(CASE.path), "--json", str(out_json),
               "--report", str(out_html)) == 0
    data = json.loads(out_json.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["passed"] is True and [b["blob"] for b in data["blobs"]] == ["data", "conv"]
    assert "data:image/png;base64," in out_html.read_text()
    assert "PASSED" in capsys.readouterr().out


def test_exit_1_names_the_layer(tmp_path, capsys) -> None:
    out_json = tmp_path / "r.json"
    assert run("-r", str(tampered_dump(tmp_path)), "--json", str(out_json)) == 1
    err = capsys.readouterr().err
    assert "first divergent layer 'conv' (type Convolution)" in err
    data = json.loads(out_json.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["passed"] is False and data["first_divergent"]["layer"] == "conv"
    assert data["first_divergent"]["introduced"] > data["first_divergent"]["allowed"]


def test_tolerance_option_changes_the_verdict(tmp_path) -> None:
    dump = tampered_dump(tmp_path)  # conv off by 0.01; max|conv| is about 4.2
    assert run("-r", str(dump), "-q") == 1
    assert run("-r", str(dump), "-q", "--tolerance", "1e-2") == 0


def test_exit_2_for_bad_input(tmp_path, capsys) -> None:
    assert main(["verify", str(tmp_path / "missing.prototxt"), NET[1], "-q"]) == 2
    assert run("-r", "no-such-reference", "-q") == 2
    assert run("--tolerance", "-1", "-q") == 2
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert run("--input", str(pickled), "-q") == 2
    assert "never unpickles" in capsys.readouterr().err
    assert run("--input", f"nosuch={pickled}", "-q") == 2
    image = tmp_path / "x.png"
    image.write_bytes(b"not an image")
    assert run("--input", str(pickled), "--image", str(image), "-q") == 2
    assert run("-r", "pycaffe", "-q") == 2  # no Caffe here: a clear error, not a traceback
    err = capsys.readouterr().err
    assert "Traceback" not in err and "dump_caffe_blobs.py" in err
    assert not (tmp_path / "r.json").exists()


def test_npy_input_against_opencv_and_shape_taken_from_it(tmp_path) -> None:
    x = np.random.default_rng(5).standard_normal((3, 3, 15, 9)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "r.json"
    assert run("--input", f"data={tmp_path / 'x.npy'}", "-r", "opencv", "--json", str(out),
               "-q") == 0
    data = json.loads(out.read_text())
    assert data["blobs"][0]["shape"] == [3, 3, 15, 9]
    assert data["reference"].startswith("OpenCV")


def test_rgb_npy_against_the_bgr_dump_names_the_input(tmp_path, capsys) -> None:
    x = CASE.inputs()["data"][:, ::-1]
    np.save(tmp_path / "rgb.npy", np.ascontiguousarray(x))
    assert run("--input", str(tmp_path / "rgb.npy"), "-r", str(CASE.path)) == 1
    assert "first divergent layer 'data' (type Input)" in capsys.readouterr().err


def test_images_with_caffe_preprocessing(tmp_path) -> None:
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):  # the net input is 2 x 3 x 13 x 11
        img = rng.integers(0, 256, size=(17, 14, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"im{i}.png"), img)
        paths += ["--image", str(tmp_path / f"im{i}.png")]
    out = tmp_path / "r.json"
    assert run(*paths, "--resize", "17,14", "--mean", "104,117,123", "--scale", "0.5",
               "-r", "opencv", "--json", str(out), "-q") == 0
    data = json.loads(out.read_text())
    assert "2 image(s)" in data["inputs"]["data"]


def test_image_batch_values(tmp_path) -> None:
    """Caffe's ImageData at TEST: BGR 0-255, center crop at ((H-h)//2, (W-w)//2),
    (x - mean) * scale, then the channel swap."""
    import cv2

    from modelport.verify.inputs import image_batch

    img = np.random.default_rng(1).integers(0, 256, size=(16, 15, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    mean = np.array([10.0, 20.0, 30.0], np.float32)
    batch = image_batch([str(tmp_path / "a.png")], (1, 3, 13, 11), resize=(16, 15), mean=mean,
                        scale=0.25, channel_swap=(2, 1, 0))
    crop = img[1:14, 2:13].astype(np.float32)  # (16-13)//2 = 1, (15-11)//2 = 2
    expected = ((crop - mean) * np.float32(0.25)).transpose(2, 0, 1)[::-1]
    np.testing.assert_array_equal(batch[0], expected)


def test_image_batch_pycaffe_style(tmp_path) -> None:
    """caffe.io: RGB in [0, 1], channel swap to BGR, * raw_scale, - mean."""
    import cv2

    from modelport.verify.inputs import image_batch

    img = np.random.default_rng(2).integers(0, 256, size=(13, 11, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "b.png"), img)  # stored BGR
    batch = image_batch([str(tmp_path / "b.png")], (1, 3, 13, 11), style="pycaffe",
                        raw_scale=255.0, channel_swap=(2, 1, 0),
                        mean=np.array([1.0, 2.0, 3.0], np.float32))
    expected = img.astype(np.float32).transpose(2, 0, 1) - np.array([1, 2, 3],
                                                                     np.float32)[:, None, None]
    np.testing.assert_allclose(batch[0], expected, rtol=0, atol=1e-4)


@pytest.mark.slow  # fresh interpreters importing torch (exit 0 is checked in-process above)
def test_real_process_exit_codes(tmp_path) -> None:
    base = [sys.executable, "-m", "modelport", "verify", *NET, "-q"]
    bad = subprocess.run(base + ["-r", str(tampered_dump(tmp_path))], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "modelport: error:" in bad.stderr
    missing = subprocess.run(base + ["-r", str(tmp_path / "nope")], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
