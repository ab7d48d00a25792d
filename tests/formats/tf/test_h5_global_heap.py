"""A global heap collection whose free-space record has size 0 with room after it: libhdf5
1.14 loops forever reading any string in it (found by `make fuzz`, keras_h5); modelport refuses
the file first with a one-line FormatError."""

from __future__ import annotations

import pathlib

import pytest

pytest.importorskip("h5py", reason="the `tf` extra (h5py) is not installed")

from keras_archive_support import rezip

from modelport.errors import FormatError
from modelport.formats.tf.h5_heaps import global_heap_problem
from modelport.formats.tf.open import open_weights

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "keras"
HEAP = 2048  # keras2_weights.h5's one collection (its layer_names / weight_names strings)


def _looping(source: str = "keras2_weights.h5") -> bytes:
    data = bytearray((FIXTURES / source).read_bytes())
    assert data[HEAP:HEAP + 5] == b"GCOL\x01"
    data[HEAP + 16:HEAP + 32] = bytes(16)  # the first object: index 0 (free space), size 0
    return bytes(data)


def test_zero_size_free_space_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "w.h5"
    path.write_bytes(_looping())
    with pytest.raises(FormatError) as err:
        open_weights(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: damaged HDF5 file")
    assert "global heap collection at byte 2048" in msg and "size 0 at byte 2064" in msg


def test_inside_a_keras_archive(tmp_path: pathlib.Path) -> None:
    def zero_a_heap_record(members: dict[str, bytes]) -> None:
        weights = members["model.weights.h5"]
        at = weights.find(b"GCOL\x01")
        if at < 0:
            pytest.skip("the fixture's weights hold no global heap")
        members["model.weights.h5"] = weights[:at + 16] + bytes(16) + weights[at + 32:]

    path = rezip(FIXTURES / "model.keras", tmp_path / "m.keras", zero_a_heap_record)
    with pytest.raises(FormatError, match=r"m\.keras!model\.weights\.h5: damaged HDF5 file "
                                          r"\(the global heap collection"):
        open_weights(path)


@pytest.mark.parametrize("source", ["keras2_weights.h5", "keras2_model.h5", "model.weights.h5"])
def test_written_files_pass(source: str) -> None:
    assert global_heap_problem((FIXTURES / source).read_bytes()) is None


def test_free_space_with_a_size_ends_the_walk() -> None:
    """Index 0 with a non-zero size moves past the record, as libhdf5 does: no complaint."""
    data = bytearray(_looping())
    data[HEAP + 16 + 8:HEAP + 32] = (4096 - 16).to_bytes(8, "little")
    assert global_heap_problem(bytes(data)) is None


def test_reference_longer_than_the_file_is_refused_before_allocating(tmp_path: pathlib.Path
                                                                     ) -> None:
    """Found by `make fuzz` (keras_h5: peak RSS +1.7 GB for a 55 KB file): a layer_names string
    whose stored length says 2 GB; libhdf5 allocates it before comparing it with the heap
    object's 6 bytes."""
    import struct

    data = bytearray((FIXTURES / "keras2_weights.h5").read_bytes())
    ref = struct.pack("<QI", HEAP, 1)  # collection at 2048, object 1 ('deconv', 6 bytes)
    at = data.find(ref)
    assert at > 4 and struct.unpack_from("<I", data, at - 4)[0] == 6
    assert global_heap_problem(bytes(data)) is None
    data[at - 4:at] = struct.pack("<I", 2**31)
    path = tmp_path / "w.h5"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=rf"damaged HDF5 file \(a variable-length value at byte "
                                          rf"{at - 4} claims 2147483648 bytes, more than the "
                                          r"whole file, for global heap object 1 of 6 bytes\)"):
        open_weights(path)
