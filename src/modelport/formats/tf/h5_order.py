"""The order in which an HDF5 group's members were created, which h5py does not give.

h5py iterates a group's members sorted by name unless the group was created with
`track_order=True`, and Keras never asks for that. Keras 3 names the groups of
`model.weights.h5` after the layer class (`conv2d`, `conv2d_1`, `batch_normalization`, ...),
so the sorted order loses `model.layers` order across classes.

The order survives in the file itself. Keras writes with h5py's default (the earliest file
format): every group is an "old-style" group whose object header holds a Symbol Table message
(type 0x0011: v1 B-tree address, local heap address), and whose member names live in a local
heap (`HEAP`). The HDF5 library appends each new link name to the end of that heap (8-byte
aligned, NUL terminated, after the empty name at offset 0) and only reuses heap space after a
link is deleted, which Keras never does; growing the heap copies it, offsets unchanged. So the
heap offsets of the names are the creation order (HDF5 File Format Specification, "Disk Format:
Level 1D - Local Heaps" and "Level 2A1 - Version 1 Object Headers").

`creation_order(group, read)` returns the member names in that order, or None when the group
is not an old-style group or the heap does not list exactly the group's members; callers then
fall back to something weaker and say so. No torch, no TensorFlow; h5py only for the object
address and the file's offset/length sizes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

__all__ = ["ByteReader", "creation_order"]

# read(offset, length) -> bytes at that absolute offset of the file (fewer at EOF).
ByteReader = Callable[[int, int], bytes]

_SYMBOL_TABLE = 0x0011
_CONTINUATION = 0x0010
_MAX_MESSAGES = 4096
_MAX_HEAP_BYTES = 64 << 20  # a group of a million layers has a heap well under this


def _uint(raw: bytes, at: int, size: int) -> int:
    if at + size > len(raw):
        raise ValueError("short read")
    return int.from_bytes(raw[at:at + size], "little")


def _symbol_table_heap(read: ByteReader, header: int, base: int, so: int, sl: int) -> int | None:
    """The local heap address of the old-style group whose v1 object header is at `header`."""
    prefix = read(base + header, 16)
    if len(prefix) < 16 or prefix[0] != 1:  # version 2 headers start with b"OHDR"
        return None
    count = min(struct.unpack_from("<H", prefix, 2)[0], _MAX_MESSAGES)
    chunks = [(base + header + 16, struct.unpack_from("<I", prefix, 8)[0])]
    seen = 0
    while chunks and seen < count:
        start, length = chunks.pop(0)
        if length > _MAX_HEAP_BYTES:
            return None
        raw = read(start, length)
        at = 0
        while at + 8 <= len(raw) and seen < count:
            kind, size = struct.unpack_from("<HH", raw, at)
            body = at + 8
            seen += 1
            if kind == _SYMBOL_TABLE:
                return _uint(raw, body + so, so)
            if kind == _CONTINUATION:
                chunks.append((base + _uint(raw, body, so), _uint(raw, body + so, sl)))
            at = body + size
    return None


def _heap_names(read: ByteReader, heap: int, base: int, so: int, sl: int) -> list[str] | None:
    head = read(base + heap, 8 + 2 * sl + so)
    if head[:4] != b"HEAP" or head[4] != 0:
        return None
    size = _uint(head, 8, sl)
    free = _uint(head, 8 + sl, sl)
    data_at = _uint(head, 8 + 2 * sl, so)
    if size > _MAX_HEAP_BYTES:
        return None
    data = read(base + data_at, size)
    end = size if free == 1 or free >= size else free  # 1: H5HL_FREE_NULL, no free block
    names: list[str] = []
    at = 8  # offset 0 holds the empty name (8 bytes)
    while at < end:
        stop = data.find(b"\0", at, end)
        if stop < 0 or stop == at:
            break
        names.append(data[at:stop].decode("utf-8", "replace"))
        at = (stop + 1 + 7) // 8 * 8
    return names


def creation_order(group: Any, read: ByteReader) -> list[str] | None:
    """The members of the h5py `group` in creation order, or None when it cannot be told.

    A group created with link creation-order tracking iterates in that order already (h5py
    honours the index); for an old-style group the local heap says it (module docstring).
    """
    import h5py  # the caller has required it

    members = list(group.keys())
    try:
        # a File's own id is the file's, not its root group's
        gid = group["/"].id if isinstance(group, h5py.File) else group.id
        flags = gid.get_create_plist().get_link_creation_order()
        if flags & h5py.h5p.CRT_ORDER_TRACKED:
            return members
        fcpl = group.file.id.get_create_plist()
        so, sl = fcpl.get_sizes()
        base = fcpl.get_userblock()
        header = h5py.h5o.get_info(gid).addr
        heap = _symbol_table_heap(read, header, base, so, sl)
        names = None if heap is None else _heap_names(read, heap, base, so, sl)
    except (AttributeError, ValueError, OSError, RuntimeError, struct.error):
        return None
    if names is None or sorted(names) != sorted(members):
        return None
    return names
