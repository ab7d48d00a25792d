"""A Keras config that nests deeper than any model (found by `make fuzz`, keras_archive: json's
decoder raised a raw RecursionError): a one-line FormatError, for a .keras archive's
config.json and for a Keras 2 .h5's model_config attribute."""

from __future__ import annotations

import pathlib
import shutil

import pytest

pytest.importorskip("h5py", reason="the `tf` extra (h5py) is not installed")

from keras_archive_support import rezip

from modelport.errors import FormatError
from modelport.formats.tf.keras_h5 import MAX_CONFIG_DEPTH, load_config_json
from modelport.formats.tf.open import open_weights

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures"


def _nested(depth: int) -> bytes:
    return b'{"class_name": "Functional", "config": ' + b"[" * depth + b"]" * depth + b"}"


def _archive(tmp_path: pathlib.Path, config: bytes) -> pathlib.Path:
    return rezip(FIXTURES / "tf_port" / "flatten_dense" / "model.keras", tmp_path / "m.keras",
                 lambda members: members.update({"config.json": config}))


@pytest.mark.parametrize("depth", [MAX_CONFIG_DEPTH, 5000, 100_000])
def test_deep_config_json(tmp_path: pathlib.Path, depth: int) -> None:
    path = _archive(tmp_path, _nested(depth))
    with pytest.raises(FormatError) as err:
        open_weights(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: config.json nests more than {MAX_CONFIG_DEPTH} levels")


def test_depth_limit_is_exact() -> None:
    # the outer object is one level, the lists the rest
    assert load_config_json(_nested(MAX_CONFIG_DEPTH - 1), "c")["class_name"] == "Functional"
    with pytest.raises(FormatError, match="c nests more than"):
        load_config_json(_nested(MAX_CONFIG_DEPTH), "c")


def test_deep_model_config_attribute(tmp_path: pathlib.Path) -> None:
    import h5py

    path = tmp_path / "m.h5"
    shutil.copy(FIXTURES / "keras" / "keras2_model.h5", path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["model_config"] = _nested(20_000).decode()
    with pytest.raises(FormatError, match=r"m\.h5: the model_config attribute nests more than"):
        open_weights(path)
