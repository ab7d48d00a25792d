"""`modelport export ... --saved-model DIR --tflite FILE` (modelport.export.keras_tf): the files
are written only after their outputs, computed by TensorFlow in a child process, match the
PyTorch module; a Keras model that computes something else is refused, naming the output, and
leaves nothing behind; without TensorFlow the command says so in one line (exit 2)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from golden_support import caffe_cases
from modelport.backends.torch_module import build_module
from modelport.cli import main
from modelport.errors import ConfigError, ParityError
from modelport.export.keras import export_keras
from modelport.export.keras_tf import export_tensorflow

CASE = next(c for c in caffe_cases() if c.name == "inplace_chain")  # conv, ReLU, BN, Scale


def _tf() -> None:
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed (extra 'tensorflow')")


@pytest.mark.slow
def test_cli_writes_checked_saved_model_and_tflite_beside_keras(tmp_path, capsys) -> None:
    _tf()
    x = tmp_path / "x.npy"
    np.save(x, CASE.inputs()["data"])
    sm = tmp_path / "sm"
    sm.mkdir()  # an earlier SavedModel folder is replaced whole
    (sm / "saved_model.pb").write_bytes(b"old")
    (sm / "stale.txt").write_text("from the earlier export")
    code = main(["export", str(CASE.prototxt), str(CASE.caffemodel), "--input", f"data={x}",
                 "--keras", str(tmp_path / "keras"), "--saved-model", str(sm),
                 "--tflite", str(tmp_path / "m.tflite")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "TF SavedModel" in out and "TFLite" in out and "checked at batch 2" in out
    assert sorted(os.listdir(sm)) == ["assets", "fingerprint.pb", "saved_model.pb",
                                      "variables"]
    assert (sm / "saved_model.pb").read_bytes() != b"old"
    assert (tmp_path / "m.tflite").read_bytes()[4:8] == b"TFL3"  # the flatbuffer identifier
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".")) == []  # no temp left


@pytest.mark.slow
def test_a_keras_model_that_differs_is_refused_naming_the_output(tmp_path) -> None:
    _tf()
    net = build_module(CASE.net())
    export_keras(net, tmp_path / "keras", inputs=CASE.inputs())
    other = build_module(CASE.net())
    conv2 = other.layer_module("conv2")
    conv2.bias.data[1] += 0.5  # the PyTorch module now computes something else
    with pytest.raises(ParityError) as info:
        export_tensorflow(other, saved_model=tmp_path / "sm", tflite=tmp_path / "m.tflite",
                          keras_dir=tmp_path / "keras", inputs=CASE.inputs())
    msg = str(info.value)
    assert "'conv2'" in msg and "not written" in msg and "\n" not in msg
    assert sorted(os.listdir(tmp_path)) == ["keras"]  # no SavedModel, no TFLite, no temp


def test_a_folder_of_other_files_is_refused_before_any_work(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    net = build_module(CASE.net())
    with pytest.raises(ConfigError, match="holds other files than a SavedModel"):
        export_tensorflow(net, saved_model=tmp_path, inputs=CASE.inputs())
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_without_tensorflow_one_line_exit_2(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # find_spec then finds nothing
    code = main(["export", str(CASE.prototxt), str(CASE.caffemodel), "--saved-model",
                 str(tmp_path / "sm")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "needs tensorflow-cpu, which is not installed" in err
    assert "pip install 'modelport[tensorflow]'" in err
    assert not (tmp_path / "sm").exists()
