"""Acceptance 2: OpenCV's independent Caffe importer (cv2.dnn, OpenCV 4.x) as the reference.

Two things are checked: (a) verify against cv2.dnn passes on golden cases, comparing every
layer's own output (fusion off, in-place layers included); (b) OpenCV itself agrees with the
real-Caffe goldens on everything the adapter does not list in OPENCV_GAPS, and really differs
(or fails) where it does list a gap -- so the list is neither padded nor short.
"""

from __future__ import annotations

import numpy as np
import pytest
from verify_support import convert_or_skip, golden_caffemodel, golden_case, golden_net

from golden_support import assert_blob_close, caffe_cases
from modelport.errors import ConfigError
from modelport.verify import verify
from modelport.verify.ref_opencv import OPENCV_GAPS, OpenCVReference

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2.dnn, "readNetFromCaffe"):
    pytest.skip("OpenCV 5 has no Caffe importer", allow_module_level=True)

CASES = [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name == "caffenet" else [])
         for c in caffe_cases() if c.name != "nsfw"]
SLOW = pytest.mark.slow  # CaffeNet: 61M weights to draw, write and run twice


def opencv_for(case, tmp_path, **kw) -> OpenCVReference:
    return OpenCVReference(case.prototxt, golden_caffemodel(case, tmp_path), **kw)


@pytest.mark.parametrize("name", ["conv_basic", "pool_max_ceil",
                                  pytest.param("caffenet", marks=SLOW), "inplace_chain",
                                  "batchnorm_scale", "deconv"])
def test_verify_against_opencv_passes(name, tmp_path) -> None:
    case = golden_case(name)
    net = convert_or_skip(case)
    report = verify(net, opencv_for(case, tmp_path), case.inputs())
    assert report.passed, report.summary()
    layers = {lay.name for lay, _ in net.run_order}
    compared = {r.layer for r in report.compared if r.kind == "top"}
    skipped = {r.layer for r in report.skipped}
    assert compared | skipped == layers  # every layer is compared or explicitly skipped
    if name == "caffenet":
        # Fusion is off: the convolution's own output (before the in-place ReLU) is compared.
        conv1 = [r for r in report.compared if r.layer == "conv1"]
        relu1 = [r for r in report.compared if r.layer == "relu1"]
        assert conv1 and relu1 and conv1[0].blob == relu1[0].blob == "conv1"
        assert conv1[0].chain == () and not skipped
        prob = report.row("prob")
        assert prob.top1 == 1.0 and prob.top5 == 1.0


def test_opencv_skips_exactly_the_known_gaps(tmp_path) -> None:
    expected = {
        "activations": {"log_10", "threshold", "clip", "swish"},
        "batchnorm_scale": {"bias_param", "bias_2bottom"},
        "concat_slice": {"slice_h"},
        "ip_axis": {"ip_transpose"},
        "lrn_across": {"lrn3"},
    }
    for name, layers in expected.items():
        case = golden_case(name)
        report = verify(convert_or_skip(case), opencv_for(case, tmp_path), case.inputs())
        assert report.passed, f"{name}: {report.summary()}"
        assert {r.layer for r in report.skipped} == layers, name
        assert all(r.skip_reason.startswith("cv2.dnn") for r in report.skipped)


def test_no_comparable_layer_is_listed_as_skipped(tmp_path) -> None:
    case = golden_case("embed")  # cv2.dnn has no Embed layer: nothing left to compare
    report = verify(convert_or_skip(case), opencv_for(case, tmp_path), case.inputs())
    assert {r.layer for r in report.skipped} == {"embed", "embed_nobias"}
    assert [r.kind for r in report.compared] == ["input"]
    assert report.summary().startswith("nothing but the inputs could be compared")
    assert any(n.startswith("nothing comparable") for n in report.notes)


def test_a_reference_without_the_nets_blobs_is_a_clear_error(tmp_path) -> None:
    case = golden_case("conv_basic")  # a dump holding only the input: the wrong dump
    np.save(tmp_path / "data.npy", case.inputs()["data"])
    with pytest.raises(ConfigError, match="none of the net's layer outputs"):
        verify(convert_or_skip(case), str(tmp_path))


def _last_writers(net) -> dict[tuple[str, int], str]:
    """(layer, top index) -> blob, for the layer that writes the blob's final value."""
    last: dict[str, tuple[str, int]] = {}
    for layer in net.layers:
        for j, top in enumerate(layer.tops):
            last[top] = (layer.name, j)
    return {v: k for k, v in last.items()}


@pytest.mark.parametrize("case", CASES)
def test_opencv_agrees_with_real_caffe_except_listed_gaps(case, tmp_path) -> None:
    """OpenCV vs the Caffe goldens directly (no modelport conversion involved)."""
    ir = golden_net(case)
    out = opencv_for(case, tmp_path).run(ir, case.inputs())
    ref = case.blobs()
    checked = 0
    for key, blob in _last_writers(ir).items():
        if key in out.layer_tops and blob in ref:
            assert_blob_close(f"{key[0]} (cv2)", out.layer_tops[key].reshape(ref[blob].shape),
                              ref[blob])
            checked += 1
    if case.name not in ("embed", "tile_reduction_argmax"):
        assert checked, "cv2.dnn compared nothing"


GAP_CASES = [("ip_axis", "ip_transpose"), ("lrn_across", "lrn3"), ("activations", "log_10"),
             ("activations", "swish"), ("concat_slice", "slice_h")]


@pytest.mark.parametrize("name,layer", GAP_CASES)
def test_listed_gaps_are_real(name, layer, tmp_path) -> None:
    """With the gap rule switched off, OpenCV really is wrong (or fails) on that layer. If a
    future OpenCV fixes it, this fails: drop the rule from OPENCV_GAPS."""
    case = golden_case(name)
    ir = golden_net(case)
    ltype = ir.layer(layer).type
    no_rule = {t: r for t, r in OPENCV_GAPS.items() if t != ltype}
    try:
        out = opencv_for(case, tmp_path, gaps=no_rule).run(ir, case.inputs())
    except Exception as exc:  # noqa: BLE001 - failing outright is also a gap
        assert "cv2.dnn" in str(exc)
        return
    ref = case.blobs()[ir.layer(layer).tops[0]]
    got = out.layer_tops[(layer, 0)].reshape(ref.shape)
    assert not np.allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, float(np.abs(ref).max())))


def test_opencv_5_without_caffe_importer_is_a_clear_error(monkeypatch, tmp_path) -> None:
    case = golden_case("conv_basic")
    monkeypatch.delattr(cv2.dnn, "readNetFromCaffe")
    with pytest.raises(ConfigError, match="removed in OpenCV 5"):
        OpenCVReference(case.prototxt, golden_caffemodel(case, tmp_path))
