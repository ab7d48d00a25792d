"""Refuse the HDF5 global heap collections on which libhdf5 never returns.

Variable-length data (Keras's `layer_names` / `weight_names` string attributes) lives in
global heap collections: `GCOL`, version 1, reserved bytes, the collection's size (8 bytes),
then objects of `index (2), reference count (2), reserved (4), size (8)` and the data padded
to 8 bytes; the object with index 0 is the free space. libhdf5 (1.14: H5HG__cache_heap_
deserialize) walks the objects with `p = begin + need`, where `need` is the free-space
object's size as stored: a free-space object of size 0 with room for another object header
after it leaves `p` where it was, and the walk loops forever on the first read of any string
in that collection. `check_global_heaps` finds every collection in the file by its signature
and walks it as libhdf5 does, before h5py opens the file.
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
    for match in _SIGNATURE.finditer(data):
        start = match.start()
        if start + _HEADER > len(data):
            break
        (size,) = struct.unpack_from("<Q", data, start + 8)
        end = min(start + size, len(data))
        p = start + _HEADER
        while p + _OBJECT_HEADER <= end:
            index, _, _, obj_size = struct.unpack_from("<HHIQ", data, p)
            if index == 0:
                if obj_size == 0:
                    return (f"the global heap collection at byte {start} has a free-space "
                            f"record of size 0 at byte {p} (libhdf5 would never finish "
                            "reading it)")
                p += obj_size
            else:
                p += _OBJECT_HEADER + (obj_size + 7) // 8 * 8
    return None


def _length_size(data: bytes | mmap.mmap) -> int | None:
    """The superblock's "size of lengths" (at 0, 512, 1024, ...: a user block moves it)."""
    at = 0
    while at + 16 <= len(data):
        if bytes(data[at:at + 8]) == _SUPERBLOCK:
            version = data[at + 8]
            return data[at + 14] if version in (0, 1) else data[at + 10]
        at = 512 if at == 0 else at * 2
    return None
