"""`export --exported-program --dynamic-batch` on nets declared at batch 1, and multi-target
exports that are all or nothing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from golden_support import CAFFE_CASES, assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.cli import main
from modelport.export.common import ExportError
from modelport.export.torchscript import export_program
from modelport.pipeline import parse_net

CONV = next(c for c in caffe_cases() if c.name == "conv_basic")


def test_exported_program_dynamic_batch_from_a_batch_1_net(tmp_path: Path) -> None:
    """torch.export fixes size-1 axes: a net declared at batch 1 (open_nsfw) used to fail with
    "Constraints violated (batch)"; it is traced at batch 2 and checked at 1 and 2."""
    net = build_module(CONV.net(), {"data": (1, 3, 13, 11)})
    path = tmp_path / "conv.pt2"
    _, report = export_program(net, path, dynamic_batch=True)
    assert report.checked_batches == [1, 2]
    module = torch.export.load(str(path)).module()
    x, ref = CONV.inputs()["data"], CONV.blobs()["conv"]  # Caffe's numbers at batch 2
    with torch.no_grad():
        for rows in (slice(0, 1), slice(0, 2)):
            got = module(torch.from_numpy(x[rows]))
            got = got[0] if isinstance(got, tuple | list) else got
            assert_blob_close("conv", got.numpy(), ref[rows])


def test_dynamic_batch_refused_with_the_right_fix_when_the_net_fixes_the_batch() -> None:
    net = build_module(parse_net("""
        layer { name: "data" type: "Input" top: "data"
                input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }
        layer { name: "r" type: "Reshape" bottom: "data" top: "r"
                reshape_param { shape { dim: 2 dim: -1 } } }"""))
    with pytest.raises(ExportError, match="fixed batch size.*Fix: export without "
                                          "--dynamic-batch") as info:
        export_program(net, None, dynamic_batch=True)
    assert "\n" not in str(info.value) and "TorchScript" not in str(info.value)
    export_program(net, None)  # at the declared batch it exports


def _export(tmp_path: Path, *targets: str) -> list[str]:
    return ["export", str(CONV.prototxt), str(CONV.caffemodel), *targets]


def test_multi_target_export_failing_midway_writes_no_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import modelport.export.torchscript as ts

    def fail(*args: object, **kwargs: object) -> None:
        raise ExportError("torch.export failed (simulated)")

    monkeypatch.setattr(ts, "build_program", fail)
    onnx_path, ts_path, pt2 = tmp_path / "a.onnx", tmp_path / "a.pt", tmp_path / "a.pt2"
    ts_path.write_bytes(b"previous")
    code = main(_export(tmp_path, "--onnx", str(onnx_path), "--opset", "17",
                        "--torchscript", str(ts_path), "--exported-program", str(pt2)))
    assert code == 2
    assert "simulated" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["a.pt"]  # no target, no temporary file
    assert ts_path.read_bytes() == b"previous"
    monkeypatch.undo()
    assert main(_export(tmp_path, "--onnx", str(onnx_path), "--opset", "17",
                        "--torchscript", str(ts_path))) == 0
    assert sorted(os.listdir(tmp_path)) == ["a.onnx", "a.pt"]
    assert ts_path.read_bytes() != b"previous"


def test_unwritable_target_fails_before_any_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import modelport.export.onnx as onnx_export

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported although a destination cannot be written")

    monkeypatch.setattr(onnx_export, "export_onnx", never)
    good = tmp_path / "a.onnx"
    code = main(_export(tmp_path, "--onnx", str(good), "--torchscript", "/proc/x/a.pt"))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "/proc/x" in err
    assert not os.listdir(tmp_path)
    code = main(_export(tmp_path, "--onnx", str(good), "--torchscript", str(good)))
    assert code == 2 and "same file" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.network
def test_nsfw_exported_program_with_dynamic_batch(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The real open_nsfw deploy.prototxt declares batch 1."""
    from modelport.zoo import fetch_nsfw

    prototxt, caffemodel = fetch_nsfw()
    assert "dim: 1" in Path(prototxt).read_text()
    path = tmp_path / "nsfw.pt2"
    assert main(["export", prototxt, caffemodel, "--exported-program", str(path),
                 "--dynamic-batch"]) == 0, capsys.readouterr().err
    case = CAFFE_CASES / "nsfw"
    x = np.load(case / "inputs" / "data.npy")
    ref = np.load(case / "blobs" / "prob.npy")
    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    got = got[0] if isinstance(got, tuple | list) else got
    assert x.shape[0] > 1
    assert_blob_close("prob", got.numpy(), ref)
