"""Arrays that are views of a memory-mapped weights file, and the one copy a module makes of them.

`read_caffemodel` returns packed `data` blobs as read-only `np.frombuffer` views of the mapped
file (no copy). A module handed to the user must own its weights (writable, independent of the
file), so building one copies each blob once. Copying a view faults the file's pages into the
process (they count in its RSS, like the copy itself); `owned_copy` copies in chunks and drops
each chunk's pages from the mapping right after (`madvise(MADV_DONTNEED)`: for a read-only
shared file mapping that only unmaps them, the next access reads the page cache again), so the
process holds one copy of the weights instead of two.
"""

from __future__ import annotations

import mmap
import weakref

import numpy as np

CHUNK_BYTES = 1 << 24  # written (and hashed) between two releases (16 MiB)
# copied between two releases (4 MiB): a copy's peak RSS is the copy plus one such chunk
COPY_CHUNK_BYTES = 1 << 22

# Read-only file mappings the readers opened -> the address of their first byte, so that a
# writer holding only a tensor's address (safetensors from a module whose weights are views of
# the file) can drop the pages it has written (`release_address_range`).
_MAPPINGS: weakref.WeakKeyDictionary[mmap.mmap, int] = weakref.WeakKeyDictionary()


def register_mapping(view: memoryview) -> None:
    """Remember a read-only memory map (a reader's `files.read_bytes` result)."""
    if view.readonly and isinstance(view.obj, mmap.mmap) and len(view):
        _MAPPINGS[view.obj] = np.frombuffer(view, dtype=np.uint8, count=1).ctypes.data


def release_address_range(address: int, nbytes: int) -> None:
    """Drop the pages of [address, address + nbytes) from this process if they lie in a
    registered read-only file mapping (they stay in the page cache); otherwise do nothing."""
    for mapped, start in list(_MAPPINGS.items()):
        try:
            size = len(mapped)
        except ValueError:  # closed
            continue
        if start <= address and address + nbytes <= start + size:
            release(mapped, address - start, address - start + nbytes)
            return


def mapping_of(array: np.ndarray) -> tuple[mmap.mmap, int] | None:
    """(the read-only mmap `array` views, the byte offset of its first element in it), or None
    when `array` is not a view of a read-only memory map."""
    obj: object = array
    while isinstance(obj, np.ndarray):
        obj = obj.base
    if not isinstance(obj, memoryview) or not obj.readonly or not isinstance(obj.obj, mmap.mmap):
        return None  # a writable (private) mapping's pages must never be dropped
    mapped = obj.obj
    if len(mapped) == 0 or array.size == 0:
        return None
    start = np.frombuffer(obj, dtype=np.uint8, count=1).ctypes.data
    offset = array.ctypes.data - start
    if not 0 <= offset <= len(mapped) - array.nbytes:
        return None
    return mapped, offset


def release(mapped: mmap.mmap, begin: int, end: int) -> None:
    """Drop the whole pages of mapped[begin:end] from this process (not from the page cache)."""
    page = mmap.PAGESIZE
    lo = begin - begin % page
    hi = end - end % page
    if hi > lo and hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def owned_copy(data: np.ndarray) -> np.ndarray:
    """A writable C-contiguous float32 copy of `data` that shares nothing with it.

    When `data` is a contiguous float32 view of a read-only memory map, the mapped pages are
    released chunk by chunk as they are copied (see the module docstring); any other array is
    converted with one `np.array` copy.
    """
    found = mapping_of(data) if data.dtype == np.float32 and data.flags.c_contiguous else None
    if found is None:
        return np.array(data, dtype=np.float32, copy=True, order="C")
    mapped, offset = found
    out = np.empty(data.shape, dtype=np.float32)
    src = data.reshape(-1)
    dst = out.reshape(-1)
    step = COPY_CHUNK_BYTES // 4
    for i in range(0, src.size, step):
        j = min(src.size, i + step)
        dst[i:j] = src[i:j]
        release(mapped, offset + 4 * i, offset + 4 * j)
    return out
