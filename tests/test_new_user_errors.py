"""What a new user hit (issue 15 item 10): an unwritable `convert -o`, a misspelt layer type,
parameter counts that disagreed without saying why, and `make demo`'s leftover folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from golden_support import CAFFE_CASES
from modelport.cli import main

CONV = CAFFE_CASES / "conv_basic"
BN = CAFFE_CASES / "batchnorm_scale"


@pytest.mark.parametrize("output, says", [
    ("/proc/x", "/proc/x"),
    ("/proc/x/y", "/proc/x"),
    ("/dev/null/x", "'/dev/null' is a file"),
    ("/proc/version", "exists and is not a folder"),
])
def test_convert_to_an_unwritable_folder_is_one_line(output: str, says: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["convert", str(CONV / "net.prototxt"), str(CONV / "weights.caffemodel"),
                 "-o", output])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("modelport: error: ")
    assert says in err and "Fix: " in err


@pytest.mark.parametrize("output, says", [
    ("/proc/x/y", "/proc/x"),
    ("/dev/null/x", "'/dev/null' is a file"),
])
def test_convert_api_checks_the_folder_like_the_cli(output: str, says: str) -> None:
    """`modelport.convert.convert` runs the same folder check as `modelport convert -o`."""
    from modelport.convert import convert
    from modelport.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        convert(str(CONV / "net.prototxt"), str(CONV / "weights.caffemodel"), output)
    assert says in str(info.value) and "Fix: " in str(info.value)


def _typo_net(tmp_path: Path) -> str:
    path = tmp_path / "typo.prototxt"
    path.write_text((CONV / "net.prototxt").read_text().replace('"Convolution"',
                                                                 '"Convolutoin"'))
    return str(path)


def test_unknown_type_suggests_the_registered_one(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    proto = _typo_net(tmp_path)
    assert main(["convert", proto, str(CONV / "weights.caffemodel"), "-o",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "type Convolutoin" in err and "did you mean 'Convolution'?" in err
    assert main(["inspect", proto]) == 0
    assert "did you mean 'Convolution'?" in capsys.readouterr().out
    from modelport.layers.registry import close_types

    assert close_types("relu") == ["ReLU"]  # case only
    assert close_types("SomethingElse") == []


def test_convert_and_inspect_say_what_their_parameter_count_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(BN / "net.prototxt"), str(BN / "weights.caffemodel"), "-o",
                 str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    # 52 learnable values + 2 BatchNorm layers x (mean 4 + variance 4 + scale factor 1)
    assert "70 parameters (every weight blob, as inspect counts them: 52 learnable + 18 " \
           "BatchNorm statistics)" in out
    assert main(["inspect", str(BN / "net.prototxt"), str(BN / "weights.caffemodel")]) == 0
    assert "total: 70 parameters (every weight blob, BatchNorm statistics included)" in \
        capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.network
def test_demo_removes_its_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from modelport import demo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert demo.main([]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "verdicts agree with cv2.dnn" in out and "removed the temporary folder" in out
    assert not [n for n in os.listdir(tmp_path) if n.startswith("modelport-demo-")]
    kept = tmp_path / "kept"
    assert demo.main(["-o", str(kept)]) == 0
    assert (kept / "nsfw" / "model.py").is_file()
