"""modelport inspect: shapes, parameter counts, multiply-adds, unsupported layers flagged."""

from __future__ import annotations

import math

import pytest

from golden_support import caffe_cases
from modelport.cli import main
from modelport.inspect import inspect_files, inspect_net
from modelport.pipeline import parse_net

CASES = {c.name: c for c in caffe_cases()}

BAD = """
name: "bad"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 9 dim: 7 } } }
layer { name: "py" type: "Python" bottom: "data" top: "py"
        python_param { module: "mylayers" layer: "Crazy" } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 } }
layer { name: "fork" type: "Interp" bottom: "conv" top: "fork" }
layer { name: "after" type: "ReLU" bottom: "fork" top: "after" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: 5 } }
"""


def test_shapes_params_and_macs_by_hand() -> None:
    info = inspect_net(parse_net(BAD, "bad.prototxt"))
    rows = {r.name: r for r in info.layers}
    conv = rows["conv"]
    assert conv.top_shapes == [(2, 4, 4, 6)]  # (9-3)/2+1 = 4, (7-2)/1+1 = 6
    assert conv.params == 4 * 3 * 3 * 2 + 4
    assert conv.macs == (2 * 4 * 4 * 6) * (3 * 3 * 2)
    fc = rows["fc"]
    assert fc.top_shapes == [(2, 5)]
    assert fc.params == 5 * 96 + 5 and fc.macs == 2 * 5 * 96
    assert [r.name for r in info.unsupported] == ["py", "fork"]
    assert "Python layer mylayers.Crazy" in rows["py"].problem
    assert rows["after"].supported and rows["after"].top_shapes == [None]
    assert info.total_params == conv.params + fc.params


def test_caffenet_counts_match_the_published_alexnet_figures() -> None:
    case = CASES["caffenet"]
    info = inspect_files(case.prototxt)
    rows = {r.name: r for r in info.layers}
    # CaffeNet/AlexNet: 60,965,224 parameters; conv1 105.4M multiply-adds (96*55*55*363).
    assert info.total_params == 60_965_224
    assert rows["conv1"].macs == 96 * 55 * 55 * 363
    assert rows["fc6"].macs == 9216 * 4096
    for r in info.layers:
        for blob, shape in zip(r.tops, r.top_shapes):
            if blob in case.blobs():
                assert tuple(case.blobs()[blob].shape) == shape


def test_input_shape_override_changes_shapes() -> None:
    case = CASES["conv_basic"]
    info = inspect_files(case.prototxt, case.caffemodel, {"data": (1, 3, 20, 17)})
    conv = info.layers[1]
    assert conv.top_shapes == [(1, 4, 10, 9)] and conv.weights_found
    assert conv.macs == math.prod((1, 4, 10, 9)) * 27


def test_cli_lists_only_unsupported(tmp_path, capsys) -> None:
    proto = tmp_path / "bad.prototxt"
    proto.write_text(BAD)
    assert main(["inspect", str(proto), "--unsupported"]) == 0
    out = capsys.readouterr().out
    assert "py" in out and "fork" in out and "Interp" in out
    assert "Convolution" not in out


@pytest.mark.parametrize("name", ["caffenet", "batchnorm_scale"])
def test_cli_table(name, capsys) -> None:
    case = CASES[name]
    args = ["inspect", str(case.prototxt)]
    if case.caffemodel:
        args.append(str(case.caffemodel))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "total:" in out and "UNSUPPORTED" not in out


def test_layers_missing_from_the_caffemodel_are_noted(tmp_path, capsys) -> None:
    case = CASES["conv_basic"]
    proto = tmp_path / "net.prototxt"
    proto.write_text(case.prototxt.read_text() + """
layer { name: "extra" type: "Convolution" bottom: "conv" top: "extra"
        convolution_param { num_output: 2 kernel_size: 1 } }
""")
    info = inspect_files(proto, case.caffemodel)
    assert [r.name for r in info.missing_weights] == ["extra"]
    assert main(["inspect", str(proto), str(case.caffemodel)]) == 0
    out = capsys.readouterr().out
    assert "no weights in the caffemodel" in out and "--allow-missing-weights" in out
    assert inspect_files(proto).missing_weights == []  # no caffemodel given: nothing to miss
