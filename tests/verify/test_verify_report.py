"""Acceptance 4/5 (report side): the JSON report validates against report.schema.json in every
situation (pass, fail, shape mismatch, skipped blobs), the terminal table renders, and the HTML
report is self-contained with the embedded PNG plot and the table; optionally screenshotted by a
headless Chromium."""

from __future__ import annotations

import base64
import json
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest
from rich.console import Console
from verify_support import convert_or_skip, golden_caffemodel, golden_case

import modelport
from modelport.errors import ParityError
from modelport.verify import DumpReference, verify
from modelport.verify.html import render_html
from modelport.verify.render import render_table

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = json.loads((pathlib.Path(modelport.__file__).parent / "verify" / "report.schema.json")
                    .read_text())


def validate(report) -> dict:
    data = json.loads(report.to_json())
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    return data


def passing():
    case = golden_case("pool_max_ceil")
    return verify(convert_or_skip(case), DumpReference(case.path))


def failing_shape(monkeypatch):
    case = golden_case("pool_ave_pad")
    net = convert_or_skip(case)
    monkeypatch.setattr(net.layer_module("pool_ave_p0"), "ceil", False)
    return verify(net, DumpReference(case.path))


def test_json_of_a_passing_report(monkeypatch) -> None:
    data = validate(passing())
    assert data["passed"] is True and data["first_divergent"] is None
    assert data["tolerance"]["rel"] == 1e-4
    assert [b["blob"] for b in data["blobs"]][:2] == ["data", "data_data_0_split_0"]
    for b in data["blobs"]:
        assert {"blob", "layer", "type", "shape", "max_abs_diff", "allowed", "passed"} <= set(b)


def test_json_of_a_failing_report_with_shape_mismatch(monkeypatch) -> None:
    data = validate(failing_shape(monkeypatch))
    assert data["passed"] is False
    d = data["first_divergent"]
    assert d["layer"] == "pool_ave_p0" and d["type"] == "Pooling" and d["blob"] == "pool_ave_p0"
    row = next(b for b in data["blobs"] if b["blob"] == "pool_ave_p0")
    assert row["max_abs_diff"] is None and row["shape"] == [2, 3, 6, 6]
    assert row["reference_shape"] == [2, 3, 7, 7] and row["mismatched_fraction"] == 1.0


def test_json_with_skipped_blobs_and_classifier(tmp_path) -> None:
    from modelport.verify.ref_opencv import OpenCVReference

    case = golden_case("ip_axis")
    report = verify(convert_or_skip(case),
                    OpenCVReference(case.prototxt, golden_caffemodel(case, tmp_path)),
                    case.inputs())
    data = validate(report)
    assert [s["layer"] for s in data["skipped"]] == ["ip_transpose"]
    assert data["passed"] is True


def test_failing_value_report_json_and_exception() -> None:
    case = golden_case("conv_basic")
    net = convert_or_skip(case)
    net.layer_module("conv").caffe_blobs()[0].data[0, 0, 0, 0] += 0.5
    report = verify(net, DumpReference(case.path))
    data = validate(report)
    d = data["first_divergent"]
    assert d["layer"] == "conv" and d["introduced"] > d["allowed"] and d["inherited"] == 0.0
    with pytest.raises(ParityError, match="first divergent layer 'conv'") as info:
        report.raise_for_failure()
    assert info.value.exit_code == 1


def test_terminal_table_lists_every_row(monkeypatch) -> None:
    report = failing_shape(monkeypatch)
    console = Console(record=True, width=220)
    render_table(report, console)
    text = console.export_text()
    for row in report.rows:
        assert row.blob in text
    assert "First divergent layer: 'pool_ave_p0' (type Pooling)" in text
    assert "FAILED" in text and "DIFF" in text


def test_html_report_is_self_contained(monkeypatch, tmp_path) -> None:
    report = failing_shape(monkeypatch)
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    found = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert found, "no embedded PNG"
    png = base64.b64decode(found.group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert '<table id="blobs">' in page
    assert page.count("<tr class=") == len(report.rows)
    assert "First divergent layer: pool_ave_p0" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing external


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(monkeypatch, tmp_path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium (apt-get install -y chromium) to screenshot the HTML report")
    html_file = tmp_path / "report.html"
    html_file.write_text(render_html(failing_shape(monkeypatch)))
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,900",
                    html_file.as_uri()], check=True, capture_output=True, timeout=120)
    import cv2

    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (900, 1200)
    # The red FAILED badge (#cf222e) and the plot's pixels are there: not a blank page.
    red = np.all(np.abs(img.astype(int) - [0x2E, 0x22, 0xCF]) < 12, axis=2)
    assert red.sum() > 200
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50
