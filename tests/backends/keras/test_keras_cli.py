"""`modelport export ... --keras OUTDIR`: from a conversion folder and from prototxt +
caffemodel, the folder matches Caffe; what cannot be exported exits 2 with one line."""

from __future__ import annotations

import numpy as np
import pytest
from keras_test_support import final_outputs, import_model_keras, named_blobs

from golden_support import assert_blob_close, caffe_cases
from modelport.cli import main
from modelport.convert import convert

CASE = next(c for c in caffe_cases() if c.name == "pool_ave_pad")

STOCHASTIC = """
name: "stochastic"
input: "data"
input_shape { dim: 1 dim: 2 dim: 6 dim: 6 }
layer { name: "pool_s" type: "Pooling" bottom: "data" top: "pool_s"
  pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 } }
layer { name: "relu" type: "ReLU" bottom: "pool_s" top: "relu" }
layer { name: "pool_t" type: "Pooling" bottom: "relu" top: "pool_t"
  pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 1 } }
"""


def _matches_caffe(folder, name: str, case=CASE) -> None:
    namespace = import_model_keras(folder, name)
    model = namespace.load()
    outs = final_outputs(namespace, model, case.inputs())
    ref = case.blobs()
    assert sorted(outs) == sorted(case.meta["outputs"])
    for blob, value in {**named_blobs(namespace, model, case.inputs()), **outs}.items():
        if blob in ref:
            assert_blob_close(blob, value, ref[blob])


# model.py writes its own forms of some layers (nn.Conv2d with groups, CaffePooling with the
# method as text) and copies modelport's classes for the rest (BatchNorm, Scale, Dropout)
FOLDER_CASES = [c for c in caffe_cases()
                if c.name in ("pool_ave_pad", "conv_group_dilation", "inplace_chain")]


@pytest.mark.parametrize("case", FOLDER_CASES, ids=[c.name for c in FOLDER_CASES])
def test_export_keras_from_a_conversion_folder(tmp_path, capsys, case) -> None:
    convert(case.prototxt, case.caffemodel, tmp_path / "conv")
    assert main(["export", str(tmp_path / "conv"), "--keras", str(tmp_path / "k")]) == 0
    out = capsys.readouterr().out
    assert "model_keras.py, model.weights.h5, model.keras" in out and "torch backend" in out
    _matches_caffe(tmp_path / "k", f"model_keras_cli_{case.name}", case)


def test_export_keras_from_prototxt_and_caffemodel(tmp_path, capsys) -> None:
    x = tmp_path / "x.npy"
    np.save(x, CASE.inputs()["data"])
    rc = main(["export", str(CASE.prototxt), str(CASE.caffemodel), "--keras", str(tmp_path / "k"),
               "--input", f"data={x}"])
    assert rc == 0, capsys.readouterr().err
    _matches_caffe(tmp_path / "k", "model_keras_cli_proto")


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("what", ["missing prototxt", "not a conversion folder",
                                  "into a conversion folder", "with --optimize", "a file"])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, what) -> None:
    proto, weights = str(CASE.prototxt), str(CASE.caffemodel)
    target = str(tmp_path / "k")
    if what == "missing prototxt":
        argv = ["export", str(tmp_path / "none.prototxt"), "--keras", target]
    elif what == "not a conversion folder":
        (tmp_path / "empty").mkdir()
        argv = ["export", str(tmp_path / "empty"), "--keras", target]
    elif what == "into a conversion folder":
        convert(CASE.prototxt, CASE.caffemodel, tmp_path / "conv")
        argv = ["export", proto, weights, "--keras", str(tmp_path / "conv")]
    elif what == "with --optimize":
        argv = ["export", proto, weights, "--keras", target, "--optimize"]
    else:
        (tmp_path / "file").write_text("x")
        argv = ["export", proto, weights, "--keras", str(tmp_path / "file")]
    err = _one_line_error(capsys, argv)
    assert err.startswith("modelport: error:"), err
    assert not (tmp_path / "k").exists()


# --keras targets the export cannot use: a file, a folder under a file, a folder where one of
# its files goes (refused by the export up front, or by the staging it shares with convert).
UNUSABLE_KERAS_DIRS = ["a file", "under a file", "model_keras.py folder", "model.weights.h5 folder",
                       "model.keras folder", "mean.npy folder"]


@pytest.mark.parametrize("what", UNUSABLE_KERAS_DIRS)
def test_an_unusable_keras_folder_is_named_by_its_option(tmp_path, capsys, what) -> None:
    target = tmp_path / "k"
    if what == "a file":
        target.write_text("x")
    elif what == "under a file":
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "k"
    else:  # a folder where the export (or the staging it shares with convert) puts a file
        (target / what.split()[0]).mkdir(parents=True)
    err = _one_line_error(capsys, ["export", str(CASE.prototxt), str(CASE.caffemodel),
                                   "--keras", str(target)])
    assert "--keras" in err and "Fix:" in err, err
    assert "-o " not in err and "-o\"" not in err, err


def test_a_locked_keras_folder_names_no_wait_option_export_lacks(tmp_path, capsys) -> None:
    # export has no --wait: the refusal must not suggest one
    from modelport.atomic import exclusive_lock

    target = tmp_path / "k"
    (target / ".modelport").mkdir(parents=True)
    with exclusive_lock(target / ".modelport" / "lock", "held by this test"):
        err = _one_line_error(capsys, ["export", str(CASE.prototxt), str(CASE.caffemodel),
                                       "--keras", str(target)])
    assert "being written by another modelport process" in err, err
    assert "--wait" not in err, err


def test_layers_without_a_faithful_keras_form_are_refused_by_name(tmp_path, capsys) -> None:
    proto = tmp_path / "net.prototxt"
    proto.write_text(STOCHASTIC)
    err = _one_line_error(capsys, ["export", str(proto), "--allow-missing-weights", "--keras",
                                   str(tmp_path / "k")])
    assert "2 layers in net.prototxt cannot be exported to Keras" in err, err
    for name in ("pool_s", "pool_t"):  # every refused layer, each with what to do
        assert f"layer '{name}' (type Pooling): no faithful Keras form for STOCHASTIC" in err
    assert err.count("Fix:") == 2 and "relu" not in err, err
    assert not (tmp_path / "k").exists()
