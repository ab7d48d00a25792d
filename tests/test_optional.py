"""A missing optional dependency is one ModelportError line naming the extra to install.

Each case simulates the package being absent (`sys.modules[name] = None` makes `import name`
raise ImportError) and runs the feature that needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from golden_support import CAFFE_CASES
from modelport.cli import main
from modelport.errors import ModelportError
from modelport.optional import PIP_NAMES, MissingDependencyError, require

CONV = CAFFE_CASES / "conv_basic"


def _absent(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make `names` unimportable, submodules an earlier test imported included (`sklearn.svm`
    stays importable from sys.modules when only `sklearn` is set to None)."""
    for name in names:
        for loaded in [m for m in sys.modules if m.startswith(name + ".")]:
            monkeypatch.setitem(sys.modules, loaded, None)
        monkeypatch.setitem(sys.modules, name, None)


def _one_line_naming(message: str, package: str, extra: str) -> None:
    assert "\n" not in message.strip()
    assert PIP_NAMES.get(package, package) in message
    assert f"pip install 'modelport[{extra}]'" in message


def test_require_imports_or_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require("json", "export").dumps([]) == "[]"
    _absent(monkeypatch, "onnxscript")
    with pytest.raises(MissingDependencyError) as info:
        require("onnxscript", "export", "ONNX export")
    assert isinstance(info.value, ModelportError)
    _one_line_naming(str(info.value), "onnxscript", "export")
    assert str(info.value).startswith("ONNX export needs onnxscript")
    _absent(monkeypatch, "cv2")
    with pytest.raises(MissingDependencyError,
                       match=r"opencv-python-headless<5.*modelport\[images"):
        require("cv2", "images")
    with pytest.raises(ValueError, match="unknown extra"):
        require("json", "no-such-extra")


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("missing, opset", [
    ("onnxscript", 18),  # torch's torch.export-based exporter imports it while exporting
    ("onnx", 17),
    ("onnxruntime", 18),
])
def test_onnx_export_without_a_package_names_the_export_extra(
        missing: str, opset: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _absent(monkeypatch, missing)
    out = tmp_path / "m.onnx"
    code, err = _cli(capsys, ["export", str(CONV / "net.prototxt"),
                              str(CONV / "weights.caffemodel"), "--onnx", str(out),
                              "--opset", str(opset)])
    assert code == 2
    _one_line_naming(err, missing, "export")
    assert "report the layer type" not in err
    assert not out.exists()


@pytest.mark.parametrize("reference, missing, extra", [
    ("opencv", "cv2", "images"),
    ("onnxruntime", "onnxruntime", "export"),
    ("onnxruntime", "onnxscript", "export"),
])
def test_verify_reference_without_a_package_names_the_extra(
        reference: str, missing: str, extra: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _absent(monkeypatch, missing)
    code, err = _cli(capsys, ["verify", str(CONV / "net.prototxt"),
                              str(CONV / "weights.caffemodel"), "--reference", reference])
    assert code == 2
    _one_line_naming(err, missing, extra)


def _lmdb_source(tmp_path: Path) -> Callable[[], object]:
    from modelport.pipeline import parse_net
    from modelport.train.data import make_batches

    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "data.mdb").write_bytes(b"")
    net = parse_net('layer { name: "d" type: "Data" top: "data" top: "label" '
                    'data_param { source: "db" batch_size: 1 backend: LMDB } }')
    return lambda: next(make_batches(net.layers[0], "train", str(tmp_path), 0))


def _hdf5_source(tmp_path: Path) -> Callable[[], object]:
    from modelport.pipeline import parse_net
    from modelport.train.data import make_batches

    (tmp_path / "list.txt").write_text("a.h5\n")
    (tmp_path / "a.h5").write_bytes(b"")
    net = parse_net('layer { name: "d" type: "HDF5Data" top: "data" '
                    'hdf5_data_param { source: "list.txt" batch_size: 1 } }')
    return lambda: next(make_batches(net.layers[0], "train", str(tmp_path), 0))


def _image(tmp_path: Path) -> str:
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    return str(path)


def _h5_snapshot(tmp_path: Path) -> Callable[[], object]:
    from modelport.train.snapshot import read_solverstate

    (tmp_path / "s.solverstate.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    return lambda: read_solverstate(str(tmp_path / "s.solverstate.h5"))


def _opencv_image(tmp_path: Path) -> Callable[[], object]:
    from modelport.train.transform import preprocess_image

    return lambda: preprocess_image(_image(tmp_path), crop=None)


def _pycaffe_image(tmp_path: Path) -> Callable[[], object]:
    from modelport.train.transform import load_image

    return lambda: load_image(_image(tmp_path))


def _svm_head(tmp_path: Path) -> Callable[[], object]:
    from modelport.transfer.heads import SVMHead

    return lambda: SVMHead().fit([np.zeros((2, 3), np.float32)], np.array([0, 1]))


def _digits(tmp_path: Path) -> Callable[[], object]:
    from modelport.transfer.datasets import digits_folder

    return lambda: digits_folder(str(tmp_path / "digits"))


def _gate_plots(tmp_path: Path) -> Callable[[], object]:
    from modelport.transfer.runner import plot_gates

    gates = np.full((2, 2, 3), 0.5, np.float32)
    return lambda: plot_gates(gates, ["a", "b"], np.array([0, 1]), ["0", "1"], str(tmp_path))


FEATURES: dict[str, tuple[str, str, Callable[[Path], Callable[[], object]]]] = {
    "lmdb data layer": ("lmdb", "data", _lmdb_source),
    "hdf5 data layer": ("h5py", "data", _hdf5_source),
    "hdf5 snapshot": ("h5py", "data", _h5_snapshot),
    "opencv image reading": ("cv2", "data", _opencv_image),
    "pycaffe-style load_image": ("skimage", "data", _pycaffe_image),
    "svm head": ("sklearn", "transfer", _svm_head),
    "digits dataset": ("sklearn", "transfer", _digits),
    "gate heat maps": ("matplotlib", "transfer", _gate_plots),
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_library_features_name_their_extra(feature: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    missing, extra, make = FEATURES[feature]
    call = make(tmp_path)
    _absent(monkeypatch, missing)
    with pytest.raises(ModelportError) as info:
        call()
    _one_line_naming(str(info.value), PIP_NAMES[missing], extra)
