"""TorchScript and torch.export round trips (file written, loaded back without modelport's
modules, compared with REAL Caffe's blobs), and the `modelport export` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.cli import main
from modelport.errors import UnsupportedLayerError
from modelport.export.torchscript import export_program, export_torchscript

CASES = [c for c in caffe_cases() if c.name != "nsfw"]
# TorchScript is deprecated upstream but still what many deployments load; the test loads it.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")


def convert_or_skip(case):
    try:
        return build_module(case.net())
    except UnsupportedLayerError as exc:
        pytest.skip(f"not convertible yet: {exc}")


def as_outputs(result, names):
    return (result,) if isinstance(result, torch.Tensor) else tuple(result)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_torchscript_round_trip_matches_caffe(case, tmp_path) -> None:
    net = convert_or_skip(case)
    path = tmp_path / "model.pt"
    export_torchscript(net, path, inputs=case.inputs())
    loaded = torch.jit.load(str(path))
    inputs = case.inputs()
    with torch.no_grad():
        outs = as_outputs(loaded(*[torch.from_numpy(inputs[n]) for n in net.input_names]),
                          net.output_names)
    ref = case.blobs()
    for name, value in zip(net.output_names, outs):
        assert_blob_close(name, value.numpy(), ref[name])


@pytest.mark.parametrize("name", ["pool_ave_pad", "inplace_chain", "concat_slice"])
def test_exported_program_round_trip_with_dynamic_batch(name, tmp_path) -> None:
    case = next(c for c in CASES if c.name == name)
    net = convert_or_skip(case)
    path = tmp_path / "model.pt2"
    _, report = export_program(net, path, inputs=case.inputs(), dynamic_batch=True)
    assert report.checked_batches == [2, 3]
    module = torch.export.load(str(path)).module()
    inputs, ref = case.inputs(), case.blobs()
    with torch.no_grad():  # one sample at a time: the batch axis really is symbolic
        outs = as_outputs(module(*[torch.from_numpy(inputs[n][1:2]) for n in net.input_names]),
                          net.output_names)
    for name_, value in zip(net.output_names, outs):
        assert_blob_close(name_, value.numpy(), ref[name_][1:2])


def test_cli_exports_a_conversion_folder_and_a_prototxt(tmp_path, capsys) -> None:
    case = next(c for c in CASES if c.name == "pool_max_ceil")
    folder = tmp_path / "converted"
    assert main(["convert", str(case.prototxt), str(case.caffemodel), "-o", str(folder)]) == 0
    np.save(tmp_path / "data.npy", case.inputs()["data"])
    onnx_path, ts_path = tmp_path / "a.onnx", tmp_path / "a.pt"
    assert main(["export", str(folder), "--onnx", str(onnx_path), "--opset", "17",
                 "--dynamic-batch", "--torchscript", str(ts_path),
                 "--input", f"data={tmp_path / 'data.npy'}"]) == 0
    assert onnx_path.exists() and ts_path.exists()
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path))
    outs = session.run(None, case.inputs())
    for out, value in zip([o.name for o in session.get_outputs()], outs):
        assert_blob_close(out, value, case.blobs()[out])
    other = tmp_path / "b.onnx"
    assert main(["export", str(case.prototxt), str(case.caffemodel), "--onnx",
                 str(other)]) == 0
    assert other.exists()


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["export", str(tmp_path), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "is not a modelport conversion folder" in err and len(err.strip().splitlines()) == 1
    case = next(c for c in CASES if c.name == "conv_basic")
    assert main(["export", str(case.prototxt), str(case.caffemodel)]) == 2
    assert "nothing to export" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    assert main(["export", str(case.prototxt), str(case.caffemodel), "--onnx",
                 str(tmp_path / "y.onnx"), "--input", f"data={bad}"]) == 2
    assert not (tmp_path / "y.onnx").exists()


def test_cli_export_optimize_takes_an_optimized_folder_refuses_a_plain_one(tmp_path,
                                                                           capsys) -> None:
    case = next(c for c in CASES if c.name == "inplace_chain")
    plain, folded = tmp_path / "plain", tmp_path / "folded"
    assert main(["convert", str(case.prototxt), str(case.caffemodel), "-o", str(plain)]) == 0
    assert main(["convert", str(case.prototxt), str(case.caffemodel), "-o", str(folded),
                 "--optimize"]) == 0
    capsys.readouterr()
    refused = tmp_path / "plain.onnx"
    assert main(["export", str(plain), "--optimize", "--onnx", str(refused)]) == 2
    err = capsys.readouterr().err
    assert "converted without --optimize" in err and len(err.strip().splitlines()) == 1
    assert not refused.exists()
    path = tmp_path / "folded.onnx"
    assert main(["export", str(folded), "--optimize", "--onnx", str(path)]) == 0
    import onnxruntime as ort

    session = ort.InferenceSession(str(path))
    names = [o.name for o in session.get_outputs()]
    for name, value in zip(names, session.run(None, case.inputs())):
        assert_blob_close(name, value, case.blobs()[name])


@pytest.mark.parametrize("record", [b"{bad", b"[1, 2]", b"[" * 100_000 + b"]" * 100_000])
@pytest.mark.parametrize("target", ["--onnx", "--keras"])
def test_a_damaged_conversion_record_is_one_line(tmp_path, capsys, record, target) -> None:
    # conversion.json is what export reads first from a conversion folder: unreadable JSON, a
    # non-object, or one nested past json's recursion limit are a FormatError naming it
    from modelport.convert import convert

    case = next(c for c in CASES if c.name == "conv_basic")
    folder = tmp_path / "conv"
    convert(case.prototxt, case.caffemodel, folder)
    (folder / "conversion.json").unlink()  # a link into .modelport: replaced by a plain file
    (folder / "conversion.json").write_bytes(record)
    out = tmp_path / ("x.onnx" if target == "--onnx" else "k")
    assert main(["export", str(folder), target, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "conversion.json' is not a readable conversion record" in err, err
    assert len(err.splitlines()) == 1 and "Fix:" in err
    assert not out.exists()
