"""Refuse the HDF5 global heap collections on which libhdf5 never returns.

Variable-length data (Keras's `layer_names` / `weight_names` string attributes) lives in
global heap collections: `GCOL`, version 1, reserved bytes, the collection's size (8 bytes),
then objects of `index (2), reference count (2), reserved (4), size (8)` and the data padded
to 8 bytes; the object with index 0 is the free space. libhdf5 (1.14: H5HG__cache_heap_
deserialize) walks the objects with `p = begin + need`, where `need` is the free-space
object's size as stored: a free-space object of size 0 with room for another object header
after it leaves `p` where it was, and the walk loops forever on the first read of any string
in that collection. And a stored reference to a heap object carries its own length, which
libhdf5 allocates before comparing it with the object's: a length past the file's size costs
gigabytes for nothing. `global_heap_problem` finds every collection by its signature, walks it
as libhdf5 does and checks the references to it, before h5py opens the file.
"""

from __future__ import annotations

import mmap
import re
import struct

__all__ = ["global_heap_problem"]

_SIGNATURE = re.compile(rb"GCOL\x01")
_SUPERBLOCK = b"\x89HDF\r\n\x1a\n"
_HEADER = 16  # signature, version, 3 reserved, size (8-byte lengths: h5py's default)
_OBJECT_HEADER = 16


def global_heap_problem(data: bytes | mmap.mmap) -> str | None:
    """What makes a global heap collection in `data` (a whole HDF5 file) one libhdf5 loops
    on, or None. Every `GCOL` version-1 signature is taken for a collection (the reader looks
    only at those a dataset or attribute points to; a false match needs those 5 bytes followed
    by a zero-size free-space record). Files whose lengths are not 8 bytes are not checked."""
    if _length_size(data) != 8:
        return None
    heaps: dict[int, dict[int, int]] = {}  # collection offset -> {object index: size}
    for match in _SIGNATURE.finditer(data):
        start = match.start()
        if start + _HEADER > len(data):
            break
        (size,) = struct.unpack_from("<Q", data, start + 8)
        end = min(start + size, len(data))
        p = start + _HEADER
        objects = heaps.setdefault(start, {})
        while p + _OBJECT_HEADER <= end:
            index, _, _, obj_size = struct.unpack_from("<HHIQ", data, p)
            objects.setdefault(index, obj_size)
            if index == 0:
                if obj_size == 0:
                    return (f"the global heap collection at byte {start} has a free-space "
                            f"record of size 0 at byte {p} (libhdf5 would never finish "
                            "reading it)")
                p += obj_size
            else:
                p += _OBJECT_HEADER + (obj_size + 7) // 8 * 8
    return _oversized_reference(data, heaps)


def _oversized_reference(data: bytes | mmap.mmap, heaps: dict[int, dict[int, int]]) -> str | None:
    """A stored variable-length element `length (4), collection address (8), object index (4)`
    whose length exceeds both its heap object and the whole file: libhdf5 allocates the
    length's bytes before it compares them with the object's size (and fails), so a 4-byte
    lie costs gigabytes. References are found by the collection's address (offsets are from
    the superblock, 0 without a user block)."""
    base = _superblock(data) or 0
    for start, objects in heaps.items():
        address = struct.pack("<Q", start - base)
        at = data.find(address, 4)
        while at >= 0:
            if at + 12 <= len(data):
                (length,) = struct.unpack_from("<I", data, at - 4)
                (index,) = struct.unpack_from("<I", data, at + 8)
                size = objects.get(index)
                if size is not None and index and length > max(size, len(data)):
                    return (f"a variable-length value at byte {at - 4} claims {length} bytes, "
                            f"more than the whole file, for global heap object {index} of "
                            f"{size} bytes")
            at = data.find(address, at + 1)
    return None


def _superblock(data: bytes | mmap.mmap) -> int | None:
    """The superblock's offset (0, 512, 1024, ...: a user block moves it)."""
    at = 0
    while at + 16 <= len(data):
        if bytes(data[at:at + 8]) == _SUPERBLOCK:
            return at
        at = 512 if at == 0 else at * 2
    return None


def _length_size(data: bytes | mmap.mmap) -> int | None:
    """The superblock's "size of lengths"."""
    at = _superblock(data)
    if at is None:
        return None
    return data[at + 14] if data[at + 8] in (0, 1) else data[at + 10]
