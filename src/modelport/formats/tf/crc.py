"""CRC-32C (Castagnoli) as TensorFlow and LevelDB store it: masked.

A stored checksum is `mask(crc32c(bytes))`, where mask rotates right by 15 bits and adds
0xa282ead8 (tensorflow/core/lib/hash/crc32c.h, leveldb/util/crc32c.h: "it is problematic to
compute the CRC of a string that contains embedded CRCs"). The CRC itself comes from
google-crc32c (hardware instructions, several GB/s), extra `tf`.

google-crc32c only accepts `bytes`, so a memory-mapped region is checksummed in 1 MB chunks
(each chunk copied once into a cache-sized buffer): one pass over the data at memory speed,
no copy of the whole tensor.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from modelport import optional

__all__ = ["crc32c", "mask", "unmask"]

MASK_DELTA = 0xA282EAD8
_CHUNK = 1 << 20
_MODULE: ModuleType | None = None


def _google_crc32c() -> Any:
    global _MODULE
    if _MODULE is None:
        _MODULE = optional.require("google_crc32c", "tf",
                                   "checking TensorFlow checkpoint checksums (crc32c)")
    return _MODULE


def crc32c(data: Any, crc: int = 0) -> int:
    """The (unmasked) CRC-32C of `data` (bytes, memoryview, mmap or a contiguous array),
    continuing from `crc` (0: a fresh checksum)."""
    lib = _google_crc32c()
    if isinstance(data, bytes):
        return int(lib.extend(crc, data))
    view = memoryview(data).cast("B")
    for start in range(0, len(view), _CHUNK):
        crc = int(lib.extend(crc, view[start:start + _CHUNK].tobytes()))
    return crc


def mask(crc: int) -> int:
    """The stored form of a CRC: rotated right by 15 bits plus MASK_DELTA (mod 2^32)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    """Inverse of `mask`."""
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
