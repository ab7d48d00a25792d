"""pycaffe as a reference, and tools/dump_caffe_blobs.py, with a stand-in `caffe` module.

Real Caffe is not installable here; the stand-in behaves like pycaffe's Net for one golden case
(blobs keyed by name, `inputs`, reshape/forward) and returns what the real Caffe computed for the
golden input, so the plumbing (names, '/' -> '__', inputs, shapes) is what is tested.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
from verify_support import convert_or_skip, golden_case

from modelport.errors import ConfigError
from modelport.verify import DumpReference, verify
from modelport.verify.ref_pycaffe import PycaffeReference

TOOL = pathlib.Path(__file__).resolve().parents[2] / "tools" / "dump_caffe_blobs.py"


class FakeBlob:
    def __init__(self, shape) -> None:
        self.data = np.zeros(shape, np.float32)

    def reshape(self, *shape: int) -> None:
        self.data = np.zeros(shape, np.float32)


def fake_caffe(case, extra_blob: str | None = None) -> types.ModuleType:
    golden = case.blobs()
    inputs = case.inputs()

    class Net:
        def __init__(self, prototxt: str, caffemodel: str, phase: int) -> None:
            assert pathlib.Path(prototxt).exists() and pathlib.Path(caffemodel).exists()
            assert phase == mod.TEST
            self.inputs = list(inputs)
            self.blobs = OrderedDict((k, FakeBlob(v.shape)) for k, v in golden.items())
            if extra_blob:
                self.blobs[extra_blob] = FakeBlob((2,))

        def reshape(self) -> None:
            pass

        def forward(self) -> None:
            for name, value in inputs.items():  # Caffe's answer is only known for these
                assert np.array_equal(self.blobs[name].data, value)
            for name, value in golden.items():
                if name not in inputs:
                    self.blobs[name].data = value.copy()
            if extra_blob:
                self.blobs[extra_blob].data = np.array([1.0, 2.0], np.float32)

    mod = types.ModuleType("caffe")
    mod.TEST, mod.TRAIN = 1, 0
    mod.__version__ = "1.0.0-fake"
    mod.Net = Net
    mod.set_mode_cpu = lambda: None
    return mod


def test_pycaffe_reference(monkeypatch) -> None:
    case = golden_case("conv_basic")
    monkeypatch.setitem(sys.modules, "caffe", fake_caffe(case))
    report = verify(convert_or_skip(case), PycaffeReference(case.prototxt, case.caffemodel),
                    case.inputs())
    assert report.passed and report.reference == "pycaffe 1.0.0-fake"
    assert [r.blob for r in report.compared] == ["data", "conv"]


def test_pycaffe_missing_is_a_clear_error(monkeypatch) -> None:
    case = golden_case("conv_basic")
    monkeypatch.setitem(sys.modules, "caffe", None)  # import caffe raises ImportError
    with pytest.raises(ConfigError, match="dump_caffe_blobs.py"):
        verify(convert_or_skip(case), PycaffeReference(case.prototxt, case.caffemodel))


def load_tool():
    spec = importlib.util.spec_from_file_location("dump_caffe_blobs", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_modelport_never_imports_caffe() -> None:
    assert "import caffe" not in TOOL.read_text().split('"""', 2)[2].split("def _import_caffe")[0]
    import modelport.verify  # noqa: F401

    assert "caffe" not in sys.modules or sys.modules["caffe"] is None


def test_dump_tool_writes_a_dump_verify_reads(monkeypatch, tmp_path) -> None:
    case = golden_case("concat_slice")  # has Split blobs
    monkeypatch.setitem(sys.modules, "caffe", fake_caffe(case, extra_blob="aux/loss"))
    tool = load_tool()
    args = [str(case.prototxt), str(case.caffemodel), str(tmp_path / "dump")]
    for name, value in case.inputs().items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}={tmp_path / name}.npy"]
    assert tool.main(args) == 0
    out = tmp_path / "dump"
    info = json.loads((out / "dump.json").read_text())
    assert info["inputs"] == {n: "given" for n in case.inputs()}
    assert info["caffe"] == "1.0.0-fake"
    assert (out / "aux__loss.npy").exists()  # '/' written as '__'
    assert (out / "a_a_0_split_1.npy").exists()
    ref = DumpReference(out)
    assert "aux/loss" in ref.files
    report = verify(convert_or_skip(case), ref)
    assert report.passed, report.summary()
    assert any("aux/loss" in n for n in report.notes)  # a blob the net lacks is reported


def test_dump_tool_random_inputs_match_modelport_seed(monkeypatch, tmp_path) -> None:
    from modelport.verify import random_inputs

    case = golden_case("conv_basic")
    net = convert_or_skip(case)
    mine = random_inputs(net, seed=3)
    fake = fake_caffe(case)
    seen = {}
    original_forward = fake.Net.forward

    def record(self) -> None:
        seen.update({k: self.blobs[k].data.copy() for k in self.inputs})
        for k in self.inputs:  # let the stand-in accept the random data
            self.blobs[k].data = case.inputs()[k]
        original_forward(self)

    monkeypatch.setattr(fake.Net, "forward", record)
    monkeypatch.setitem(sys.modules, "caffe", fake)
    load_tool().dump(str(case.prototxt), str(case.caffemodel), str(tmp_path / "d"), seed=3)
    np.testing.assert_array_equal(seen["data"], mine["data"])
