"""Damaged HDF5 files on which libhdf5 / h5py fail outside FormatError (found by `make fuzz`):
one-line FormatErrors naming the file. The crashing case runs in a subprocess, so a regression
is a failed test, not a dead test run."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("h5py", reason="the `tf` extra (h5py) is not installed")

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "keras"
CORPUS = pathlib.Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
# keras2_model.h5: the class-bits byte of conv_a's `weight_names` datatype (variable-length
# string, 0x01) made 0x86: a variable-length type of kind 6, on which libhdf5 1.14 segfaults.
TYPE_BYTE = 42161


def _read(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    code = ("import sys\nfrom modelport.errors import FormatError\n"
            "from modelport.formats.tf.open import open_weights\n"
            f"try:\n    open_weights({str(path)!r})\nexcept FormatError as exc:\n"
            "    print(exc)\n    sys.exit(2)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)


def test_vlen_sequence_type_is_refused_before_reading(tmp_path: pathlib.Path) -> None:
    data = bytearray((FIXTURES / "keras2_model.h5").read_bytes())
    assert data[TYPE_BYTE - 1:TYPE_BYTE + 3] == b"\x19\x01\x00\x00"
    data[TYPE_BYTE] = 0x86
    path = tmp_path / "w.h5"
    path.write_bytes(bytes(data))
    done = _read(path)
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    assert done.stdout.strip() == (f"{path}: damaged HDF5 file (attribute 'weight_names' of "
                                   "/model_weights/conv_a has a variable-length sequence type, "
                                   "which Keras never writes).")


def test_read_size_past_ssize_t_in_an_archive() -> None:
    """h5py's file-object driver raised OverflowError for a read size libhdf5 took from a
    damaged size field of the weights inside a .keras archive."""
    from modelport.errors import FormatError
    from modelport.formats.tf.open import open_weights

    path = CORPUS / "keras_archive" / "read_size_past_ssize_t.keras"
    with pytest.raises(FormatError, match=r"read_size_past_ssize_t\.keras!model\.weights\.h5: "
                                          r"damaged HDF5 file \(Python int too large"):
        open_weights(path)
