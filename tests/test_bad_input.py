"""Bad input gives one clear modelport error line: never a traceback, never partial output.

Every case runs through the library (the exception type and message) and through the command
line (`modelport convert ...` via cli.main, and once as a real `python -m modelport` process):
exit status 2, one `modelport: error:` line on stderr, no traceback, no output folder and no
staging folder left behind.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from golden_support import caffe_cases
from modelport.cli import main
from modelport.convert import convert
from modelport.errors import (
    FormatError,
    LayerError,
    ModelportError,
    ShapeError,
    UnsupportedLayerError,
    WeightError,
)

CASES = {c.name: c for c in caffe_cases()}
CONV = CASES["conv_basic"]

UNSUPPORTED = """
name: "forks"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 9 dim: 7 } } }
layer { name: "proposal" type: "Python" bottom: "data" top: "rois"
        python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "upsample" type: "Interp" bottom: "conv" top: "up" interp_param { zoom_factor: 2 } }
"""

MISSING_BOTTOM = """
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 13 dim: 11 } } }
layer { name: "conv" type: "Convolution" bottom: "dta" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
"""

SYNTAX = """name: "broken"
layer { name: "data" type: "Input" top: "data" }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 ]
}
"""

BAD_POOL = """
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 5 dim: 4 } } }
layer { name: "pool2" type: "Pooling" bottom: "data" top: "pool2"
        pooling_param { pool: MAX kernel_h: 6 kernel_w: 3 stride: 2 } }
"""


def _write(tmp_path, name: str, data: bytes | str):
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _cli(tmp_path, capsys, *args: str) -> str:
    """Run `modelport convert` in-process; assert the error contract; return the error line."""
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["convert", *args, "-o", str(out)])
    err = capsys.readouterr().err
    return _check_error(tmp_path, rc, err)


def _check_error(tmp_path, rc: int, err: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelport: error: "), err
    assert not (tmp_path / "out").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
    return lines[0]


def test_subprocess_error_contract(tmp_path) -> None:
    """The real command line: exit status 2, one line, no traceback, nothing written."""
    data = CONV.caffemodel.read_bytes()
    weights = _write(tmp_path, "w.caffemodel", data[: len(data) // 2])
    proc = subprocess.run([sys.executable, "-m", "modelport", "convert", str(CONV.prototxt),
                           str(weights), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    line = _check_error(tmp_path, proc.returncode, proc.stderr)
    assert "w.caffemodel" in line


def _lib(tmp_path, exc_type, *args, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        convert(*args, tmp_path / "out", **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert not (tmp_path / "out").exists()
    return message


def test_truncated_caffemodel(tmp_path, capsys) -> None:
    data = CONV.caffemodel.read_bytes()
    weights = _write(tmp_path, "w.caffemodel", data[: len(data) * 2 // 3])
    msg = _lib(tmp_path, FormatError, CONV.prototxt, weights)
    assert "w.caffemodel" in msg and "truncated" in msg
    assert "truncated" in _cli(tmp_path, capsys, str(CONV.prototxt), str(weights))


def test_random_bytes_caffemodel(tmp_path, capsys) -> None:
    rng = np.random.RandomState(7)
    weights = _write(tmp_path, "noise.caffemodel", rng.bytes(4096))
    msg = _lib(tmp_path, FormatError, CONV.prototxt, weights)
    assert "noise.caffemodel" in msg
    assert "noise.caffemodel" in _cli(tmp_path, capsys, str(CONV.prototxt), str(weights))


def test_prototxt_syntax_error_has_line_and_column(tmp_path, capsys) -> None:
    proto = _write(tmp_path, "broken.prototxt", SYNTAX)
    msg = _lib(tmp_path, FormatError, proto, CONV.caffemodel)
    assert "broken.prototxt:4:69:" in msg  # line 4, column 69: the stray ']'
    line = _cli(tmp_path, capsys, str(proto), str(CONV.caffemodel))
    assert "broken.prototxt:4:69:" in line


def test_bottom_that_does_not_exist(tmp_path, capsys) -> None:
    proto = _write(tmp_path, "net.prototxt", MISSING_BOTTOM)
    msg = _lib(tmp_path, LayerError, proto, CONV.caffemodel)
    assert "layer 'conv'" in msg and "'dta'" in msg
    assert "'dta'" in _cli(tmp_path, capsys, str(proto), str(CONV.caffemodel))


def test_weight_shape_mismatch(tmp_path, capsys) -> None:
    proto = _write(tmp_path, "net.prototxt",
                   CONV.prototxt.read_text().replace("num_output: 4", "num_output: 5"))
    msg = _lib(tmp_path, WeightError, proto, CONV.caffemodel)
    assert "layer 'conv' (type Convolution)" in msg and "(4, 3, 3, 3)" in msg
    assert "(5, 3, 3, 3)" in _cli(tmp_path, capsys, str(proto), str(CONV.caffemodel))


def test_unsupported_layers_listed_together(tmp_path, capsys) -> None:
    proto = _write(tmp_path, "forks.prototxt", UNSUPPORTED)
    msg = _lib(tmp_path, UnsupportedLayerError, proto, None, allow_missing_weights=True)
    assert "2 layers" in msg
    assert "layer 'proposal' (type Python)" in msg and "rpn.proposal_layer" in msg
    assert "layer 'upsample' (type Interp)" in msg
    line = _cli(tmp_path, capsys, str(proto), "--allow-missing-weights")
    assert "proposal" in line and "upsample" in line


def test_input_shape_that_makes_a_layer_impossible(tmp_path, capsys) -> None:
    proto = _write(tmp_path, "pool.prototxt", BAD_POOL)
    msg = _lib(tmp_path, ShapeError, proto, None, allow_missing_weights=True)
    assert "layer 'pool2' (type Pooling)" in msg and "Fix:" in msg
    # a declared shape that is fine, made impossible from the command line
    pool = CASES["pool_max_ceil"]
    line = _cli(tmp_path, capsys, str(pool.prototxt), str(pool.caffemodel),
                "--input-shape", "data=2,3,2,2")
    assert "(type Pooling)" in line and "larger than" in line


def test_non_existent_path(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.prototxt"
    msg = _lib(tmp_path, FormatError, missing, CONV.caffemodel)
    assert "nope.prototxt" in msg and "does not exist" in msg
    line = _cli(tmp_path, capsys, str(CONV.prototxt), str(tmp_path / "no.caffemodel"))
    assert "does not exist" in line


def test_directory_given_as_a_file(tmp_path, capsys) -> None:
    folder = tmp_path / "adir"
    folder.mkdir()
    msg = _lib(tmp_path, FormatError, folder, CONV.caffemodel)
    assert "is a directory" in msg
    assert "is a directory" in _cli(tmp_path, capsys, str(CONV.prototxt), str(folder))


def test_caffemodel_given_as_prototxt(tmp_path) -> None:
    msg = _lib(tmp_path, FormatError, CONV.caffemodel, CONV.caffemodel)
    assert "weights.caffemodel" in msg


def test_bad_input_shape_option(tmp_path, capsys) -> None:
    line = _cli(tmp_path, capsys, str(CONV.prototxt), str(CONV.caffemodel),
                "--input-shape", "data=1,x")
    assert "--input-shape" in line


def test_output_is_an_existing_file(tmp_path, capsys) -> None:
    target = _write(tmp_path, "out", "I am a file")
    rc = main(["convert", str(CONV.prototxt), str(CONV.caffemodel), "-o", str(target)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and "Traceback" not in err
    assert target.read_text() == "I am a file"


def test_every_error_is_a_modelport_error() -> None:
    for exc in (FormatError, LayerError, ShapeError, WeightError, UnsupportedLayerError):
        assert issubclass(exc, ModelportError)


def test_garbage_mean_file_names_the_file(tmp_path, capsys) -> None:
    mean = _write(tmp_path, "m.binaryproto", b"garbage!!")
    msg = _lib(tmp_path, FormatError, CONV.prototxt, CONV.caffemodel, mean=mean)
    assert "m.binaryproto" in msg
    assert "m.binaryproto" in _cli(tmp_path, capsys, str(CONV.prototxt), str(CONV.caffemodel),
                                   "--mean", str(mean))


def test_random_byte_flips_never_escape_as_other_exceptions(tmp_path) -> None:
    data = CONV.caffemodel.read_bytes()
    for seed in range(40):
        rng = np.random.RandomState(seed)
        flipped = bytearray(data)
        for _ in range(3):
            flipped[rng.randint(len(flipped))] = rng.randint(256)
        weights = _write(tmp_path, "flip.caffemodel", bytes(flipped))
        try:
            convert(CONV.prototxt, weights, tmp_path / f"out{seed}")
        except ModelportError as exc:
            assert "\n" not in str(exc)
            assert not (tmp_path / f"out{seed}").exists()
