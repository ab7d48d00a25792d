"""Limits and sizes (issue 15, items 5-7): every command estimates what it will allocate from the
shapes before allocating and refuses beyond a stated cap; shapes and files that would overflow,
recurse or take minutes are one-line errors, never tracebacks.

Each CLI case asserts the error contract: exit status != 0, exactly one `modelport: error:` line
on stderr naming the layer or file, no traceback. Memory caps are set explicitly here
(MODELPORT_MEMORY_LIMIT) so that nothing depends on the machine's RAM and nothing large is ever
allocated, whatever the machine.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np
import pytest

from modelport import limits
from modelport.cli import main
from modelport.errors import ConfigError, FormatError, ModelportError
from modelport.formats.caffe import caffe_pb2
from modelport.inspect import inspect_files

GOLDEN = pathlib.Path(__file__).parent / "golden"
CONV = GOLDEN / "caffe" / "conv_basic"
SOLVER = GOLDEN / "solver" / "adam_poly"
IMAGE = GOLDEN / "transform" / "images" / "img_a.png"

HUGE_FC = """name: "huge_fc"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 2000000000 } }
"""

# 1x1 convolution, 2000 outputs on a 2000 x 2000 input: 2000^3 float32 = 32 GB of activations
# from 8 KB of weights.
WIDE_CONV = """name: "wide"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 2000 dim: 2000 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2000 kernel_size: 1
                            weight_filler { type: "gaussian" std: 0.1 } } }
"""


def _net(dims: str) -> str:
    return f"""name: "dims"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "data" top: "r" }}
"""


def _write(tmp_path: pathlib.Path, name: str, data: str | bytes) -> pathlib.Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `modelport *argv` in-process; assert the one-line error contract; return the line."""
    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert rc != 0, f"accepted: {argv}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelport: error: "), err
    return lines[0]


@pytest.fixture(autouse=True)
def _small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2 GB memory cap whatever the machine has (the defaults are tested on their own)."""
    monkeypatch.setenv(limits.MEMORY_ENV, "2G")


# ------------------------------------------------------------------ item 5: memory estimates


def test_inspect_counts_parameters_without_allocating_them(tmp_path, capsys) -> None:
    """inspect needs no weights: 2e9 x 192 parameters (1.5 TB) are counted from the shapes."""
    proto = _write(tmp_path, "fc.prototxt", HUGE_FC)
    info = inspect_files(proto)
    fc = info.layers[1]
    assert fc.problem is None and fc.top_shapes == [(1, 2000000000)]
    assert fc.params == 2000000000 * 192 + 2000000000
    assert fc.macs == 2000000000 * 192
    capsys.readouterr()
    assert main(["inspect", str(proto)]) == 0
    assert "386,000,000,000" in capsys.readouterr().out


def test_convert_refuses_weights_over_the_cap_before_allocating(tmp_path, capsys) -> None:
    proto = _write(tmp_path, "fc.prototxt", HUGE_FC)
    line = _error(capsys, "convert", str(proto), "--allow-missing-weights",
                  "-o", str(tmp_path / "out"))
    assert "layer 'fc' (type InnerProduct)" in line and "1.54 TB" in line
    assert limits.MEMORY_ENV in line and "Fix:" in line
    assert not (tmp_path / "out").exists()


def test_verify_refuses_activations_over_the_cap(tmp_path, capsys) -> None:
    """8 KB of weights, 32 GB of activations: refused naming the layer, nothing allocated."""
    from modelport.backends.torch_module import build_module
    from modelport.formats.caffe.writer import write_caffemodel
    from modelport.pipeline import parse_net

    proto = _write(tmp_path, "wide.prototxt", WIDE_CONV)
    weights = tmp_path / "wide.caffemodel"
    write_caffemodel(weights, build_module(parse_net(WIDE_CONV), allow_missing_weights=True))
    line = _error(capsys, "verify", str(proto), str(weights), "-q")
    assert "layer 'conv' (type Convolution)" in line and "32.0 GB" in line
    assert "1x2000x2000x2000" in line and limits.MEMORY_ENV in line


def test_weight_budget_is_cumulative(tmp_path, capsys, monkeypatch) -> None:
    """Three 80 MB layers: each fits a 200 MB cap alone, the third one does not."""
    monkeypatch.setenv(limits.MEMORY_ENV, "200M")
    layers = "".join(
        f'layer {{ name: "fc{i}" type: "InnerProduct" bottom: "data" top: "fc{i}" '
        f'inner_product_param {{ num_output: 100000 bias_term: false }} }}\n' for i in range(3))
    proto = _write(tmp_path, "three.prototxt", """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 200 } } }
""" + layers)
    line = _error(capsys, "convert", str(proto), "--allow-missing-weights",
                  "-o", str(tmp_path / "out"))
    assert "layer 'fc2' (type InnerProduct)" in line and "240 MB" in line


def test_memory_limit_setting(monkeypatch) -> None:
    monkeypatch.setenv(limits.MEMORY_ENV, "1.5G")
    assert limits.memory_limit() == 1_500_000_000
    monkeypatch.setenv(limits.MEMORY_ENV, "512M")
    assert limits.memory_limit() == 512_000_000
    monkeypatch.setenv(limits.MEMORY_ENV, "4GiB")
    assert limits.memory_limit() == 4 * 2**30
    monkeypatch.setenv(limits.MEMORY_ENV, "off")
    assert limits.memory_limit() is None
    monkeypatch.setenv(limits.MEMORY_ENV, "25%")
    ram = limits.physical_memory()
    assert ram is not None and limits.memory_limit() == int(ram * 0.25)
    monkeypatch.delenv(limits.MEMORY_ENV)
    assert limits.memory_limit() == int(ram * limits.DEFAULT_MEMORY_FRACTION)
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    with pytest.raises(ConfigError, match=limits.MEMORY_ENV):
        limits.memory_limit()


# ------------------------------------------------------------- item 6: one-line errors


def _blob_caffemodel(dims: list[int], values: list[float]) -> bytes:
    net = caffe_pb2.NetParameter(name="conv_basic")
    layer = net.layer.add(name="conv", type="Convolution")
    blob = layer.blobs.add()
    blob.shape.dim.extend(dims)
    blob.data.extend(values)
    return net.SerializeToString()


@pytest.mark.parametrize("values", [[], [1.0, 2.0]])
@pytest.mark.parametrize("dims", [[2**32, 2**32], [2**62, 4], [2**63 - 1, 2**63 - 1, 3]])
def test_caffemodel_blob_shape_overflowing_int64(tmp_path, capsys, dims, values) -> None:
    """int64 products wrap to 0 (2^32 x 2^32): with no values the count 'matched' and numpy's
    reshape raised a ValueError."""
    weights = _write(tmp_path, "w.caffemodel", _blob_caffemodel(dims, values))
    line = _error(capsys, "inspect", str(CONV / "net.prototxt"), str(weights))
    assert "w.caffemodel" in line and "conv" in line
    line = _error(capsys, "convert", str(CONV / "net.prototxt"), str(weights),
                  "-o", str(tmp_path / "out"))
    assert "w.caffemodel" in line


def test_binaryproto_blob_shape_overflowing_int64(tmp_path, capsys) -> None:
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 3, 2**32, 2**32])
    mean = _write(tmp_path, "mean.binaryproto", blob.SerializeToString())
    line = _error(capsys, "convert", str(CONV / "net.prototxt"), str(CONV / "weights.caffemodel"),
                  "--mean", str(mean), "-o", str(tmp_path / "out"))
    assert "mean.binaryproto" in line


@pytest.mark.parametrize("dims", ["dim: 4611686018427387904 dim: 3", "dim: 9223372036854775807",
                                  "dim: 2 dim: 4611686018427387904"])
@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_input_dims_too_large_for_any_tensor(tmp_path, capsys, dims, command) -> None:
    proto = _write(tmp_path, "dims.prototxt", _net(dims))
    extra = ["--allow-missing-weights", "-o", str(tmp_path / "out")] if command == "convert" \
        else []
    line = _error(capsys, command, str(proto), *extra)
    assert "layer 'data' (type Input)" in line and "'data'" in line


def test_input_dims_too_large_given_on_the_command_line(tmp_path, capsys) -> None:
    line = _error(capsys, "inspect", str(CONV / "net.prototxt"),
                  "--input-shape", "data=2,3,4611686018427387904,2")
    assert "layer 'data' (type Input)" in line


def test_inspect_of_negative_dim(tmp_path, capsys) -> None:
    proto = _write(tmp_path, "neg.prototxt", _net("dim: -1 dim: 3 dim: 8 dim: 8"))
    line = _error(capsys, "inspect", str(proto))
    assert "layer 'data' (type Input)" in line and "-1" in line


@pytest.mark.parametrize("depth", [400, 5000])
@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_deeply_nested_prototxt(tmp_path, capsys, depth, command) -> None:
    text = ('name: "n"\nlayer { name: "a" type: "Input" top: "a" '
            + "x { " * depth + "}" * depth + " }\n")
    proto = _write(tmp_path, "nest.prototxt", text)
    extra = ["--allow-missing-weights", "-o", str(tmp_path / "out")] if command == "convert" \
        else []
    line = _error(capsys, command, str(proto), *extra)
    assert "nest.prototxt:2:" in line and "nested" in line


def test_deeply_nested_solver(tmp_path, capsys) -> None:
    solver = _write(tmp_path, "solver.prototxt", 'net: "x"\n' + "y { " * 600 + "}" * 600)
    line = _error(capsys, "train", str(solver))
    assert "solver.prototxt" in line and "nested" in line


@pytest.mark.parametrize("mean, expect", [
    (np.array(["a", "b", "c"]), "not numbers"),
    (np.zeros(3, np.complex64), "not numbers"),
    (b"\x93NUMPY garbage", "mean"),
])
@pytest.mark.parametrize("style", ["caffe", "pycaffe"])
def test_verify_bad_mean_npy(tmp_path, capsys, mean, expect, style) -> None:
    path = tmp_path / "bad.npy"
    if isinstance(mean, bytes):
        path.write_bytes(mean)
    else:
        np.save(path, mean)
    line = _error(capsys, "verify", str(CONV / "net.prototxt"), str(CONV / "weights.caffemodel"),
                  "--image", str(IMAGE), "--mean", str(path), "--preprocess", style, "-q")
    assert "bad.npy" in line and expect in line


def _solver_copy(tmp_path: pathlib.Path, **fields: str) -> pathlib.Path:
    folder = tmp_path / "case"
    folder.mkdir()
    for name in ("solver.prototxt", "train.prototxt", "train.h5", "train_h5_list.txt",
                 "init.caffemodel"):
        shutil.copy(SOLVER / name, folder / name)
    text = (folder / "solver.prototxt").read_text()
    for key, value in fields.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}:")]
        text = "\n".join(lines + [f'{key}: "{value}"']) + "\n"
    (folder / "solver.prototxt").write_text(text)
    return folder


@pytest.mark.parametrize("field", ["snapshot_prefix", "net"])
def test_nul_in_solver_path_fields(tmp_path, capsys, monkeypatch, field) -> None:
    """Refused before the first iteration (it used to fail at the first metrics row/snapshot)."""
    value = "sn\\000ap" if field == "snapshot_prefix" else "train\\000.prototxt"
    folder = _solver_copy(tmp_path, **{field: value})
    monkeypatch.chdir(folder)
    before = sorted(p.name for p in folder.iterdir())
    line = _error(capsys, "train", "solver.prototxt", "--weights", "init.caffemodel")
    assert field in line and "NUL" in line
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written, no iteration


# ------------------------------------------------------------------------ item 7: sizes


def test_prototxt_over_the_size_cap(tmp_path, capsys, monkeypatch) -> None:
    """Refused before parsing (a 200 MB file took minutes and gigabytes)."""
    monkeypatch.setenv(limits.PROTOTXT_MB_ENV, "0.01")  # 10 KB
    text = _net("dim: 1 dim: 3") + "# padding\n" * 2000
    proto = _write(tmp_path, "big.prototxt", text)
    line = _error(capsys, "inspect", str(proto))
    assert "big.prototxt" in line and limits.PROTOTXT_MB_ENV in line and "0.01 MB" in line


def test_prototxt_over_the_default_size_cap(tmp_path, capsys) -> None:
    size = int(limits.DEFAULT_PROTOTXT_MB * 1e6) + 1
    text = _net("dim: 1 dim: 3")
    proto = _write(tmp_path, "big.prototxt", text + "#" * (size - len(text) - 1) + "\n")
    line = _error(capsys, "inspect", str(proto))
    assert limits.PROTOTXT_MB_ENV in line


def test_net_over_the_layer_cap(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(limits.LAYERS_ENV, "50")
    relus = "".join(f'layer {{ name: "r{i}" type: "ReLU" bottom: "data" top: "data" }}\n'
                    for i in range(60))
    proto = _write(tmp_path, "many.prototxt", _net("dim: 1 dim: 3") + relus)
    line = _error(capsys, "inspect", str(proto))
    assert "many.prototxt" in line and limits.LAYERS_ENV in line and "50" in line
    monkeypatch.setenv(limits.LAYERS_ENV, "100")
    capsys.readouterr()
    assert main(["inspect", str(proto)]) == 0


def test_limit_settings_are_validated(monkeypatch) -> None:
    monkeypatch.setenv(limits.LAYERS_ENV, "many")
    with pytest.raises(ModelportError, match=limits.LAYERS_ENV):
        limits.max_layers()
    monkeypatch.setenv(limits.PROTOTXT_MB_ENV, "-3")
    with pytest.raises(ModelportError, match=limits.PROTOTXT_MB_ENV):
        limits.max_prototxt_bytes()


def test_parse_net_text_is_capped_too(monkeypatch) -> None:
    from modelport.pipeline import parse_net

    monkeypatch.setenv(limits.PROTOTXT_MB_ENV, "0.001")
    with pytest.raises(FormatError, match=limits.PROTOTXT_MB_ENV):
        parse_net(_net("dim: 1 dim: 3") + "#" * 2000)


def test_inspect_reuses_results_of_identical_layers_correctly(tmp_path) -> None:
    """Identical layers (one result computed, reused) still get their own shapes and counts."""
    proto = _write(tmp_path, "chain.prototxt", """
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 9 dim: 7 } } }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "c3" type: "Convolution" bottom: "c2" top: "c3"
        convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "c4" type: "Convolution" bottom: "c3" top: "c4"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
""")
    rows = inspect_files(proto).layers[1:]
    assert [r.top_shapes for r in rows] == [[(2, 3, 9, 7)], [(2, 3, 9, 7)], [(2, 3, 7, 5)],
                                            [(2, 3, 7, 5)]]
    assert [r.params for r in rows] == [84] * 4
    assert [r.macs for r in rows] == [2 * 3 * 9 * 7 * 27] * 2 + [2 * 3 * 7 * 5 * 27] * 2


def test_weight_shape_no_tensor_can_hold(tmp_path, capsys) -> None:
    """4e9 x 2^40 weights: inspect flags the layer (no meta-tensor overflow traceback),
    convert refuses it before allocating."""
    proto = _write(tmp_path, "ip.prototxt", """
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1099511627776 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 4000000000 } }
""")
    fc = inspect_files(proto).layers[1]
    assert fc.problem is not None and "more than any tensor can hold" in fc.problem
    line = _error(capsys, "convert", str(proto), "--allow-missing-weights",
                  "-o", str(tmp_path / "out"))
    assert "layer 'fc' (type InnerProduct)" in line and "EB" in line


@pytest.mark.slow  # three fresh interpreters importing torch
def test_real_command_line_one_line_errors(tmp_path) -> None:
    """As a real process (Python's default recursion limit): a 1000-level nesting, an input
    dim of 2^63-1 and a 1.5 TB weight blob are one line each, no traceback."""
    import subprocess
    import sys

    nest = _write(tmp_path, "nest.prototxt", 'layer { name: "a" type: "Input" top: "a" '
                  + "x { " * 1000 + "}" * 1000 + " }\n")
    dims = _write(tmp_path, "dims.prototxt", _net("dim: 9223372036854775807"))
    fc = _write(tmp_path, "fc.prototxt", HUGE_FC)
    for args in (["inspect", str(nest)], ["inspect", str(dims)],
                 ["convert", str(fc), "--allow-missing-weights", "-o", str(tmp_path / "out")]):
        proc = subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True,
                              text=True, timeout=600, env={**os.environ, limits.MEMORY_ENV: "8G"})
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(lines) == 1 and lines[0].startswith("modelport: error: "), proc.stderr
    assert not (tmp_path / "out").exists()
